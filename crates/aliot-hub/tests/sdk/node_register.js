// The official Node SDK (alibabacloud-iot-device-sdk): `register` over HTTPS against the hub
// (registerURL is the SDK's own option), then a device with the secret it got, on the hub's
// MQTT port. Prints one JSON line: {"register": <the SDK's callback value>, "connected": bool};
// the node process ends by itself (every wait bounded to 20 s).
//
//     node node_register.js SDK_DIR REGISTER_URL MQTT_PORT PRODUCT_KEY DEVICE_NAME PRODUCT_SECRET

const [sdkDir, registerURL, port, productKey, deviceName, productSecret] = process.argv.slice(2);
const iot = require(sdkDir);

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out' }));
  process.exit(1);
}, 20000);

iot.register({ productKey, productSecret, deviceName, registerURL }, (res) => {
  if (!res || res.code !== 200) {
    const shown = res && res.code !== undefined ? res : { error: String(res) };
    console.log(JSON.stringify({ register: shown, connected: false }));
    clearTimeout(timer);
    return;
  }
  const device = iot.device({
    productKey,
    deviceName,
    deviceSecret: res.data.deviceSecret,
    brokerUrl: `mqtt://127.0.0.1:${port}`,
  });
  device.on('connect', () => {
    console.log(JSON.stringify({ register: res, connected: true }));
    clearTimeout(timer);
    device.end();
  });
});
