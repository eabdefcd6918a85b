//! MQTT over TLS (securemode 2) through the same engine: CONNECT, a reply, a device call.

use std::time::Duration;

use aliot_bench::wire::TlsClient;
use aliot_hub::BrokerConfig;
use aliot_testkit::*;
use rmqtt_codec::v3::{Packet, QoS};

#[tokio::test]
async fn devices_connect_and_talk_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = aliot_hub::tls::ensure_local_certificate(dir.path()).expect("certificates");
    let acceptor = aliot_hub::tls::acceptor(&files.cert, &files.key).expect("acceptor");
    let hub = BrokerHub::start_full(BrokerConfig::default(), Some(acceptor)).await;

    let tls = TlsClient::from_ca_file(files.ca.as_ref().expect("ca"), "localhost").expect("the local CA");
    let mut dev = Raw::open_with(hub.addr, Some(&tls)).await;

    let mut c = creds("dev1", "_ss=1");
    c.client_id = c.client_id.replace("securemode=3", "securemode=2");
    dev.send(connect_packet(&c, 60, true)).await;
    match dev.recv().await {
        Some(Packet::ConnectAck(ack)) => assert_eq!(u8::from(ack.return_code), 0),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // A property post larger than one read chunk, to cross TLS records.
    let big = "x".repeat(10_000);
    let body = format!(r#"{{"id":"1","params":{{"blob":"{big}"}}}}"#);
    let mut p = Packet::Publish(Box::new(rmqtt_codec::types::Publish {
        dup: false,
        retain: false,
        qos: QoS::AtLeastOnce,
        topic: format!("/sys/{PK}/dev1/thing/event/property/post").into(),
        packet_id: std::num::NonZeroU16::new(1),
        payload: body.into(),
        properties: None,
    }));
    dev.send(std::mem::replace(&mut p, Packet::PingRequest)).await;
    assert!(matches!(dev.recv().await, Some(Packet::PublishAck { .. })));
    match dev.recv().await {
        Some(Packet::Publish(reply)) => assert_eq!(json(&reply)["code"], 200),
        other => panic!("expected the post reply, got {other:?}"),
    }

    // A synchronous call over TLS.
    let broker = hub.service().clone();
    let call = tokio::spawn(async move {
        broker
            .rrpc(
                PK,
                "dev1",
                bytes::Bytes::from_static(b"ping"),
                Duration::from_secs(10),
            )
            .await
    });
    let req = match dev.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected the RRPC request, got {other:?}"),
    };
    let id = req.topic.rsplit('/').next().expect("id").to_owned();
    dev.send(Packet::Publish(Box::new(rmqtt_codec::types::Publish {
        dup: false,
        retain: false,
        qos: QoS::AtMostOnce,
        topic: format!("/sys/{PK}/dev1/rrpc/response/{id}").into(),
        packet_id: None,
        payload: bytes::Bytes::from_static(b"pong"),
        properties: None,
    })))
    .await;
    assert_eq!(&call.await.expect("join").expect("answer")[..], b"pong");
    dev.send(Packet::Disconnect).await;
    assert!(dev.recv().await.is_none());
}
