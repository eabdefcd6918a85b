// benches/amqp.sh's consumer: rhea as in Aliyun's official Node sample (window 1000, accept each
// message), counting messages for SECONDS after the first one and the latency of each property
// post: consumer receipt − the post's `gmtCreate` (the hub's receipt of the device's post, ms).
// Usage: node amqp_consumer.js HOST PORT ACCESS_KEY SECRET SECONDS
const crypto = require('crypto');
const container = require('rhea');

const [host, port, ak, secret, seconds] = process.argv.slice(2);
const ts = Date.now();
const username = 'bench|authMode=aksign,signMethod=hmacsha1,timestamp=' + ts + ',authId=' + ak +
  ',iotInstanceId=,consumerGroupId=DEFAULT_GROUP|';
const password = crypto.createHmac('sha1', secret).update('authId=' + ak + '&timestamp=' + ts).digest('base64');
const connection = container.connect({ host, port: Number(port), reconnect: false, username, password, idle_time_out: 60000 });
connection.open_receiver();
const lat = [];
let first = 0;
let count = 0;
container.on('message', (context) => {
  const now = Date.now();
  if (!first) {
    first = now;
    setTimeout(() => {
      const took = (Date.now() - first) / 1000;
      lat.sort((a, b) => a - b);
      const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
      console.log(JSON.stringify({
        messages: count, seconds: took, per_second: Math.round(count / took),
        latency_ms: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: lat[lat.length - 1] },
      }));
      connection.close();
      process.exit(0);
    }, Number(seconds) * 1000);
  }
  count += 1;
  const body = JSON.parse(Buffer.from(context.message.body.content).toString('utf8'));
  if (body.gmtCreate) lat.push(now - body.gmtCreate);
  context.delivery.accept();
});
