//! MQTT-side behaviour of the hub over real sockets: CONNECT verdicts, ACL, sessions, QoS 1.

use std::num::NonZeroU16;

use aliot_hub::events::Event;
use aliot_hub::service::Error;
use aliot_hub::{BrokerConfig, PublishOutcome};
use aliot_protocol::sign::{HexCase, SignMethod};
use aliot_testkit::*;
use bytes::{Bytes, BytesMut};
use rmqtt_codec::v3::{Packet, QoS, SubscribeReturnCode};
use tokio_util::codec::Encoder;

fn code(ack: &rmqtt_codec::v3::ConnectAck) -> u8 {
    u8::from(ack.return_code)
}

#[tokio::test]
async fn a_signed_connect_is_accepted_and_reported_online() {
    let mut hub = BrokerHub::start().await;
    let (mut dev, ack) = Raw::connect(hub.addr, &creds("dev1", ""), true).await;
    assert_eq!(code(&ack), 0);
    assert!(!ack.session_present);
    let e = hub.event(|e| matches!(e, Event::Status(_))).await;
    let Event::Status(s) = &*e else { unreachable!() };
    assert_eq!(
        (s.status, s.product_key.as_str(), s.device_name.as_str()),
        ("online", PK, "dev1")
    );
    assert_eq!(s.iot_id, "iot-dev1");
    assert_eq!(s.client_ip, "127.0.0.1");
    let json = serde_json::to_value(&*e).expect("json");
    for key in [
        "status",
        "iotId",
        "productKey",
        "deviceName",
        "time",
        "utcTime",
        "lastTime",
        "utcLastTime",
        "clientIp",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    let info = hub.service().session(PK, "dev1").expect("online");
    assert_eq!(info.keep_alive, 60);
    assert!(hub.service().online_devices(PK).contains(&"dev1".to_owned()));
    assert_eq!(hub.registry.logins().len(), 1);
    dev.send(Packet::Disconnect).await;
    dev.closed().await;
    let e = hub.offline("dev1").await;
    let Event::Status(s) = &*e else { unreachable!() };
    assert!(s.reason.as_deref().unwrap_or_default().contains("DISCONNECT"));
    assert!(hub.service().session(PK, "dev1").is_none());
}

#[tokio::test]
async fn a_wrong_secret_gets_connack_4_and_the_secret_is_never_reported() {
    let mut hub = BrokerHub::start().await;
    let bad = creds_with(&Signing {
        device_name: "dev1",
        secret: "wrong-secret",
        prefix: "x",
        method: SignMethod::HmacSha1,
        timestamp: None,
        extra: "",
        case: HexCase::Lower,
        ..Signing::default()
    });
    let (mut dev, ack) = Raw::connect(hub.addr, &bad, true).await;
    assert_eq!(code(&ack), 4);
    dev.closed().await;
    let e = hub.event(|e| matches!(e, Event::Refused(_))).await;
    let text = serde_json::to_string(&*e).expect("json");
    assert!(text.contains("signature mismatch"), "{text}");
    assert!(!text.contains(&bad.password) && !text.contains(SECRET), "{text}");
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_connack_total{code=\"4\"} 1")
    );
}

#[tokio::test]
async fn unknown_devices_get_4_and_disabled_devices_get_5() {
    let hub = BrokerHub::start().await;
    let unknown = creds_with(&Signing {
        device_name: "nobody",
        prefix: "p",
        method: SignMethod::HmacSha1,
        timestamp: None,
        extra: "",
        case: HexCase::Lower,
        ..Signing::default()
    });
    assert_eq!(code(&Raw::connect(hub.addr, &unknown, true).await.1), 4);
    hub.registry.set_enabled_now(PK, "dev2", false);
    assert_eq!(code(&Raw::connect(hub.addr, &creds("dev2", ""), true).await.1), 5);
}

