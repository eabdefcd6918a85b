//! Desired properties and the device shadow over real sockets (issue 11): the admin API on one
//! side, hand-written device payloads (the raw client) on the other, and a restart on the same
//! data directory.

use aliot_testkit::{Raw, TestHub, json};
use hyper::StatusCode;
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};

/// A lamp: `power` and `color` writable, `temp` read-only.
const TSL: &str = r#"{"properties":[
  {"identifier":"power","name":"Power","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
  {"identifier":"color","name":"Color","accessMode":"rw","dataType":{"type":"text","specs":{"length":"16"}}},
  {"identifier":"temp","name":"Temperature","accessMode":"r","dataType":{"type":"float","specs":{"min":"0","max":"100"}}}],
 "events":[],"services":[]}"#;

fn device_path(pk: &str, dn: &str) -> String {
    format!("/api/v1/products/{pk}/devices/{dn}")
}

/// A device online with `_ss=1`: the platform's replies and pushes reach it without SUBSCRIBE.
async fn online(hub: &TestHub, pk: &str, dn: &str, ds: &str) -> Raw {
    let creds = aliot_testkit::creds_with(&aliot_testkit::Signing {
        product_key: pk,
        device_name: dn,
        secret: ds,
        extra: "_ss=1",
        ..aliot_testkit::Signing::default()
    });
    Raw::online(hub.mqtt, &creds).await
}

/// Publishes an Alink request at QoS 0 and returns the next PUBLISH (its reply).
async fn ask(raw: &mut Raw, topic: &str, body: Value) -> (String, Value) {
    raw.publish(topic, &body.to_string(), QoS::AtMostOnce, 0).await;
    let p = raw.publish_in().await;
    (p.topic.to_string(), json(&p))
}

