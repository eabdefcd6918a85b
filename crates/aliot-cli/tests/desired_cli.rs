//! `aliot admin device desired|shadow …` against a hub process (issue 11).

use std::path::Path;
use std::process::Output;

use aliot_testkit::{HubProcess, admin, ok_json, stderr};
use serde_json::json;

/// `aliot admin device GROUP CMD --product-key PK --device-name DN EXTRA…`.
fn on_device(d: &Path, cmd: &[&str], extra: &[&str]) -> Output {
    let target = ["--product-key", "a1StateCli", "--device-name", "lamp"];
    admin(d, &[&["device"][..], cmd, &target[..], extra].concat())
}

#[test]
fn desired_values_and_the_shadow_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", "a1StateCli"],
    ));
    ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            "a1StateCli",
            "--device-name",
            "lamp",
        ],
    ));

    let v = ok_json(&on_device(
        d,
        &["desired", "set"],
        &["--items", r#"{"power":1,"color":"red"}"#],
    ));
    assert_eq!(v, json!({"versions": {"color": 1, "power": 1}, "pushed": false}));
    let out = on_device(
        d,
        &["desired", "set"],
        &["--items", r#"{"power":0}"#, "--versions", r#"{"power":5}"#],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("version_conflict"), "{}", stderr(&out));
    let v = ok_json(&on_device(d, &["desired", "get"], &["--identifiers", "power"]));
    assert_eq!(v["items"][0]["value"], 1, "{v}");
    let v = ok_json(&on_device(
        d,
        &["desired", "clear"],
        &["--identifiers", "power,color"],
    ));
    assert_eq!(v["versions"], json!({"color": 2, "power": 2}), "{v}");

    let v = ok_json(&on_device(d, &["shadow", "get"], &[]));
    assert_eq!(v, json!({"shadow": null}));
    let v = ok_json(&on_device(
        d,
        &["shadow", "update"],
        &["--desired", r#"{"color":"green"}"#, "--shadow-version", "3"],
    ));
    assert_eq!(v["shadow"]["version"], 3, "{v}");
    assert_eq!(v["pushed"], false, "{v}");
    let v = ok_json(&on_device(d, &["shadow", "get"], &[]));
    assert_eq!(v["shadow"]["state"]["desired"], json!({"color": "green"}), "{v}");
}

/// What the hub acknowledged survives `kill -9`: a desired set answered 200, and a device's
/// shadow update answered `success`.
#[test]
fn acknowledged_desired_values_and_shadow_updates_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut hub = HubProcess::start(d, &[]);
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", "a1StateCli"],
    ));
    let created = ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            "a1StateCli",
            "--device-name",
            "lamp",
        ],
    ));
    let secret = created["deviceSecret"].as_str().expect("secret").to_owned();
    ok_json(&on_device(d, &["desired", "set"], &["--items", r#"{"power":1}"#]));
    let (mut device, code) = aliot_testkit::BlockingRaw::connect(hub.mqtt, "a1StateCli", "lamp", &secret);
    assert_eq!(code, 0);
    device.publish(
        "/shadow/update/a1StateCli/lamp",
        br#"{"method":"update","state":{"reported":{"color":"red"}},"version":9}"#,
    );
    let (topic, payload) = device.recv_publish();
    assert_eq!(topic, "/shadow/get/a1StateCli/lamp");
    let reply: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(reply["payload"]["status"], "success", "{reply}");
    hub.kill_9();

    let _hub = HubProcess::start(d, &[]);
    let v = ok_json(&on_device(d, &["desired", "get"], &[]));
    assert_eq!(v["items"][0]["value"], 1, "{v}");
    let v = ok_json(&on_device(d, &["shadow", "get"], &[]));
    assert_eq!(v["shadow"]["version"], 9, "{v}");
    assert_eq!(v["shadow"]["state"]["reported"], json!({"color": "red"}), "{v}");
}

#[test]
fn a_device_updates_and_gets_its_shadow_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let hub = HubProcess::start(d, &[]);
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", "a1StateCli"],
    ));
    let created = ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            "a1StateCli",
            "--device-name",
            "lamp",
        ],
    ));
    let secret = created["deviceSecret"].as_str().expect("secret").to_owned();
    let port = hub.mqtt.port().to_string();
    let device = |args: &[&str]| {
        let mut cmd = aliot_testkit::aliot();
        cmd.args(["device", "shadow"])
            .args(args)
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(["--product-key", "a1StateCli", "--device-name", "lamp"])
            .args(["--device-secret", &secret]);
        aliot_testkit::run_guarded(cmd)
    };
    let v = ok_json(&device(&[
        "update",
        r#"{"color":"red"}"#,
        "--shadow-version",
        "2",
    ]));
    assert_eq!(v, json!({"version": 2}));
    let out = device(&["update", r#"{"color":"blue"}"#, "--shadow-version", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
    let v = ok_json(&device(&["get"]));
    assert_eq!(v["payload"]["state"]["reported"], json!({"color": "red"}), "{v}");
    assert_eq!(v["version"], 2, "{v}");
}
