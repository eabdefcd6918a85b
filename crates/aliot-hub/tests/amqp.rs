//! Server-side subscription over AMQP 1.0 (issue 14) with the real consumers the platform's
//! samples use: rhea (Node) and python-qpid-proton, over TLS with the hub's local CA and over
//! plain TCP.

use std::path::{Path, PathBuf};
use std::process::Command;

use aliot_hub::config::AmqpConfig;
use aliot_hub::subscription::{Family, Relation};
use aliot_protocol::subscription::DEFAULT_GROUP;
use aliot_testkit::{Raw, TestHub, guard, run_guarded, signed};
use rmqtt_codec::v3::QoS;
use serde_json::Value;

/// A hub's access key: (AccessKeyId, AccessKeySecret).
#[derive(Debug, Clone)]
struct Ak(String, String);

async fn access_key(hub: &TestHub) -> Ak {
    let k = hub
        .service()
        .create_access_key(Some("amqp test".into()))
        .await
        .expect("an access key");
    Ak(k.access_key_id, k.access_key_secret)
}

/// A hub with AMQP over TLS and plain AMQP, an access key, and a device of a product whose
/// relation sends device data and status changes to `DEFAULT_GROUP`.
async fn hub() -> (TestHub, Ak, String, String, String) {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.amqp = Some(AmqpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            plain_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..AmqpConfig::default()
        });
    })
    .await;
    let ak = access_key(&hub).await;
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
    (hub, ak, pk, dn, ds)
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
async fn rhea(port: u16, ca: &str, ak: &Ak, count: usize, mode: &str) -> Received {
    let mut cmd = Command::new("node");
    cmd.arg(sdk_dir().join("rhea_consumer.js"))
        .args(["127.0.0.1", &port.to_string(), ca, &ak.0, &ak.1, DEFAULT_GROUP])
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
async fn proton(port: u16, ca: &str, ak: &Ak, count: usize, mode: &str) -> Received {
    let mut cmd = Command::new(aliot_testkit::sdk_python());
    cmd.arg(sdk_dir().join("proton_consumer.py"))
        .args(["127.0.0.1", &port.to_string(), ca, &ak.0, &ak.1, DEFAULT_GROUP])
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
    let (hub, ak, pk, dn, ds) = hub().await;
    let _dev = online_and_post(&hub, &pk, &dn, &ds, 21).await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let ca = ca(&hub);

    // Received, never acknowledged.
    let first = rhea(port, &ca, &ak, 2, "hold").await;
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
    let again = rhea(port, &ca, &ak, 2, "accept").await;
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
    let next = rhea(port, &ca, &ak, 1, "accept").await;
    assert_eq!(body(&next.messages[0])["requestId"], "22");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let (hub, ak, _pk, _dn, _ds) = hub().await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let wrong = Ak(ak.0.clone(), "not-the-secret".into());
    let r = rhea(port, &ca(&hub), &wrong, 1, "accept").await;
    assert!(r.messages.is_empty());
    assert!(!r.errors.is_empty());
}

#[tokio::test]
async fn proton_receives_over_tls_and_plain_and_gets_unacknowledged_ones_again() {
    let (hub, ak, pk, dn, ds) = hub().await;
    let mut dev = online_and_post(&hub, &pk, &dn, &ds, 7).await;
    let tls = hub.hub().amqps_addr().expect("amqps").port();
    let ca = ca(&hub);

    let first = proton(tls, &ca, &ak, 2, "hold").await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.messages[0]["topic"], format!("/as/mqtt/status/{pk}/{dn}"));
    assert_eq!(body(&first.messages[0])["status"], "online");
    assert_eq!(
        first.messages[1]["topic"],
        format!("/{pk}/{dn}/thing/event/property/post")
    );
    assert_eq!(body(&first.messages[1])["items"]["Temperature"]["value"], 7);
    assert_eq!(first.messages[1]["message_id"], first.messages[1]["messageId"]);
    assert_eq!(first.messages[1]["qos"], 1);

    let again = proton(tls, &ca, &ak, 2, "accept").await;
    let ids = |r: &Received| {
        r.messages
            .iter()
            .map(|m| m["messageId"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&first));

    // Plain AMQP: the next post only.
    post(&mut dev, &pk, &dn, 8).await;
    let plain = hub.hub().amqp_plain_addr().expect("plain amqp").port();
    let next = proton(plain, "plain", &ak, 1, "accept").await;
    assert_eq!(
        body(&next.messages[0])["requestId"],
        "8",
        "{:?} after {:?}",
        next.messages,
        again.messages
    );
}

#[tokio::test]
async fn a_second_receiver_link_is_detached_with_an_error() {
    let (hub, ak, _pk, _dn, _ds) = hub().await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let r = proton(port, &ca(&hub), &ak, 1, "second-link").await;
    assert!(
        r.errors.iter().any(|e| e.contains("not-allowed")),
        "{:?}",
        r.errors
    );
}

#[tokio::test]
async fn a_full_backlog_drops_its_oldest_messages_and_counts_them() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.amqp = Some(AmqpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..AmqpConfig::default()
        });
        // Room for about two property posts.
        c.subscription.max_backlog_bytes = 700;
    })
    .await;
    let ak = access_key(&hub).await;
    let (pk, dn, ds) = hub.device("chatty").await;
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/products/{pk}/subscription"),
            Some(serde_json::json!({"consumerGroupIds": [DEFAULT_GROUP], "flags": ["DeviceData"]})),
        )
        .await;
    assert_eq!(s, hyper::StatusCode::OK, "{v}");
    assert_eq!(v["flags"], serde_json::json!(["DeviceDataFlag"]));
    let mut dev = online_and_post(&hub, &pk, &dn, &ds, 1).await;
    for value in 2..=6 {
        post(&mut dev, &pk, &dn, value).await;
    }
    let (s, g) = hub
        .call("GET", &format!("/api/v1/consumer-groups/{DEFAULT_GROUP}"), None)
        .await;
    assert_eq!(s, hyper::StatusCode::OK, "{g}");
    let (kept, dropped) = (
        g["backlog"].as_u64().expect("n"),
        g["dropped"].as_u64().expect("n"),
    );
    assert_eq!(kept + dropped, 6, "{g}");
    assert!(dropped >= 3 && g["backlogBytes"].as_u64() <= Some(700), "{g}");
    // The newest survive.
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let r = rhea(port, &ca(&hub), &ak, usize::try_from(kept).expect("n"), "accept").await;
    let last = r.messages.last().expect("a message");
    assert_eq!(body(last)["requestId"], "6");
}