#[tokio::test]
async fn desired_values_set_while_offline_are_read_by_the_device_and_pushed_while_online() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("lamp").await;
    let path = format!("{}/desired", device_path(&pk, &dn));

    // Offline: stored, not pushed; a plain property set fails as offline.
    let (s, set) = hub
        .call(
            "POST",
            &path,
            Some(json!({"items": {"power": 1, "color": "red"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(
        set,
        json!({"versions": {"color": 1, "power": 1}, "pushed": false})
    );
    let (s, e) = hub
        .call(
            "POST",
            &format!("{}/properties", device_path(&pk, &dn)),
            Some(json!({"params": {"power": 1}})),
        )
        .await;
    assert_eq!(
        (s, &e["code"]),
        (StatusCode::CONFLICT, &json!("device_offline")),
        "{e}"
    );

    // The device connects and asks.
    let mut raw = online(&hub, &pk, &dn, &ds).await;
    let topic = format!("/sys/{pk}/{dn}/thing/property/desired/get");
    let (t, reply) = ask(
        &mut raw,
        &topic,
        json!({"id": "1", "version": "1.0", "params": ["power", "ghost"], "method": "thing.property.desired.get"}),
    )
    .await;
    assert_eq!(t, format!("{topic}_reply"));
    assert_eq!(reply["code"], 200, "{reply}");
    assert_eq!(reply["id"], "1");
    assert_eq!(
        reply["data"],
        json!({"power": {"value": 1, "version": 1}}),
        "{reply}"
    );

    // Online: pushed as a property set carrying the new values.
    let (s, set) = hub
        .call(
            "POST",
            &path,
            Some(json!({"items": {"power": 0}, "versions": {"power": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set, json!({"versions": {"power": 2}, "pushed": true}));
    let push = raw.publish_in().await;
    assert_eq!(
        push.topic.to_string(),
        format!("/sys/{pk}/{dn}/thing/service/property/set")
    );
    let body = json(&push);
    assert_eq!(
        (&body["method"], &body["params"]),
        (&json!("thing.service.property.set"), &json!({"power": 0})),
        "{body}"
    );

    // A stale version changes nothing.
    let (s, e) = hub
        .call(
            "POST",
            &path,
            Some(json!({"items": {"power": 1, "color": "blue"}, "versions": {"power": 1}})),
        )
        .await;
    assert_eq!(
        (s, &e["code"]),
        (StatusCode::CONFLICT, &json!("version_conflict")),
        "{e}"
    );
    let (_, list) = hub.call("GET", &path, None).await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{list}");
    assert!(
        items
            .iter()
            .any(|i| i["identifier"] == "color" && i["value"] == "red"),
        "{list}"
    );
    let (_, list) = hub.call("GET", &format!("{path}?identifiers=power"), None).await;
    assert_eq!(list["items"][0]["version"], 2, "{list}");
    assert!(list["items"][0]["time"].as_u64().is_some_and(|t| t > 0), "{list}");

    // The device deletes: a wrong version leaves `power`, no version deletes `color`.
    let topic = format!("/sys/{pk}/{dn}/thing/property/desired/delete");
    let (_, reply) = ask(
        &mut raw,
        &topic,
        json!({"id": "2", "version": "1.0", "params": {"power": {"version": 1}, "color": {}}}),
    )
    .await;
    assert_eq!(reply["code"], 200, "{reply}");
    let (_, list) = hub.call("GET", &path, None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["identifier"], "power", "{list}");
    let (_, reply) = ask(
        &mut raw,
        &topic,
        json!({"id": "3", "version": "1.0", "params": {"power": {"version": 2}}}),
    )
    .await;
    assert_eq!(reply["code"], 200, "{reply}");
    let (_, reply) = ask(
        &mut raw,
        &format!("/sys/{pk}/{dn}/thing/property/desired/get"),
        json!({"id": "4", "params": ["power", "color"]}),
    )
    .await;
    assert_eq!(reply["data"], json!({}), "{reply}");

    // Versions continue after a delete; the admin clear too.
    let (_, set) = hub
        .call("POST", &path, Some(json!({"items": {"power": 1}})))
        .await;
    assert_eq!(set["versions"]["power"], 4, "{set}");
    let _ = raw.publish_in().await;
    let (s, cleared) = hub
        .call(
            "POST",
            &format!("{path}/clear"),
            Some(json!({"identifiers": ["power"], "versions": {"power": 4}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{cleared}");
    assert_eq!(cleared, json!({"versions": {"power": 5}, "skipped": []}));

    // 6104 above 200 identifiers; 460 for params of the wrong shape.
    let many: Vec<String> = (0..201).map(|i| format!("p{i}")).collect();
    let (_, reply) = ask(
        &mut raw,
        &format!("/sys/{pk}/{dn}/thing/property/desired/get"),
        json!({"id": "5", "params": many}),
    )
    .await;
    assert_eq!(reply["code"], 6104, "{reply}");
    let (_, reply) = ask(
        &mut raw,
        &format!("/sys/{pk}/{dn}/thing/property/desired/delete"),
        json!({"id": "6", "params": ["power"]}),
    )
    .await;
    assert_eq!(reply["code"], 460, "{reply}");
}

#[tokio::test]
async fn desired_values_are_judged_by_the_thing_model() {
    let hub = TestHub::start().await;
    let (pk, dn, _) = hub.device("lamp").await;
    let (s, t) = aliot_testkit::http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(aliot_testkit::TOKEN),
        Some(TSL.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let path = format!("{}/desired", device_path(&pk, &dn));
    for (items, word) in [
        (json!({"power": 2}), "power"),
        (json!({"temp": 20.5}), "temp"),
        (json!({"ghost": 1}), "ghost"),
        (json!({"power": "1"}), "power"),
    ] {
        let (s, e) = hub.call("POST", &path, Some(json!({"items": items}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{items}: {e}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(message.contains(word) && message.contains("tsl"), "{message}");
    }
    let (_, list) = hub.call("GET", &path, None).await;
    assert_eq!(list, json!({"items": []}));
    let (s, set) = hub
        .call("POST", &path, Some(json!({"items": {"power": 1}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    let (_, list) = hub.call("GET", &path, None).await;
    assert_eq!(
        (&list["items"][0]["name"], &list["items"][0]["dataType"]),
        (&json!("Power"), &json!("bool")),
        "{list}"
    );
}

/// Publishes a shadow message and returns the answer on `/shadow/get/{pk}/{dn}`.
async fn shadow(raw: &mut Raw, pk: &str, dn: &str, body: &str) -> Value {
    raw.publish(&format!("/shadow/update/{pk}/{dn}"), body, QoS::AtLeastOnce, 7)
        .await;
    loop {
        match raw.recv().await {
            Some(rmqtt_codec::v3::Packet::PublishAck { .. }) => {}
            Some(rmqtt_codec::v3::Packet::Publish(p)) => {
                assert_eq!(p.topic.to_string(), format!("/shadow/get/{pk}/{dn}"));
                return json(&p);
            }
            other => panic!("expected the shadow reply, got {other:?}"),
        }
    }
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["method"], "reply", "{reply}");
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    reply["payload"]["content"]["errorcode"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_shadow_keeps_versions_and_answers_every_error_code() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("lamp").await;
    let mut raw = online(&hub, &pk, &dn, &ds).await;
    let (p, d) = (pk.as_str(), dn.as_str());

    // 407 before the first write.
    assert_eq!(
        error_code(&shadow(&mut raw, p, d, r#"{"method":"get"}"#).await),
        "407"
    );

    let r = shadow(
        &mut raw,
        p,
        d,
        r#"{"method":"update","state":{"reported":{"color":"red","n":1}},"version":1,"clientToken":"t1"}"#,
    )
    .await;
    assert_eq!(r["method"], "reply", "{r}");
    assert_eq!(r["payload"], json!({"status": "success", "version": 1}), "{r}");
    assert_eq!(r["clientToken"], "t1", "{r}");
    assert!(
        r["timestamp"].as_u64().is_some_and(|t| t < 10_000_000_000),
        "seconds: {r}"
    );

    // Every code reachable from a device.
    for (body, code) in [
        ("not json", "400"),
        (r#"{"state":{}}"#, "401"),
        (r#"{"method":"update","version":2}"#, "402"),
        (
            r#"{"method":"update","state":{"reported":{"a":1}},"version":"two"}"#,
            "403",
        ),
        (r#"{"method":"update","state":{},"version":2}"#, "404"),
        (
            r#"{"method":"update","state":{"reported":{}},"version":2}"#,
            "405",
        ),
        (r#"{"method":"frob"}"#, "406"),
        (
            r#"{"method":"update","state":{"reported":{"color":"blue"}},"version":1}"#,
            "409",
        ),
    ] {
        let r = shadow(&mut raw, p, d, body).await;
        assert_eq!(error_code(&r), code, "{body}: {r}");
        assert!(r["payload"]["content"]["errormessage"].is_string(), "{r}");
    }
    let many: serde_json::Map<String, Value> = (0..129).map(|i| (format!("k{i}"), json!(i))).collect();
    let body = json!({"method": "update", "state": {"reported": many}, "version": 5}).to_string();
    assert_eq!(error_code(&shadow(&mut raw, p, d, &body).await), "408");
    let body =
        json!({"method": "update", "state": {"reported": {"blob": "x".repeat(17 * 1024)}}, "version": 5});
    assert_eq!(
        error_code(&shadow(&mut raw, p, d, &body.to_string()).await),
        "408"
    );

    // Delete one attribute; get shows the rest with metadata.
    let r = shadow(
        &mut raw,
        p,
        d,
        r#"{"method":"delete","state":{"reported":{"n":"null"}},"version":2}"#,
    )
    .await;
    assert_eq!(r["payload"], json!({"status": "success", "version": 2}), "{r}");
    let r = shadow(&mut raw, p, d, r#"{"method":"get"}"#).await;
    assert_eq!(r["method"], "reply");
    assert_eq!(r["version"], 2, "{r}");
    assert_eq!(r["payload"]["status"], "success");
    assert_eq!(r["payload"]["state"]["reported"], json!({"color": "red"}), "{r}");
    assert!(
        r["payload"]["metadata"]["reported"]["color"]["timestamp"].is_u64(),
        "{r}"
    );

    // The application's desired update is pushed as control; version rules on its side too.
    let path = format!("{}/shadow", device_path(&pk, &dn));
    let (s, v) = hub
        .call(
            "PUT",
            &path,
            Some(json!({"method": "update", "state": {"desired": {"color": "green"}}, "version": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["pushed"], &v["shadow"]["version"]),
        (&json!(true), &json!(5)),
        "{v}"
    );
    let control = json(&raw.publish_in().await);
    assert_eq!(control["method"], "control", "{control}");
    assert_eq!(control["version"], 5);
    assert_eq!(control["payload"]["state"]["desired"], json!({"color": "green"}));
    assert_eq!(control["payload"]["state"]["reported"], json!({"color": "red"}));
    let (s, e) = hub
        .call(
            "PUT",
            &path,
            Some(json!({"method": "update", "state": {"desired": {"color": "blue"}}, "version": 5})),
        )
        .await;
    assert_eq!(
        (s, &e["code"]),
        (StatusCode::CONFLICT, &json!("version_conflict")),
        "{e}"
    );
    let (s, v) = hub
        .call(
            "PUT",
            &path,
            Some(json!({"method": "update", "state": {"desired": {"on": 1}}, "version": 0, "deltaUpdate": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["shadow"]["version"], 6, "{v}");
    assert_eq!(
        v["shadow"]["state"]["desired"],
        json!({"color": "green", "on": 1})
    );
    let _ = raw.publish_in().await;
    let (s, e) = hub
        .call(
            "PUT",
            &path,
            Some(json!({"method": "get", "state": {}, "version": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    // The device applies desired and clears it; -1 resets the version.
    let r = shadow(
        &mut raw,
        p,
        d,
        r#"{"method":"update","state":{"reported":{"color":"green"},"desired":"null"},"version":7}"#,
    )
    .await;
    assert_eq!(r["payload"]["version"], 7, "{r}");
    let r = shadow(
        &mut raw,
        p,
        d,
        r#"{"method":"update","state":{"reported":{"x":1}},"version":-1}"#,
    )
    .await;
    assert_eq!(r["payload"]["version"], 0, "{r}");
    let (_, v) = hub.call("GET", &path, None).await;
    assert_eq!(v["shadow"]["state"]["desired"], json!({}), "{v}");
    assert_eq!(
        v["shadow"]["state"]["reported"],
        json!({"color": "green", "x": 1}),
        "{v}"
    );
    let r = shadow(
        &mut raw,
        p,
        d,
        r#"{"method":"delete","state":{"reported":"null"},"version":1}"#,
    )
    .await;
    assert_eq!(r["payload"]["status"], "success", "{r}");
    let (_, v) = hub.call("GET", &path, None).await;
    assert_eq!(v["shadow"]["state"]["reported"], json!({}), "{v}");
}

#[tokio::test]
async fn desired_values_and_the_shadow_survive_a_restart() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("lamp").await;
    let path = device_path(&pk, &dn);
    let (s, _) = hub
        .call(
            "POST",
            &format!("{path}/desired"),
            Some(json!({"items": {"power": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut raw = online(&hub, &pk, &dn, &ds).await;
    let r = shadow(
        &mut raw,
        &pk,
        &dn,
        r#"{"method":"update","state":{"reported":{"color":"red"}},"version":3}"#,
    )
    .await;
    assert_eq!(r["payload"]["status"], "success", "{r}");
    drop(raw);

    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let (_, list) = hub.call("GET", &format!("{path}/desired"), None).await;
    assert_eq!(list["items"][0]["value"], 1, "{list}");
    let (_, v) = hub.call("GET", &format!("{path}/shadow"), None).await;
    assert_eq!(v["shadow"]["version"], 3, "{v}");
    assert_eq!(v["shadow"]["state"]["reported"], json!({"color": "red"}), "{v}");
    // Deleting the device forgets both.
    let (s, _) = hub.call("DELETE", &path, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = hub.call("GET", &format!("{path}/shadow"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Runs a command to its end (guarded) and returns the last stdout line as JSON.
async fn run_sdk(cmd: std::process::Command) -> Value {
    let out = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("the SDK run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script's JSON line")
}

#[tokio::test]
async fn the_official_python_sdks_shadow_calls_work_unchanged() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("py-shadow").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/linkkit_shadow.py");
    let mut cmd = std::process::Command::new(aliot_testkit::sdk_python());
    cmd.arg(script)
        .arg(hub.mqtt.port().to_string())
        .args([&pk, &dn, &ds]);
    let report = run_sdk(cmd).await;
    assert_eq!(
        report["update"]["payload"],
        json!({"status": "success", "version": 1}),
        "{report}"
    );
    assert_eq!(
        report["get"]["payload"]["state"]["reported"],
        json!({"color": "red", "brightness": 40}),
        "{report}"
    );
    assert_eq!(report["version"], 1, "{report}");
}

#[tokio::test]
async fn the_official_node_sdks_shadow_calls_work_unchanged() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("node-shadow").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node_shadow.js");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script)
        .arg(aliot_testkit::sdk_node_package())
        .arg(hub.mqtt.port().to_string())
        .args([&pk, &dn, &ds]);
    let report = run_sdk(cmd).await;
    assert_eq!(report["post"]["payload"]["status"], "success", "{report}");
    assert_eq!(
        report["get"]["payload"]["state"]["reported"],
        json!({"color": "red", "on": 1}),
        "{report}"
    );
    assert_eq!(report["delete"]["payload"]["status"], "success", "{report}");
    let (_, v) = hub
        .call("GET", &format!("{}/shadow", device_path(&pk, &dn)), None)
        .await;
    assert_eq!(v["shadow"]["state"]["reported"], json!({"on": 1}), "{v}");
}

/// A storage failure changes nothing: the change is refused with the storage error (which the
/// platform answers with shadow code 500 / Alink 500 and the admin API with 503), and once the
/// storage works again the document is as it was.
#[tokio::test]
async fn a_storage_failure_leaves_desired_values_and_the_shadow_as_they_were() {
    use aliot_hub::config::RegistryConfig;
    use aliot_hub::registry::{
        DesiredChange, Error, NewDevice, RedbRegistry, Registry as _, ShadowChange, StorageFault,
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let fault = StorageFault::new();
    let store = RedbRegistry::open_with_fault(dir.path(), &RegistryConfig::default(), fault.clone())
        .await
        .expect("open");
    store.create_product("p", Some("a1P")).await.expect("product");
    store
        .create_devices("a1P", vec![NewDevice::named("d")], false)
        .await
        .expect("device");
    let report = |version| ShadowChange::Report {
        reported: json!({"a": version}).as_object().cloned(),
        clear_desired: false,
        version,
    };
    let set = |v: i64| DesiredChange::Set([("a".to_owned(), (json!(v), None))].into());
    store
        .change_shadow("a1P", "d", report(1), 10)
        .await
        .expect("stored")
        .expect("accepted");
    store
        .change_desired("a1P", "d", set(1), 10)
        .await
        .expect("stored");

    fault.fail(true);
    let err = store
        .change_shadow("a1P", "d", report(2), 11)
        .await
        .expect_err("the storage fails");
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    let err = store
        .change_desired("a1P", "d", set(2), 11)
        .await
        .expect_err("the storage fails");
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    fault.fail(false);

    let doc = store.shadow("a1P", "d").await.expect("read").expect("a document");
    assert_eq!(
        (doc.version, &doc.state.reported),
        (1, json!({"a": 1}).as_object().expect("object"))
    );
    let desired = store.desired("a1P", "d").await.expect("read");
    assert_eq!(desired.get("a").map(|v| v.version), Some(1));
    store.close().await;
}
