//! Remote configuration from the command line against a hub process (issue 11):
//! `aliot admin product config upload|show|download|push|disable|enable|delete` and
//! `aliot device config get [--save FILE]`.

use std::path::Path;
use std::process::Output;

use aliot_testkit::{HubProcess, admin, aliot, ok_json, run_guarded, stderr};

const PK: &str = "a1CfgCli01";

/// `aliot admin product config SUB --product-key PK EXTRA…`.
fn config(d: &Path, sub: &str, extra: &[&str]) -> Output {
    admin(
        d,
        &[&["product", "config", sub, "--product-key", PK], extra].concat(),
    )
}

/// `aliot device config get` as device `dn` of [`PK`] on the hub's MQTT port.
fn device_get(hub: &HubProcess, dn: &str, secret: &str, extra: &[&str]) -> Output {
    let mut cmd = aliot();
    cmd.args(["device", "config", "get", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt.port().to_string())
        .args([
            "--product-key",
            PK,
            "--device-name",
            dn,
            "--device-secret",
            secret,
        ])
        .args(extra);
    run_guarded(cmd)
}

#[test]
fn a_config_is_uploaded_shown_downloaded_and_fetched_by_a_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = HubProcess::start(dir.path(), &[]);
    let d = dir.path();
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", PK],
    ));
    let created = ok_json(&admin(
        d,
        &[
            "device",
            "create",
            "--product-key",
            PK,
            "--device-name",
            "cli-cfg",
        ],
    ));
    let secret = created["deviceSecret"].as_str().expect("secret").to_owned();

    // No configuration yet: the device is told 6710.
    let out = device_get(&hub, "cli-cfg", &secret, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("6710"), "{}", stderr(&out));

    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("config.json");
    let body = br#"{"report_every_s":30,"leds":[1,0,1]}"#;
    std::fs::write(&file, body).expect("the file");
    let file_arg = file.to_str().expect("utf8 path");
    let uploaded = ok_json(&config(d, "upload", &["--file", file_arg]));
    assert_eq!(uploaded["config"]["configSize"], body.len(), "{uploaded}");
    let shown = ok_json(&config(d, "show", &[]));
    assert_eq!(
        shown["config"]["configId"], uploaded["config"]["configId"],
        "{shown}"
    );
    assert_eq!(shown["enabled"], true, "{shown}");

    let copy = work.path().join("copy.json");
    let out = config(d, "download", &["--output", copy.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(&copy).expect("the copy"), body);
    let out = config(d, "download", &[]);
    assert_eq!(out.stdout, body);

    // The device gets the description, and with --save the checked file.
    let saved = work.path().join("saved.json");
    let out = device_get(
        &hub,
        "cli-cfg",
        &secret,
        &["--save", saved.to_str().expect("utf8")],
    );
    let info = ok_json(&out);
    assert_eq!(info["sign"], uploaded["config"]["sign"], "{info}");
    assert_eq!(info["signMethod"], "Sha256", "{info}");
    assert_eq!(std::fs::read(&saved).expect("saved"), body);
    assert!(stderr(&out).contains("SHA-256 checked"), "{}", stderr(&out));

    // Nobody online: nothing pushed.
    let pushed = ok_json(&config(d, "push", &[]));
    assert_eq!(
        (&pushed["online"], &pushed["pushed"]),
        (&0.into(), &0.into()),
        "{pushed}"
    );

    // Switched off, then on; deleted.
    ok_json(&config(d, "disable", &[]));
    let out = device_get(&hub, "cli-cfg", &secret, &[]);
    assert!(stderr(&out).contains("6713"), "{}", stderr(&out));
    ok_json(&config(d, "enable", &[]));
    let deleted = ok_json(&config(d, "delete", &[]));
    assert!(deleted.get("config").is_none(), "{deleted}");
    let out = config(d, "download", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("config_not_found"), "{}", stderr(&out));
}

#[test]
fn a_file_above_64_kb_is_refused_before_any_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("big.bin");
    std::fs::write(&file, vec![b'x'; 64 * 1024 + 1]).expect("the file");
    // No hub is running: the refusal comes first.
    let out = config(dir.path(), "upload", &["--file", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("64 KB"), "{}", stderr(&out));
}

#[test]
fn an_acknowledged_upload_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut hub = HubProcess::start(d, &[]);
    ok_json(&admin(
        d,
        &["product", "create", "--name", "p", "--product-key", PK],
    ));
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("c.json");
    std::fs::write(&file, b"{\"v\":1}").expect("the file");
    let uploaded = ok_json(&config(d, "upload", &["--file", file.to_str().expect("utf8")]));
    ok_json(&config(d, "disable", &[]));
    hub.kill_9();
    let _hub = HubProcess::start(d, &[]);
    let shown = ok_json(&config(d, "show", &[]));
    assert_eq!(
        shown["config"]["configId"], uploaded["config"]["configId"],
        "{shown}"
    );
    assert_eq!(shown["enabled"], false, "{shown}");
    let out = config(d, "download", &[]);
    assert_eq!(out.stdout, b"{\"v\":1}");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_run_shows_a_pushed_config() {
    use tokio::io::AsyncBufReadExt as _;

    let hub = aliot_testkit::TestHub::start().await;
    let pk = hub.product().await;
    let secret = hub.register(&pk, "run-cfg").await;
    hub.service()
        .upload_config(&pk, b"{\"v\":2}".to_vec())
        .await
        .expect("uploaded");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args([
            "device",
            "run",
            "--format",
            "json",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(hub.mqtt.port().to_string())
        .args([
            "--product-key",
            &pk,
            "--device-name",
            "run-cfg",
            "--device-secret",
            &secret,
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_of = async |kind: &str| -> serde_json::Value {
        aliot_testkit::guard("a line of aliot device run", async {
            loop {
                let line = lines.next_line().await.expect("stdout").expect("a line");
                let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON a line");
                if v["type"] == kind {
                    return v;
                }
            }
        })
        .await
    };
    next_of("connected").await;
    let pushed = hub.service().push_config(&pk).await.expect("pushed");
    assert!(
        matches!(pushed, aliot_hub::service::ConfigPush::Pushed { pushed: 1, .. }),
        "{pushed:?}"
    );
    let shown = next_of("config_push").await;
    assert_eq!(shown["config"]["configSize"], 7, "{shown}");
    assert_eq!(shown["config"]["signMethod"], "Sha256", "{shown}");
    child.start_kill().expect("kill");
    let _ = aliot_testkit::guard("aliot device run to exit", child.wait()).await;
}
