//! `aliot device run --gateway --sub-devices subs.csv` (issue 13): the CLI connects as the
//! gateway, adds and logs in every sub-device of the file, posts for each, and answers property
//! sets sent to a sub-device from the platform.

use std::process::Stdio;
use std::time::Duration;

use aliot_testkit::TestHub;
use aliot_testkit::events::next_uplink;
use serde_json::json;

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_simulates_a_gateway_and_its_sub_devices() {
    let hub = TestHub::start().await;
    let (gpk, gdn, gds) = hub.device("cli-gw").await;
    let (spk, s1, ds1) = hub.device("cli-s1").await;
    let s2 = "cli-s2";
    let ds2 = hub.register(&spk, s2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("subs.csv");
    std::fs::write(
        &csv,
        format!("productKey,deviceName,deviceSecret\n{spk},{s1},{ds1}\n{spk},{s2},{ds2}\n"),
    )
    .expect("csv");
    let mut uplinks = hub.service().events();
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "run", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt.port().to_string())
        .args([
            "--product-key",
            &gpk,
            "--device-name",
            &gdn,
            "--device-secret",
            &gds,
        ])
        .args(["--gateway", "--sub-devices"])
        .arg(&csv)
        .args(["--post-property", r#"{"Temperature":21.5}"#, "--format", "json"])
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_PRODUCT_KEY")
        .env_remove("ALIOT_DEVICE_NAME")
        .env_remove("ALIOT_DEVICE_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run --gateway");
    for dn in [s1.as_str(), s2] {
        let topic = format!("/sys/{spk}/{dn}/thing/event/property/post");
        let post: serde_json::Value =
            serde_json::from_str(&next_uplink(&mut uplinks, &topic).await).expect("JSON");
        assert_eq!(post["params"], json!({"Temperature": 21.5}), "{post}");
    }
    // A property set to a sub-device reaches the simulator through the gateway and is answered.
    let answer = hub
        .service()
        .set_property(&spk, s2, json!({"Power": 1}), CALL_TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(answer["code"], 200, "{answer}");
}
