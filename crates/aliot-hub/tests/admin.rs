//! The admin API: auth, error codes, registration, device management and the calls that reach
//! a connected device. Router-only tests go through `oneshot`; the rest run a full hub
//! (`aliot_hub::start`) on 127.0.0.1:0 with rumqttc devices.

use aliot_hub::events::Event;
use aliot_hub::registry::Registry as _;
use aliot_testkit::{OfflineAdmin as Offline, TOKEN, TestDevice, TestHub, guard, http, http_json};
use hyper::StatusCode;
use serde_json::{Value, json};

/// `POST path` with a JSON body, through the router.
async fn post(o: &Offline, path: &str, body: Value) -> (StatusCode, Value) {
    o.json("POST", path, Some(body)).await
}

/// Registers the product `a1P`.
async fn product_a1p(o: &Offline) {
    post(o, "/api/v1/products", json!({"name": "p", "productKey": "a1P"})).await;
}

/// A running hub with the device `dn` registered and connected:
/// (hub, productKey, deviceName, deviceSecret, device).
async fn hub_with_device(dn: &str) -> (TestHub, String, String, String, TestDevice) {
    let hub = TestHub::start().await;
    let (pk, dn, secret) = hub.device(dn).await;
    let dev = TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await;
    (hub, pk, dn, secret, dev)
}

/// The admin path of one device.
fn device_path(pk: &str, dn: &str) -> String {
    format!("/api/v1/products/{pk}/devices/{dn}")
}

/// `POST url` with a JSON body and the token, in a task of its own (the device answers meanwhile).
fn spawn_post(url: String, body: Value) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    tokio::spawn(async move { http_json("POST", &url, Some(TOKEN), Some(body)).await })
}

// ---------------------------------------------------------------------------------------------
// Without a socket: the router alone.

