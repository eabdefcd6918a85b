#!/usr/bin/env node
// Many signed devices in one Node process, each an official Node SDK device
// (alibabacloud-iot-device-sdk). Creates devices in batches as fast as the event loop allows for
// at most --seconds, then writes one JSON line (devices reached, time, RSS per device) to --out.
//
//     node benches/node/many_devices.js --devices fleet.csv --count 19000 --port 1883 --out r.json [--seconds 60]
'use strict';

const fs = require('fs');
const iot = require('alibabacloud-iot-device-sdk');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const rows = fs.readFileSync(arg('devices'), 'utf8').split('\n')
  .map((l) => l.trim().split(',').map((c) => c.trim()))
  .filter((c) => c.length >= 3 && c[0] && c[0] !== 'productKey')
  .slice(0, Number(arg('count', '1000')));
const port = arg('port', '1883');
const seconds = Number(arg('seconds', '60'));
const out = arg('out', '/dev/stdout');

const rss0 = process.memoryUsage().rss;
const start = Date.now();
let connected = 0;
let errors = 0;
let i = 0;
const devices = [];
const seen = new Set();

function finish() {
  const rss = process.memoryUsage().rss;
  const result = {
    tool: `alibabacloud-iot-device-sdk ${require('alibabacloud-iot-device-sdk/package.json').version} (Node ${process.version})`,
    devices: rows.length,
    connected,
    errors,
    seconds: (Date.now() - start) / 1000,
    rss_bytes: rss,
    rss_per_device_kib: connected ? Math.round(((rss - rss0) / 1024 / connected) * 1000) / 1000 : null,
  };
  fs.writeFileSync(out, JSON.stringify(result) + '\n');
  process.exit(0);
}

function batch() {
  const end = Math.min(i + 100, rows.length);
  for (; i < end; i++) {
    const [productKey, deviceName, deviceSecret] = rows[i];
    const d = iot.device({ productKey, deviceName, deviceSecret, brokerUrl: `mqtt://127.0.0.1:${port}`, keepalive: 120 });
    d.on('connect', () => {
      if (!seen.has(deviceName)) {
        seen.add(deviceName);
        connected += 1;
        if (connected === rows.length) finish();
      }
    });
    d.on('error', () => { errors += 1; });
    devices.push(d);
  }
  if (i < rows.length) setImmediate(batch);
}

setTimeout(finish, seconds * 1000);
batch();
