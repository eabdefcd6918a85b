//! Gateways, the rest of issue 13 over real sockets: topology lifecycle events, pack posts
//! carrying sub-devices, the sub-device login rate (429), one session per device (direct and
//! through a gateway, both orders), node types, and a gateway's subscription allowance.

use std::sync::Arc;

use aliot_hub::events::Event;
use aliot_protocol::sign::{HexCase, SignMethod, sign_content};
use aliot_testkit::events::{next_event, online};
use aliot_testkit::{Raw, TestHub, json as payload_json, signed};
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A sub-device's sign material (topo add item with `signmethod`; a login with `signMethod`).
fn sign_item(pk: &str, dn: &str, secret: &str, topo: bool) -> Value {
    let client_id = format!("{pk}.{dn}");
    let ts = "1700000000000";
    let sign = SignMethod::HmacSha256.hex(
        secret.as_bytes(),
        sign_content(&client_id, dn, pk, Some(ts)).as_bytes(),
        HexCase::Lower,
    );
    let key = if topo { "signmethod" } else { "signMethod" };
    let mut v =
        json!({"productKey": pk, "deviceName": dn, "clientId": client_id, "timestamp": ts, "sign": sign});
    v[key] = json!("hmacSha256");
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

/// A gateway connected with its own topics subscribed.
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

struct Fleet {
    gpk: String,
    spk: String,
    gw: String,
    subs: Vec<String>,
}

/// A gateway product with `gw`, a sub-device product with `s0..s{n}`.
async fn fleet(hub: &TestHub, n: usize) -> Fleet {
    let gpk = hub.product().await;
    let gw = hub.register(&gpk, "gw").await;
    let spk = hub
        .service()
        .create_product("subs", None)
        .await
        .expect("a sub-device product")
        .product_key;
    let mut subs = Vec::new();
    for i in 0..n {
        subs.push(hub.register(&spk, &format!("s{i}")).await);
    }
    Fleet { gpk, spk, gw, subs }
}

/// Adds `s0..s{n}` to the gateway's topology and logs them in (one batch).
async fn add_and_login(gw: &mut Raw, f: &Fleet, n: usize) {
    let (gpk, spk) = (&f.gpk, &f.spk);
    let items: Vec<Value> = (0..n)
        .map(|i| sign_item(spk, &format!("s{i}"), &f.subs[i], true))
        .collect();
    let r = ask(
        gw,
        &format!("/sys/{gpk}/gw/thing/topo/add"),
        json!({"id": "1", "params": items}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let list: Vec<Value> = (0..n)
        .map(|i| sign_item(spk, &format!("s{i}"), &f.subs[i], false))
        .collect();
    let r = ask(
        gw,
        &format!("/ext/session/{gpk}/gw/combine/batch_login"),
        json!({"id": "2", "params": {"deviceList": list}}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
}

/// The next topology event.
async fn topology(rx: &mut broadcast::Receiver<Arc<Event>>) -> Value {
    let e = next_event(rx, |e| matches!(e, Event::Topology(_))).await;
    serde_json::to_value(&*e).expect("an event is JSON")
}

#[tokio::test]
async fn every_topology_change_is_a_lifecycle_event() {
    let hub = TestHub::start().await;
    let f = fleet(&hub, 2).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut events = hub.service().events();
    let mut gw = gateway(&hub, gpk, "gw", &f.gw).await;

    // The gateway adds s0: `add` by the gateway, in the platform's topo/lifecycle shape.
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/add"),
        json!({"id": "1", "params": [sign_item(spk, "s0", &f.subs[0], true)]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let e = topology(&mut events).await;
    assert_eq!(e["type"], "topology", "{e}");
    assert_eq!(
        (e["action"].clone(), e["by"].clone()),
        (json!("add"), json!("gateway")),
        "{e}"
    );
    assert_eq!(
        (e["gwProductKey"].clone(), e["gwDeviceName"].clone()),
        (json!(gpk), json!("gw")),
        "{e}"
    );
    assert!(e["gwIotId"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    assert_eq!(e["devices"][0]["deviceName"], "s0", "{e}");
    assert!(
        e["devices"][0]["iotId"].as_str().is_some_and(|s| !s.is_empty()),
        "{e}"
    );
    assert!(e["messageCreateTime"].as_u64().is_some(), "{e}");

    // The gateway deletes it: `remove`.
    let r = ask(
        &mut gw,
        &format!("/sys/{gpk}/gw/thing/topo/delete"),
        json!({"id": "2", "params": [{"productKey": spk, "deviceName": "s0"}]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    let e = topology(&mut events).await;
    assert_eq!(
        (e["action"].clone(), e["by"].clone()),
        (json!("remove"), json!("gateway")),
        "{e}"
    );

    // The admin adds both: `add` by the admin.
    let base = format!("/api/v1/products/{gpk}/devices/gw");
    let both = json!({"subDevices": [{"productKey": spk, "deviceName": "s0"}, {"productKey": spk, "deviceName": "s1"}]});
    let (s, v) = hub.call("POST", &format!("{base}/topology"), Some(both)).await;
    assert_eq!(s, 200, "{v}");
    let e = topology(&mut events).await;
    assert_eq!(
        (e["action"].clone(), e["by"].clone()),
        (json!("add"), json!("admin")),
        "{e}"
    );
    assert_eq!(e["devices"].as_array().map(Vec::len), Some(2), "{e}");

    // Disabling and enabling a sub-device of the topology: `disable`, `enable`.
    hub.service()
        .set_enabled(spk, "s1", false)
        .await
        .expect("disabled");
    let e = topology(&mut events).await;
    assert_eq!(
        (e["action"].clone(), e["devices"][0]["deviceName"].clone()),
        (json!("disable"), json!("s1")),
        "{e}"
    );
    hub.service().set_enabled(spk, "s1", true).await.expect("enabled");
    let e = topology(&mut events).await;
    assert_eq!(e["action"], "enable", "{e}");

    // Deleting a sub-device takes it out of the topology: `remove` by `deleted`.
    hub.service().delete_device(spk, "s1").await.expect("deleted");
    let e = topology(&mut events).await;
    assert_eq!(
        (e["action"].clone(), e["by"].clone()),
        (json!("remove"), json!("deleted")),
        "{e}"
    );
    assert_eq!(e["devices"][0]["deviceName"], "s1", "{e}");

    // The admin removes s0: `remove` by the admin.
    let s0 = json!({"subDevices": [{"productKey": spk, "deviceName": "s0"}]});
    let (s, v) = hub
        .call("POST", &format!("{base}/topology/remove"), Some(s0))
        .await;
    assert_eq!(s, 200, "{v}");
    let e = topology(&mut events).await;
    assert_eq!(
        (e["action"].clone(), e["by"].clone()),
        (json!("remove"), json!("admin")),
        "{e}"
    );
}

#[tokio::test]
async fn a_pack_post_is_each_sub_devices_post_all_or_nothing() {
    let hub = TestHub::start().await;
    let f = fleet(&hub, 3).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let tsl = r#"{"properties":[{"identifier":"t","accessMode":"rw","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}"#;
    hub.service()
        .import_tsl(spk, tsl.to_owned())
        .await
        .expect("the sub-devices' thing model");
    let mut gw = gateway(&hub, gpk, "gw", &f.gw).await;
    add_and_login(&mut gw, &f, 2).await;
    let pack = format!("/sys/{gpk}/gw/thing/event/property/pack/post");
    let entry = |dn: &str, t: Value| json!({"identity": {"productKey": spk, "deviceName": dn}, "properties": {"t": {"value": t, "time": 1_700_000_000_000u64}}});

    // The gateway's own value and two sub-devices' values: each kept as its device's, judged by
    // its product's thing model (s1's "hot" is refused, s0's 7 kept).
    let body = json!({"id": "10", "version": "1.0", "params": {
        "properties": {"Own": {"value": 1, "time": 1_700_000_000_000u64}},
        "subDevices": [entry("s0", json!(7)), entry("s1", json!("hot"))],
    }, "method": "thing.event.property.pack.post"});
    let r = ask(&mut gw, &pack, body).await;
    assert_eq!(
        (r["code"].clone(), r["id"].clone()),
        (json!(200), json!("10")),
        "{r}"
    );
    let latest = |dn: &'static str| {
        let path = format!("/api/v1/products/{spk}/devices/{dn}/properties");
        let hub = &hub;
        async move { hub.call("GET", &path, None).await.1 }
    };
    let s0 = latest("s0").await;
    assert_eq!(s0[0]["identifier"], "t", "{s0}");
    assert_eq!(s0[0]["value"], 7, "{s0}");
    assert_eq!(latest("s1").await, json!([]), "s1's refused value is not kept");
    let (_, own) = hub
        .call(
            "GET",
            &format!("/api/v1/products/{gpk}/devices/gw/properties"),
            None,
        )
        .await;
    assert_eq!(own[0]["identifier"], "Own", "{own}");
    assert_eq!(
        own.as_array().map(Vec::len),
        Some(1),
        "the sub-devices' values are not the gateway's: {own}"
    );

    // A sub-device in the topology but not logged in (s2 is in none): 520, nothing kept.
    let body = json!({"id": "11", "params": {
        "properties": {"Own": {"value": 2}},
        "subDevices": [entry("s0", json!(8)), entry("s2", json!(9))],
    }});
    let r = ask(&mut gw, &pack, body).await;
    assert_eq!(r["code"], 520, "{r}");
    assert_eq!(
        latest("s0").await[0]["value"],
        7,
        "nothing of the refused post is kept"
    );

    // More than 20 sub-devices: 6357.
    let many: Vec<Value> = (0..21).map(|i| entry(&format!("x{i}"), json!(1))).collect();
    let r = ask(
        &mut gw,
        &pack,
        json!({"id": "12", "params": {"subDevices": many}}),
    )
    .await;
    assert_eq!(r["code"], 6357, "{r}");

    // A whole-message fault in one sub-device's part (201 properties: 6106) refuses all.
    let mut props = serde_json::Map::new();
    for i in 0..201 {
        props.insert(format!("p{i}"), json!(1));
    }
    let body = json!({"id": "13", "params": {
        "properties": {"Own": {"value": 3}},
        "subDevices": [entry("s0", json!(9)), {"identity": {"productKey": spk, "deviceName": "s1"}, "properties": props}],
    }});
    let r = ask(&mut gw, &pack, body).await;
    assert_eq!(r["code"], 6106, "{r}");
    assert_eq!(latest("s0").await[0]["value"], 7);
}

#[tokio::test]
async fn a_sub_device_logging_in_too_often_gets_429() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("a temp dir"), |c| {
        c.broker.max_sub_logins_per_minute = 2;
    })
    .await;
    let f = fleet(&hub, 2).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw).await;
    add_and_login(&mut gw, &f, 2).await;
    let login = format!("/ext/session/{gpk}/gw/combine/login");
    let batch = format!("/ext/session/{gpk}/gw/combine/batch_login");
    // s0 has logged in once; a batch naming it twice more is a third and fourth login in
    // the minute: refused whole (s1 is not logged in again either, its count unchanged).
    let twice = json!({"id": "3", "params": {"deviceList": [
        sign_item(spk, "s1", &f.subs[1], false),
        sign_item(spk, "s0", &f.subs[0], false),
        sign_item(spk, "s0", &f.subs[0], false),
    ]}});
    let r = ask(&mut gw, &batch, twice).await;
    assert_eq!(r["code"], 429, "{r}");
    // The second login of s0 in the minute is allowed, the third is not.
    let once = json!({"id": "4", "params": sign_item(spk, "s0", &f.subs[0], false)});
    let r = ask(&mut gw, &login, once.clone()).await;
    assert_eq!(r["code"], 200, "{r}");
    let r = ask(&mut gw, &login, once).await;
    assert_eq!(r["code"], 429, "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("s0")), "{r}");
    // s1 still has its second login.
    let r = ask(
        &mut gw,
        &login,
        json!({"id": "5", "params": sign_item(spk, "s1", &f.subs[1], false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
}

#[tokio::test]
async fn one_session_per_device_the_later_login_wins() {
    let hub = TestHub::start().await;
    let f = fleet(&hub, 1).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut events = hub.service().events();
    let mut gw = gateway(&hub, gpk, "gw", &f.gw).await;
    add_and_login(&mut gw, &f, 1).await;
    online(&mut events, "s0").await;

    // Through the gateway first, then directly: the gateway is told 427 on its /ext/error,
    // and the sub-device's downlinks reach its own connection.
    let mut direct = Raw::online(hub.mqtt, &signed(spk, "s0", &f.subs[0])).await;
    let notice = gw.publish_in().await;
    assert_eq!(&*notice.topic, format!("/ext/error/{gpk}/gw"));
    let notice = payload_json(&notice);
    assert_eq!(notice["code"], 427, "{notice}");
    assert_eq!(notice["data"]["deviceName"], "s0", "{notice}");
    let set = format!("/sys/{spk}/s0/thing/service/property/set");
    direct.subscribe(1, &[(&set, QoS::AtMostOnce)]).await;
    let hub2 = hub.service().clone();
    let spk2 = spk.to_owned();
    let call = tokio::spawn(async move {
        hub2.set_property(&spk2, "s0", json!({"t": 1}), std::time::Duration::from_secs(10))
            .await
    });
    let got = direct.publish_in().await;
    assert_eq!(&*got.topic, set);
    let id = payload_json(&got)["id"].clone();
    direct
        .publish(
            &format!("{set}_reply"),
            &json!({"id": id, "code": 200, "data": {}}).to_string(),
            QoS::AtMostOnce,
            0,
        )
        .await;
    call.await
        .expect("joined")
        .expect("answered by the direct connection");

    // Directly first, then through the gateway: the direct connection is closed, the gateway
    // speaks for it, and it stays online (no offline status for the closed connection).
    let r = ask(
        &mut gw,
        &format!("/ext/session/{gpk}/gw/combine/login"),
        json!({"id": "9", "params": sign_item(spk, "s0", &f.subs[0], false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
    direct.closed().await;
    let post = format!("/sys/{spk}/s0/thing/event/property/post");
    let post_reply = format!("{post}_reply");
    gw.subscribe(2, &[(&post_reply, QoS::AtMostOnce)]).await;
    let r = ask(&mut gw, &post, json!({"id": "10", "params": {"t": 2}})).await;
    assert_eq!(r["code"], 200, "{r}");
    let (_, v) = hub
        .call(
            "GET",
            &format!("/api/v1/products/{gpk}/devices/gw/topology"),
            None,
        )
        .await;
    assert_eq!(v["subDevices"][0]["online"], true, "{v}");
}

#[tokio::test]
async fn node_types_decide_who_may_be_a_gateway_and_who_a_sub_device() {
    let hub = TestHub::start().await;
    let f = fleet(&hub, 1).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    use aliot_admin::NodeType;
    // Products without a node type (direct) may do both, as before.
    let mut gw = gateway(&hub, gpk, "gw", &f.gw).await;
    let add = format!("/sys/{gpk}/gw/thing/topo/add");
    let r = ask(
        &mut gw,
        &add,
        json!({"id": "1", "params": [sign_item(spk, "s0", &f.subs[0], true)]}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");

    // A gateway product's device cannot be a sub-device: 460 from the device and the admin.
    hub.service()
        .set_node_type(gpk, NodeType::Gateway)
        .await
        .expect("set");
    let gw2 = hub.register(gpk, "gw2").await;
    let r = ask(
        &mut gw,
        &add,
        json!({"id": "2", "params": [sign_item(gpk, "gw2", &gw2, true)]}),
    )
    .await;
    assert_eq!(r["code"], 460, "{r}");
    assert!(
        r["message"].as_str().is_some_and(|m| m.contains("gateway")),
        "{r}"
    );
    let body = json!({"subDevices": [{"productKey": gpk, "deviceName": "gw2"}]});
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{gpk}/devices/gw/topology"),
            Some(body),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("460")), "{v}");

    // A sub-device product's device cannot act as a gateway: 460 for its topo and session
    // requests.
    hub.service()
        .set_node_type(spk, NodeType::Sub)
        .await
        .expect("set");
    let mut sub_as_gw = gateway(&hub, spk, "s0", &f.subs[0]).await;
    let r = ask(
        &mut sub_as_gw,
        &format!("/sys/{spk}/s0/thing/topo/get"),
        json!({"id": "3", "params": {}}),
    )
    .await;
    assert_eq!(r["code"], 460, "{r}");
    // The sub-device product still logs in through the gateway product.
    let r = ask(
        &mut gw,
        &format!("/ext/session/{gpk}/gw/combine/login"),
        json!({"id": "4", "params": sign_item(spk, "s0", &f.subs[0], false)}),
    )
    .await;
    assert_eq!(r["code"], 200, "{r}");
}

#[tokio::test]
async fn a_gateway_subscribes_for_each_sub_device_beyond_its_own_allowance() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("a temp dir"), |c| {
        c.broker.max_subscriptions = 4;
    })
    .await;
    let f = fleet(&hub, 3).await;
    let (gpk, spk) = (f.gpk.as_str(), f.spk.as_str());
    let mut gw = gateway(&hub, gpk, "gw", &f.gw).await;
    add_and_login(&mut gw, &f, 3).await;
    // 3 own filters, then 4 per logged-in sub-device: 3 + 12 ≤ 4 × (1 + 3).
    let filters: Vec<String> = (0..3)
        .flat_map(|i| {
            let p = format!("/sys/{spk}/s{i}/thing");
            [
                format!("{p}/service/property/set"),
                format!("{p}/service/+"),
                format!("{p}/event/+/post_reply"),
                format!("{p}/config/push"),
            ]
        })
        .collect();
    let list: Vec<(&str, QoS)> = filters.iter().map(|f| (f.as_str(), QoS::AtMostOnce)).collect();
    let codes = gw.subscribe(5, &list).await;
    assert_eq!(codes.len(), 12);
    assert!(
        codes
            .iter()
            .all(|c| !matches!(c, rmqtt_codec::v3::SubscribeReturnCode::Failure)),
        "{codes:?}"
    );
    // One more is beyond 16.
    let more = format!("/sys/{spk}/s0/thing/config/get_reply");
    let extra = format!("/sys/{spk}/s1/thing/config/get_reply");
    let codes = gw
        .subscribe(6, &[(&more, QoS::AtMostOnce), (&extra, QoS::AtMostOnce)])
        .await;
    assert!(
        !matches!(codes[0], rmqtt_codec::v3::SubscribeReturnCode::Failure),
        "{codes:?}"
    );
    assert!(
        matches!(codes[1], rmqtt_codec::v3::SubscribeReturnCode::Failure),
        "{codes:?}"
    );
}
