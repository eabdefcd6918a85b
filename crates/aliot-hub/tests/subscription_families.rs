//! The remaining forwarded families (cloud-side spec §2.6) reaching a STOMP consumer, each
//! behind its product's flag: batch and history posts, found sub-devices, OTA version reports,
//! topology lifecycle.

use std::collections::BTreeMap;
use std::sync::Arc;

use aliot_hub::config::StompConfig;
use aliot_hub::subscription::{AccessKeys, Family, Relation};
use aliot_protocol::subscription::DEFAULT_GROUP;
use aliot_testkit::{Raw, TestHub, guard, signed};
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const AK: &str = "testid";

#[derive(Debug)]
struct Keys;

impl AccessKeys for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == AK).then(|| "testsecret".to_owned())
    }
}

async fn relate(hub: &TestHub, pk: &str, flags: Vec<Family>) {
    hub.service()
        .subscriptions()
        .set_relation(
            pk,
            Relation {
                consumer_group_ids: vec![DEFAULT_GROUP.into()],
                flags,
            },
        )
        .await
        .expect("a relation");
}

/// A plain STOMP consumer subscribed with ack `auto`.
async fn consumer(hub: &TestHub) -> TcpStream {
    let addr = hub.hub().stomp_plain_addr().expect("plain stomp");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // Spec §2.2 vector: testid / testsecret / 1573489088171.
    let user = format!(
        "families|authMode=aksign,signMethod=hmacsha1,timestamp=1573489088171,authId={AK},consumerGroupId={DEFAULT_GROUP}|"
    );
    let frames = format!(
        "CONNECT\naccept-version:1.2\nlogin:{user}\npasscode:RG+3WYzI9qDD0P9m6ER+maK4yH0=\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/#\nack:auto\n\n\0"
    );
    s.write_all(frames.as_bytes()).await.expect("write");
    s
}

