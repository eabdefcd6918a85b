//! Server-side subscription over AMQP 1.0 (issue 14) with the real consumers the platform's
//! samples use: rhea (Node) and python-qpid-proton, over TLS with the hub's local CA and over
//! plain TCP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aliot_hub::config::AmqpConfig;
use aliot_hub::subscription::{AccessKeys, Family, Relation};
use aliot_protocol::subscription::DEFAULT_GROUP;
use aliot_testkit::{Raw, TestHub, guard, run_guarded, signed};
use rmqtt_codec::v3::QoS;
use serde_json::Value;

const AK: &str = "testid";
const AK_SECRET: &str = "testsecret";

#[derive(Debug)]
struct Keys;

impl AccessKeys for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == AK).then(|| AK_SECRET.to_owned())
    }
}

/// A hub with AMQP over TLS and plain AMQP, the access key [`AK`], and a device of a product
/// whose relation sends device data and status changes to `DEFAULT_GROUP`.
async fn hub() -> (TestHub, String, String, String) {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.amqp = Some(AmqpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            plain_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..AmqpConfig::default()
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

fn node_modules() -> PathBuf {
    let package = aliot_testkit::sdk_node_package();
    package.parent().expect("node_modules").to_owned()
}

fn ca(hub: &TestHub) -> String {
    hub.hub()
        .tls_files()
        .and_then(|f| f.ca.clone())
        .expect("the local CA")
        .display()
        .to_string()
}

/// What a consumer printed: the messages (JSON lines) and whether it saw them all (`DONE`),
/// or its error.
struct Received {
    messages: Vec<Value>,
    done: bool,
    errors: Vec<String>,
}

fn parse(out: &std::process::Output) -> Received {
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
    r
}

/// Runs the rhea consumer until it got `count` messages (or failed).
async fn rhea(port: u16, ca: &str, secret: &str, count: usize, mode: &str) -> Received {
    let mut cmd = Command::new("node");
    cmd.arg(sdk_dir().join("rhea_consumer.js"))
        .args(["127.0.0.1", &port.to_string(), ca, AK, secret, DEFAULT_GROUP])
        .args([&count.to_string(), mode])
        .env("NODE_PATH", node_modules());
    let out = tokio::task::spawn_blocking(move || run_guarded(cmd))
        .await
        .expect("rhea");
    let r = parse(&out);
    if !r.done && r.errors.is_empty() {
        panic!(
            "rhea ended early: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    r
}

/// Runs the proton consumer until it got `count` messages (or failed).
async fn proton(port: u16, ca: &str, secret: &str, count: usize, mode: &str) -> Received {
    let mut cmd = Command::new(aliot_testkit::sdk_python());
    cmd.arg(sdk_dir().join("proton_consumer.py"))
        .args(["127.0.0.1", &port.to_string(), ca, AK, secret, DEFAULT_GROUP])
        .args([&count.to_string(), mode]);
    let out = tokio::task::spawn_blocking(move || run_guarded(cmd))
        .await
        .expect("proton");
    let r = parse(&out);
    if !r.done && r.errors.is_empty() {
        panic!(
            "proton ended early: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
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

#[tokio::test]
async fn rhea_receives_status_and_posts_and_gets_unacknowledged_ones_again() {
    let (hub, pk, dn, ds) = hub().await;
    let _dev = online_and_post(&hub, &pk, &dn, &ds, 21).await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let ca = ca(&hub);

    // Received, never acknowledged.
    let first = rhea(port, &ca, AK_SECRET, 2, "hold").await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let status = &first.messages[0];
    assert_eq!(status["topic"], format!("/as/mqtt/status/{pk}/{dn}"));
    assert_eq!(status["qos"], 1);
    assert_eq!(status["typecode"], 0x75, "one Data section");
    assert_eq!(status["content_type"], Value::Null);
    assert_eq!(status["message_id"], status["messageId"]);
    assert!(status["generateTime"].as_i64().is_some_and(|t| t > 0));
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
    assert_eq!(p["deviceType"], "CustomCategory");
    assert_eq!(p["items"]["Temperature"]["value"], 21);
    assert!(p["items"]["Temperature"]["time"].is_i64());
    assert_eq!(p["checkFailedData"], serde_json::json!({}));

    // After reconnecting: the same two again (same ids), acknowledged this time.
    let again = rhea(port, &ca, AK_SECRET, 2, "accept").await;
    let ids = |r: &Received| {
        r.messages
            .iter()
            .map(|m| m["messageId"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&first));

    // Acknowledged ones are gone: the next consumer gets only what comes next.
    let mut dev = _dev;
    post(&mut dev, &pk, &dn, 22).await;
    let next = rhea(port, &ca, AK_SECRET, 1, "accept").await;
    assert_eq!(body(&next.messages[0])["requestId"], "22");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let (hub, _pk, _dn, _ds) = hub().await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let r = rhea(port, &ca(&hub), "not-the-secret", 1, "accept").await;
    assert!(r.messages.is_empty());
    assert!(!r.errors.is_empty());
}