/// Hardening 15: whether a device exists or is disabled is told only to a caller who proves its
/// secret. A wrong signature gets 4 whatever the device's state.
#[tokio::test]
async fn a_disabled_device_is_revealed_only_to_a_correct_signature() {
    let mut hub = BrokerHub::start().await;
    hub.registry.set_enabled_now(PK, "dev2", false);
    let wrong = creds_with(&Signing {
        device_name: "dev2",
        secret: "not-the-secret",
        ..Signing::default()
    });
    assert_eq!(code(&Raw::connect(hub.addr, &wrong, true).await.1), 4);
    let e = hub.event(|e| matches!(e, Event::Refused(_))).await;
    let Event::Refused(r) = &*e else { unreachable!() };
    assert!(r.reason.contains("signature"), "{}", r.reason);
    assert_eq!(code(&Raw::connect(hub.addr, &creds("dev2", ""), true).await.1), 5);
}

#[tokio::test]
async fn a_malformed_client_id_gets_2() {
    let hub = BrokerHub::start().await;
    let mut c = creds("dev1", "");
    c.client_id = "no-parameters-here".into();
    assert_eq!(code(&Raw::connect(hub.addr, &c, true).await.1), 2);
    let mut c = creds("dev1", "");
    c.client_id = "p|securemode=42|".into();
    assert_eq!(code(&Raw::connect(hub.addr, &c, true).await.1), 2);
}

#[tokio::test]
async fn keepalive_outside_30_to_1200_gets_2() {
    let hub = BrokerHub::start().await;
    for keep_alive in [20, 1201] {
        let mut dev = Raw::open(hub.addr).await;
        dev.send(connect_packet(&creds("dev1", ""), keep_alive, true))
            .await;
        assert_eq!(code(&dev.connack().await), 2, "keepalive {keep_alive}");
    }
}