/// Reads MESSAGE frames until one of every topic in `want` came: topic → body.
async fn receive(s: &mut TcpStream, want: &[String]) -> BTreeMap<String, Value> {
    let mut got = BTreeMap::new();
    let mut buf = Vec::new();
    guard("the forwarded messages", async {
        while want.iter().any(|t| !got.contains_key(t)) {
            while let Some(end) = buf.iter().position(|b| *b == 0) {
                let frame: Vec<u8> = buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&frame[..frame.len() - 1]).to_string();
                let text = text.trim_start_matches(['\n', '\r']);
                assert!(!text.starts_with("ERROR"), "{text}");
                if !text.starts_with("MESSAGE") {
                    continue;
                }
                let (head, body) = text.split_once("\n\n").expect("a blank line");
                let topic = head
                    .lines()
                    .find_map(|l| l.strip_prefix("topic:"))
                    .expect("a topic header");
                got.insert(topic.to_owned(), serde_json::from_str(body).expect("a JSON body"));
            }
            if want.iter().all(|t| got.contains_key(t)) {
                break;
            }
            let mut chunk = vec![0u8; 8192];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    got
}

#[tokio::test]
async fn batch_history_found_version_and_topology_are_forwarded() {
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
    relate(
        &hub,
        &pk,
        vec![
            Family::DeviceDataFlag,
            Family::ThingHistoryFlag,
            Family::OtaVersionFlag,
        ],
    )
    .await;
    // A gateway product with the topology family, and a sub-device product.
    let gpk = hub.product().await;
    let gw_secret = hub.register(&gpk, "gw").await;
    let spk = hub
        .service()
        .create_product("subs", None)
        .await
        .expect("a sub-device product")
        .product_key;
    hub.register(&spk, "s0").await;
    relate(
        &hub,
        &gpk,
        vec![Family::DeviceTopoLifeCycleFlag, Family::FoundDeviceListFlag],
    )
    .await;

    let mut s = consumer(&hub).await;
    let mut dev = Raw::online(hub.mqtt, &signed(&pk, &dn, &ds)).await;
    let sys = format!("/sys/{pk}/{dn}/thing");
    let posts = [
        (
            format!("{sys}/event/property/batch/post"),
            json!({"id": "7", "version": "1.0", "method": "thing.event.property.batch.post", "params": {
                "properties": {"Temperature": [{"value": 1, "time": 1000}, {"value": 2, "time": 2000}]},
                "events": {"alarm": [{"value": {"x": 1}, "time": 1500}]}}}),
        ),
        (
            format!("{sys}/event/property/history/post"),
            json!({"id": "8", "version": "1.0", "method": "thing.event.property.history.post", "params": [{
                "identity": {"productKey": pk, "deviceName": dn},
                "properties": {"Temperature": {"value": 5, "time": 1234}},
                "events": {"alarm": {"value": {"x": 2}, "time": 1235}}}]}),
        ),
        (
            format!("/ota/device/inform/{pk}/{dn}"),
            json!({"id": "10", "params": {"version": "1.0.1"}}),
        ),
    ];
    for (topic, body) in &posts {
        dev.publish(topic, &body.to_string(), QoS::AtLeastOnce, 1).await;
    }
    // The gateway reports a sub-device it found.
    let mut gw = Raw::online(hub.mqtt, &signed(&gpk, "gw", &gw_secret)).await;
    let found = json!({"id": "9", "version": "1.0", "method": "thing.list.found", "params": [{"productKey": spk, "deviceName": "s0"}]});
    gw.publish(
        &format!("/sys/{gpk}/gw/thing/list/found"),
        &found.to_string(),
        QoS::AtLeastOnce,
        1,
    )
    .await;
    let (status, v) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{gpk}/devices/gw/topology"),
            Some(json!({"subDevices": [{"productKey": spk, "deviceName": "s0"}]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    let own = format!("/{pk}/{dn}/thing");
    let want = [
        format!("{own}/property/batch/post"),
        format!("{own}/event/batch/post"),
        format!("{own}/event/property/history/post"),
        format!("{own}/event/alarm/history/post"),
        format!("/{gpk}/gw/thing/list/found"),
        format!("/{pk}/{dn}/ota/version/post"),
        format!("/{gpk}/gw/thing/topo/lifecycle"),
    ];
    let got = receive(&mut s, &want).await;

    let batch = &got[&want[0]];
    assert_eq!(batch["productKey"], pk.as_str());
    assert_eq!(batch["deviceName"], dn.as_str());
    assert_eq!(batch["requestId"], "7");
    assert_eq!(batch["payload"]["Temperature"][1]["value"], 2);
    assert_eq!(got[&want[1]]["payload"]["alarm"][0]["value"]["x"], 1);

    let history = &got[&want[2]];
    assert_eq!(history["items"]["Temperature"], json!({"value": 5, "time": 1234}));
    assert_eq!(history["requestId"], "8");
    assert!(history["iotId"].as_str().is_some_and(|s| !s.is_empty()));
    let event = &got[&want[3]];
    assert_eq!(event["identifier"], "alarm");
    assert_eq!(
        (event["value"]["x"].clone(), event["time"].clone()),
        (json!(2), json!(1235))
    );

    let found = &got[&want[4]];
    assert_eq!(found["gwProductKey"], gpk.as_str());
    assert!(found["gwIotId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(found["devices"][0]["deviceName"], "s0");
    assert!(
        found["devices"][0]["iotId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    let version = &got[&want[5]];
    assert_eq!(version["moduleName"], "default");
    assert_eq!(version["moduleVersion"], "1.0.1");
    assert!(version["messageCreateTime"].is_i64());

    let topo = &got[&want[6]];
    assert_eq!(topo["action"], "add");
    assert_eq!(topo["gwDeviceName"], "gw");
    assert_eq!(topo["devices"][0]["productKey"], spk.as_str());
    // Key order: the unit test of `aliot_protocol::forwarded` (a `Value` sorts its keys).
}

#[tokio::test]
async fn families_without_their_flag_are_not_forwarded() {
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
    // Device data only: the history post and the version report go nowhere; the live post does.
    relate(&hub, &pk, vec![Family::DeviceDataFlag]).await;
    let mut s = consumer(&hub).await;
    let mut dev = Raw::online(hub.mqtt, &signed(&pk, &dn, &ds)).await;
    let history = json!({"id": "1", "params": [{"properties": {"Temperature": {"value": 5, "time": 1}}}]});
    dev.publish(
        &format!("/sys/{pk}/{dn}/thing/event/property/history/post"),
        &history.to_string(),
        QoS::AtLeastOnce,
        1,
    )
    .await;
    dev.publish(
        &format!("/ota/device/inform/{pk}/{dn}"),
        &json!({"id": "2", "params": {"version": "2"}}).to_string(),
        QoS::AtLeastOnce,
        2,
    )
    .await;
    let live = json!({"id": "3", "params": {"Temperature": 6}, "method": "thing.event.property.post"});
    dev.publish(
        &format!("/sys/{pk}/{dn}/thing/event/property/post"),
        &live.to_string(),
        QoS::AtLeastOnce,
        3,
    )
    .await;
    let want = [format!("/{pk}/{dn}/thing/event/property/post")];
    let got = receive(&mut s, &want).await;
    assert_eq!(got.len(), 1, "only the live post: {got:?}");
    // The history post and the version report were handled before the live post (one
    // connection, in order) and queued nothing.
    assert_eq!(
        hub.service().subscriptions().forwarded(),
        1,
        "nothing else was queued"
    );
}
