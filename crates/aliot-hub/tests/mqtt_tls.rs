//! MQTT over TLS (securemode 2) through the same engine: CONNECT, a reply, a device call.

use std::sync::Arc;
use std::time::Duration;

use aliot_hub::BrokerConfig;
use aliot_testkit::*;
use bytes::BytesMut;
use rmqtt_codec::v3::{Codec, Packet, QoS};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

struct TlsClient {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    codec: Codec,
    buf: BytesMut,
}

impl TlsClient {
    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        self.codec.encode(p, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(GUARD, async {
            loop {
                if let Some((p, _)) = self.codec.decode(&mut self.buf).expect("decode") {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("guard")
    }
}

#[tokio::test]
async fn devices_connect_and_talk_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = aliot_hub::tls::ensure_local_certificate(dir.path()).expect("certificates");
    let acceptor = aliot_hub::tls::acceptor(&files.cert, &files.key).expect("acceptor");
    let hub = BrokerHub::start_full(BrokerConfig::default(), Some(acceptor)).await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(files.ca.as_ref().expect("ca")).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(hub.addr).await.expect("connect");
    let stream = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let mut dev = TlsClient {
        stream,
        codec: Codec::new(0),
        buf: BytesMut::new(),
    };

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
