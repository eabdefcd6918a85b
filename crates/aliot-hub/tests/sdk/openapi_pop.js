// The official Node core SDK (@alicloud/pop-core RPCClient, signature V1, GET by default)
// against the hub's OpenAPI: endpoint 'http://HOST:PORT', apiVersion '2018-01-20'.
//
//     node openapi_pop.js POP_CORE_DIR http://HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET ACTION JSON_PARAMS [POST]
//
// Prints one JSON line: {"ok": <the answer>} or {"error": {"name", "code", "message"}}.
const [popDir, endpoint, ak, secret, action, params, method] = process.argv.slice(2);
const RPCClient = require(popDir);
const client = new RPCClient({ accessKeyId: ak, accessKeySecret: secret, endpoint, apiVersion: '2018-01-20' });
const opts = method ? { method, timeout: 20000 } : { timeout: 20000 };
client.request(action, JSON.parse(params), opts).then(
  (result) => console.log(JSON.stringify({ ok: result })),
  (err) => console.log(JSON.stringify({ error: { name: err.name, code: err.code, message: err.message } })),
);
