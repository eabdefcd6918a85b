// The official Node SDK's gateway API (alibabacloud-iot-device-sdk) against the hub, used as its
// README shows: `iot.gateway`, `addTopo`, `login`, the sub-device's `postProps` and `onProps`.
//
//     node node_gateway.js SDK_DIR MQTT_PORT GW_PK GW_DN GW_DS SUB_PK SUB_DN SUB_DS
//
// Prints one JSON line per step: {"step":"topo",…}, {"step":"login",…}, {"step":"post",…}, then
// {"step":"set",…} when the backend's property set reached the sub-device (answered 200 on its
// reply topic through the gateway); then exits. Every wait is bounded to 20 s.

const [sdkDir, port, gwPk, gwDn, gwDs, subPk, subDn, subDs] = process.argv.slice(2);
const iot = require(sdkDir);

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out' }));
  process.exit(1);
}, 20000);

const gateway = iot.gateway({
  productKey: gwPk,
  deviceName: gwDn,
  deviceSecret: gwDs,
  brokerUrl: `mqtt://127.0.0.1:${port}`,
});
const sub = { productKey: subPk, deviceName: subDn, deviceSecret: subDs };

let started = false;
gateway.on('connect', () => {
  if (started) return;
  started = true;
  gateway.addTopo([sub], (topo) => {
    console.log(JSON.stringify({ step: 'topo', res: topo }));
    const subDevice = gateway.login(sub, (login) => {
      console.log(JSON.stringify({ step: 'login', res: login }));
    });
    subDevice.on('connect', () => {
      subDevice.onProps((cmd) => {
        const topic = `/sys/${subPk}/${subDn}/thing/service/property/set_reply`;
        gateway.publish(topic, JSON.stringify({ id: cmd.id, code: 200, data: {} }));
        console.log(JSON.stringify({ step: 'set', cmd }));
        clearTimeout(timer);
        setTimeout(() => { gateway.end(); }, 100);
      });
      subDevice.postProps({ Temperature: 21.5 }, (post) => {
        console.log(JSON.stringify({ step: 'post', res: post }));
      });
    });
  });
});
