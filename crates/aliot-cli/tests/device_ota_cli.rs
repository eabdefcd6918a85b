//! `aliot device run --firmware-version V --ota-dir DIR --ota-exec CMD` (issue 12) against a hub
//! in process and a file server: the version reported at start, a pushed upgrade downloaded,
//! verified, installed by the hook and reported; the version persisted so that a restart reports
//! it; a hook that fails reported as step -4 with its stderr.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use aliot_hub::RunningHub;
use aliot_hub::config::Config;
use aliot_hub::events::Event as HubEvent;
use aliot_protocol::config::sha256_hex;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const DN: &str = "ota-cli";

async fn hub_with_device(dir: &Path) -> (RunningHub, String, String) {
    let mut config = Config {
        data_dir: Some(dir.join("hub")),
        ..Config::default()
    };
    config.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.openapi.listen = "127.0.0.1:0".parse().expect("addr");
    let hub: RunningHub = aliot_hub::start(config, std::future::pending())
        .await
        .expect("hub");
    let product = hub.service().create_product("ota", None).await.expect("product");
    let device = hub
        .service()
        .create_device(&product.product_key, DN, None)
        .await
        .expect("device");
    (hub, product.product_key, device.device_secret)
}

/// Serves `file` (200, whole) on 127.0.0.1:0; returns its URL.
async fn serve(file: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/fw.bin?expires=9", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match socket.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let mut answer =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", file.len()).into_bytes();
            answer.extend_from_slice(&file);
            let _ = socket.write_all(&answer).await;
            let _ = socket.shutdown().await;
        }
    });
    url
}

fn device_run(hub: &RunningHub, pk: &str, secret: &str, ota_dir: &Path, exec: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "run", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt_addr().port().to_string())
        .args([
            "--product-key",
            pk,
            "--device-name",
            DN,
            "--device-secret",
            secret,
        ])
        .args(["--firmware-version", "1.0.0", "--ota-dir"])
        .arg(ota_dir)
        .args(["--ota-exec", exec, "--format", "json"])
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_PRODUCT_KEY")
        .env_remove("ALIOT_DEVICE_NAME")
        .env_remove("ALIOT_DEVICE_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run")
}

/// The payload of the next uplink on `topic` containing `needle`.
async fn uplink(events: &mut broadcast::Receiver<Arc<HubEvent>>, topic: &str, needle: &str) -> String {
    aliot_testkit::guard(&format!("{needle} on {topic}"), async {
        loop {
            if let Ok(HubEvent::Uplink(u)) = events.recv().await.as_deref()
                && u.topic == topic
                && let Some(p) = u.payload.as_deref()
                && p.contains(needle)
            {
                return p.to_owned();
            }
        }
    })
    .await
}

async fn push(hub: &RunningHub, pk: &str, file: &[u8], version: &str) {
    let url = serve(file.to_vec()).await;
    let payload = json!({"code": "1000", "id": 1, "message": "success",
        "data": {"size": file.len(), "version": version, "url": url,
                 "sign": sha256_hex(file), "signMethod": "SHA256"}});
    hub.service()
        .publish(
            pk,
            DN,
            &format!("/ota/device/upgrade/{pk}/{DN}"),
            payload.to_string().into(),
            1,
        )
        .await
        .expect("pushed");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_run_upgrades_through_its_hook_persists_the_version_and_reports_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, pk, secret) = hub_with_device(dir.path()).await;
    let ota_dir = dir.path().join("ota");
    let installed = dir.path().join("installed.bin");
    let inform = format!("/ota/device/inform/{pk}/{DN}");
    let progress = format!("/ota/device/progress/{pk}/{DN}");
    let mut events = hub.service().events();

    let hook = format!("cp \"$1\" '{}' && test \"$2\" = 2.0.0", installed.display());
    let mut child = device_run(&hub, &pk, &secret, &ota_dir, &hook);
    uplink(&mut events, &inform, r#""version":"1.0.0""#).await;
    let file: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    push(&hub, &pk, &file, "2.0.0").await;
    uplink(&mut events, &progress, r#""step":"100""#).await;
    uplink(&mut events, &inform, r#""version":"2.0.0""#).await;
    assert_eq!(std::fs::read(&installed).expect("installed by the hook"), file);
    assert_eq!(
        std::fs::read_to_string(ota_dir.join("version"))
            .expect("persisted")
            .trim(),
        "2.0.0"
    );
    child.kill().await.expect("killed");

    // A restart reports the persisted version; a failing hook fails the task with its stderr.
    let mut child = device_run(
        &hub,
        &pk,
        &secret,
        &ota_dir,
        "echo 'flash write error at 0x4000' >&2; exit 3",
    );
    uplink(&mut events, &inform, r#""version":"2.0.0""#).await;
    push(&hub, &pk, b"firmware three", "3.0.0").await;
    let failed = uplink(&mut events, &progress, r#""step":"-4""#).await;
    assert!(failed.contains("flash write error at 0x4000"), "{failed}");
    assert_eq!(
        std::fs::read_to_string(ota_dir.join("version"))
            .expect("persisted")
            .trim(),
        "2.0.0"
    );
    child.kill().await.expect("killed");
}