/// Encodes a CONNECT with the codec, then rewrites its protocol level byte.
fn connect_with_level(c: &Creds, level: u8, name_is_mqisdp: bool) -> BytesMut {
    let mut out = BytesMut::new();
    let mut codec = rmqtt_codec::v3::Codec::new(0);
    let mut packet = connect_packet(c, 60, true);
    if name_is_mqisdp && let Packet::Connect(connect) = &mut packet {
        connect.protocol = rmqtt_codec::types::Protocol(3);
    }
    codec.encode(packet, &mut out).expect("encode");
    // Fixed header (type byte and a 1..4 byte remaining length), protocol name length (2) and
    // name (4 or 6 bytes).
    let varint = out[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("remaining length")
        + 1;
    let at = 1 + varint + 2 + if name_is_mqisdp { 6 } else { 4 };
    out[at] = level;
    out
}

#[tokio::test]
async fn unsupported_protocol_levels_get_1_and_mqtt_3_1_is_accepted() {
    let mut hub = BrokerHub::start().await;
    for level in [5, 6] {
        let mut dev = Raw::open(hub.addr).await;
        dev.write_raw(&connect_with_level(&creds("dev1", ""), level, false))
            .await;
        assert_eq!(code(&dev.connack().await), 1, "level {level}");
        dev.closed().await;
    }
    let e = hub
        .event(|e| matches!(e, Event::Refused(r) if r.code == Some(1)))
        .await;
    let Event::Refused(r) = &*e else { unreachable!() };
    assert!(r.reason.contains("MQTT 5.0"), "{}", r.reason);
    let mut dev = Raw::open(hub.addr).await;
    dev.write_raw(&connect_with_level(&creds("dev1", ""), 3, true))
        .await;
    assert_eq!(code(&dev.connack().await), 0, "MQTT 3.1");
}

#[tokio::test]
async fn packets_sent_right_behind_the_connect_are_served() {
    let hub = BrokerHub::start().await;
    let mut bytes = BytesMut::new();
    let mut codec = rmqtt_codec::v3::Codec::new(0);
    codec
        .encode(connect_packet(&creds("dev1", ""), 60, true), &mut bytes)
        .expect("encode");
    codec.encode(Packet::PingRequest, &mut bytes).expect("encode");
    let mut dev = Raw::open(hub.addr).await;
    dev.write_raw(&bytes).await; // one write: CONNECT and PINGREQ in the same segment
    assert_eq!(code(&dev.connack().await), 0);
    assert!(matches!(dev.recv().await, Some(Packet::PingResponse)));
}

#[tokio::test]
async fn real_sdk_credential_variants_are_accepted() {
    let hub = BrokerHub::start().await;
    // C SDK 3.x: hmacsha256, UPPERCASE hex, the fixed 2050 timestamp in ms.
    let c_sdk = creds_with(&Signing {
        device_name: "dev1",
        prefix: &format!("{PK}.dev1"),
        method: SignMethod::HmacSha256,
        timestamp: Some("2524608000000"),
        extra: "_v=sdk-c-3.0.1,lan=C,gw=0,ext=0",
        case: HexCase::Upper,
        ..Signing::default()
    });
    assert!(c_sdk.password.chars().all(|c| !c.is_ascii_lowercase()));
    // Python SDK: `pk&dn` prefix, seconds timestamp, _ss=1.
    let python = creds_with(&Signing {
        device_name: "dev2",
        prefix: &format!("{PK}&dev2"),
        method: SignMethod::HmacSha1,
        timestamp: Some("1700000000"),
        extra: "ext=1,_ss=1,lan=Python,_v=1.2.13",
        case: HexCase::Lower,
        ..Signing::default()
    });
    // No signmethod at all: hmacmd5 (old documentation).
    let content = aliot_protocol::sign::sign_content("legacy", "dev3", PK, None);
    let md5 = Creds {
        client_id: "legacy|securemode=3|".into(),
        username: format!("dev3&{PK}"),
        password: SignMethod::HmacMd5.hex(SECRET.as_bytes(), content.as_bytes(), HexCase::Upper),
    };
    for c in [c_sdk, python, md5] {
        let (_dev, ack) = Raw::connect(hub.addr, &c, false).await;
        assert_eq!(code(&ack), 0, "{}", c.client_id);
    }
}

#[tokio::test]
async fn subscriptions_outside_the_device_get_suback_0x80_and_qos_2_is_granted_as_1() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let status = dev
        .subscribe(
            1,
            &[
                (format!("/{PK}/dev1/user/get").as_str(), QoS::ExactlyOnce),
                (format!("/{PK}/dev2/user/get").as_str(), QoS::AtLeastOnce),
                ("#", QoS::AtMostOnce),
                (format!("/sys/{PK}/+/thing/#").as_str(), QoS::AtMostOnce),
                (format!("/sys/{PK}/dev1/thing/#").as_str(), QoS::AtMostOnce),
            ],
        )
        .await;
    assert_eq!(
        status,
        vec![
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Success(QoS::AtMostOnce),
        ]
    );
    let e = hub.event(|e| matches!(e, Event::AclDenied(_))).await;
    let Event::AclDenied(d) = &*e else { unreachable!() };
    assert_eq!(
        (d.action, d.topic.as_str()),
        ("subscribe", &*format!("/{PK}/dev2/user/get"))
    );
    // The connection stays usable.
    dev.ping().await;
}

#[tokio::test]
async fn publishing_outside_the_device_closes_the_connection() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(
        &format!("/sys/{PK}/dev2/thing/event/property/post"),
        "{}",
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.closed().await;
    let e = hub.event(|e| matches!(e, Event::AclDenied(_))).await;
    let Event::AclDenied(d) = &*e else { unreachable!() };
    assert_eq!(d.action, "publish");
    hub.offline("dev1").await;
}

