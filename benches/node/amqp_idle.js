// benches/amqp.sh's idle consumers: N rhea connections, each authenticated with a receiver link
// on one of GROUPS consumer groups (at most 128 consumers per group), held open; prints READY
// once all are attached (or how many failed), then waits to be killed.
// Usage: node amqp_idle.js HOST PORT ACCESS_KEY SECRET N GROUP...
const crypto = require('crypto');
const container = require('rhea');

const [host, port, ak, secret, n, ...groups] = process.argv.slice(2);
let attached = 0;
let failed = 0;
const want = Number(n);
const report = () => {
  if (attached + failed === want) console.log(JSON.stringify({ attached, failed }));
};
for (let i = 0; i < want; i += 1) {
  const ts = Date.now();
  const group = groups[i % groups.length];
  const username = 'idle' + i + '|authMode=aksign,signMethod=hmacsha1,timestamp=' + ts + ',authId=' + ak +
    ',consumerGroupId=' + group + '|';
  const password = crypto.createHmac('sha1', secret).update('authId=' + ak + '&timestamp=' + ts).digest('base64');
  const c = container.connect({ host, port: Number(port), reconnect: false, username, password, idle_time_out: 60000 });
  const r = c.open_receiver();
  r.once('receiver_open', () => { attached += 1; report(); });
  c.once('disconnected', () => { failed += 1; report(); });
}
