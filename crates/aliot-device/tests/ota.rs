//! OTA with the SDK over real sockets (issue 12, spec §4.3 "OTA"): a push surfaced as
//! `Event::OtaUpgrade`, a download that the file server drops mid-file once and the SDK resumes
//! with `Range`, a checksum failure reported as step -3 with the file never handed over, an
//! expired URL reported as step -2, a partial file left by a restart resumed, and the version
//! reported on `/ota/device/inform`.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aliot_device::ota::{DownloadOptions, Ota, SignMethod, Upgrade, VersionFile, fetch};
use aliot_device::{Error, Event, Events, TrustAnchors};
use aliot_hub::events::Event as HubEvent;
use aliot_testkit::events::{next_event, next_uplink};
use aliot_testkit::guard;
use bytes::Bytes;
use common::Hub;
use md5::{Digest as _, Md5};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A firmware of 300 000 pseudo-random bytes.
fn firmware() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the file server misbehaves.
#[derive(Clone, Copy)]
enum Mode {
    /// The first answer announces the whole file, sends `n` bytes and closes; later answers
    /// honour `Range`.
    DropOnceAt(usize),
    /// Every answer has one byte flipped.
    Corrupt,
    /// Every answer is 403 (an expired URL).
    Expired,
    /// Honours `Range`.
    Plain,
}