#[tokio::test]
async fn the_subscription_limit_is_enforced() {
    let config = BrokerConfig {
        max_subscriptions: 2,
        ..BrokerConfig::default()
    };
    let hub = BrokerHub::start_with(config).await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    let f = |n: u32| format!("/{PK}/dev1/user/t{n}");
    let status = dev
        .subscribe(1, &[(&f(1), QoS::AtMostOnce), (&f(2), QoS::AtMostOnce)])
        .await;
    assert!(
        status
            .iter()
            .all(|s| matches!(s, SubscribeReturnCode::Success(_)))
    );
    // Re-subscribing an existing filter is not a new subscription.
    let status = dev
        .subscribe(2, &[(&f(3), QoS::AtMostOnce), (&f(1), QoS::AtLeastOnce)])
        .await;
    assert_eq!(
        status,
        vec![
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Success(QoS::AtLeastOnce)
        ]
    );
    // UNSUBSCRIBE frees a place.
    dev.send(Packet::Unsubscribe {
        packet_id: NonZeroU16::MIN,
        topic_filters: vec![f(2).into()],
    })
    .await;
    assert!(matches!(dev.recv().await, Some(Packet::UnsubscribeAck { .. })));
    let status = dev.subscribe(3, &[(&f(3), QoS::AtMostOnce)]).await;
    assert_eq!(status, vec![SubscribeReturnCode::Success(QoS::AtMostOnce)]);
    assert_eq!(
        hub.service().session(PK, "dev1").map(|s| s.subscriptions),
        Some(2)
    );
}

#[tokio::test]
async fn a_qos_2_publish_closes_the_connection() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(&format!("/{PK}/dev1/user/update"), "x", QoS::ExactlyOnce, 7)
        .await;
    dev.closed().await;
    hub.event(|e| matches!(e, Event::Problem(p) if p.closed && p.reason.contains("QoS 2")))
        .await;
}

#[tokio::test]
async fn a_second_login_closes_the_first_connection() {
    let mut hub = BrokerHub::start().await;
    let mut first = Raw::online(hub.addr, &creds("dev1", "")).await;
    hub.online("dev1").await;
    let mut second = Raw::online(hub.addr, &creds("dev1", "")).await;
    first.closed().await;
    let e = hub.event(|e| matches!(e, Event::Kicked(_))).await;
    let Event::Kicked(k) = &*e else { unreachable!() };
    assert_eq!(k.device_name, "dev1");
    // The second connection is the device now.
    second.ping().await;
    assert!(hub.service().is_online(PK, "dev1"));
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_duplicate_logins_total 1")
    );
}

#[tokio::test]
async fn retain_and_will_are_accepted_and_ignored() {
    let hub = BrokerHub::start().await;
    let c = creds("dev1", "_ss=1");
    let mut packet = connect_packet(&c, 60, true);
    if let Packet::Connect(connect) = &mut packet {
        connect.last_will = Some(rmqtt_codec::v3::LastWill {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: format!("/{PK}/dev1/user/will").into(),
            message: Bytes::from_static(b"bye"),
        });
    }
    let mut dev = Raw::open(hub.addr).await;
    dev.send(packet).await;
    assert_eq!(code(&dev.connack().await), 0);
    dev.send(Packet::Publish(Box::new(rmqtt_codec::types::Publish {
        dup: false,
        retain: true,
        qos: QoS::AtLeastOnce,
        topic: format!("/sys/{PK}/dev1/thing/event/property/post").into(),
        packet_id: NonZeroU16::new(3),
        payload: Bytes::from_static(br#"{"id":"1","params":{"a":1}}"#),
        properties: None,
    })))
    .await;
    assert!(matches!(dev.recv().await, Some(Packet::PublishAck { packet_id }) if packet_id.get() == 3));
    let reply = dev.publish_in().await;
    assert!(!reply.retain);
}

#[tokio::test]
async fn an_oversized_packet_closes_the_connection() {
    let config = BrokerConfig {
        max_packet_size: 2048,
        ..BrokerConfig::default()
    };
    let mut hub = BrokerHub::start_with(config).await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.publish(
        &format!("/{PK}/dev1/user/update"),
        &"x".repeat(4096),
        QoS::AtMostOnce,
        0,
    )
    .await;
    dev.closed().await;
    hub.event(|e| matches!(e, Event::Problem(p) if p.reason.contains("exceeds")))
        .await;
}

#[tokio::test]
async fn malformed_packets_close_the_connection_without_a_panic() {
    let hub = BrokerHub::start().await;
    // Garbage instead of CONNECT.
    let mut dev = Raw::open(hub.addr).await;
    dev.write_raw(&[0x10, 0x04, 0xff, 0xff, 0xff, 0xff]).await;
    dev.closed().await;
    // A packet type that does not exist, after a good CONNECT.
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    dev.write_raw(&[0xf0, 0x00]).await;
    dev.closed().await;
    // A PUBLISH that is not CONNECT as first packet.
    let mut dev = Raw::open(hub.addr).await;
    dev.send(Packet::PingRequest).await;
    dev.closed().await;
    // The hub still serves.
    Raw::online(hub.addr, &creds("dev2", "")).await.ping().await;
}

#[tokio::test]
async fn a_silent_socket_is_closed_at_the_connect_deadline() {
    let hub = BrokerHub::start_with(BrokerConfig {
        connect_timeout_secs: 1,
        ..BrokerConfig::default()
    })
    .await;
    let mut dev = Raw::open(hub.addr).await;
    dev.closed().await;
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_connect_timeouts_total 1")
    );
}