#[tokio::test]
async fn consumer_groups_and_relations_through_the_admin_api() {
    let (hub, ak, pk, dn, ds) = hub().await;
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/consumer-groups",
            Some(serde_json::json!({"groupId": "analytics"})),
        )
        .await;
    assert_eq!(s, hyper::StatusCode::CREATED, "{v}");
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/consumer-groups",
            Some(serde_json::json!({"groupId": "analytics"})),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (hyper::StatusCode::CONFLICT, Some("consumer_group_exists"))
    );
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/products/{pk}/subscription"),
            Some(serde_json::json!({"consumerGroupIds": ["nope"], "flags": ["DeviceDataFlag"]})),
        )
        .await;
    assert_eq!(s, hyper::StatusCode::NOT_FOUND, "{v}");
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/products/{pk}/subscription"),
            Some(serde_json::json!({"consumerGroupIds": ["analytics"], "flags": ["Colour"]})),
        )
        .await;
    assert_eq!(s, hyper::StatusCode::BAD_REQUEST, "{v}");
    // Lifecycle only, to the new group: a device created now is announced with its secret.
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/products/{pk}/subscription"),
            Some(serde_json::json!({"consumerGroupIds": ["analytics"], "flags": ["DeviceLifeCycleFlag"]})),
        )
        .await;
    assert_eq!(s, hyper::StatusCode::OK, "{v}");
    let _dev = online_and_post(&hub, &pk, &dn, &ds, 1).await;
    let secret = hub.register(&pk, "newcomer").await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let mut cmd = Command::new("node");
    cmd.arg(sdk_dir().join("rhea_consumer.js"))
        .args([
            "127.0.0.1",
            &port.to_string(),
            &ca(&hub),
            &ak.0,
            &ak.1,
            "analytics",
            "1",
            "accept",
        ])
        .env("NODE_PATH", node_modules());
    let out = tokio::task::spawn_blocking(move || run_guarded(cmd))
        .await
        .expect("rhea");
    let r = parse(&out);
    assert_eq!(r.messages.len(), 1, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(r.messages[0]["topic"], format!("/{pk}/newcomer/thing/lifecycle"));
    let l = body(&r.messages[0]);
    assert_eq!(
        (l["action"].as_str(), l["deviceSecret"].as_str()),
        (Some("create"), Some(secret.as_str()))
    );
    // Deleting the group takes it out of the relation.
    let (s, _) = hub
        .call("DELETE", "/api/v1/consumer-groups/analytics", None)
        .await;
    assert_eq!(s, hyper::StatusCode::OK);
    let (_, v) = hub
        .call("GET", &format!("/api/v1/products/{pk}/subscription"), None)
        .await;
    assert_eq!(v["consumerGroupIds"], serde_json::json!([]), "{v}");
    let (s, _) = hub
        .call(
            "DELETE",
            &format!("/api/v1/consumer-groups/{DEFAULT_GROUP}"),
            None,
        )
        .await;
    assert_eq!(s, hyper::StatusCode::BAD_REQUEST);
}

