//! Gateways and sub-devices against a whole hub (issue 13): topology, sub-device sessions and
//! their codes, sub-device traffic on the gateway's connection, admin calls reaching a
//! sub-device through its gateway, and the topology surviving a restart.

use std::time::Duration;

use aliot_hub::events::Event;
use aliot_protocol::sign::{HexCase, SignMethod, sign_content};
use aliot_testkit::events::{offline, online};
use aliot_testkit::{Raw, TestHub, json as payload_json, signed};
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};

/// A sub-device's sign material (topo add item; a login adds `cleanSession`).
fn sign_item(pk: &str, dn: &str, secret: &str, lower_key: bool) -> Value {
    let client_id = format!("{pk}.{dn}|_v=test|");
    let ts = "2524608000000";
    let sign = SignMethod::HmacSha1.hex(
        secret.as_bytes(),
        sign_content(&client_id, dn, pk, Some(ts)).as_bytes(),
        HexCase::Lower,
    );
    let method_key = if lower_key { "signmethod" } else { "signMethod" };
    let mut v =
        json!({"productKey": pk, "deviceName": dn, "clientId": client_id, "timestamp": ts, "sign": sign});
    v[method_key] = json!("hmacSha1");
    if !lower_key {
        v["cleanSession"] = json!("true");
    }
    v
}

/// Publishes a request and returns the JSON reply on `<topic>_reply`.
async fn ask(gw: &mut Raw, topic: &str, body: Value) -> Value {
    gw.publish(topic, &body.to_string(), QoS::AtMostOnce, 0).await;
    let reply = gw.publish_in().await;
    assert_eq!(
        &*reply.topic,
        format!("{topic}_reply"),
        "{}",
        payload_json(&reply)
    );
    payload_json(&reply)
}

struct Fleet {
    gpk: String,
    spk: String,
    gw_secret: String,
    gw2_secret: String,
    s1: String,
    s2: String,
}

async fn fleet(hub: &TestHub) -> Fleet {
    let gpk = hub.product().await;
    let gw_secret = hub.register(&gpk, "gw").await;
    let gw2_secret = hub.register(&gpk, "gw2").await;
    let spk = hub
        .service()
        .create_product("subs", None)
        .await
        .expect("a sub-device product")
        .product_key;
    let s1 = hub.register(&spk, "s1").await;
    let s2 = hub.register(&spk, "s2").await;
    Fleet {
        gpk,
        spk,
        gw_secret,
        gw2_secret,
        s1,
        s2,
    }
}

/// A gateway connected with its own reply topics subscribed.
async fn gateway(hub: &TestHub, pk: &str, dn: &str, secret: &str) -> Raw {
    let mut gw = Raw::online(hub.mqtt, &signed(pk, dn, secret)).await;
    let sys = format!("/sys/{pk}/{dn}/#");
    let session = format!("/ext/session/{pk}/{dn}/#");
    let error = format!("/ext/error/{pk}/{dn}");
    gw.subscribe(
        1,
        &[
            (&sys, QoS::AtMostOnce),
            (&session, QoS::AtMostOnce),
            (&error, QoS::AtMostOnce),
        ],
    )
    .await;
    gw
}

