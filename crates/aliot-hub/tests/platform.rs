//! The platform's side of Alink over real sockets: post replies, `_ss=1`, NTP, property set,
//! services over both RRPC styles, raw RRPC.

use std::time::Duration;

use aliot_hub::events::Event;
use aliot_hub::service::Error;
use aliot_testkit::*;
use bytes::Bytes;
use rmqtt_codec::v3::{Packet, QoS};
use serde_json::json;

fn post_topic(dn: &str) -> String {
    format!("/sys/{PK}/{dn}/thing/event/property/post")
}

#[tokio::test]
async fn property_post_replies_echo_string_and_numeric_ids_verbatim() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let reply_topic = format!("{}_reply", post_topic("dev1"));
    dev.subscribe(1, &[(reply_topic.as_str(), QoS::AtLeastOnce)])
        .await;
    let node_id = format!(r#""1|exp-topic|/sys/{PK}/dev1/thing/event/property/post_reply""#);
    for (id, qos) in [
        (node_id.as_str(), QoS::AtMostOnce),
        ("42", QoS::AtLeastOnce),
        (r#""7""#, QoS::AtLeastOnce),
    ] {
        let body = format!(
            r#"{{"id":{id},"version":"1.0","params":{{"Power":"on"}},"method":"thing.event.property.post"}}"#
        );
        dev.publish(&post_topic("dev1"), &body, qos, 9).await;
        if qos == QoS::AtLeastOnce {
            // PUBACK first: the platform handled the message before acknowledging it.
            assert!(
                matches!(dev.recv().await, Some(Packet::PublishAck { packet_id }) if packet_id.get() == 9)
            );
        }
        let reply = dev.publish_in().await;
        assert_eq!(&*reply.topic, reply_topic);
        assert_eq!(reply.qos, qos, "replies go at the QoS of the uplink");
        assert_eq!(
            text(&reply),
            format!(
                r#"{{"code":200,"data":{{}},"id":{id},"message":"success","method":"thing.event.property.post","version":"1.0"}}"#
            )
        );
        if let Some(pid) = reply.packet_id {
            dev.puback(pid).await;
        }
    }
}

#[tokio::test]
async fn property_values_are_remembered_per_property_in_both_forms() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(
        &post_topic("dev1"),
        r#"{"id":"1","params":{"a":1,"b":"x"}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.publish(
        &post_topic("dev1"),
        r#"{"id":"2","params":{"a":{"value":2.5,"time":1524448722000}}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.ping().await;
    let props = hub
        .service()
        .last_properties(PK, "dev1")
        .await
        .expect("remembered");
    assert_eq!(serde_json::Value::Object(props), json!({"a": 2.5, "b": "x"}));
    // Kept after the device goes offline.
    dev.send(Packet::Disconnect).await;
    dev.closed().await;
    assert!(hub.service().last_properties(PK, "dev1").await.is_some());
}

#[tokio::test]
async fn with_ss_1_replies_arrive_without_subscribing() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "ext=1,_ss=1,lan=Python")).await;
    dev.publish(
        &post_topic("dev1"),
        r#"{"id":"3","params":{"t":20.5}}"#,
        QoS::AtLeastOnce,
        1,
    )
    .await;
    assert!(matches!(dev.recv().await, Some(Packet::PublishAck { .. })));
    let reply = dev.publish_in().await;
    assert_eq!(json(&reply)["id"], "3");
    // Without _ss=1 and without a subscription, the reply is not delivered (and said so).
    let mut other = Raw::online(hub.addr, &creds("dev2", "")).await;
    other
        .publish(
            &post_topic("dev2"),
            r#"{"id":"4","params":{}}"#,
            QoS::AtMostOnce,
            0,
        )
        .await;
    let e = hub
        .event(|e| matches!(e, Event::Reply(r) if r.device_name == "dev2"))
        .await;
    let Event::Reply(r) = &*e else { unreachable!() };
    assert!(!r.delivered);
    other.ping().await;
}

