// The official Node SDK (alibabacloud-iot-device-sdk): `postShadow`, `getShadow`,
// `deleteShadow` and `onShadow` against the hub's MQTT port. Prints one JSON line:
// {"post": reply, "get": reply, "delete": reply}; every wait bounded to 20 s.
//
//     node node_shadow.js SDK_DIR MQTT_PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET

const [sdkDir, port, productKey, deviceName, deviceSecret] = process.argv.slice(2);
const iot = require(sdkDir);

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out', got }));
  process.exit(1);
}, 20000);

const got = {};
const steps = ['post', 'get', 'delete'];
const device = iot.device({ productKey, deviceName, deviceSecret, brokerUrl: `mqtt://127.0.0.1:${port}` });
device.onShadow((res) => {
  got[steps[Object.keys(got).length]] = res;
  const n = Object.keys(got).length;
  if (n === 1) {
    device.getShadow();
  } else if (n === 2) {
    device.deleteShadow('color');
  } else {
    console.log(JSON.stringify(got));
    clearTimeout(timer);
    device.end();
  }
});
device.on('connect', () => {
  device.postShadow({ color: 'red', on: 1 });
});