#[tokio::test]
async fn silence_for_one_and_a_half_keepalives_closes_the_connection() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::open(hub.addr).await;
    dev.send(connect_packet(&creds("dev1", ""), 30, true)).await;
    assert_eq!(code(&dev.connack().await), 0);
    hub.online("dev1").await;
    // From here on nothing happens on the sockets: paused time jumps to the hub's keepalive
    // deadline (45 s) as soon as everything is idle.
    tokio::time::pause();
    assert!(dev.recv_unguarded().await.is_none());
    let e = hub.offline("dev1").await;
    let Event::Status(s) = &*e else { unreachable!() };
    assert!(
        s.reason.as_deref().unwrap_or_default().contains("keepalive"),
        "{:?}",
        s.reason
    );
}

#[tokio::test]
async fn clean_session_0_gets_its_offline_qos1_messages_on_reconnect() {
    let mut hub = BrokerHub::start().await;
    let c = creds("dev1", "");
    let topic = format!("/{PK}/dev1/user/get");
    let (mut dev, ack) = Raw::connect(hub.addr, &c, false).await;
    assert_eq!(code(&ack), 0);
    dev.subscribe(1, &[(&topic, QoS::AtLeastOnce)]).await;
    dev.send(Packet::Disconnect).await;
    dev.closed().await;
    hub.offline("dev1").await;

    let b = hub.service().clone();
    let b = &b;
    assert_eq!(
        b.publish(PK, "dev1", &topic, Bytes::from_static(b"m1"), 1)
            .await
            .expect("queued"),
        PublishOutcome::Queued
    );
    assert_eq!(
        b.publish(PK, "dev1", &topic, Bytes::from_static(b"m2"), 1)
            .await
            .expect("queued"),
        PublishOutcome::Queued
    );
    assert!(matches!(
        b.publish(PK, "dev1", &topic, Bytes::from_static(b"q0"), 0).await,
        Err(Error::DeviceOffline { .. })
    ));
    let other = format!("/{PK}/dev1/user/other");
    assert_eq!(
        b.publish(PK, "dev1", &other, Bytes::new(), 1).await.expect("ok"),
        PublishOutcome::NotSubscribed
    );
    assert!(b.render_metrics().contains("aliot_hub_offline_queue_messages 2"));

    let (mut dev, ack) = Raw::connect(hub.addr, &c, false).await;
    assert_eq!(code(&ack), 0);
    assert!(ack.session_present);
    for want in ["m1", "m2"] {
        let p = dev.publish_in().await;
        assert_eq!((text(&p).as_str(), p.qos), (want, QoS::AtLeastOnce));
        dev.puback(p.packet_id.expect("pid")).await;
    }
    // The subscription survived too: a live publish arrives.
    assert_eq!(
        b.publish(PK, "dev1", &topic, Bytes::from_static(b"live"), 0)
            .await
            .expect("ok"),
        PublishOutcome::Delivered
    );
    assert_eq!(text(&dev.publish_in().await), "live");

    // Clean session 1 discards everything.
    dev.send(Packet::Disconnect).await;
    dev.closed().await;
    hub.offline("dev1").await;
    b.publish(PK, "dev1", &topic, Bytes::from_static(b"lost"), 1)
        .await
        .expect("queued");
    let (mut dev, ack) = Raw::connect(hub.addr, &c, true).await;
    assert!(!ack.session_present);
    dev.ping().await;
}

