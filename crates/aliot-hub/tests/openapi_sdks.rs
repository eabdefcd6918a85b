//! Aliyun's OpenAPI with the official server SDKs (issue 14), configured only with the hub's
//! endpoint and an access key: the Python core SDK (`aliyun-python-sdk-core` +
//! `aliyun-python-sdk-iot`, signature V1, POST), the Python Tea SDK (`alibabacloud_iot20180120`,
//! signature V3) and the Node core SDK (`@alicloud/pop-core`, V1 over GET). Each: Pub reaches a
//! connected device; SetDeviceProperty and InvokeThingService round-trip through it;
//! RegisterDevice, then the device connects and QueryDeviceDetail/GetDeviceStatus say ONLINE;
//! a wrong secret gets the SDK's own error.

use std::process::Command;

use aliot_testkit::{TestDevice, TestHub};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    /// aliyun-python-sdk-core + aliyun-python-sdk-iot.
    PyCore,
    /// alibabacloud_iot20180120.
    PyTea,
    /// @alicloud/pop-core.
    NodePop,
}

/// Runs one action with `sdk`; the script's JSON line.
async fn call(sdk: Sdk, endpoint: &str, ak: &str, secret: &str, action: &str, params: Value) -> Value {
    let host = endpoint.trim_start_matches("http://").to_owned();
    let mut cmd = match sdk {
        Sdk::PyCore | Sdk::PyTea => {
            let script = if sdk == Sdk::PyCore {
                "openapi_core.py"
            } else {
                "openapi_tea.py"
            };
            let mut c = Command::new(aliot_testkit::sdk_python());
            c.arg(format!("{DIR}/{script}")).arg(&host);
            c
        }
        Sdk::NodePop => {
            let pop = aliot_testkit::sdk_node_package()
                .parent()
                .expect("node_modules")
                .join("@alicloud/pop-core");
            let mut c = Command::new("node");
            c.arg(format!("{DIR}/openapi_pop.js")).arg(pop).arg(endpoint);
            c
        }
    };
    cmd.args([ak, secret, action, &params.to_string()]);
    let out = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("the script ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "{sdk:?} {action}: no JSON line\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The answer of a successful call.
fn ok(v: Value) -> Value {
    assert!(v.get("error").is_none(), "{v}");
    let ok = v["ok"].clone();
    assert_eq!(ok["Success"], json!(true), "{ok}");
    assert!(ok.get("Code").is_none(), "{ok}");
    ok
}

/// Answers property sets and RRPC service calls like a device, and forwards every message it
/// gets.
fn responder(mut dev: TestDevice) -> mpsc::UnboundedReceiver<(String, Bytes)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (topic, payload) = dev.next_publish().await;
            let body: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            let id = body["id"].clone();
            if topic.ends_with("/thing/service/property/set") {
                let reply = json!({"id": id, "code": 200, "data": {}});
                dev.publish(&format!("{topic}_reply"), reply.to_string()).await;
            } else if topic.contains("/rrpc/request/") {
                let reply = if body.get("method").is_some() {
                    json!({"id": id, "code": 200, "data": {"Done": 1}}).to_string()
                } else {
                    format!("pong:{}", String::from_utf8_lossy(&payload))
                };
                dev.publish(&topic.replace("/rrpc/request/", "/rrpc/response/"), reply)
                    .await;
            }
            if tx.send((topic, payload)).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Bytes)>) -> (String, Bytes) {
    aliot_testkit::guard("a message to the device", rx.recv())
        .await
        .expect("the responder runs")
}

