#!/usr/bin/env node
// One device on the official Node SDK (alibabacloud-iot-device-sdk), pointed at the hub with
// brokerUrl; connects and idles until terminated.
//
//     node benches/node/one_device.js PK DN SECRET PORT
'use strict';

const iot = require('alibabacloud-iot-device-sdk');

const [productKey, deviceName, deviceSecret, port] = process.argv.slice(2);
const device = iot.device({ productKey, deviceName, deviceSecret, brokerUrl: `mqtt://127.0.0.1:${port}` });
device.on('error', () => {});
process.on('SIGTERM', () => device.end(false, () => process.exit(0)));