/// Acknowledged = durable: a post answered before any consumer connected survives `kill -9`.
#[tokio::test]
async fn a_forwarded_message_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--amqp", "127.0.0.1:0", "--amqp-plain", "127.0.0.1:0"];
    let mut child = aliot_testkit::HubProcess::start(dir.path(), &args);
    let base = child.admin_url.clone();
    let token = std::fs::read_to_string(dir.path().join("admin-token")).expect("the admin token");
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let (base, token) = (base.clone(), token.trim().to_owned());
        async move { aliot_testkit::http_json(method, &format!("{base}{path}"), Some(&token), body).await }
    };
    let (_, p) = call(
        "POST",
        "/api/v1/products".into(),
        Some(serde_json::json!({"name": "k"})),
    )
    .await;
    let pk = p["productKey"].as_str().expect("pk").to_owned();
    let (_, d) = call(
        "POST",
        format!("/api/v1/products/{pk}/devices"),
        Some(serde_json::json!({"deviceName": "survivor"})),
    )
    .await;
    let ds = d["deviceSecret"].as_str().expect("secret").to_owned();
    let (_, k) = call("POST", "/api/v1/access-keys".into(), Some(serde_json::json!({}))).await;
    let ak = Ak(
        k["accessKeyId"].as_str().expect("id").to_owned(),
        k["accessKeySecret"].as_str().expect("secret").to_owned(),
    );
    let (s, v) = call(
        "PUT",
        format!("/api/v1/products/{pk}/subscription"),
        Some(serde_json::json!({"consumerGroupIds": [DEFAULT_GROUP], "flags": ["DeviceDataFlag"]})),
    )
    .await;
    assert_eq!(s, hyper::StatusCode::OK, "{v}");

    let mut dev = Raw::online(child.mqtt, &signed(&pk, "survivor", &ds)).await;
    let reply = format!("/sys/{pk}/survivor/thing/event/property/post_reply");
    dev.subscribe(1, &[(&reply, QoS::AtMostOnce)]).await;
    post(&mut dev, &pk, "survivor", 42).await;
    child.kill_9();
    drop(dev);

    let child = aliot_testkit::HubProcess::start(dir.path(), &args);
    let port: u16 = child
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("amqp:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("an `amqp:` line")
        .port();
    let r = rhea(port, "plain", &ak, 1, "accept").await;
    assert_eq!(body(&r.messages[0])["requestId"], "42");
    drop(child);
}

/// A consumer that holds a message without settling it, connection open: after the ack timeout
/// the message goes to another consumer of the group.
#[tokio::test]
async fn an_unacknowledged_message_is_redelivered_after_the_ack_timeout() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.amqp = Some(AmqpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..AmqpConfig::default()
        });
        c.subscription.ack_timeout_secs = 1;
    })
    .await;
    let ak = access_key(&hub).await;
    let (pk, dn, ds) = hub.device("slow").await;
    hub.service()
        .subscriptions()
        .set_relation(
            &pk,
            Relation {
                consumer_group_ids: vec![DEFAULT_GROUP.into()],
                flags: vec![Family::DeviceDataFlag],
            },
        )
        .await
        .expect("a relation");
    let _dev = online_and_post(&hub, &pk, &dn, &ds, 5).await;
    let port = hub.hub().amqps_addr().expect("amqps").port();
    let ca = ca(&hub);

    // Holds the one message (it waits for a second one that never comes).
    let mut holder = Command::new("node")
        .arg(sdk_dir().join("rhea_consumer.js"))
        .args([
            "127.0.0.1",
            &port.to_string(),
            &ca,
            &ak.0,
            &ak.1,
            DEFAULT_GROUP,
            "2",
            "hold",
        ])
        .env("NODE_PATH", node_modules())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("rhea");
    let stdout = holder.stdout.take().expect("stdout");
    let held = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout).lines().next()
    });
    let held = guard("the held message", held)
        .await
        .expect("read")
        .expect("a line")
        .expect("text");
    assert!(held.contains("\"requestId\\\":\\\"5\\\""), "{held}");

    let other = rhea(port, &ca, &ak, 1, "accept").await;
    assert_eq!(body(&other.messages[0])["requestId"], "5");
    let _ = holder.kill();
    let _ = holder.wait();
}