/// A file server on 127.0.0.1:0; returns its URL and the `Range` headers it saw (`""` for none).
async fn serve(file: Vec<u8>, mode: Mode) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/ota/fw.bin?expires=9&signature=ab",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut served = 0usize;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match socket.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let from = head
                .lines()
                .find_map(|l| l.strip_prefix("Range: bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            log.lock()
                .expect("log")
                .push(from.map_or_else(String::new, |f| format!("bytes={f}-")));
            served += 1;
            let mut body = file.clone();
            if matches!(mode, Mode::Corrupt) {
                body[1000] ^= 0xff;
            }
            let answer = match (mode, from) {
                (Mode::Expired, _) => {
                    let text = "the URL expired";
                    let mut a = format!("HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n", text.len())
                        .into_bytes();
                    a.extend_from_slice(text.as_bytes());
                    a
                }
                (Mode::DropOnceAt(n), None) if served == 1 => {
                    let mut a =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                    a.extend_from_slice(&body[..n]);
                    a
                }
                (_, Some(f)) => {
                    let mut a = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {f}-{}/{}\r\n\r\n",
                        body.len() - f,
                        body.len() - 1,
                        body.len()
                    )
                    .into_bytes();
                    a.extend_from_slice(&body[f..]);
                    a
                }
                (_, None) => {
                    let mut a =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                    a.extend_from_slice(&body);
                    a
                }
            };
            let _ = socket.write_all(&answer).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

fn upgrade(file: &[u8], url: &str, method: SignMethod) -> Upgrade {
    let sign = match method {
        SignMethod::Md5 => hex(&Md5::digest(file)),
        _ => hex(&Sha256::digest(file)),
    };
    let data = json!({"size": file.len(), "version": "2.0.0", "url": url,
        "sign": sign, "signMethod": method.as_str(), "module": "default"});
    Upgrade::from_data(&data).expect("ok").expect("a task")
}

async fn next_upgrade(events: &mut Events) -> Upgrade {
    guard("the OTA push", async {
        loop {
            match events.recv().await {
                Some(Event::OtaUpgrade(upgrade)) => return upgrade,
                Some(_) => {}
                None => panic!("the device stopped"),
            }
        }
    })
    .await
}

fn quick() -> DownloadOptions {
    let mut options = DownloadOptions::default();
    options.retry_delay = Duration::ZERO;
    options
}

/// Waits for a progress report with `step` on the device's progress topic.
async fn progress_step(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<HubEvent>>,
    topic: &str,
    step: &str,
) -> String {
    let needle = format!(r#""step":"{step}""#);
    let e = next_event(rx, |e| {
        matches!(e, HubEvent::Uplink(u) if u.topic == topic
            && u.payload.as_deref().is_some_and(|p| p.contains(&needle)))
    })
    .await;
    match &*e {
        HubEvent::Uplink(u) => u.payload.clone().unwrap_or_default(),
        _ => unreachable!("an uplink"),
    }
}

#[tokio::test]
async fn a_pushed_upgrade_is_downloaded_resumed_after_a_drop_verified_and_reported() {
    let hub = Hub::start(false).await;
    let id = hub.device("ota-1").await;
    let pk = id.product_key().to_owned();
    let (device, mut events) = aliot_device::Device::connect(hub.options(id))
        .await
        .expect("connects");
    let mut hub_events = hub.service().events();
    let ota = Ota::new(device.clone()).with_options(quick());
    ota.inform("1.0.0").await.expect("informed");
    let inform = next_uplink(&mut hub_events, &format!("/ota/device/inform/{pk}/ota-1")).await;
    assert!(inform.contains(r#""version":"1.0.0""#), "{inform}");

    let file = firmware();
    let (url, seen) = serve(file.clone(), Mode::DropOnceAt(100_000)).await;
    let announced = upgrade(&file, &url, SignMethod::Md5);
    let push = json!({"code": "1000", "id": 1_626_969_597_470_u64, "message": "success",
        "data": {"size": file.len(), "version": "2.0.0", "isDiff": 0, "url": url,
                 "md5": announced.sign, "sign": announced.sign, "signMethod": "Md5"}});
    hub.service()
        .publish(
            &pk,
            "ota-1",
            &format!("/ota/device/upgrade/{pk}/ota-1"),
            Bytes::from(push.to_string()),
            1,
        )
        .await
        .expect("pushed");
    let pushed = next_upgrade(&mut events).await;
    assert_eq!(pushed, announced);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fw.bin");
    let firmware = ota.download(&pushed, &path).await.expect("downloaded");
    assert_eq!(
        (firmware.version.as_str(), firmware.size),
        ("2.0.0", file.len() as u64)
    );
    assert_eq!(std::fs::read(&path).expect("the file"), file);
    assert_eq!(
        *seen.lock().expect("log"),
        vec![String::new(), "bytes=100000-".to_owned()],
        "one full request, then one resumed from what the file held"
    );
    let topic = format!("/ota/device/progress/{pk}/ota-1");
    let done = progress_step(&mut hub_events, &topic, "100").await;
    assert!(!done.contains("module"), "{done}");

    // Installed: the application persists and reports the version.
    let version = VersionFile::new(dir.path().join("version"));
    assert_eq!(version.load().expect("readable"), None);
    version.store(&firmware.version).expect("stored");
    assert_eq!(version.load().expect("readable").as_deref(), Some("2.0.0"));
    ota.inform(&firmware.version).await.expect("informed");
    let inform = next_uplink(&mut hub_events, &format!("/ota/device/inform/{pk}/ota-1")).await;
    assert!(inform.contains(r#""version":"2.0.0""#), "{inform}");
    device.disconnect().await;
}

#[tokio::test]
async fn a_corrupt_download_reports_step_minus_3_and_is_never_handed_over() {
    let hub = Hub::start(false).await;
    let id = hub.device("ota-2").await;
    let pk = id.product_key().to_owned();
    let (device, _events) = aliot_device::Device::connect(hub.options(id))
        .await
        .expect("connects");
    let mut hub_events = hub.service().events();
    let ota = Ota::new(device.clone()).with_module("MCU").with_options(quick());

    let file = firmware();
    let (url, _) = serve(file.clone(), Mode::Corrupt).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fw.bin");
    match ota
        .download(&upgrade(&file, &url, SignMethod::Sha256), &path)
        .await
    {
        Err(Error::OtaVerify(reason)) => assert!(reason.contains("SHA256"), "{reason}"),
        other => panic!("expected a checksum failure, got {other:?}"),
    }
    assert!(!path.exists(), "the corrupt file is removed");
    let topic = format!("/ota/device/progress/{pk}/ota-2");
    let failed = progress_step(&mut hub_events, &topic, "-3").await;
    assert!(failed.contains(r#""module":"MCU""#), "{failed}");

    // An expired URL: step -2 with the server's answer, nothing kept.
    let (url, _) = serve(file.clone(), Mode::Expired).await;
    match ota.download(&upgrade(&file, &url, SignMethod::Md5), &path).await {
        Err(Error::OtaDownload(reason)) => assert!(reason.contains("403"), "{reason}"),
        other => panic!("expected a 403, got {other:?}"),
    }
    let failed = progress_step(&mut hub_events, &topic, "-2").await;
    assert!(failed.contains("403"), "{failed}");
    device.disconnect().await;
}

#[tokio::test]
async fn a_partial_file_left_by_a_restart_is_resumed() {
    let file = firmware();
    let (url, seen) = serve(file.clone(), Mode::Plain).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fw.bin");
    std::fs::write(&path, &file[..123_456]).expect("partial file");
    let mut percents = Vec::new();
    fetch(
        &upgrade(&file, &url, SignMethod::Md5),
        Path::new(&path),
        &TrustAnchors::Aliyun,
        &quick(),
        |p| {
            percents.push(p);
            async {}
        },
    )
    .await
    .expect("resumed and verified");
    assert_eq!(std::fs::read(&path).expect("the file"), file);
    assert_eq!(*seen.lock().expect("log"), vec!["bytes=123456-".to_owned()]);
    assert_eq!(percents.last(), Some(&100));
    assert!(percents.windows(2).all(|w| w[0] <= w[1]));
}

/// The next OTA task event of `dn` with `status`.
async fn task_status(rx: &mut tokio::sync::broadcast::Receiver<Arc<HubEvent>>, dn: &str, status: &str) {
    next_event(rx, |e| {
        matches!(e, HubEvent::Ota(o) if o.kind == "task" && o.device_name == dn && o.task_status == Some(status))
    })
    .await;
}

#[tokio::test]
async fn a_job_of_the_hub_is_pushed_downloaded_verified_and_succeeds_on_the_new_version() {
    let hub = Hub::start(false).await;
    let id = hub.device("ota-e2e").await;
    let pk = id.product_key().to_owned();
    let (device, mut events) = aliot_device::Device::connect(hub.options(id))
        .await
        .expect("connects");
    let mut hub_events = hub.service().events();
    let ota = Ota::new(device.clone()).with_options(quick());
    ota.inform("1.0.0").await.expect("informed");
    // Nothing pending yet; answered in order, so the version report is in too.
    assert_eq!(ota.firmware_get().await.expect("answered"), None);

    let file = firmware();
    let (status, package) = aliot_testkit::http(
        "POST",
        &format!(
            "{}/api/v1/ota/packages?productKey={pk}&destVersion=2.0.0&signMethod=SHA256",
            hub.test.base
        ),
        Some(aliot_testkit::TOKEN),
        Some(String::from_utf8_lossy(&file).into_owned()),
    )
    .await;
    assert_eq!(status.as_u16(), 200, "{package}");
    let package: serde_json::Value = serde_json::from_str(&package).expect("JSON");
    let firmware_id = package["firmwareId"].as_str().expect("an id").to_owned();
    // The body went through a String: use the bytes the hub stored.
    let size = package["firmwareSize"].as_u64().expect("a size");
    let (status, job) = hub
        .test
        .call(
            "POST",
            "/api/v1/ota/jobs",
            Some(json!({"firmwareId": firmware_id, "srcVersions": ["1.0.0"]})),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{job}");

    let upgrade = next_upgrade(&mut events).await;
    assert_eq!((upgrade.version.as_str(), upgrade.size), ("2.0.0", size));
    let dir = tempfile::tempdir().expect("tempdir");
    let firmware = ota
        .download(&upgrade, dir.path().join("fw.bin"))
        .await
        .expect("downloaded from the hub and verified");
    task_status(&mut hub_events, "ota-e2e", "IN_PROGRESS").await;
    ota.inform(&firmware.version).await.expect("informed");
    task_status(&mut hub_events, "ota-e2e", "SUCCEEDED").await;
    device.disconnect().await;
}
