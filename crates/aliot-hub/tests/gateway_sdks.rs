//! Gateways with the official SDKs (issue 13): the Node SDK's and the Python linkkit's gateway
//! APIs (topo add, sub-device login, sub-device property post, a property set to the
//! sub-device from the admin API) work unchanged against the hub.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use aliot_testkit::TestHub;
use hyper::StatusCode;
use serde_json::{Value, json};

/// The script's next line, as JSON.
async fn line(rx: &mut tokio::sync::mpsc::Receiver<String>) -> Value {
    let line = aliot_testkit::guard("a line of the SDK script", rx.recv())
        .await
        .expect("the SDK script printed a line");
    serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("JSON: {line}"))
}

/// Runs `cmd`, its stdout lines into a channel.
fn spawn_lines(mut cmd: Command) -> (std::process::Child, tokio::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the SDK runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Reads the script's steps until `set`, after asking for a property set once logged in and
/// posted: the step lines by name.
async fn drive(
    hub: &Arc<TestHub>,
    pk: &str,
    sub: &str,
    rx: &mut tokio::sync::mpsc::Receiver<String>,
) -> Value {
    let mut steps = serde_json::Map::new();
    let mut set_call = None;
    while !steps.contains_key("set") {
        let l = line(rx).await;
        assert!(l.get("error").is_none(), "{l}");
        let step = l["step"].as_str().expect("step").to_owned();
        steps.insert(step.clone(), l);
        if steps.contains_key("login") && steps.contains_key("post") && set_call.is_none() {
            let (hub, path) = (
                hub.clone(),
                format!("/api/v1/products/{pk}/devices/{sub}/properties"),
            );
            set_call = Some(tokio::spawn(async move {
                hub.call("POST", &path, Some(json!({"params": {"Power": 1}})))
                    .await
            }));
        }
    }
    let (s, v) = set_call.expect("set asked").await.expect("join");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["code"], 200, "{v}");
    Value::Object(steps)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_node_sdks_gateway_api_works_unchanged() {
    let hub = Arc::new(TestHub::start().await);
    let (pk, gw, gw_ds) = hub.device("node-gw").await;
    let (sub_pk, sub, sub_ds) = hub.device("node-sub").await;
    let mut cmd = Command::new("node");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node_gateway.js"))
        .arg(aliot_testkit::sdk_node_package())
        .arg(hub.mqtt.port().to_string())
        .args([&pk, &gw, &gw_ds, &sub_pk, &sub, &sub_ds]);
    let (mut child, mut rx) = spawn_lines(cmd);
    let steps = drive(&hub, &sub_pk, &sub, &mut rx).await;
    assert_eq!(steps["topo"]["res"]["code"], 200, "{steps}");
    assert_eq!(steps["login"]["res"]["code"], 200, "{steps}");
    assert_eq!(steps["post"]["res"]["code"], 200, "{steps}");
    assert_eq!(steps["set"]["cmd"]["params"], json!({"Power": 1}), "{steps}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("node exit");
    assert!(status.success(), "{status}");
}

/// linkkit logs in with `combine/batch_login`, `signMethod` beside `deviceList` (not in each
/// item: `aliot_protocol::gateway::BatchLogin::items` reads that shape), and relies on the
/// platform delivering `…/combine/batch_login_reply` without a SUBSCRIBE.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdks_gateway_api_works_unchanged() {
    let hub = Arc::new(TestHub::start().await);
    let (pk, gw, gw_ds) = hub.device("py-gw").await;
    let (sub_pk, sub, sub_ds) = hub.device("py-sub").await;
    let mut cmd = Command::new(aliot_testkit::sdk_python());
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/linkkit_gateway.py"
    ))
    .arg(hub.mqtt.port().to_string())
    .args([&pk, &gw, &gw_ds, &sub_pk, &sub, &sub_ds]);
    let (mut child, mut rx) = spawn_lines(cmd);
    let steps = drive(&hub, &sub_pk, &sub, &mut rx).await;
    assert_eq!(steps["topo"]["res"]["code"], 200, "{steps}");
    assert_eq!(steps["login"]["res"]["code"], 200, "{steps}");
    assert_eq!(steps["post"]["res"]["code"], 200, "{steps}");
    assert_eq!(steps["set"]["cmd"]["params"], json!({"Power": 1}), "{steps}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("python exit");
    assert!(status.success(), "{status}");
}
