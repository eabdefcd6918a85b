// The official Node SDK (alibabacloud-iot-device-sdk) against the hub's remote config:
// `getConfig` (thing.config.get), a download of the URL it answers (size and SHA-256
// checked), then a push asked of the admin API, received by `onConfig`. Prints one JSON line:
// {"get": <getConfig's reply>, "downloaded": {"size", "sha256"}, "push": <onConfig's value>};
// the node process ends by itself (every wait bounded to 20 s).
//
//     node node_config.js SDK_DIR MQTT_PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET ADMIN_URL ADMIN_TOKEN

const [sdkDir, port, productKey, deviceName, deviceSecret, adminUrl, adminToken] = process.argv.slice(2);
const iot = require(sdkDir);
const http = require('http');
const crypto = require('crypto');

const report = {};
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out', ...report }));
  process.exit(1);
}, 20000);

function get(url, done) {
  http.get(url, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => done(res.statusCode, Buffer.concat(chunks)));
  }).on('error', (e) => done(0, Buffer.from(String(e))));
}

const device = iot.device({ productKey, deviceName, deviceSecret, brokerUrl: `mqtt://127.0.0.1:${port}` });
device.onConfig((res) => {
  report.push = res;
  console.log(JSON.stringify(report));
  clearTimeout(timer);
  device.end();
});
device.on('connect', () => {
  device.getConfig((res) => {
    report.get = res;
    if (!res || res.code !== 200) {
      console.log(JSON.stringify(report));
      clearTimeout(timer);
      device.end();
      return;
    }
    get(res.data.url, (status, body) => {
      report.downloaded = {
        status,
        size: body.length,
        sha256: crypto.createHash('sha256').update(body).digest('hex'),
      };
      const req = http.request(`${adminUrl}/api/v1/products/${productKey}/config/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}` },
      }, (r) => {
        r.resume();
        report.pushStatus = r.statusCode;
      });
      req.end();
    });
  });
});