#[tokio::test]
async fn requests_without_the_right_token_get_401() {
    let o = Offline::new().await;
    for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
        let (status, body, _) = o.send("GET", "/api/v1/products", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let v: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(v["code"], "unauthorized");
    }
    // A wrong scheme is refused too; the scheme's case is not significant.
    let req = axum::http::Request::builder()
        .uri("/api/v1/products")
        .header("authorization", format!("Basic {TOKEN}"))
        .body(axum::body::Body::empty())
        .expect("request");
    use tower::ServiceExt as _;
    let resp = o.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let req = axum::http::Request::builder()
        .uri("/api/v1/products")
        .header("authorization", format!("bearer {TOKEN}"))
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = o.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    // Writes are protected as well as reads.
    let (status, _, _) = o
        .send("POST", "/api/v1/products", None, Some(r#"{"name":"x"}"#))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(o.registry.products().await.expect("read").is_empty());
    // Prometheus scrapers read the metrics without a token (counts only).
    let (status, _, _) = o.send("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let o = Offline::new().await;
    let (status, body, _) = o.send("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("ok"));
}

#[tokio::test]
async fn products_are_registered_with_platform_style_keys() {
    let o = Offline::new().await;
    let (s, p) = post(&o, "/api/v1/products", json!({"name": "Smart lamp"})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pk = p["productKey"].as_str().expect("productKey");
    assert!(
        pk.starts_with("a1") && pk.len() == 11 && pk.chars().all(|c| c.is_ascii_alphanumeric()),
        "{pk}"
    );
    let secret = p["productSecret"].as_str().expect("productSecret");
    assert_eq!(secret.len(), 32);
    assert_eq!(p["name"], "Smart lamp");

    let (s, p2) = post(
        &o,
        "/api/v1/products",
        json!({"name": "Mine", "productKey": "a1MyOwnKey"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p2}");
    assert_eq!(p2["productKey"], "a1MyOwnKey");
    let (s, e) = post(
        &o,
        "/api/v1/products",
        json!({"name": "Again", "productKey": "a1MyOwnKey"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["code"], "product_exists");

    let (s, list) = o.json("GET", "/api/v1/products", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().expect("array").len(), 2);
    let (s, one) = o.json("GET", "/api/v1/products/a1MyOwnKey", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["deviceCount"], 0);
    let (s, e) = o.json("GET", "/api/v1/products/a1Nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "product_not_found");
}

#[tokio::test]
async fn bad_requests_get_400_with_a_json_message() {
    let o = Offline::new().await;
    let (s, body, ctype) = o
        .send("POST", "/api/v1/products", Some(TOKEN), Some("{not json"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let v: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(v["code"], "invalid_argument");
    assert!(!v["message"].as_str().expect("message").is_empty());

    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x", "product_key": "a1"}),
        json!({"name": "x", "productKey": "bad key"}),
    ] {
        let (s, v) = post(&o, "/api/v1/products", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {v}");
        assert_eq!(v["code"], "invalid_argument");
    }
    product_a1p(&o).await;
    for bad in [
        json!({"deviceName": "has space"}),
        json!({"deviceName": "x".repeat(33)}),
        json!({"deviceName": "ok", "deviceSecret": " s"}),
        json!({"name": "wrong field"}),
    ] {
        let (s, v) = post(&o, "/api/v1/products/a1P/devices", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {v}");
    }
    let (s, _) = o
        .json("GET", "/api/v1/products/a1P/devices?status=sleeping", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let o = Offline::new().await;
    let (s, v) = o.json("GET", "/api/v2/nothing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "not_found");
    let (s, v) = post(&o, "/api/v1/products/a1P/devices:explode", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = o.json("PUT", "/api/v1/products", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["code"], "method_not_allowed");
}

#[tokio::test]
async fn devices_are_registered_listed_shown_changed_and_deleted() {
    let o = Offline::new().await;
    let (s, _) = post(&o, "/api/v1/products/a1Nope/devices", json!({"deviceName": "d"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    product_a1p(&o).await;

    let (s, d) = post(
        &o,
        "/api/v1/products/a1P/devices",
        json!({"deviceName": "lamp-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["productKey"], "a1P");
    assert_eq!(d["deviceName"], "lamp-1");
    let secret = d["deviceSecret"].as_str().expect("secret");
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(d["iotId"].as_str().expect("iotId").len(), 32);

    let (s, d2) = post(
        &o,
        "/api/v1/products/a1P/devices",
        json!({"deviceName": "lamp-2", "deviceSecret": "my-own-secret"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(d2["deviceSecret"], "my-own-secret");

    let (s, e) = post(
        &o,
        "/api/v1/products/a1P/devices",
        json!({"deviceName": "lamp-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["code"], "device_exists");

    let (s, list) = o.json("GET", "/api/v1/products/a1P/devices", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["deviceName"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["lamp-1", "lamp-2"]);
    assert!(
        list.as_array()
            .expect("array")
            .iter()
            .all(|d| d["status"] == "offline")
    );
    let (_, online) = o
        .json("GET", "/api/v1/products/a1P/devices?status=online", None)
        .await;
    assert_eq!(online, json!([]));
    let (_, offline) = o
        .json("GET", "/api/v1/products/a1P/devices?status=offline", None)
        .await;
    assert_eq!(offline.as_array().expect("array").len(), 2);

    let (s, show) = o.json("GET", "/api/v1/products/a1P/devices/lamp-1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(show["status"], "offline");
    assert_eq!(show["enabled"], true);
    assert_eq!(show["deviceSecret"], secret);
    assert_eq!(show["lastOnline"], Value::Null);
    assert_eq!(show["properties"], json!({}));

    let (s, e) = o.json("GET", "/api/v1/products/a1P/devices/ghost", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "device_not_found");

    let (s, p) = o
        .json(
            "PATCH",
            "/api/v1/products/a1P/devices/lamp-1",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["enabled"], false);
    assert!(
        !o.registry
            .device_auth("a1P", "lamp-1")
            .await
            .expect("known")
            .enabled
    );
    let (s, _) = o
        .json("PATCH", "/api/v1/products/a1P/devices/lamp-1", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = o
        .json(
            "PATCH",
            "/api/v1/products/a1P/devices/ghost",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, del) = o
        .json("DELETE", "/api/v1/products/a1P/devices/lamp-1", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(del["deleted"], true);
    assert!(o.registry.device_auth("a1P", "lamp-1").await.is_none());
    let (s, _) = o
        .json("DELETE", "/api/v1/products/a1P/devices/lamp-1", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, one) = o.json("GET", "/api/v1/products/a1P", None).await;
    assert_eq!(one["deviceCount"], 1);
}

#[tokio::test]
async fn batch_registration_is_all_or_nothing() {
    let o = Offline::new().await;
    product_a1p(&o).await;
    let (s, list) = post(
        &o,
        "/api/v1/products/a1P/devices:batch",
        json!({"prefix": "bench-", "count": 50}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{list}");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 50);
    assert_eq!(list[0]["deviceName"], "bench-0");
    assert_eq!(list[49]["deviceName"], "bench-49");
    assert!(
        list.iter()
            .all(|d| d["deviceSecret"].as_str().is_some_and(|s| s.len() == 32))
    );

    // One existing name fails the whole batch.
    let (s, e) = post(
        &o,
        "/api/v1/products/a1P/devices:batch",
        json!({"deviceNames": ["new-1", "bench-3", "new-2"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(o.registry.device("a1P", "new-1").await.expect("read").is_none());
    // ...unless asked to skip existing devices, which are listed as they are.
    let (s, l) = post(
        &o,
        "/api/v1/products/a1P/devices:batch",
        json!({"deviceNames": ["new-1", "bench-3"], "skipExisting": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(l[1]["deviceSecret"], list[3]["deviceSecret"]);
    let p = o.registry.product("a1P").await.expect("read").expect("product");
    assert_eq!(p.device_count, 51);

    for bad in [
        json!({"prefix": "x", "count": 0}),
        json!({"prefix": "x", "count": 100_001}),
        json!({"prefix": "x"}),
        json!({"deviceNames": ["a", "a"]}),
        json!({"deviceNames": []}),
        json!({"prefix": "a-name-that-is-far-too-long-for-", "count": 1000}),
    ] {
        let (s, v) = post(&o, "/api/v1/products/a1P/devices:batch", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {v}");
    }
    let (s, _) = post(
        &o,
        "/api/v1/products/a1Nope/devices:batch",
        json!({"prefix": "x", "count": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The bench's CSV: productKey,deviceName,deviceSecret, one device a line, no header.
    let (s, csv, ctype) = o
        .send(
            "GET",
            "/api/v1/products/a1P/devices?format=csv",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 51);
    let first: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(first[0], "a1P");
    assert_eq!(first[1], "bench-0");
    assert_eq!(first[2], list[0]["deviceSecret"].as_str().expect("secret"));
    let (s, csv, _) = o
        .send(
            "POST",
            "/api/v1/products/a1P/devices:batch?format=csv",
            Some(TOKEN),
            Some(r#"{"deviceNames":["c1"]}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(csv.starts_with("a1P,c1,"), "{csv}");
}

#[tokio::test]
async fn metrics_include_registry_and_process_figures() {
    let o = Offline::new().await;
    product_a1p(&o).await;
    post(
        &o,
        "/api/v1/products/a1P/devices:batch",
        json!({"prefix": "d", "count": 3}),
    )
    .await;
    let (s, text, ctype) = o.send("GET", "/metrics", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(text.contains("aliot_hub_registry_products 1\n"), "{text}");
    assert!(text.contains("aliot_hub_registry_devices 3\n"), "{text}");
    assert!(text.contains("aliot_hub_sessions_online 0\n"), "{text}");
    if cfg!(target_os = "linux") {
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    }
}

#[tokio::test]
async fn calls_to_a_registered_but_offline_device_get_409() {
    let o = Offline::new().await;
    product_a1p(&o).await;
    post(&o, "/api/v1/products/a1P/devices", json!({"deviceName": "d"})).await;
    for (path, body) in [
        ("properties", json!({"params": {"Power": 1}})),
        ("services/Reboot", json!({"params": {}})),
        ("rrpc", json!({"payload": "ping"})),
    ] {
        let (s, v) = post(
            &o,
            &format!("/api/v1/products/a1P/devices/d/{path}"),
            body.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{path}: {v}");
        assert_eq!(v["code"], "device_offline");
        let (s, v) = post(&o, &format!("/api/v1/products/a1P/devices/ghost/{path}"), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    // The platform's Pub to an offline device with no stored session cannot be queued.
    let (s, v) = post(
        &o,
        "/api/v1/products/a1P/devices/d/publish",
        json!({"topic": "/a1P/d/user/get", "payload": "x", "qos": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = post(
        &o,
        "/api/v1/products/a1P/devices/d/properties",
        json!({"params": [1]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(
        &o,
        "/api/v1/products/a1P/devices/d/properties",
        json!({"params": {}, "timeout_ms": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = post(
        &o,
        "/api/v1/products/a1P/devices/d/rrpc",
        json!({"payload": "%%", "encoding": "base64"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// A full hub: HTTP on a socket, devices over MQTT.

#[tokio::test]
async fn disabling_an_online_device_disconnects_it_and_refuses_it() {
    let hub = TestHub::start().await;
    let (pk, dn, secret) = hub.device("lamp").await;
    let mut events = hub.service().events();
    let mut dev = TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await;
    let (_, show) = hub.call("GET", &device_path(&pk, &dn), None).await;
    assert_eq!(show["status"], "online", "{show}");
    assert_eq!(show["clientIp"], "127.0.0.1");
    assert!(show["lastOnline"].as_u64().is_some(), "{show}");
    let (_, online) = hub
        .call(
            "GET",
            &format!("/api/v1/products/{pk}/devices?status=online"),
            None,
        )
        .await;
    assert_eq!(online.as_array().expect("array").len(), 1);

    let (s, p) = hub
        .call("PATCH", &device_path(&pk, &dn), Some(json!({"enabled": false})))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    dev.closed().await;
    guard("offline status event", async {
        loop {
            if let Ok(e) = events.recv().await
                && let Event::Status(st) = &*e
                && st.status == "offline"
                && st.device_name == dn
            {
                return;
            }
        }
    })
    .await;
    let (_, show) = hub.call("GET", &device_path(&pk, &dn), None).await;
    assert_eq!(show["status"], "offline");
    // A disabled device is refused at CONNECT (5, not authorized).
    let err = TestDevice::try_connect(hub.mqtt, &pk, &dn, &secret)
        .await
        .expect_err("refused");
    assert!(format!("{err:?}").contains("NotAuthorized"), "{err:?}");
    // Enabled again, it connects.
    hub.call("PATCH", &device_path(&pk, &dn), Some(json!({"enabled": true})))
        .await;
    let _dev = TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await;
    hub.stop().await;
}

#[tokio::test]
async fn deleting_an_online_device_disconnects_it_and_forgets_it() {
    let (hub, pk, dn, secret, mut dev) = hub_with_device("doomed").await;
    let (s, v) = hub.call("DELETE", &device_path(&pk, &dn), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["wasOnline"], true);
    dev.closed().await;
    let err = TestDevice::try_connect(hub.mqtt, &pk, &dn, &secret)
        .await
        .expect_err("refused");
    assert!(format!("{err:?}").contains("BadUserNamePassword"), "{err:?}");
    hub.stop().await;
}

#[tokio::test]
async fn property_set_reaches_the_device_and_returns_its_set_reply() {
    let (hub, pk, dn, _, mut dev) = hub_with_device("thermo").await;
    let url = format!("{}{}/properties", hub.base, device_path(&pk, &dn));
    let call = spawn_post(url, json!({"params": {"Target": 21.5}}));
    // The device sees thing.service.property.set (via _ss=1, no SUBSCRIBE) and answers.
    let (topic, payload) = dev.next_publish().await;
    assert_eq!(topic, format!("/sys/{pk}/{dn}/thing/service/property/set"));
    let req: Value = serde_json::from_slice(&payload).expect("JSON request");
    assert_eq!(req["method"], "thing.service.property.set");
    assert_eq!(req["params"]["Target"], 21.5);
    let id = req["id"].as_str().expect("string id");
    dev.publish(
        &format!("{topic}_reply"),
        json!({"id": id, "code": 200, "data": {"applied": true}}).to_string(),
    )
    .await;
    let (s, reply) = guard("HTTP answer", call).await.expect("task");
    assert_eq!(s, StatusCode::OK, "{reply}");
    assert_eq!(reply["code"], 200);
    assert_eq!(reply["id"], id);
    assert_eq!(reply["data"]["applied"], true);
    hub.stop().await;
}

#[tokio::test]
async fn a_service_call_goes_over_rrpc_and_returns_the_device_reply() {
    let (hub, pk, dn, _, mut dev) = hub_with_device("svc").await;
    let url = format!(
        "{}/api/v1/products/{pk}/devices/{dn}/services/SetWeight",
        hub.base
    );
    let call = spawn_post(url, json!({"params": {"w": 2}}));
    let (topic, payload) = dev.next_publish().await;
    // No `ext` in the clientId: the old-style RRPC topic.
    let prefix = format!("/sys/{pk}/{dn}/rrpc/request/");
    assert!(topic.starts_with(&prefix), "{topic}");
    let req: Value = serde_json::from_slice(&payload).expect("JSON request");
    assert_eq!(req["method"], "thing.service.SetWeight");
    let msg_id = &topic[prefix.len()..];
    let response_topic = format!("/sys/{pk}/{dn}/rrpc/response/{msg_id}");
    dev.publish(
        &response_topic,
        json!({"id": req["id"], "code": 200, "data": {"result": 1}}).to_string(),
    )
    .await;
    let (s, reply) = guard("HTTP answer", call).await.expect("task");
    assert_eq!(s, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["result"], 1);
    hub.stop().await;
}

#[tokio::test]
async fn raw_rrpc_returns_the_device_bytes_and_a_silent_device_gets_504() {
    let (hub, pk, dn, _, mut dev) = hub_with_device("raw").await;
    let url = format!("{}/api/v1/products/{pk}/devices/{dn}/rrpc", hub.base);
    // Binary in, binary out.
    let call = spawn_post(url.clone(), json!({"payload": "AAEC", "encoding": "base64"}));
    let (topic, payload) = dev.next_publish().await;
    assert_eq!(&payload[..], &[0, 1, 2]);
    let response_topic = topic.replace("/rrpc/request/", "/rrpc/response/");
    dev.client
        .publish(
            response_topic,
            vec![0xffu8, 0xfe],
            rumqttc::PublishOptions::at_most_once(),
        )
        .await
        .expect("publish");
    let (s, reply) = guard("HTTP answer", call).await.expect("task");
    assert_eq!(s, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"payload": "//4=", "encoding": "base64"}));

    // The device receives the request but never answers: 504 after the caller's deadline.
    let call = spawn_post(url, json!({"payload": "hello", "timeout_ms": 100}));
    let (_, payload) = dev.next_publish().await;
    assert_eq!(&payload[..], b"hello");
    let (s, e) = guard("HTTP answer", call).await.expect("task");
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{e}");
    assert_eq!(e["code"], "device_timeout");
    hub.stop().await;
}

#[tokio::test]
async fn the_platform_pub_reaches_a_subscribed_device_only_on_its_topics() {
    let (hub, pk, dn, _, mut dev) = hub_with_device("sub").await;
    let topic = format!("/{pk}/{dn}/user/get");
    dev.subscribe(&topic).await;
    let path = format!("/api/v1/products/{pk}/devices/{dn}/publish");
    let (s, v) = hub
        .call(
            "POST",
            &path,
            Some(json!({"topic": topic, "payload": "on", "qos": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "delivered");
    let (t, p) = dev.next_publish().await;
    assert_eq!((t.as_str(), &p[..]), (topic.as_str(), &b"on"[..]));
    let (s, _) = hub
        .call(
            "POST",
            &path,
            Some(json!({"topic": topic, "payload": "AP8=", "encoding": "base64"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, p) = dev.next_publish().await;
    assert_eq!(&p[..], &[0x00, 0xff]);
    // Not subscribed: dropped, as on the platform, and said so.
    let (s, v) = hub
        .call(
            "POST",
            &path,
            Some(json!({"topic": format!("/{pk}/{dn}/user/other"), "payload": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["outcome"], "not_subscribed");
    // Another device's topic, wildcards and QoS 2 are refused.
    for bad in [
        json!({"topic": format!("/{pk}/someone/user/get"), "payload": "x"}),
        json!({"topic": format!("/{pk}/{dn}/user/#"), "payload": "x"}),
        json!({"topic": topic, "payload": "x", "qos": 2}),
    ] {
        let (s, v) = hub.call("POST", &path, Some(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {v}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn device_show_reports_the_last_reported_properties() {
    let (hub, pk, dn, _, mut dev) = hub_with_device("meter").await;
    let post = format!("/sys/{pk}/{dn}/thing/event/property/post");
    dev.publish(&post, r#"{"id":"1","version":"1.0","params":{"Voltage":231.5}}"#)
        .await;
    // The post_reply (delivered through _ss=1) means the hub has processed the post.
    let (t, _) = dev.next_publish().await;
    assert_eq!(t, format!("{post}_reply"));
    let (_, show) = hub.call("GET", &device_path(&pk, &dn), None).await;
    assert_eq!(show["properties"]["Voltage"], 231.5, "{show}");
    assert_eq!(show["session"]["autoSubscribe"], true, "{show}");
    hub.stop().await;
}

#[tokio::test]
async fn the_event_stream_reports_a_device_going_online() {
    use http_body_util::BodyExt as _;
    let hub = TestHub::start().await;
    let (pk, dn, secret) = hub.device("watched").await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .uri(format!("{}/api/v1/events?deviceName={dn}&type=status", hub.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Empty::new())
        .expect("request");
    let resp = guard("SSE response", client.request(req)).await.expect("SSE");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    let mut body = resp.into_body();
    // The headers are sent when the handler returns, so the subscription exists now.
    let _dev = TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await;
    let text = guard("an SSE frame", async {
        let mut text = String::new();
        loop {
            let frame = body.frame().await.expect("stream open").expect("frame");
            if let Some(data) = frame.data_ref() {
                text.push_str(std::str::from_utf8(data).expect("utf-8"));
                if text.contains("\"online\"") {
                    return text;
                }
            }
        }
    })
    .await;
    let line = text
        .lines()
        .find(|l| l.starts_with("data:") && l.contains("online"))
        .expect("data line");
    let v: Value = serde_json::from_str(line.trim_start_matches("data:").trim()).expect("JSON event");
    assert_eq!(v["type"], "status");
    assert_eq!(v["productKey"], pk.as_str());
    assert_eq!(v["clientIp"], "127.0.0.1");
    // The stream ends with the hub, so shutdown does not hang on it.
    hub.stop().await;
}

#[tokio::test]
async fn healthz_and_auth_over_a_real_socket() {
    let hub = TestHub::start().await;
    let (s, _) = http("GET", &format!("{}/healthz", hub.base), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = http(
        "GET",
        &format!("{}/api/v1/products", hub.base),
        Some("nope"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // `aliot admin --data-dir` finds the URL here.
    let url = std::fs::read_to_string(hub.dir.path().join("admin.url")).expect("admin.url");
    assert_eq!(url.trim(), hub.base);
    hub.stop().await;
}

/// Reads from `stream` until the hub closes it (EOF or reset), within the hang guard.
async fn closed_by_the_hub(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 256];
    guard("the hub to close the connection", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Hardening 18: a client that opens a connection and never finishes its request head is
/// disconnected, instead of holding the connection forever.
#[tokio::test]
async fn a_silent_or_trickling_admin_client_is_disconnected() {
    use tokio::io::AsyncWriteExt as _;
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.admin.header_read_timeout_secs = 1;
    })
    .await;
    let addr = hub.hub().admin_addr();
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut trickle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    closed_by_the_hub(&mut silent).await;
    closed_by_the_hub(&mut trickle).await;
    // The API still serves.
    let (s, _) = http("GET", &format!("{}/healthz", hub.base), None, None).await;
    assert_eq!(s, StatusCode::OK);
    hub.stop().await;
}

/// Hardening 18: connections above the admin API's limit are closed at once.
#[tokio::test]
async fn admin_connections_above_the_limit_are_closed_at_once() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.admin.max_connections = 2;
    })
    .await;
    let addr = hub.hub().admin_addr();
    let _a = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _b = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
    closed_by_the_hub(&mut third).await;
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Thing models (issue 11): import, export, delete; kept across a restart.

/// The realistic TSL of aliot-protocol's tests (every data type).
const LAMP_TSL: &str = include_str!("../../aliot-protocol/tests/data/tsl-lamp.json");

#[tokio::test]
async fn a_products_thing_model_is_imported_exported_and_kept() {
    let hub = TestHub::start().await;
    let pk = hub.product().await;
    let url = format!("{}/api/v1/products/{pk}/tsl", hub.base);
    let (s, _) = http("GET", &url, Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no model yet");
    let (s, v) = http_json(
        "GET",
        &format!("{}/api/v1/products/a1Nope/tsl", hub.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("product_not_found"))
    );
    // A fault names its JSON path; nothing is stored.
    let bad = LAMP_TSL.replacen("\"int\"", "\"integer\"", 1);
    let (s, text) = http("PUT", &url, Some(TOKEN), Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("invalid TSL") && text.contains("dataType"),
        "{text}"
    );
    let (s, _) = http("GET", &url, Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Imported, exported as given.
    let (s, text) = http("PUT", &url, Some(TOKEN), Some(LAMP_TSL.to_owned())).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert!(v["properties"].as_u64().is_some_and(|n| n > 0), "{v}");
    let (s, text) = http("GET", &url, Some(TOKEN), None).await;
    assert_eq!((s, text.as_str()), (StatusCode::OK, LAMP_TSL));
    // Kept across a restart.
    let hub = TestHub::start_in(hub.stop().await).await;
    let url = format!("{}/api/v1/products/{pk}/tsl", hub.base);
    let (s, text) = http("GET", &url, Some(TOKEN), None).await;
    assert_eq!((s, text.as_str()), (StatusCode::OK, LAMP_TSL));
    let (s, v) = http_json("DELETE", &url, Some(TOKEN), None).await;
    assert_eq!((s, &v["deleted"]), (StatusCode::OK, &Value::Bool(true)));
    let (s, _) = http("GET", &url, Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_a_thing_model_a_post_is_judged_like_the_platform() {
    let hub = TestHub::start().await;
    let (pk, dn, secret) = hub.device("lamp").await;
    let tsl = r#"{"properties":[
      {"identifier":"LightSwitch","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"off","1":"on"}}},
      {"identifier":"Brightness","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}"#;
    let (s, text) = http(
        "PUT",
        &format!("{}/api/v1/products/{pk}/tsl", hub.base),
        Some(TOKEN),
        Some(tsl.to_owned()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let mut raw = aliot_testkit::Raw::online(hub.mqtt, &aliot_testkit::signed(&pk, &dn, &secret)).await;
    let topic = format!("/sys/{pk}/{dn}/thing/event/property/post");
    let reply_topic = format!("{topic}_reply");
    raw.subscribe(1, &[(reply_topic.as_str(), rmqtt_codec::v3::QoS::AtMostOnce)])
        .await;
    // A bool sent as `true` and a brightness out of range: rejected one by one, code 200.
    raw.publish(
        &topic,
        r#"{"id":"1","params":{"LightSwitch":true,"Brightness":101},"method":"thing.event.property.post"}"#,
        rmqtt_codec::v3::QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = aliot_testkit::json(&raw.publish_in().await);
    assert_eq!(reply["code"], 200, "{reply}");
    assert!(
        reply["data"]["LightSwitch"].is_string() && reply["data"]["Brightness"].is_string(),
        "{reply}"
    );
    raw.publish(
        &topic,
        r#"{"id":"2","params":{"LightSwitch":1,"Brightness":80},"method":"thing.event.property.post"}"#,
        rmqtt_codec::v3::QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = aliot_testkit::json(&raw.publish_in().await);
    assert_eq!(
        (&reply["code"], &reply["data"]),
        (&json!(200), &json!({})),
        "{reply}"
    );
    let (_, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/{dn}"), None)
        .await;
    assert_eq!(
        d["properties"],
        json!({"LightSwitch": 1, "Brightness": 80}),
        "{d}"
    );
}
