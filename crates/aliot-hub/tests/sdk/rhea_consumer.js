// An AMQP consumer written as Aliyun's official Node (rhea) sample for server-side
// subscription: aksign username/password computed here, `open_receiver()`,
// `Buffer.from(msg.body.content)`, `application_properties.topic`, `msg.message_id`,
// `delivery.accept()`.
//
// Usage: node rhea_consumer.js HOST PORT CA_PEM|plain ACCESS_KEY SECRET GROUP COUNT accept|hold [signMethod]
// Prints one JSON line per message, then `DONE` after COUNT messages (and closes), or
// `ERROR <text>` when the connection fails. `hold` never settles (the messages stay unacked).
const fs = require('fs');
const crypto = require('crypto');
const container = require('rhea');

const [host, port, ca, accessKey, accessSecret, groupId, count, mode, signMethodArg] = process.argv.slice(2);
const signMethod = signMethodArg || 'hmacsha1';
const timestamp = Date.now();
const clientId = 'rhea-consumer';
const username = clientId + '|authMode=aksign,signMethod=' + signMethod + ',timestamp=' + timestamp +
  ',authId=' + accessKey + ',iotInstanceId=,consumerGroupId=' + groupId + '|';
const algo = { hmacsha1: 'sha1', hmacsha256: 'sha256', hmacmd5: 'md5' }[signMethod];
const password = crypto.createHmac(algo, accessSecret)
  .update('authId=' + accessKey + '&timestamp=' + timestamp).digest('base64');

const options = {
  host, port: Number(port), reconnect: false, idle_time_out: 60000, username, password,
};
if (ca !== 'plain') {
  options.transport = 'tls';
  options.ca = [fs.readFileSync(ca)];
  options.servername = 'localhost';
}
const connection = container.connect(options);
// Settled by hand (`delivery.accept()` as the sample does), so that messages prefetched beyond
// COUNT stay unsettled and go back to the group when the connection closes.
connection.open_receiver({ autoaccept: false });
let seen = 0;
const want = Number(count);

container.on('message', (context) => {
  if (seen >= want) return;
  const msg = context.message;
  const body = Buffer.from(msg.body.content);
  console.log(JSON.stringify({
    topic: msg.application_properties.topic,
    messageId: msg.application_properties.messageId,
    generateTime: msg.application_properties.generateTime,
    qos: msg.application_properties.qos,
    message_id: msg.message_id,
    content_type: msg.content_type === undefined ? null : msg.content_type,
    typecode: msg.body.typecode,
    body: body.toString('utf8'),
  }));
  if (mode !== 'hold') {
    context.delivery.accept();
  }
  seen += 1;
  if (seen >= want) {
    console.log('DONE');
    // Let the dispositions go out before closing.
    setTimeout(() => { connection.close(); }, 200);
  }
});
container.on('connection_close', () => process.exit(0));
container.on('disconnected', (context) => {
  if (seen < want) {
    console.log('ERROR ' + (context.error ? context.error.message || context.error : 'disconnected'));
  }
  process.exit(0);
});
container.on('error', (context) => {
  console.log('ERROR ' + (context.error ? context.error.message || context.error : 'error'));
});
container.on('receiver_error', (context) => {
  console.log('ERROR receiver ' + (context.receiver.error ? context.receiver.error.condition + ' ' + context.receiver.error.description : ''));
});
container.on('connection_error', (context) => {
  console.log('ERROR connection ' + (context.connection.error ? context.connection.error.condition : ''));
});