async fn scenario(sdk: Sdk) {
    let hub = TestHub::start().await;
    let key = hub
        .service()
        .create_access_key(Some(format!("{sdk:?}")))
        .await
        .expect("an access key");
    let (ak, secret) = (key.access_key_id.as_str(), key.access_key_secret.as_str());
    let endpoint = hub.hub().openapi_url().expect("the OpenAPI is on").to_owned();
    let pk = hub.product().await;
    let dn = "sdk-lamp";
    let ds = hub.register(&pk, dn).await;
    let mut dev = TestDevice::connect(hub.mqtt, &pk, dn, &ds).await;
    let topic = format!("/{pk}/{dn}/user/get");
    dev.subscribe(&topic).await;
    let mut seen = responder(dev);

    // Pub: Base64 content, decoded bytes on the device's topic.
    let content = base64::engine::general_purpose::STANDARD.encode("hello from the backend");
    let answer = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "Pub",
        json!({"ProductKey": pk, "TopicFullName": topic, "MessageContent": content, "Qos": 0}),
    )
    .await);
    assert!(
        answer["MessageId"].is_u64() || answer["MessageId"].is_string(),
        "{answer}"
    );
    let (t, payload) = next(&mut seen).await;
    assert_eq!(
        (t.as_str(), &payload[..]),
        (topic.as_str(), &b"hello from the backend"[..])
    );

    // SetDeviceProperty: the device gets thing.service.property.set with the items, its
    // set_reply completes the call.
    let answer = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "SetDeviceProperty",
        json!({"ProductKey": pk, "DeviceName": dn, "Items": "{\"Brightness\":5}"}),
    )
    .await);
    let (t, payload) = next(&mut seen).await;
    assert!(t.ends_with("/thing/service/property/set"), "{t}");
    let body: Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(body["params"], json!({"Brightness": 5}));
    assert_eq!(answer["Data"]["MessageId"], body["id"], "{answer}");

    // InvokeThingService over RRPC.
    let answer = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "InvokeThingService",
        json!({"ProductKey": pk, "DeviceName": dn, "Identifier": "Blink", "Args": "{\"Times\":2}"}),
    )
    .await);
    let (t, payload) = next(&mut seen).await;
    assert!(t.contains("/rrpc/request/"), "{t}");
    let body: Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(body["method"], json!("thing.service.Blink"));
    assert_eq!(answer["Data"]["MessageId"], body["id"], "{answer}");

    // RegisterDevice, then the device connects.
    let answer = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "RegisterDevice",
        json!({"ProductKey": pk, "DeviceName": "sdk-new"}),
    )
    .await);
    let data = &answer["Data"];
    assert_eq!(data["DeviceName"], json!("sdk-new"));
    let iot_id = data["IotId"].as_str().expect("IotId").to_owned();
    let new_secret = data["DeviceSecret"].as_str().expect("DeviceSecret");
    let detail = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "QueryDeviceDetail",
        json!({"IotId": iot_id}),
    )
    .await);
    assert_eq!(detail["Data"]["Status"], json!("UNACTIVE"), "{detail}");
    assert_eq!(detail["Data"]["GmtActive"], json!(""));
    let _new = TestDevice::connect(hub.mqtt, &pk, "sdk-new", new_secret).await;
    let detail = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "QueryDeviceDetail",
        json!({"ProductKey": pk, "DeviceName": "sdk-new"}),
    )
    .await);
    let d = &detail["Data"];
    assert_eq!(d["Status"], json!("ONLINE"), "{detail}");
    assert_eq!(d["IotId"], json!(iot_id));
    assert_eq!(d["NodeType"], json!(0));
    assert_eq!(d["UtcActive"].as_str().map(str::len), Some(24), "{detail}");
    assert_eq!(d["GmtActive"].as_str().map(str::len), Some(19), "{detail}");
    let status = ok(call(
        sdk,
        &endpoint,
        ak,
        secret,
        "GetDeviceStatus",
        json!({"ProductKey": pk, "DeviceName": "sdk-new"}),
    )
    .await);
    assert_eq!(status["Data"]["Status"], json!("ONLINE"));
    assert!(status["Data"]["Timestamp"].is_u64(), "{status}");

    // A business error comes back as the answer (HTTP 200, Success:false) to the Python SDKs;
    // pop-core throws on its Code.
    let missing = call(
        sdk,
        &endpoint,
        ak,
        secret,
        "QueryDeviceDetail",
        json!({"ProductKey": pk, "DeviceName": "nobody"}),
    )
    .await;
    match sdk {
        Sdk::NodePop => {
            assert_eq!(
                missing["error"]["code"],
                json!("iot.device.NotExistedDevice"),
                "{missing}"
            );
        }
        _ => {
            assert_eq!(missing["ok"]["Success"], json!(false), "{missing}");
            assert_eq!(missing["ok"]["Code"], json!("iot.device.NotExistedDevice"));
            assert!(missing["ok"]["ErrorMessage"].is_string());
        }
    }

    // A wrong secret: each SDK's normal error.
    let wrong = call(
        sdk,
        &endpoint,
        ak,
        "not-the-secret",
        "GetDeviceStatus",
        json!({"ProductKey": pk, "DeviceName": dn}),
    )
    .await;
    let e = &wrong["error"];
    match sdk {
        Sdk::PyCore => {
            // The core compares the server's string-to-sign (after the colon) with its own and,
            // when equal, names the secret.
            assert_eq!(e["type"], json!("ServerException"), "{wrong}");
            assert_eq!(e["code"], json!("InvalidAccessKeySecret"), "{wrong}");
            assert_eq!(e["status"], json!(400));
            assert!(
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("AccessKeySecret is incorrect")),
                "{wrong}"
            );
        }
        Sdk::PyTea => {
            assert_eq!(e["code"], json!("SignatureDoesNotMatch"), "{wrong}");
            assert!(
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("server string to sign is:ACS3-HMAC-SHA256")),
                "{wrong}"
            );
        }
        Sdk::NodePop => {
            assert_eq!(e["name"], json!("SignatureDoesNotMatchError"), "{wrong}");
            assert_eq!(e["code"], json!("SignatureDoesNotMatch"), "{wrong}");
            assert!(
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("server string to sign is:GET&%2F&")),
                "{wrong}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_core_sdk_runs_unchanged() {
    scenario(Sdk::PyCore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_tea_sdk_runs_unchanged_with_signature_v3() {
    scenario(Sdk::PyTea).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_pop_core_sdk_runs_unchanged_over_get() {
    scenario(Sdk::NodePop).await;
}
