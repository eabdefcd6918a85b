//! The thing model against a whole hub (issue 11): the official Python SDK's thing-model calls
//! are judged like the platform's when the product has a TSL.

use aliot_testkit::{TOKEN, TestHub, http};
use hyper::StatusCode;
use serde_json::{Value, json};

/// A lamp: the `post` event lists the properties the Python SDK may post.
const TSL: &str = r#"{"properties":[
  {"identifier":"LightSwitch","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}],
 "events":[{"identifier":"post","type":"info","method":"thing.event.property.post","outputData":[
  {"identifier":"LightSwitch","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"Brightness","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}],
 "services":[]}"#;

/// Runs the SDK once; its JSON report.
fn linkkit(hub: &TestHub, pk: &str, dn: &str, ds: &str, tsl: &std::path::Path, params: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/linkkit_thing.py");
    let mut cmd = std::process::Command::new(aliot_testkit::sdk_python());
    cmd.arg(script)
        .args([&hub.mqtt.port().to_string(), pk, dn, ds])
        .arg(tsl)
        .arg(params.to_string());
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
