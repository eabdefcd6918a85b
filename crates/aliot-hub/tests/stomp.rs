//! Server-side subscription over STOMP (issue 14, cloud-side spec §2.5) with the consumer the
//! platform's Python 3 sample uses: stomp.py, over TLS (without verification, as the sample,
//! and with the hub's CA); plus raw frames over plain TCP for the protocol's corners.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aliot_hub::config::StompConfig;
use aliot_hub::subscription::{AccessKeys, Family, Relation};
use aliot_protocol::subscription::DEFAULT_GROUP;
use aliot_testkit::{Raw, TestHub, guard, run_guarded, signed};
use rmqtt_codec::v3::QoS;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const AK: &str = "testid";
const AK_SECRET: &str = "testsecret";

#[derive(Debug)]
struct Keys;

impl AccessKeys for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == AK).then(|| AK_SECRET.to_owned())
    }
}

/// A hub with STOMP over TLS and plain STOMP, the access key [`AK`], and a device of a product
/// whose relation sends device data and status changes to `DEFAULT_GROUP`.
async fn hub() -> (TestHub, String, String, String) {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.stomp = Some(StompConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            plain_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..StompConfig::default()
        });
    })
    .await;
    hub.service().subscriptions().set_access_keys(Arc::new(Keys));
    let (pk, dn, ds) = hub.device("sensor").await;
    hub.service()
        .subscriptions()
        .set_relation(
            &pk,
            Relation {
                consumer_group_ids: vec![DEFAULT_GROUP.into()],
                flags: vec![Family::DeviceDataFlag, Family::DeviceStatusChangeFlag],
            },
        )
        .await
        .expect("a relation");
    (hub, pk, dn, ds)
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

fn ca(hub: &TestHub) -> String {
    hub.hub()
        .tls_files()
        .and_then(|f| f.ca.clone())
        .expect("the local CA")
        .display()
        .to_string()
}

/// What the consumer printed: the messages (JSON lines) and whether it saw them all (`DONE`),
/// or its errors.
struct Received {
    messages: Vec<Value>,
    done: bool,
    errors: Vec<String>,
}