#[tokio::test]
async fn sys_ack_0_gets_no_reply() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    dev.publish(
        &post_topic("dev1"),
        r#"{"id":"1","sys":{"ack":0},"params":{"a":1}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.ping().await; // the PINGRESP comes first: no reply was queued
    assert_eq!(
        hub.service()
            .last_properties(PK, "dev1")
            .await
            .and_then(|p| p.get("a").cloned()),
        Some(json!(1))
    );
}

#[tokio::test]
async fn bad_json_gets_460_when_the_id_is_readable_and_an_event_otherwise() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    dev.publish(
        &post_topic("dev1"),
        r#"{"id":"8","params":"oops","method":1}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = dev.publish_in().await;
    assert_eq!(json(&reply)["code"], 460);
    assert_eq!(json(&reply)["id"], "8");
    dev.publish(&post_topic("dev1"), "{not json", QoS::AtLeastOnce, 2)
        .await;
    assert!(
        matches!(dev.recv().await, Some(Packet::PublishAck { .. })),
        "still acknowledged"
    );
    hub.event(|e| matches!(e, Event::Problem(p) if !p.closed && p.reason.contains("JSON")))
        .await;
    dev.ping().await;
}

#[tokio::test]
async fn unknown_sys_methods_get_an_alink_error_reply() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    dev.publish(
        &format!("/sys/{PK}/dev1/thing/teleport/now"),
        r#"{"id":"5","params":{}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = dev.publish_in().await;
    assert_eq!(&*reply.topic, format!("/sys/{PK}/dev1/thing/teleport/now_reply"));
    assert_eq!(json(&reply)["code"], 6203);
    // Events and other posts are answered with 200.
    dev.publish(
        &format!("/sys/{PK}/dev1/thing/event/alarm/post"),
        r#"{"id":"6","params":{"value":{}}}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = dev.publish_in().await;
    assert_eq!(
        (json(&reply)["code"].clone(), json(&reply)["method"].clone()),
        (json!(200), json!("thing.event.alarm.post"))
    );
    dev.publish(
        &format!("/sys/{PK}/dev1/thing/deviceinfo/update"),
        r#"{"id":"7","params":[]}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    assert_eq!(json(&dev.publish_in().await)["code"], 200);
}

#[tokio::test]
async fn ntp_requests_are_answered() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let response = format!("/ext/ntp/{PK}/dev1/response");
    dev.subscribe(1, &[(response.as_str(), QoS::AtMostOnce)]).await;
    dev.publish(
        &format!("/ext/ntp/{PK}/dev1/request"),
        r#"{"deviceSendTime":"1571724098000"}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let r = dev.publish_in().await;
    assert_eq!(&*r.topic, response);
    let v = json(&r);
    assert_eq!(v["deviceSendTime"], "1571724098000");
    let recv: u64 = v["serverRecvTime"].as_str().expect("string").parse().expect("ms");
    let send: u64 = v["serverSendTime"].as_str().expect("string").parse().expect("ms");
    assert!(send >= recv);
    // A number is echoed as a number.
    dev.publish(
        &format!("/ext/ntp/{PK}/dev1/request"),
        r#"{"deviceSendTime":5}"#,
        QoS::AtMostOnce,
        0,
    )
    .await;
    assert_eq!(json(&dev.publish_in().await)["deviceSendTime"], 5);
}

#[tokio::test]
async fn set_property_round_trip_and_timeout() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    let broker = hub.service().clone();
    let call = tokio::spawn(async move {
        broker
            .set_property(PK, "dev1", json!({"temperature": 30.5}), Duration::from_secs(10))
            .await
    });
    let set = dev.publish_in().await;
    assert_eq!(&*set.topic, format!("/sys/{PK}/dev1/thing/service/property/set"));
    let req = json(&set);
    assert_eq!(req["method"], "thing.service.property.set");
    assert_eq!(req["params"]["temperature"], 30.5);
    let id = req["id"].as_str().expect("string id").to_owned();
    let answer = format!(r#"{{"id":"{id}","code":200,"data":{{}}}}"#);
    dev.publish(
        &format!("/sys/{PK}/dev1/thing/service/property/set_reply"),
        &answer,
        QoS::AtLeastOnce,
        4,
    )
    .await;
    let reply = call.await.expect("join").expect("answered");
    assert_eq!(reply, json!({"id": id, "code": 200, "data": {}}));

    // A device that does not answer: the call times out and leaves nothing pending.
    let err = hub
        .service()
        .set_property(PK, "dev1", json!({"x": 1}), Duration::from_millis(200))
        .await;
    assert!(matches!(err, Err(Error::Timeout { .. })), "{err:?}");
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_pending_calls 0")
    );

    // Offline and unknown devices.
    assert!(matches!(
        hub.service()
            .set_property(PK, "dev2", json!({}), Duration::from_secs(1))
            .await,
        Err(Error::DeviceOffline { .. })
    ));
    assert!(matches!(
        hub.service()
            .set_property(PK, "ghost", json!({}), Duration::from_secs(1))
            .await,
        Err(Error::Registry(aliot_hub::registry::Error::DeviceNotFound { .. }))
    ));
}

#[tokio::test]
async fn set_property_needs_a_subscription_without_ss() {
    let hub = BrokerHub::start().await;
    let _dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let err = hub
        .service()
        .set_property(PK, "dev1", json!({}), Duration::from_secs(1))
        .await;
    assert!(matches!(err, Err(Error::NotSubscribed { .. })), "{err:?}");
}

#[tokio::test]
async fn a_call_fails_at_once_when_the_device_goes_offline() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    let broker = hub.service().clone();
    let call = tokio::spawn(async move {
        broker
            .set_property(PK, "dev1", json!({}), Duration::from_secs(60))
            .await
    });
    dev.publish_in().await;
    dev.send(Packet::Disconnect).await;
    dev.closed().await;
    hub.offline("dev1").await;
    assert!(matches!(
        call.await.expect("join"),
        Err(Error::DeviceOffline { .. })
    ));
}