#[tokio::test]
async fn unacknowledged_qos1_messages_are_resent_with_dup_and_the_same_packet_id() {
    let mut hub = BrokerHub::start().await;
    let c = creds("dev1", "");
    let topic = format!("/{PK}/dev1/user/get");
    let (mut dev, _) = Raw::connect(hub.addr, &c, false).await;
    dev.subscribe(1, &[(&topic, QoS::AtLeastOnce)]).await;
    hub.service()
        .publish(PK, "dev1", &topic, Bytes::from_static(b"once"), 1)
        .await
        .expect("delivered");
    let first = dev.publish_in().await;
    assert!(!first.dup);
    drop(dev); // no PUBACK
    hub.offline("dev1").await;
    let (mut dev, ack) = Raw::connect(hub.addr, &c, false).await;
    assert!(ack.session_present);
    let again = dev.publish_in().await;
    assert!(again.dup);
    assert_eq!(
        (again.packet_id, text(&again)),
        (first.packet_id, "once".to_owned())
    );
    dev.puback(again.packet_id.expect("pid")).await;
    dev.ping().await;
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_qos1_resent_total 1")
    );
}

#[tokio::test]
async fn a_slow_qos1_consumer_is_disconnected_and_keeps_its_messages() {
    let config = BrokerConfig {
        outbound_queue_capacity: 3,
        max_inflight: 1,
        ..BrokerConfig::default()
    };
    let mut hub = BrokerHub::start_with(config).await;
    let c = creds("dev1", "");
    let topic = format!("/{PK}/dev1/user/get");
    let (mut dev, _) = Raw::connect(hub.addr, &c, false).await;
    dev.subscribe(1, &[(&topic, QoS::AtLeastOnce)]).await;
    let b = hub.service().clone();
    let b = &b;
    // One in flight (never acknowledged), three queued, the fifth overflows.
    b.publish(PK, "dev1", &topic, Bytes::from_static(b"0"), 1)
        .await
        .expect("delivered");
    assert_eq!(text(&dev.publish_in().await), "0");
    for i in 1..=3 {
        assert_eq!(
            b.publish(PK, "dev1", &topic, Bytes::from(i.to_string()), 1)
                .await
                .expect("ok"),
            PublishOutcome::Delivered
        );
    }
    // QoS 0 over the limit is dropped.
    assert!(matches!(
        b.publish(PK, "dev1", &topic, Bytes::from_static(b"q0"), 0).await,
        Err(Error::QueueFull { .. })
    ));
    assert_eq!(
        b.publish(PK, "dev1", &topic, Bytes::from_static(b"4"), 1)
            .await
            .expect("ok"),
        PublishOutcome::Queued
    );
    dev.closed().await;
    let e = hub.offline("dev1").await;
    let Event::Status(s) = &*e else { unreachable!() };
    assert!(s.reason.as_deref().unwrap_or_default().contains("slow consumer"));
    let metrics = b.render_metrics();
    assert!(
        metrics.contains("aliot_hub_slow_consumer_disconnects_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("aliot_hub_qos0_dropped_total 1"), "{metrics}");
    // Everything comes back, in order, the unacknowledged one first with DUP.
    let (mut dev, ack) = Raw::connect(hub.addr, &c, false).await;
    assert!(ack.session_present);
    for want in ["0", "1", "2", "3", "4"] {
        let p = dev.publish_in().await;
        assert_eq!(text(&p), want);
        assert_eq!(p.dup, want == "0");
        dev.puback(p.packet_id.expect("pid")).await;
    }
}

#[tokio::test]
async fn platform_publish_checks_its_arguments() {
    let hub = BrokerHub::start().await;
    let b = hub.service().clone();
    let b = &b;
    let own = format!("/{PK}/dev1/user/get");
    assert!(matches!(
        b.publish(PK, "dev1", &own, Bytes::new(), 2).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.publish(PK, "dev1", &format!("/{PK}/dev2/user/get"), Bytes::new(), 0)
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.publish(PK, "ghost", &format!("/{PK}/ghost/user/get"), Bytes::new(), 0)
            .await,
        Err(Error::Registry(aliot_hub::registry::Error::DeviceNotFound { .. }))
    ));
    assert!(matches!(
        b.publish(PK, "dev1", &own, Bytes::new(), 1).await,
        Err(Error::DeviceOffline { .. })
    ));
    let _dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    assert_eq!(
        b.publish(PK, "dev1", &own, Bytes::new(), 1).await.expect("ok"),
        PublishOutcome::NotSubscribed
    );
}

#[tokio::test]
async fn the_admin_can_disconnect_a_device() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    hub.online("dev1").await;
    assert!(hub.service().disconnect(PK, "dev1"));
    dev.closed().await;
    hub.offline("dev1").await;
    assert!(!hub.service().disconnect(PK, "dev1"));
}

#[tokio::test]
async fn shutdown_closes_connections_and_serve_returns() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    hub.online("dev1").await;
    hub.stop().await;
    dev.closed().await;
    assert!(
        tokio::net::TcpStream::connect(hub.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_connection_limit_closes_extra_connections() {
    let hub = BrokerHub::start_with(BrokerConfig {
        max_connections: 1,
        ..BrokerConfig::default()
    })
    .await;
    let mut first = Raw::online(hub.addr, &creds("dev1", "")).await;
    let mut second = Raw::open(hub.addr).await;
    second.closed().await;
    first.ping().await;
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_connections_rejected_total 1")
    );
}

#[tokio::test]
async fn a_rumqttc_client_posts_properties_and_gets_the_reply() {
    use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, PublishOptions, QoS as RQoS};
    let hub = BrokerHub::start().await;
    let c = creds("dev1", "");
    let mut opts = MqttOptions::new(
        c.client_id.clone(),
        rumqttc::Broker::tcp("127.0.0.1", hub.addr.port()),
    );
    opts.set_credentials(c.username.clone(), c.password.clone());
    opts.set_keep_alive(60);
    let (client, mut eventloop) = AsyncClient::builder(opts).build();
    let reply_topic = format!("/sys/{PK}/dev1/thing/event/property/post_reply");
    client
        .subscribe(reply_topic.clone(), RQoS::AtLeastOnce)
        .await
        .expect("subscribe");
    // rumqttc sends queued PUBLISHes before SUBSCRIBEs: wait for the SUBACK before posting.
    tokio::time::timeout(GUARD, async {
        loop {
            if let MqttEvent::Incoming(Incoming::SubAck(_)) = eventloop.poll().await.expect("event loop") {
                return;
            }
        }
    })
    .await
    .expect("SUBACK");
    client
        .publish(
            format!("/sys/{PK}/dev1/thing/event/property/post"),
            r#"{"id":"5","version":"1.0","params":{"LightSwitch":1},"method":"thing.event.property.post"}"#,
            PublishOptions::at_least_once(),
        )
        .await
        .expect("publish");
    let reply = tokio::time::timeout(GUARD, async {
        loop {
            if let MqttEvent::Incoming(Incoming::Publish(p)) = eventloop.poll().await.expect("event loop") {
                return p;
            }
        }
    })
    .await
    .expect("reply");
    assert_eq!(&reply.topic[..], reply_topic.as_bytes());
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json");
    assert_eq!(v["code"], 200);
    assert_eq!(v["id"], "5");
}

/// Hardening 14: only a complete packet counts as activity. A peer that keeps sending bytes of
/// an unfinished packet is closed at 1.5 × keepalive after its last complete packet, like a
/// silent one (paused time: the test's clock is the hub's).
#[tokio::test]
async fn trickling_an_unfinished_packet_does_not_keep_a_connection_alive() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::open(hub.addr).await;
    dev.send(connect_packet(&creds("dev1", ""), 30, true)).await;
    assert_eq!(code(&dev.connack().await), 0);
    hub.online("dev1").await;
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    // A PUBLISH announcing 100 bytes, then one byte every 10 s: never complete.
    dev.write_raw(&[0x30, 100]).await;
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            dev.write_raw(b"x").await;
        }
    };
    // No hang guard here: it runs on the same paused clock (the trickle bounds the test).
    let offline = async {
        loop {
            if let Ok(e) = hub.events.recv().await
                && let Event::Status(s) = &*e
                && s.status == "offline"
            {
                return s.reason.clone();
            }
        }
    };
    tokio::select! {
        reason = offline => {
            assert!(reason.as_deref().unwrap_or_default().contains("keepalive"), "{reason:?}");
        }
        () = trickle => panic!("the trickling connection was kept open for 300 s"),
    }
    assert!(
        start.elapsed() <= std::time::Duration::from_secs(46),
        "{:?}",
        start.elapsed()
    );
}