#[tokio::test]
async fn topology_and_sub_device_sessions_get_the_platforms_codes() {
    let hub = TestHub::start().await;
    let f = fleet(&hub).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw_secret).await;
    let add = format!("/sys/{gpk}/gw/thing/topo/add");

    // A wrong sign (made with another secret) is refused with 401, nothing added.
    let bad = sign_item(spk, "s1", "not-the-secret", true);
    let r = ask(
        &mut gw,
        &add,
        json!({"id": "1", "version": "1.0", "params": [bad], "method": "thing.topo.add"}),
    )
    .await;
    assert_eq!(r["code"], 401, "{r}");
    assert_eq!(r["id"], "1", "{r}");
    // The spec's lower-case `signmethod`, the sub's secret: added.
    let good = sign_item(spk, "s1", &f.s1, true);
    let r = ask(&mut gw, &add, json!({"id": "2", "params": [good]})).await;
    assert_eq!(r["code"], 200, "{r}");
    // Adding itself: 6402.
    let me = sign_item(gpk, "gw", &f.gw_secret, true);
    let r = ask(&mut gw, &add, json!({"id": "3", "params": [me]})).await;
    assert_eq!(r["code"], 6402, "{r}");
    // Topo get lists it.
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/get"),
        json!({"id": "4", "params": {}}),
    )
    .await;
    assert_eq!(r["data"], json!([{"productKey": spk, "deviceName": "s1"}]), "{r}");

    // Another gateway cannot take s1: 6619.
    let mut gw2 = gateway(&hub, gpk, "gw2", &f.gw2_secret).await;
    let r = ask(
        &mut gw2,
        &format!("/sys/{gpk}/gw2/thing/topo/add"),
        json!({"id": "5", "params": [sign_item(spk, "s1", &f.s1, true)]}),
    )
    .await;
    assert_eq!(r["code"], 6619, "{r}");

    let mut events = hub.service().events();
    let login = format!("/ext/session/{gpk}/gw/combine/login");
    // s2 is in no topology: 6401.
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "6", "params": sign_item(spk, "s2", &f.s2, false)}),
    )
    .await;
    assert_eq!(r["code"], 6401, "{r}");
    // A bad login sign: 6287.
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "7", "params": sign_item(spk, "s1", "nope", false)}),
    )
    .await;
    assert_eq!(r["code"], 6287, "{r}");
    // s1 logs in: its data names it, and it is online.
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "8", "params": sign_item(spk, "s1", &f.s1, false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    assert_eq!(r["data"], json!({"productKey": spk, "deviceName": "s1"}), "{r}");
    online(&mut events, "s1").await;

    // A batch over 50: 460. A batch with one bad sub-device: refused whole, that one named.
    let batch = format!("/ext/session/{gpk}/gw/combine/batch_login");
    let many: Vec<Value> = (0..51).map(|_| sign_item(spk, "s1", &f.s1, false)).collect();
    let r = ask(
        &mut gw,
        &batch,
        json!({"id": "9", "params": {"deviceList": many}}),
    )
    .await;
    assert_eq!(r["code"], 460, "{r}");
    let r = ask(
        &mut gw,
        &batch,
        json!({"id": "10", "params": {"deviceList": [sign_item(spk, "s1", &f.s1, false), sign_item(spk, "s2", &f.s2, false)]}}),
    )
    .await;
    assert_eq!(r["code"], 6401, "{r}");
    assert_eq!(r["data"][0]["deviceName"], "s2", "{r}");
    // Nothing of it was applied: s2 has no session to log out (520).
    let logout = format!("/ext/session/{gpk}/gw/combine/logout");
    let r = ask(
        &mut gw,
        &logout,
        json!({"id": "11", "params": {"productKey": spk, "deviceName": "s2"}}),
    )
    .await;
    assert_eq!(r["code"], 520, "{r}");

    // A gateway's publish on the topic of a sub-device it does not speak for is refused (the
    // hub drops it with an event); on a logged-in one it is the sub-device's.
    let post = format!("/sys/{spk}/s1/thing/event/property/post");
    let sub_topics = format!("/sys/{spk}/s1/thing/#");
    let codes = gw.subscribe(2, &[(&sub_topics, QoS::AtMostOnce)]).await;
    assert_eq!(
        format!("{codes:?}"),
        format!(
            "{:?}",
            [rmqtt_codec::v3::SubscribeReturnCode::Success(QoS::AtMostOnce)]
        )
    );
    let r = ask(
        &mut gw,
        &post,
        json!({"id": "12", "params": {"t": 21}, "method": "thing.event.property.post"}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let latest = hub.service().last_properties(spk, "s1").await;
    assert!(format!("{latest:?}").contains("21"), "{latest:?}");

    // A property set from the admin reaches the gateway on the sub-device's topic, and the
    // gateway's answer comes back.
    let service = hub.service().clone();
    let spk_owned = spk.to_owned();
    let call = tokio::spawn(async move {
        service
            .set_property(&spk_owned, "s1", json!({"t": 5}), Duration::from_secs(30))
            .await
    });
    let set = gw.publish_in().await;
    assert_eq!(&*set.topic, format!("/sys/{spk}/s1/thing/service/property/set"));
    let id = payload_json(&set)["id"].clone();
    gw.publish(
        &format!("/sys/{spk}/s1/thing/service/property/set_reply"),
        &json!({"id": id, "code": 200, "data": {}}).to_string(),
        QoS::AtMostOnce,
        0,
    )
    .await;
    let answer = call
        .await
        .expect("the call's task")
        .expect("the sub-device's answer");
    assert_eq!(answer["code"], 200, "{answer}");

    // Logout, then log in again; the gateway going away takes s1 offline.
    let r = ask(
        &mut gw,
        &logout,
        json!({"id": "13", "params": {"productKey": spk, "deviceName": "s1"}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    offline(&mut events, "s1").await;
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "14", "params": sign_item(spk, "s1", &f.s1, false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    online(&mut events, "s1").await;
    drop(gw);
    let e = offline(&mut events, "s1").await;
    assert!(
        matches!(&*e, Event::Status(s) if s.reason.as_deref() == Some("gateway offline")),
        "{e:?}"
    );

    // The topology survives a restart.
    drop(gw2);
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let mut gw = gateway(&hub, gpk, "gw", &f.gw_secret).await;
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/get"),
        json!({"id": "15", "params": {}}),
    )
    .await;
    assert_eq!(r["data"], json!([{"productKey": spk, "deviceName": "s1"}]), "{r}");
    // Delete: out of the topology, then login is 6401.
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/delete"),
        json!({"id": "16", "params": [{"productKey": spk, "deviceName": "s1"}]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "17", "params": sign_item(spk, "s1", &f.s1, false)}),
    )
    .await;
    assert_eq!(r["code"], 6401, "{r}");
}

#[tokio::test]
async fn online_sub_devices_are_limited_per_gateway() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("a temporary directory"), |c| {
        c.broker.max_online_subs_per_gateway = 1;
    })
    .await;
    let f = fleet(&hub).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw_secret).await;
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/add"),
        json!({"id": "1", "params": [sign_item(spk, "s1", &f.s1, true), sign_item(spk, "s2", &f.s2, true)]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let login = format!("/ext/session/{gpk}/gw/combine/login");
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "2", "params": sign_item(spk, "s1", &f.s1, false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "3", "params": sign_item(spk, "s2", &f.s2, false)}),
    )
    .await;
    assert_eq!(r["code"], 428, "{r}");
}

#[tokio::test]
async fn disabling_or_deleting_a_sub_device_tells_its_gateway_and_logs_it_out() {
    let hub = TestHub::start().await;
    let f = fleet(&hub).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw_secret).await;
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/add"),
        json!({"id": "1", "params": [sign_item(spk, "s1", &f.s1, true), sign_item(spk, "s2", &f.s2, true)]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let login = format!("/ext/session/{gpk}/gw/combine/batch_login");
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "2", "params": {"deviceList": [sign_item(spk, "s1", &f.s1, false), sign_item(spk, "s2", &f.s2, false)]}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let subs = format!("/sys/{spk}/+/thing/#");
    // A wildcard on the deviceName is not a sub-device's own topic: refused.
    let codes = gw.subscribe(2, &[(&subs, QoS::AtMostOnce)]).await;
    assert_eq!(format!("{codes:?}"), "[Failure]");
    let (t1, t2) = (format!("/sys/{spk}/s1/thing/#"), format!("/sys/{spk}/s2/thing/#"));
    gw.subscribe(3, &[(&t1, QoS::AtMostOnce), (&t2, QoS::AtMostOnce)])
        .await;

    let mut events = hub.service().events();
    hub.service()
        .set_enabled(spk, "s1", false)
        .await
        .expect("disabled");
    let notice = gw.publish_in().await;
    assert_eq!(&*notice.topic, format!("/sys/{spk}/s1/thing/disable"));
    assert_eq!(payload_json(&notice)["method"], "thing.disable");
    let error = gw.publish_in().await;
    assert_eq!(&*error.topic, format!("/ext/error/{gpk}/gw"));
    assert_eq!(payload_json(&error)["code"], 522);
    assert_eq!(payload_json(&error)["data"]["deviceName"], "s1");
    offline(&mut events, "s1").await;
    // Logged out: its uplinks get 520 on the gateway's /ext/error (the connection stays),
    // while s2's are still answered.
    gw.publish(
        &format!("/sys/{spk}/s1/thing/event/property/post"),
        r#"{"id":"9","params":{"t":1}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let error = gw.publish_in().await;
    assert_eq!(&*error.topic, format!("/ext/error/{gpk}/gw"));
    assert_eq!(payload_json(&error)["code"], 520);
    let r = ask(
        &mut gw,
        &format!("/sys/{spk}/s2/thing/event/property/post"),
        json!({"id": "3", "params": {"t": 1}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    // A disabled sub-device cannot log in again: 522.
    let one = format!("/ext/session/{gpk}/gw/combine/login");
    let r = ask(
        &mut gw,
        &one,
        json!({"id": "4", "params": sign_item(spk, "s1", &f.s1, false)}),
    )
    .await;
    assert_eq!(r["code"], 522, "{r}");
    hub.service().set_enabled(spk, "s1", true).await.expect("enabled");
    let notice = gw.publish_in().await;
    assert_eq!(&*notice.topic, format!("/sys/{spk}/s1/thing/enable"));

    hub.service().delete_device(spk, "s2").await.expect("deleted");
    let notice = gw.publish_in().await;
    assert_eq!(&*notice.topic, format!("/sys/{spk}/s2/thing/delete"));
    let error = gw.publish_in().await;
    assert_eq!(payload_json(&error)["code"], 521);
    offline(&mut events, "s2").await;
    // Out of the topology with it.
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/get"),
        json!({"id": "5", "params": {}}),
    )
    .await;
    assert_eq!(r["data"], json!([{"productKey": spk, "deviceName": "s1"}]), "{r}");
}

#[tokio::test]
async fn the_admin_api_manages_topology_and_tells_the_gateway() {
    let hub = TestHub::start().await;
    let f = fleet(&hub).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw_secret).await;
    let base = format!("/api/v1/products/{gpk}/devices/gw");
    let body = json!({"subDevices": [{"productKey": spk, "deviceName": "s1"}]});
    let (s, v) = hub
        .call("POST", &format!("{base}/topology"), Some(body.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["subDevices"],
        json!([{"productKey": spk, "deviceName": "s1", "online": false}])
    );
    // The gateway is told: thing.topo.change, status 0.
    let change = gw.publish_in().await;
    assert_eq!(&*change.topic, format!("/sys/{gpk}/gw/thing/topo/change"));
    let change = payload_json(&change);
    assert_eq!(change["method"], "thing.topo.change", "{change}");
    assert_eq!(change["params"]["status"], 0, "{change}");
    assert_eq!(change["params"]["subList"][0]["deviceName"], "s1", "{change}");

    let (s, v) = hub
        .call("GET", &format!("/api/v1/products/{spk}/devices/s1/gateway"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["gateway"], json!({"productKey": gpk, "deviceName": "gw"}));
    // Itself: 409 with the platform's code in the message.
    let me = json!({"subDevices": [{"productKey": gpk, "deviceName": "gw"}]});
    let (s, v) = hub.call("POST", &format!("{base}/topology"), Some(me)).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "topology_refused", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("6402")), "{v}");
    // Another gateway's: 409, 6619.
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{gpk}/devices/gw2/topology"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("6619")), "{v}");

    // Logged in, then removed by the admin: logged out, status 1 pushed.
    let r = ask(
        &mut gw,
        &format!("/ext/session/{gpk}/gw/combine/login"),
        json!({"id": "1", "params": sign_item(spk, "s1", &f.s1, false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let (_, v) = hub.call("GET", &format!("{base}/topology"), None).await;
    assert_eq!(v["subDevices"][0]["online"], true, "{v}");
    let mut events = hub.service().events();
    let (s, v) = hub
        .call("POST", &format!("{base}/topology/remove"), Some(body.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subDevices"], json!([]));
    let change = payload_json(&gw.publish_in().await);
    assert_eq!(change["params"]["status"], 1, "{change}");
    offline(&mut events, "s1").await;
    let (_, v) = hub
        .call("GET", &format!("/api/v1/products/{spk}/devices/s1/gateway"), None)
        .await;
    assert_eq!(v["gateway"], Value::Null, "{v}");

    // Notify: thing.topo.add.notify reaches the gateway.
    let (s, v) = hub
        .call("POST", &format!("{base}/topology/notify"), Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    let notify = gw.publish_in().await;
    assert_eq!(&*notify.topic, format!("/sys/{gpk}/gw/thing/topo/add/notify"));
    assert_eq!(payload_json(&notify)["id"], v["messageId"]);
}

#[tokio::test]
async fn sub_devices_register_through_the_gateway_and_their_posts_meet_their_thing_model() {
    let hub = TestHub::start().await;
    let f = fleet(&hub).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw_secret).await;
    let register = format!("/sys/{gpk}/gw/thing/sub/register");
    let new = json!({"id": "1", "params": [{"productKey": spk, "deviceName": "s3"}]});
    let r = ask(&mut gw, &register, new.clone()).await;
    assert_eq!(r["code"], 6288, "{r}");
    hub.service()
        .set_dynamic_registration(spk, true)
        .await
        .expect("switched on");
    let r = ask(&mut gw, &register, new).await;
    assert_eq!(r["code"], 200, "{r}");
    assert_eq!(r["data"][0]["deviceName"], "s3", "{r}");
    let s3 = r["data"][0]["deviceSecret"]
        .as_str()
        .expect("a secret")
        .to_owned();

    // The new sub-device's sign is good for topo add and login.
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/add"),
        json!({"id": "2", "params": [sign_item(spk, "s3", &s3, true)]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let r = ask(
        &mut gw,
        &format!("/ext/session/{gpk}/gw/combine/login"),
        json!({"id": "3", "params": sign_item(spk, "s3", &s3, false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");

    // Its product's thing model judges what the gateway posts for it.
    let tsl = r#"{"properties":[{"identifier":"t","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}"#;
    let (s, text) = aliot_testkit::http(
        "PUT",
        &format!("{}/api/v1/products/{spk}/tsl", hub.base),
        Some(aliot_testkit::TOKEN),
        Some(tsl.to_owned()),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let topics = format!("/sys/{spk}/s3/thing/#");
    gw.subscribe(2, &[(&topics, QoS::AtMostOnce)]).await;
    let r = ask(
        &mut gw,
        &format!("/sys/{spk}/s3/thing/event/property/post"),
        json!({"id": "4", "params": {"t": "hot"}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    assert!(r["data"]["t"].is_string(), "the refused value is named: {r}");
}