/// Runs the stomp.py consumer until it got `count` messages (or failed). `ca`: a CA file,
/// `noverify` or `plain`.
async fn stomp_py(port: u16, ca: &str, secret: &str, count: usize, mode: &str) -> Received {
    let mut cmd = Command::new(aliot_testkit::sdk_python());
    cmd.arg(sdk_dir().join("stomp_consumer.py"))
        .args(["127.0.0.1", &port.to_string(), ca, AK, secret, DEFAULT_GROUP])
        .args([&count.to_string(), mode]);
    let out = tokio::task::spawn_blocking(move || run_guarded(cmd))
        .await
        .expect("stomp.py");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = Received {
        messages: Vec::new(),
        done: false,
        errors: Vec::new(),
    };
    for line in text.lines() {
        if line == "DONE" {
            r.done = true;
        } else if let Some(e) = line.strip_prefix("ERROR") {
            r.errors.push(e.trim().to_owned());
        } else if let Ok(v) = serde_json::from_str(line) {
            r.messages.push(v);
        }
    }
    if !r.done && r.errors.is_empty() {
        panic!(
            "stomp.py ended early: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    r
}

/// The device connects and posts a property; returns once the post is answered (and so in the
/// group's backlog).
async fn online_and_post(hub: &TestHub, pk: &str, dn: &str, ds: &str, value: i64) -> Raw {
    let mut dev = Raw::online(hub.mqtt, &signed(pk, dn, ds)).await;
    let reply = format!("/sys/{pk}/{dn}/thing/event/property/post_reply");
    dev.subscribe(1, &[(&reply, QoS::AtMostOnce)]).await;
    post(&mut dev, pk, dn, value).await;
    dev
}

async fn post(dev: &mut Raw, pk: &str, dn: &str, value: i64) {
    let topic = format!("/sys/{pk}/{dn}/thing/event/property/post");
    let body = format!(
        r#"{{"id":"{value}","version":"1.0","params":{{"Temperature":{value}}},"method":"thing.event.property.post"}}"#
    );
    dev.publish(&topic, &body, QoS::AtLeastOnce, 1).await;
    guard("the post reply", async {
        loop {
            if let Some(rmqtt_codec::v3::Packet::Publish(p)) = dev.recv().await
                && p.topic.ends_with("post_reply")
            {
                return;
            }
        }
    })
    .await;
}

fn body(m: &Value) -> Value {
    serde_json::from_str(m["body"].as_str().expect("a body")).expect("a JSON body")
}

fn ids(r: &Received) -> Vec<Value> {
    r.messages.iter().map(|m| m["messageId"].clone()).collect()
}

#[tokio::test]
async fn the_python3_sample_receives_status_and_property_posts() {
    let (hub, pk, dn, ds) = hub().await;
    let mut dev = online_and_post(&hub, &pk, &dn, &ds, 21).await;
    let port = hub.hub().stomps_addr().expect("stomps").port();

    // As the sample: TLS without verification, ack='auto'.
    let first = stomp_py(port, "noverify", AK_SECRET, 2, "auto").await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let status = &first.messages[0];
    assert_eq!(status["topic"], format!("/as/mqtt/status/{pk}/{dn}"));
    assert_eq!(status["qos"], "1");
    assert_eq!(status["destination"], "/topic/#");
    assert_eq!(status["subscription"], "1");
    assert_eq!(status["message_id"], status["messageId"]);
    assert_eq!(status["content_type"], Value::Null);
    assert!(
        status["generateTime"]
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| t > 0)
    );
    let s = body(status);
    assert_eq!(s["status"], "online");
    assert_eq!(s["productKey"], pk.as_str());
    for key in ["iotId", "time", "utcTime", "lastTime", "utcLastTime", "clientIp"] {
        assert!(s[key].is_string(), "{key} in {s}");
    }
    let posted = &first.messages[1];
    assert_eq!(posted["topic"], format!("/{pk}/{dn}/thing/event/property/post"));
    let p = body(posted);
    assert_eq!(p["requestId"], "21");
    assert_eq!(p["items"]["Temperature"]["value"], 21);
    assert_eq!(p["checkFailedData"], serde_json::json!({}));
    assert_eq!(
        posted["content_length"],
        posted["body"].as_str().expect("body").len().to_string()
    );

    // Auto-acknowledged: gone. The next consumer (verifying the hub's CA) gets only the next.
    post(&mut dev, &pk, &dn, 22).await;
    let next = stomp_py(port, &ca(&hub), AK_SECRET, 1, "auto").await;
    assert!(next.errors.is_empty(), "{:?}", next.errors);
    assert_eq!(body(&next.messages[0])["requestId"], "22");
    assert_eq!(
        hub.service()
            .subscriptions()
            .group(DEFAULT_GROUP)
            .expect("group")
            .backlog,
        0
    );
}

#[tokio::test]
async fn client_ack_mode_gets_unacknowledged_messages_again_after_reconnecting() {
    let (hub, pk, dn, ds) = hub().await;
    let mut dev = online_and_post(&hub, &pk, &dn, &ds, 31).await;
    let port = hub.hub().stomps_addr().expect("stomps").port();
    let ca = ca(&hub);

    let held = stomp_py(port, &ca, AK_SECRET, 2, "client-hold").await;
    assert!(held.errors.is_empty(), "{:?}", held.errors);
    // After reconnecting: the same two again (same ids), acknowledged this time.
    let again = stomp_py(port, &ca, AK_SECRET, 2, "client-ack").await;
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert_eq!(ids(&again), ids(&held));
    // Acknowledged ones are gone.
    post(&mut dev, &pk, &dn, 32).await;
    let next = stomp_py(port, &ca, AK_SECRET, 1, "client-ack").await;
    assert_eq!(body(&next.messages[0])["requestId"], "32");
}

#[tokio::test]
async fn a_wrong_password_gets_an_error_frame_and_the_clients_connect_failure() {
    let (hub, _pk, _dn, _ds) = hub().await;
    let port = hub.hub().stomps_addr().expect("stomps").port();
    let r = stomp_py(port, "noverify", "not-the-secret", 1, "auto").await;
    assert!(r.messages.is_empty());
    assert!(
        r.errors
            .iter()
            .any(|e| e.starts_with("frame authentication failed")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors.iter().any(|e| e.starts_with("ConnectFailedException")),
        "{:?}",
        r.errors
    );
}

/// Reads frames (up to each NUL; heart-beat EOLs skipped) until one whose command is `want`.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, want: &str) -> String {
    guard(want, async {
        loop {
            while let Some(end) = buf.iter().position(|b| *b == 0) {
                let frame: Vec<u8> = buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&frame)
                    .trim_start_matches(['\n', '\r'])
                    .to_owned();
                if text.starts_with(want) {
                    return text;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before {want}: {}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

fn login() -> (String, String) {
    let ts = "1573489088171";
    let user = format!(
        "raw|authMode=aksign,signMethod=hmacsha1,timestamp={ts},authId={AK},consumerGroupId={DEFAULT_GROUP}|"
    );
    // Spec §2.2 vector (testid / testsecret / 1573489088171).
    (user, "RG+3WYzI9qDD0P9m6ER+maK4yH0=".to_owned())
}

async fn connected(hub: &TestHub, version: &str) -> (TcpStream, Vec<u8>) {
    let addr = hub.hub().stomp_plain_addr().expect("plain stomp");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let (user, pass) = login();
    let connect = format!("STOMP\naccept-version:{version}\nhost:x\nlogin:{user}\npasscode:{pass}\n\n\0");
    s.write_all(connect.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let c = read_until(&mut s, &mut buf, "CONNECTED").await;
    assert!(c.contains(&format!("version:{version}")), "{c}");
    assert!(c.contains("heart-beat:0,0"), "{c}");
    (s, buf)
}

#[tokio::test]
async fn raw_frames_receipts_escaping_individual_acks_and_errors() {
    let (hub, pk, dn, ds) = hub().await;
    let _dev = online_and_post(&hub, &pk, &dn, &ds, 41).await;

    // 1.2, client-individual: the MESSAGE carries `ack`; NACK puts it back, ACK deletes it.
    let (mut s, mut buf) = connected(&hub, "1.2").await;
    s.write_all(b"SUBSCRIBE\nid:s\\c1\ndestination:/topic/#\nack:client-individual\nreceipt:r1\n\n\0")
        .await
        .expect("write");
    let receipt = read_until(&mut s, &mut buf, "RECEIPT").await;
    assert!(receipt.contains("receipt-id:r1"), "{receipt}");
    let m = read_until(&mut s, &mut buf, "MESSAGE").await;
    assert!(m.contains("subscription:s\\c1"), "the id escaped back: {m}");
    assert!(m.contains(&format!("topic:/as/mqtt/status/{pk}/{dn}")), "{m}");
    let id = m
        .lines()
        .find_map(|l| l.strip_prefix("ack:"))
        .expect("an ack header")
        .to_owned();
    s.write_all(format!("NACK\nid:{id}\n\n\0").as_bytes())
        .await
        .expect("write");
    let again = read_until(&mut s, &mut buf, "MESSAGE").await;
    // The NACKed status or the post comes (order is not guaranteed); ACK everything seen.
    let mut seen = vec![id.clone()];
    let other = again
        .lines()
        .find_map(|l| l.strip_prefix("ack:"))
        .expect("ack")
        .to_owned();
    seen.push(other);
    let third = read_until(&mut s, &mut buf, "MESSAGE").await;
    seen.push(
        third
            .lines()
            .find_map(|l| l.strip_prefix("ack:"))
            .expect("ack")
            .to_owned(),
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2, "the status and the post, one of them twice");
    for id in &seen {
        s.write_all(format!("ACK\nid:{id}\n\n\0").as_bytes())
            .await
            .expect("write");
    }
    s.write_all(b"DISCONNECT\nreceipt:bye\n\n\0")
        .await
        .expect("write");
    let bye = read_until(&mut s, &mut buf, "RECEIPT").await;
    assert!(bye.contains("receipt-id:bye"), "{bye}");
    drop(s);
    let group = guard("the acks applied", async {
        loop {
            let g = hub.service().subscriptions().group(DEFAULT_GROUP).expect("group");
            if g.consumers == 0 {
                return g;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(group.backlog, 0, "both acknowledged");

    // Producer frames are not for this connection: ERROR, then the close.
    let (mut s, mut buf) = connected(&hub, "1.1").await;
    s.write_all(b"SEND\ndestination:/a\nreceipt:r2\n\nhello\0")
        .await
        .expect("write");
    let e = read_until(&mut s, &mut buf, "ERROR").await;
    assert!(
        e.contains("receipt-id:r2") && e.contains("message:not supported"),
        "{e}"
    );
    let mut rest = Vec::new();
    let n = guard("the close", s.read_to_end(&mut rest)).await.expect("read");
    assert_eq!(n, 0);

    // A malformed frame and a second subscription.
    let (mut s, mut buf) = connected(&hub, "1.2").await;
    s.write_all(b"SUBSCRIBE\nid:a\\t\ndestination:/x\n\n\0")
        .await
        .expect("write");
    let e = read_until(&mut s, &mut buf, "ERROR").await;
    assert!(e.contains("escape"), "{e}");
    let (mut s, mut buf) = connected(&hub, "1.2").await;
    s.write_all(b"SUBSCRIBE\nid:1\ndestination:/x\n\n\0SUBSCRIBE\nid:2\ndestination:/y\n\n\0")
        .await
        .expect("write");
    let e = read_until(&mut s, &mut buf, "ERROR").await;
    assert!(e.contains("one subscription per connection"), "{e}");

    // Not CONNECT first; an unsupported version.
    let addr = hub.hub().stomp_plain_addr().expect("plain stomp");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"SUBSCRIBE\nid:1\ndestination:/x\n\n\0")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let e = read_until(&mut s, &mut buf, "ERROR").await;
    assert!(e.contains("expected CONNECT"), "{e}");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"CONNECT\naccept-version:2.0\n\n\0")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let e = read_until(&mut s, &mut buf, "ERROR").await;
    assert!(e.contains("version:1.0,1.1,1.2"), "{e}");
}
