// The official Node SDK (alibabacloud-iot-device-sdk) against a hub whose product has a TSL,
// used as its README shows: `postProps`, `postEvent`, and a service served with `onService`
// (the SDK's "serve": the handler gets the call and a `reply` function).
//
//     node node_thing.js SDK_DIR MQTT_PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET
//
// Prints one JSON line per step: {"step":"posts", "valid":…, "invalid":…, "event":…} once the
// three posts are answered (the platform's replies as the SDK's callbacks got them), then
// {"step":"served", "call":…} once the backend's call to `Blink` was answered; then exits.
// Every wait is bounded to 20 s.

const [sdkDir, port, productKey, deviceName, deviceSecret] = process.argv.slice(2);
const iot = require(sdkDir);

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out' }));
  process.exit(1);
}, 20000);

const device = iot.device({
  productKey,
  deviceName,
  deviceSecret,
  brokerUrl: `mqtt://127.0.0.1:${port}`,
});

device.onService('Blink', (call, reply) => {
  reply({ id: call.id, code: 200, data: { Done: 1, Took: 0.25 } }, 'sync');
  console.log(JSON.stringify({ step: 'served', call }));
  clearTimeout(timer);
  setTimeout(() => { device.end(); }, 100);
});

let started = false;
device.on('connect', () => {
  if (started) return;
  started = true;
  const replies = {};
  const done = (key) => (res) => {
    replies[key] = res;
    if (Object.keys(replies).length === 3) {
      console.log(JSON.stringify({ step: 'posts', ...replies }));
    }
  };
  device.postProps({ LightSwitch: 1, Brightness: 40 }, done('valid'));
  // A float sent as text, and a bool as `true`: both rejected, the post still code 200.
  device.postProps({ Temperature: '21.5', LightSwitch: true, Brightness: 41 }, done('invalid'));
  device.postEvent('Overheat', { Temperature: 90.5, Level: 2 }, done('event'));
});
