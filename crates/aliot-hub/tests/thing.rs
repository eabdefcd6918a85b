//! The thing model against a whole hub (issue 11): the official Python SDK's thing-model calls
//! (property posts, events, services, property sets) are judged like the platform's when the
//! product has a TSL.

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use aliot_testkit::{TOKEN, TestHub, http, http_json};
use hyper::StatusCode;
use serde_json::{Value, json};

/// A lamp: the `post` event lists the properties the Python SDK may post.
const TSL: &str = r#"{"properties":[
  {"identifier":"LightSwitch","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}],
 "events":[{"identifier":"post","type":"info","method":"thing.event.property.post","outputData":[
  {"identifier":"LightSwitch","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}
,
  {"identifier":"Overheat","type":"alert","method":"thing.event.Overheat.post","outputData":[
  {"identifier":"Temp","dataType":{"type":"float","specs":{"min":"0","max":"150"}}}]}],
 "services":[{"identifier":"Blink","callType":"async","method":"thing.service.Blink",
  "inputData":[{"identifier":"Times","dataType":{"type":"int","specs":{"min":"1","max":"10"}}}],
  "outputData":[{"identifier":"Done","dataType":{"type":"bool","specs":{"0":"no","1":"yes"}}}]}]}"#;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/linkkit_thing.py");

/// The SDK script's command line for `mode` (see the script).
fn script(
    hub: &TestHub,
    pk: &str,
    dn: &str,
    ds: &str,
    tsl: &std::path::Path,
    mode: &str,
    arg: &Value,
) -> Command {
    let mut cmd = Command::new(aliot_testkit::sdk_python());
    cmd.arg(SCRIPT)
        .args([&hub.mqtt.port().to_string(), pk, dn, ds])
        .arg(tsl)
        .args([mode, &arg.to_string()]);
    cmd
}

/// Posts `params` with the SDK once; its JSON report.
fn linkkit(hub: &TestHub, pk: &str, dn: &str, ds: &str, tsl: &std::path::Path, params: &Value) -> Value {
    report(script(hub, pk, dn, ds, tsl, "post", params))
}

/// Runs the script to its end; its last JSON line.
fn report(cmd: Command) -> Value {
    let out = aliot_testkit::run_guarded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script's JSON line")
}

#[tokio::test]
async fn the_official_python_sdks_posts_are_judged_by_the_thing_model() {
    let hub = std::sync::Arc::new(TestHub::start().await);
    let (pk, dn, ds) = hub.device("py-lamp").await;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(TOKEN),
        Some(TSL.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let tsl = dir.path().join("lamp.json");
    std::fs::write(&tsl, TSL).expect("the TSL file");

    let (h, p, d, s2, t) = (hub.clone(), pk.clone(), dn.clone(), ds.clone(), tsl.clone());
    let report = tokio::task::spawn_blocking(move || {
        linkkit(&h, &p, &d, &s2, &t, &json!({"LightSwitch": 1, "Brightness": 101}))
    })
    .await
    .expect("the SDK run");
    assert_eq!(report["code"], 200, "{report}");
    assert!(
        report["data"]["Brightness"]
            .as_str()
            .is_some_and(|m| m.starts_with("tsl parse")),
        "{report}"
    );
    assert!(report["data"].get("LightSwitch").is_none(), "{report}");
    let (_, device) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/{dn}"), None)
        .await;
    assert_eq!(device["properties"], json!({"LightSwitch": 1}), "{device}");

    let (h, p, d) = (hub.clone(), pk.clone(), dn.clone());
    let report =
        tokio::task::spawn_blocking(move || linkkit(&h, &p, &d, &ds, &tsl, &json!({"Brightness": 40})))
            .await
            .expect("the SDK run");
    assert_eq!(
        (&report["code"], &report["data"]),
        (&json!(200), &json!({})),
        "{report}"
    );
}

/// A hub with the lamp model and one device: (hub, pk, dn, ds, the TSL file's directory, its
/// path).
async fn lamp_hub(
    dn: &str,
) -> (
    std::sync::Arc<TestHub>,
    String,
    String,
    String,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let hub = std::sync::Arc::new(TestHub::start().await);
    let (pk, dn, ds) = hub.device(dn).await;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(TOKEN),
        Some(TSL.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let tsl = dir.path().join("lamp.json");
    std::fs::write(&tsl, TSL).expect("the TSL file");
    (hub, pk, dn, ds, dir, tsl)
}

#[tokio::test]
async fn the_official_python_sdks_events_are_judged_by_the_thing_model() {
    let (hub, pk, dn, ds, _dir, tsl) = lamp_hub("py-event").await;
    for (value, rejected) in [(json!({"Temp": 99.5}), false), (json!({"Temp": "hot"}), true)] {
        let (h, p, d, s, t) = (hub.clone(), pk.clone(), dn.clone(), ds.clone(), tsl.clone());
        let arg = json!({"event": "Overheat", "value": value});
        let report = tokio::task::spawn_blocking(move || report(script(&h, &p, &d, &s, &t, "event", &arg)))
            .await
            .expect("the SDK run");
        assert_eq!(
            (&report["event"], &report["code"]),
            (&json!("Overheat"), &json!(200)),
            "{report}"
        );
        assert_eq!(
            report["data"]["Temp"]
                .as_str()
                .is_some_and(|m| m.starts_with("tsl parse")),
            rejected,
            "{report}"
        );
    }
}

#[tokio::test]
async fn the_official_python_sdk_serves_calls_and_sets_from_the_admin_api() {
    let (hub, pk, dn, ds, _dir, tsl) = lamp_hub("py-serve").await;
    let mut child = script(&hub, &pk, &dn, &ds, &tsl, "serve", &json!({"Done": 1}))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the SDK script starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = aliot_testkit::guard("the SDK's ready line", lines.recv()).await;
    assert_eq!(ready.as_deref(), Some("ready"));
    let device = format!("{}/api/v1/products/{pk}/devices/{dn}", hub.base);
    let (s, v) = http_json(
        "POST",
        &format!("{device}/services/Blink"),
        Some(TOKEN),
        Some(json!({"params": {"Times": 3}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"], json!({"Done": 1}), "{v}");
    let (s, v) = http_json(
        "POST",
        &format!("{device}/properties"),
        Some(TOKEN),
        Some(json!({"params": {"Brightness": 30}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut last = String::new();
    while let Some(line) = aliot_testkit::guard("the SDK's report", lines.recv()).await {
        last = line;
    }
    let status = tokio::task::spawn_blocking(move || aliot_testkit::wait_guarded(&mut child))
        .await
        .expect("the SDK run");
    assert!(status.success(), "{last}");
    let report: Value = serde_json::from_str(&last).expect("the script's JSON line");
    assert_eq!(
        report,
        json!({"service": {"identifier": "Blink", "params": {"Times": 3}}, "set": {"Brightness": 30}})
    );
}
