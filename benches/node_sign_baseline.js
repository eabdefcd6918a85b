#!/usr/bin/env node
// Baseline for `cargo bench -p aliot-protocol --bench sign`: the CONNECT password with Node's
// crypto HMAC, as the official Node SDK computes it (createHmac(...).update(content).digest('hex')).
// Each iteration builds the sign content. One thread: the figure is signs per second per core.
// Short rounds, reported as the median and the best round (the least disturbed by other processes).
//
//     node benches/node_sign_baseline.js [--seconds 0.4] [--rounds 15] [--json]
'use strict';

const crypto = require('crypto');

const PK = 'a14Xib5kdYd';
const DN = 'light1983432';
const SECRET = 'oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq';
const PREFIX = 'SN1928339';
const TS = '1539421321846';
const EXPECTED_SHA1 = 'b2488041f64f425016b467ee1c94959ebd592ad1';

const ALGORITHMS = { hmacsha1: 'sha1', hmacsha256: 'sha256', hmacmd5: 'md5' };

function signOnce(alg) {
  const content = 'clientId' + PREFIX + 'deviceName' + DN + 'productKey' + PK + 'timestamp' + TS;
  return crypto.createHmac(alg, SECRET).update(content).digest('hex');
}

function measure(alg, seconds) {
  const batch = 10000;
  let done = 0;
  let sink = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  for (;;) {
    for (let i = 0; i < batch; i++) sink += signOnce(alg).length;
    done += batch;
    const now = process.hrtime.bigint();
    if (now >= deadline) {
      if (sink === 0) throw new Error('unreachable');
      return done / (Number(now - start) / 1e9);
    }
  }
}

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : dflt;
}

function main() {
  const seconds = arg('--seconds', 0.4);
  const rounds = arg('--rounds', 15);
  const asJson = process.argv.includes('--json');
  if (signOnce('sha1') !== EXPECTED_SHA1) throw new Error('the baseline does not compute the documented password');
  const results = {};
  for (const [name, alg] of Object.entries(ALGORITHMS)) {
    const rates = [];
    for (let r = 0; r < rounds; r++) rates.push(measure(alg, seconds));
    rates.sort((a, b) => a - b);
    const median = rates[Math.floor(rates.length / 2)];
    const best = rates[rates.length - 1];
    results[name] = {
      median_signs_per_sec: Math.round(median),
      median_ns_per_sign: Math.round(1e10 / median) / 10,
      best_signs_per_sec: Math.round(best),
      best_ns_per_sign: Math.round(1e10 / best) / 10,
    };
  }
  if (asJson) {
    console.log(JSON.stringify({ node: process.version, results }));
    return;
  }
  console.log(`node ${process.version} crypto HMAC, one thread, content built each time (${rounds} rounds of ${seconds} s)`);
  console.log(`${''.padEnd(11)} ${'median'.padStart(14)} ${''.padStart(12)}   ${'best round'.padStart(14)}`);
  const n = (x) => x.toLocaleString('en-US').padStart(10);
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name.padEnd(11)} ${n(r.median_signs_per_sec)} /s ${String(r.median_ns_per_sign).padStart(9)} ns   ` +
      `${n(r.best_signs_per_sec)} /s ${String(r.best_ns_per_sign).padStart(9)} ns`);
  }
}

main();