/// Hardening 5: the first packet may be only a few KiB: a peer cannot make the hub buffer a
/// whole 257 KiB packet before it is authenticated.
#[tokio::test]
async fn an_oversized_first_packet_is_refused_before_it_is_buffered() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::open(hub.addr).await;
    // A CONNECT-typed fixed header announcing 200,000 bytes, then nothing more.
    dev.write_raw(&[0x10, 0xc0, 0x9a, 0x0c]).await;
    dev.closed().await;
    let e = hub.event(|e| matches!(e, Event::Refused(_))).await;
    let Event::Refused(r) = &*e else { unreachable!() };
    assert!(r.reason.contains("CONNECT limit"), "{}", r.reason);
    // A normal device still gets in.
    Raw::online(hub.addr, &creds("dev1", "")).await.ping().await;
}

/// Hardening 5: one address may have only `max_pending_connects_per_ip` connections before
/// their CONNECT; more are closed at once, and a finished handshake frees its place.
#[tokio::test]
async fn handshakes_in_progress_are_limited_per_address() {
    let hub = BrokerHub::start_with(BrokerConfig {
        max_pending_connects_per_ip: 2,
        ..BrokerConfig::default()
    })
    .await;
    let mut first = Raw::open(hub.addr).await;
    let _second = Raw::open(hub.addr).await;
    // Both accepted (they hold their places) before the third one comes.
    first.send(Packet::PingRequest).await;
    first.closed().await;
    let _third = Raw::open(hub.addr).await;
    let mut fourth = Raw::open(hub.addr).await;
    fourth.closed().await;
    assert!(
        hub.service()
            .render_metrics()
            .contains("aliot_hub_connections_rejected_per_ip_total 1")
    );
}

/// Hardening 13: a SUBSCRIBE of a thousand refused filters is one event (and one log line),
/// not a thousand.
#[tokio::test]
async fn a_subscribe_of_many_refused_filters_is_reported_once() {
    let mut hub = BrokerHub::start().await;
    let mut dev = Raw::online(hub.addr, &creds("dev1", "")).await;
    hub.online("dev1").await;
    let filters: Vec<String> = (0..1000).map(|i| format!("/other/dev/{i}")).collect();
    let filters: Vec<(&str, QoS)> = filters.iter().map(|f| (f.as_str(), QoS::AtMostOnce)).collect();
    let status = dev.subscribe(7, &filters).await;
    assert_eq!(status.len(), 1000);
    assert!(status.iter().all(|s| *s == SubscribeReturnCode::Failure));
    dev.ping().await;
    let mut denied = Vec::new();
    for e in aliot_testkit::events::drain(&mut hub.events) {
        if let Event::AclDenied(a) = &*e {
            denied.push((a.topic.clone(), a.more));
        }
    }
    assert_eq!(denied, [("/other/dev/0".to_owned(), 999)]);
}
