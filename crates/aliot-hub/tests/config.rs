//! Remote configuration over real sockets (issue 11, cloud-side §4.3): a product's file
//! uploaded through the admin API, asked for with a hand-written `thing.config.get`, downloaded
//! from the signed URL (hyper, curl, the official Node SDK) with its SHA-256 checked; forged and
//! expired URLs refused; 6710 and 6713; pushes reaching online devices; the 64 KB limit; a
//! restart keeping the file.

use aliot_hub::config::DeviceHttpConfig;
use aliot_protocol::config::{ConfigInfo, MAX_CONFIG_SIZE, sha256_hex};
use aliot_testkit::{Raw, TOKEN, TestHub, guard, http, json, signed};
use hyper::StatusCode;
use rmqtt_codec::v3::QoS;
use serde_json::Value;

const FILE: &str = r#"{"interval":5,"mode":"eco"}"#;

async fn upload(hub: &TestHub, pk: &str, body: &str, query: &str) -> (StatusCode, Value) {
    let (status, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/config{query}", hub.base),
        Some(TOKEN),
        Some(body.to_owned()),
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A device online over the raw client, subscribed to `…/thing/config/{topic}`.
async fn online(hub: &TestHub, pk: &str, dn: &str, ds: &str, topic: &str) -> Raw {
    let mut raw = Raw::online(hub.mqtt, &signed(pk, dn, ds)).await;
    let filter = format!("/sys/{pk}/{dn}/thing/config/{topic}");
    raw.subscribe(1, &[(filter.as_str(), QoS::AtMostOnce)]).await;
    raw
}

/// A hand-written `thing.config.get` (the C SDK's and the Node SDK's payload); its reply.
async fn config_get(raw: &mut Raw, pk: &str, dn: &str, id: &str) -> Value {
    raw.publish(
        &format!("/sys/{pk}/{dn}/thing/config/get"),
        &format!(
            r#"{{"id":"{id}","version":"1.0","params":{{"configScope":"product","getType":"file"}},"method":"thing.config.get"}}"#
        ),
        QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = raw.publish_in().await;
    assert_eq!(&*reply.topic, format!("/sys/{pk}/{dn}/thing/config/get_reply"));
    json(&reply)
}

/// `curl -f -o out url`: (succeeded, stderr).
async fn curl(url: &str, out: &std::path::Path) -> (bool, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-f", "-o"]).arg(out).arg(url);
    let done = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("curl");
    (
        done.status.success(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_device_gets_the_products_config_and_downloads_it_with_the_right_sha256() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("cfg-1").await;
    let mut raw = online(&hub, &pk, &dn, &ds, "get_reply").await;
    // Without a configuration: the platform's 6710.
    let reply = config_get(&mut raw, &pk, &dn, "1").await;
    assert_eq!(reply["code"], 6710, "{reply}");
    assert_eq!(reply["id"], "1");

    let (status, view) = upload(&hub, &pk, FILE, "").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["config"]["configSize"], FILE.len(), "{view}");
    assert_eq!(view["config"]["sign"], sha256_hex(FILE.as_bytes()), "{view}");

    let reply = config_get(&mut raw, &pk, &dn, "2").await;
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["method"], "thing.config.get", "{reply}");
    let info: ConfigInfo = serde_json::from_value(reply["data"].clone()).expect("the platform's fields");
    assert_eq!(info.config_id, view["config"]["configId"], "{reply}");
    assert_eq!(
        (info.sign_method.as_str(), info.get_type.as_str()),
        ("Sha256", "file")
    );
    // Without a device listener, the admin listener serves the signed path, without a token.
    assert!(
        info.url.starts_with(&format!("{}/config/{pk}/", hub.base)),
        "{}",
        info.url
    );
    let (status, body) = http("GET", &info.url, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    info.verify(body.as_bytes())
        .expect("the size and sha256 announced");

    // curl, as a device's shell script would.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("config.json");
    let (ok, err) = curl(&info.url, &out).await;
    assert!(ok, "curl: {err}");
    let bytes = std::fs::read(&out).expect("curl's file");
    assert_eq!(sha256_hex(&bytes), info.sign);

    // Forged: another signature, or the expiry moved.
    let forged = format!("{}0", &info.url[..info.url.len() - 1]);
    let forged = if forged == info.url {
        format!("{}1", &info.url[..info.url.len() - 1])
    } else {
        forged
    };
    let (status, body) = http("GET", &forged, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (head, tail) = info.url.split_once("expires=").expect("an expiry");
    let later = format!("{head}expires=9{tail}");
    let (status, _) = http("GET", &later, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let unsigned = info.url.split('?').next().expect("a path").to_owned();
    let (status, _) = http("GET", &unsigned, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (ok, _) = curl(&forged, &out).await;
    assert!(!ok, "curl must fail on 403");

    // The admin download is the same file; a new upload retires the old URL (404).
    let (status, admin_copy) = http(
        "GET",
        &format!("{}/api/v1/products/{pk}/config/file", hub.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((status, admin_copy.as_str()), (StatusCode::OK, FILE));
    let (status, _) = upload(&hub, &pk, r#"{"interval":6}"#, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = http("GET", &info.url, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Switched off: 6713, and URLs refused; on again, served.
    let (status, v) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}/config"),
            Some(serde_json::json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, &v["enabled"]),
        (StatusCode::OK, &Value::Bool(false)),
        "{v}"
    );
    let reply = config_get(&mut raw, &pk, &dn, "3").await;
    assert_eq!(reply["code"], 6713, "{reply}");
    let (status, v) = hub
        .call("POST", &format!("/api/v1/products/{pk}/config/push"), None)
        .await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::CONFLICT, &Value::from("config_disabled")),
        "{v}"
    );
    // An upload asking for a push is stored all the same, without pushing.
    let (status, v) = upload(&hub, &pk, r#"{"interval":7}"#, "?push=true").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("push").is_none(), "{v}");
    hub.call(
        "PATCH",
        &format!("/api/v1/products/{pk}/config"),
        Some(serde_json::json!({"enabled": true})),
    )
    .await;

    // Deleted: 6710 again, and the push has nothing to send.
    let (status, v) = hub
        .call("DELETE", &format!("/api/v1/products/{pk}/config"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("config").is_none(), "{v}");
    let reply = config_get(&mut raw, &pk, &dn, "4").await;
    assert_eq!(reply["code"], 6710, "{reply}");
    let (status, v) = hub
        .call("POST", &format!("/api/v1/products/{pk}/config/push"), None)
        .await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::NOT_FOUND, &Value::from("config_not_found")),
        "{v}"
    );
}

#[tokio::test]
async fn with_a_device_listener_the_url_names_it_and_the_admin_listener_serves_no_downloads() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.device_http = Some(DeviceHttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    let device_url = hub.hub().device_http_url().expect("the listener").to_owned();
    let (pk, dn, ds) = hub.device("cfg-2").await;
    upload(&hub, &pk, FILE, "").await;
    let mut raw = online(&hub, &pk, &dn, &ds, "get_reply").await;
    let reply = config_get(&mut raw, &pk, &dn, "1").await;
    let info: ConfigInfo = serde_json::from_value(reply["data"].clone()).expect("info");
    assert!(
        info.url.starts_with(&format!("{device_url}/config/{pk}/")),
        "{}",
        info.url
    );
    let (status, body) = http("GET", &info.url, None, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, FILE));
    let on_admin = info.url.replacen(&device_url, &hub.base, 1);
    let (status, _) = http("GET", &on_admin, None, None).await;
    assert_ne!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_configured_public_url_is_what_devices_are_given() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.remote_config.public_url = Some("https://iot.example.com:9443/".into());
    })
    .await;
    let (pk, _, _) = hub.device("cfg-3").await;
    let (_, view) = upload(&hub, &pk, FILE, "").await;
    let url = view["config"]["url"].as_str().expect("a url");
    assert!(
        url.starts_with(&format!("https://iot.example.com:9443/config/{pk}/")),
        "{url}"
    );
}

#[tokio::test]
async fn an_expired_url_is_refused() {
    let hub = TestHub::start().await;
    let (pk, _, _) = hub.device("cfg-4").await;
    upload(&hub, &pk, FILE, "").await;
    let file = hub.service().registry().remote_config(&pk).file.expect("a file");
    let now = aliot_hub::clock::now_ms();
    // Issued 1700 s ago: 100 s of its 1800 left. Issued 1801 s ago: expired a second ago.
    let valid = hub.service().config_url_issued_at(&pk, &file, now - 1_700_000);
    let (status, body) = http("GET", &valid, None, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, FILE));
    let expired = hub.service().config_url_issued_at(&pk, &file, now - 1_801_000);
    let (status, body) = http("GET", &expired, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("expired"), "{body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, err) = curl(&expired, &dir.path().join("x")).await;
    assert!(!ok && err.contains("403"), "{err}");
}

#[tokio::test]
async fn uploads_above_64_kb_or_empty_are_refused_and_64_kb_is_kept() {
    let hub = TestHub::start().await;
    let (pk, _, _) = hub.device("cfg-5").await;
    let (status, v) = upload(&hub, &pk, &"x".repeat(MAX_CONFIG_SIZE + 1), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "invalid_argument", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("64 KB")), "{v}");
    let (status, v) = upload(&hub, &pk, "", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // Nothing was kept by the refusals.
    let (_, v) = hub
        .call("GET", &format!("/api/v1/products/{pk}/config"), None)
        .await;
    assert!(v.get("config").is_none(), "{v}");
    let (status, v) = upload(&hub, &pk, &"x".repeat(MAX_CONFIG_SIZE), "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["config"]["configSize"], MAX_CONFIG_SIZE);
    let (status, v) = upload(&hub, "a1NoSuchPk0", FILE, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn a_restart_keeps_the_config_and_its_switch() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("cfg-6").await;
    let (_, before) = upload(&hub, &pk, FILE, "").await;
    hub.call(
        "PATCH",
        &format!("/api/v1/products/{pk}/config"),
        Some(serde_json::json!({"enabled": false})),
    )
    .await;
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let (status, after) = hub
        .call("GET", &format!("/api/v1/products/{pk}/config"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["enabled"], false, "{after}");
    assert_eq!(after["config"]["configId"], before["config"]["configId"]);
    assert_eq!(after["config"]["sign"], before["config"]["sign"]);
    hub.call(
        "PATCH",
        &format!("/api/v1/products/{pk}/config"),
        Some(serde_json::json!({"enabled": true})),
    )
    .await;
    let mut raw = online(&hub, &pk, &dn, &ds, "get_reply").await;
    let reply = config_get(&mut raw, &pk, &dn, "1").await;
    let info: ConfigInfo = serde_json::from_value(reply["data"].clone()).expect("info");
    let (status, body) = http("GET", &info.url, None, None).await;
    assert_eq!(status, StatusCode::OK);
    info.verify(body.as_bytes())
        .expect("the same file after the restart");
}

#[tokio::test]
async fn a_push_reaches_the_subscribed_online_devices_and_their_replies_are_taken() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("cfg-7").await;
    // A second device of the product, online but not subscribed to the push topic.
    let secret = hub.register(&pk, "cfg-7b").await;
    let _quiet = Raw::online(hub.mqtt, &signed(&pk, "cfg-7b", &secret)).await;
    let mut raw = online(&hub, &pk, &dn, &ds, "push").await;
    let (status, v) = upload(&hub, &pk, FILE, "?push=true").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["push"]["online"], &v["push"]["pushed"]),
        (&Value::from(2), &Value::from(1)),
        "{v}"
    );
    let push = raw.publish_in().await;
    assert_eq!(&*push.topic, format!("/sys/{pk}/{dn}/thing/config/push"));
    let push = json(&push);
    assert_eq!(push["method"], "thing.config.push", "{push}");
    let info: ConfigInfo = serde_json::from_value(push["params"].clone()).expect("info");
    assert_eq!(info.config_id, v["config"]["configId"]);
    let (status, body) = http("GET", &info.url, None, None).await;
    assert_eq!(status, StatusCode::OK);
    info.verify(body.as_bytes()).expect("the pushed file");
    // The device's push_reply is taken without an answer or a problem.
    raw.publish(
        &format!("/sys/{pk}/{dn}/thing/config/push_reply"),
        &format!(r#"{{"id":{},"code":200,"data":{{}}}}"#, push["id"]),
        QoS::AtMostOnce,
        0,
    )
    .await;
    raw.ping().await;
    // An explicit push.
    let (status, v) = hub
        .call("POST", &format!("/api/v1/products/{pk}/config/push"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["pushed"], 1, "{v}");
    assert_eq!(
        json(&raw.publish_in().await)["params"]["configId"],
        info.config_id
    );
}

#[tokio::test]
async fn mosquitto_sub_receives_the_push() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("cfg-8").await;
    upload(&hub, &pk, FILE, "").await;
    let creds = signed(&pk, &dn, &ds);
    let mut cmd = tokio::process::Command::new("mosquitto_sub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &hub.mqtt.port().to_string(),
        "-V",
        "mqttv311",
    ])
    .args([
        "-i",
        &creds.client_id,
        "-u",
        &creds.username,
        "-P",
        &creds.password,
    ])
    .args(["-t", &format!("/sys/{pk}/{dn}/thing/config/push"), "-C", "1"])
    .stdout(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().expect("mosquitto_sub runs");
    // Pushed until the hub counts mosquitto_sub subscribed (then it has the message).
    guard("mosquitto_sub to subscribe", async {
        loop {
            let (status, v) = hub
                .call("POST", &format!("/api/v1/products/{pk}/config/push"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if v["pushed"] == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let out = guard("mosquitto_sub's output", child.wait_with_output())
        .await
        .expect("mosquitto_sub's output");
    let push: Value = serde_json::from_slice(&out.stdout).expect("the push as JSON");
    assert_eq!(push["method"], "thing.config.push", "{push}");
    assert_eq!(push["params"]["configSize"], FILE.len());
}

#[tokio::test]
async fn the_official_node_sdk_gets_downloads_and_receives_a_push() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("cfg-node").await;
    upload(&hub, &pk, FILE, "").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node_config.js");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script)
        .arg(aliot_testkit::sdk_node_package())
        .arg(hub.mqtt.port().to_string())
        .args([pk.as_str(), dn.as_str(), ds.as_str(), hub.base.as_str(), TOKEN]);
    let out = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON line");
    assert_eq!(report["get"]["code"], 200, "{report}");
    assert_eq!(report["downloaded"]["status"], 200, "{report}");
    assert_eq!(report["downloaded"]["size"], FILE.len(), "{report}");
    assert_eq!(
        report["downloaded"]["sha256"], report["get"]["data"]["sign"],
        "{report}"
    );
    assert_eq!(report["push"]["method"], "thing.config.push", "{report}");
    assert_eq!(
        report["push"]["params"]["configId"], report["get"]["data"]["configId"],
        "{report}"
    );
}

#[tokio::test]
async fn a_failed_write_leaves_the_old_config_whole_in_memory_and_on_disk() {
    use aliot_hub::config::RegistryConfig;
    use aliot_hub::registry::{Error, RedbRegistry, Registry as _, StorageFault};

    let dir = tempfile::tempdir().expect("tempdir");
    let fault = StorageFault::new();
    let store = RedbRegistry::open_with_fault(dir.path(), &RegistryConfig::default(), fault.clone())
        .await
        .expect("open");
    store.create_product("p", Some("a1Cfg")).await.expect("product");
    let first = store
        .set_config_file("a1Cfg", Some(b"one".to_vec()))
        .await
        .expect("stored");
    fault.fail(true);
    let err = store
        .set_config_file("a1Cfg", Some(b"two, longer".to_vec()))
        .await
        .expect_err("the disk fails");
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert_eq!(store.remote_config("a1Cfg"), first, "memory follows only commits");
    fault.fail(false);
    // The next access reopens the file and reads it back: the first file, whole.
    let (meta, bytes) = store.config_file("a1Cfg").await.expect("read").expect("a file");
    assert_eq!(
        (Some(meta), bytes.as_slice()),
        (first.file.clone(), b"one".as_slice())
    );
    store.close().await;
    drop(store);
    let store = RedbRegistry::open(dir.path()).await.expect("reopen");
    assert_eq!(store.remote_config("a1Cfg"), first);
    let (_, bytes) = store.config_file("a1Cfg").await.expect("read").expect("a file");
    assert_eq!(bytes, b"one");
    store.close().await;
}