#[tokio::test]
async fn services_use_ext_rrpc_when_the_device_announces_ext_1() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "ext=1,_ss=1")).await;
    let broker = hub.service().clone();
    let call = tokio::spawn(async move {
        broker
            .invoke_service(PK, "dev1", "SetWeight", json!({"w": 2}), Duration::from_secs(10))
            .await
    });
    let req = dev.publish_in().await;
    let topic = req.topic.to_string();
    let prefix = "/ext/rrpc/";
    let suffix = format!("/sys/{PK}/dev1/thing/service/SetWeight");
    assert!(topic.starts_with(prefix) && topic.ends_with(&suffix), "{topic}");
    let v = json(&req);
    assert_eq!(v["method"], "thing.service.SetWeight");
    let answer = format!(r#"{{"id":{},"code":200,"data":{{"result":1}}}}"#, v["id"]);
    dev.publish(&topic, &answer, QoS::AtMostOnce, 0).await;
    let reply = call.await.expect("join").expect("answered");
    assert_eq!(reply["data"]["result"], 1);
}

#[tokio::test]
async fn services_use_sys_rrpc_without_ext_and_need_no_subscription() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let broker = hub.service().clone();
    let call = tokio::spawn(async move {
        broker
            .invoke_service(PK, "dev1", "Reboot", json!({}), Duration::from_secs(10))
            .await
    });
    let req = dev.publish_in().await;
    let prefix = format!("/sys/{PK}/dev1/rrpc/request/");
    let msg_id = req
        .topic
        .strip_prefix(&prefix)
        .expect("rrpc request topic")
        .to_owned();
    assert_eq!(json(&req)["method"], "thing.service.Reboot");
    let answer = format!(r#"{{"id":"{msg_id}","code":200,"data":{{}}}}"#);
    dev.publish(
        &format!("/sys/{PK}/dev1/rrpc/response/{msg_id}"),
        &answer,
        QoS::AtMostOnce,
        0,
    )
    .await;
    let reply = call.await.expect("join").expect("answered");
    assert_eq!(reply["code"], 200);
    assert!(matches!(
        hub.service()
            .invoke_service(PK, "dev1", "a/b", json!({}), Duration::from_secs(1))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    // An identifier whose call the device could not answer within the topic and method caps
    // is refused at once (it timed out before, the device's answer being refused).
    let long = "S".repeat(120);
    let refused = hub
        .service()
        .invoke_service(PK, "dev1", &long, json!({}), Duration::from_secs(3600));
    assert!(matches!(
        aliot_testkit::guard("the refusal", refused).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn raw_rrpc_round_trip_and_timeout() {
    let hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let broker = hub.service().clone();
    let call = tokio::spawn(async move {
        broker
            .rrpc(
                PK,
                "dev1",
                Bytes::from_static(&[0x01, 0xff]),
                Duration::from_secs(10),
            )
            .await
    });
    let req = dev.publish_in().await;
    assert_eq!(&req.payload[..], &[0x01, 0xff]);
    let msg_id = req.topic.rsplit('/').next().expect("id").to_owned();
    // A response to another id does not complete the call.
    dev.publish(
        &format!("/sys/{PK}/dev1/rrpc/response/999999"),
        "stray",
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.publish(
        &format!("/sys/{PK}/dev1/rrpc/response/{msg_id}"),
        "pong",
        QoS::AtMostOnce,
        0,
    )
    .await;
    assert_eq!(
        call.await.expect("join").expect("answered"),
        Bytes::from_static(b"pong")
    );

    let err = hub
        .service()
        .rrpc(
            PK,
            "dev1",
            Bytes::from_static(b"ping"),
            Duration::from_millis(100),
        )
        .await;
    assert!(matches!(err, Err(Error::Timeout { .. })));
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_calls_timed_out_total 1")
    );
}

#[tokio::test]
async fn uplinks_are_reported_as_events_with_text_or_base64_payloads() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(&format!("/{PK}/dev1/user/update"), "hello", QoS::AtMostOnce, 0)
        .await;
    let e = hub.event(|e| matches!(e, Event::Uplink(_))).await;
    let Event::Uplink(u) = &*e else { unreachable!() };
    assert_eq!(
        (u.topic.as_str(), u.payload.as_deref()),
        (&*format!("/{PK}/dev1/user/update"), Some("hello"))
    );
    dev.send(Packet::Publish(Box::new(rmqtt_codec::types::Publish {
        dup: false,
        retain: false,
        qos: QoS::AtMostOnce,
        topic: format!("/{PK}/dev1/user/update").into(),
        packet_id: None,
        payload: Bytes::from_static(&[0xff, 0xfe]),
        properties: None,
    })))
    .await;
    let e = hub.event(|e| matches!(e, Event::Uplink(_))).await;
    let Event::Uplink(u) = &*e else { unreachable!() };
    assert_eq!(u.payload_base64.as_deref(), Some("//4="));
}

/// Hardening 2: a property post that would take the device past its limits on remembered
/// properties is answered 6106 (with its id) and none of its values is kept.
#[tokio::test]
async fn a_post_past_the_devices_property_budget_gets_6106_and_is_not_kept() {
    let registry = std::sync::Arc::new(MemoryRegistry::with_property_limits(
        aliot_hub::registry::PropertyLimits {
            max_identifiers: 3,
            max_bytes: 1024,
        },
    ));
    registry.add(PK, "dev1", SECRET);
    let hub = BrokerHub::serve(
        aliot_hub::BrokerConfig::default(),
        registry,
        "127.0.0.1:0".parse().expect("an address"),
        None,
    );
    let mut dev = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
    for (id, params, code) in [
        ("1", json!({"a": 1, "b": 2}), 200),
        ("2", json!({"a": 5, "c": 3, "d": 4}), 6106),
        ("3", json!({"a": "x".repeat(2000)}), 6106),
        ("4", json!({"a": 6, "c": 7}), 200),
    ] {
        let body = json!({"id": id, "params": params}).to_string();
        dev.publish(&post_topic("dev1"), &body, QoS::AtMostOnce, 0).await;
        let reply = json(&dev.publish_in().await);
        assert_eq!(
            (reply["id"].as_str(), reply["code"].as_u64()),
            (Some(id), Some(code)),
            "{reply}"
        );
    }
    let kept = hub
        .service()
        .last_properties(PK, "dev1")
        .await
        .expect("remembered");
    assert_eq!(serde_json::Value::Object(kept), json!({"a": 6, "b": 2, "c": 7}));
}
