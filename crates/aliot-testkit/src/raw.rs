//! [`Raw`]: an MQTT 3.1.1 client that sends exactly the packets a test writes and hands back
//! exactly what the hub sent, with the hang guard on every wait. It is the workspace's lean
//! client (`aliot_bench::wire`) with test assertions around it.

use std::net::SocketAddr;
use std::num::NonZeroU16;

use aliot_bench::wire::{Connection, TlsClient};
use bytes::Bytes;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::{ConnectAck, Packet, QoS, SubscribeReturnCode};

use crate::creds::{Creds, connect_packet};
use crate::guard::guard;

/// A raw MQTT connection.
#[derive(Debug)]
pub struct Raw {
    conn: Connection,
}

impl Raw {
    /// Opens a TCP connection (nothing sent yet).
    pub async fn open(addr: SocketAddr) -> Raw {
        Self::open_with(addr, None).await
    }

    /// Opens a TCP or TLS connection (nothing sent yet).
    pub async fn open_with(addr: SocketAddr, tls: Option<&TlsClient>) -> Raw {
        let mut conn = guard("the connection to the hub", Connection::open(addr, tls))
            .await
            .expect("connect to the hub");
        // Whatever the hub sends is handed to the test, however large.
        conn.set_max_packet(0);
        Raw { conn }
    }

    /// Opens a connection and sends a signed CONNECT (keepalive 60); returns the client and the
    /// CONNACK.
    pub async fn connect(addr: SocketAddr, c: &Creds, clean_session: bool) -> (Raw, ConnectAck) {
        let mut raw = Raw::open(addr).await;
        raw.send(connect_packet(c, 60, clean_session)).await;
        let ack = raw.connack().await;
        (raw, ack)
    }

    /// Connects with clean session 1 and asserts CONNACK 0.
    pub async fn online(addr: SocketAddr, c: &Creds) -> Raw {
        let (raw, ack) = Raw::connect(addr, c, true).await;
        assert_eq!(u8::from(ack.return_code), 0, "CONNACK");
        raw
    }

    /// Sends a packet.
    pub async fn send(&mut self, packet: Packet) {
        self.conn.send(packet).await.expect("send to the hub");
    }

    /// Writes bytes as they are (malformed input).
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.conn.write_raw(bytes).await.expect("write to the hub");
    }

    /// The next packet, or `None` when the hub closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        guard("a packet or the close", self.recv_unguarded()).await
    }

    /// As [`Raw::recv`], with no guard (for tests running on paused time).
    pub async fn recv_unguarded(&mut self) -> Option<Packet> {
        match self.conn.recv().await {
            Ok(p) => p,
            Err(aliot_bench::Error::Decode(e)) => panic!("the hub sent a malformed packet: {e}"),
            // A failed read is a closed connection, for a test.
            Err(_) => None,
        }
    }

    /// The CONNACK (anything else fails the test).
    pub async fn connack(&mut self) -> ConnectAck {
        match self.recv().await {
            Some(Packet::ConnectAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next PUBLISH (anything else fails the test).
    pub async fn publish_in(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => *p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts the hub closes the connection (PINGRESPs on the way are skipped).
    pub async fn closed(&mut self) {
        loop {
            match self.recv().await {
                None => return,
                Some(Packet::PingResponse) => {}
                Some(other) => panic!("expected the connection to close, got {other:?}"),
            }
        }
    }

    /// Publishes (QoS 0 carries no packet id).
    pub async fn publish(&mut self, topic: &str, payload: &str, qos: QoS, pid: u16) {
        self.send(aliot_bench::wire::publish_packet(
            topic,
            Bytes::from(payload.to_owned()),
            qos,
            pid,
        ))
        .await;
    }

    /// Subscribes and returns the SUBACK's return codes.
    pub async fn subscribe(&mut self, pid: u16, filters: &[(&str, QoS)]) -> Vec<SubscribeReturnCode> {
        let pid = NonZeroU16::new(pid).expect("a non-zero packet id");
        self.send(aliot_bench::wire::subscribe_packet(pid, filters)).await;
        match self.recv().await {
            Some(Packet::SubscribeAck { status, .. }) => status,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// A PINGREQ/PINGRESP round trip: everything the hub sent before is received by then.
    pub async fn ping(&mut self) {
        self.send(Packet::PingRequest).await;
        match self.recv().await {
            Some(Packet::PingResponse) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// Acknowledges a QoS 1 PUBLISH.
    pub async fn puback(&mut self, pid: NonZeroU16) {
        self.send(Packet::PublishAck { packet_id: pid }).await;
    }
}

/// A PUBLISH's payload as text.
pub fn text(p: &Publish) -> String {
    String::from_utf8(p.payload.to_vec()).expect("a UTF-8 payload")
}

/// A PUBLISH's payload as JSON.
pub fn json(p: &Publish) -> serde_json::Value {
    serde_json::from_slice(&p.payload).expect("a JSON payload")
}

/// A [`Raw`] client for synchronous tests (it runs on its own single-threaded runtime).
#[derive(Debug)]
pub struct BlockingRaw {
    runtime: tokio::runtime::Runtime,
    raw: Raw,
}

impl BlockingRaw {
    /// Connects as device (`pk`, `dn`) signed like the Python SDK (seconds timestamp, `_ss=1`);
    /// returns the client and the CONNACK return code.
    pub fn connect(addr: SocketAddr, pk: &str, dn: &str, secret: &str) -> (BlockingRaw, u8) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let creds = crate::creds::creds_with(&crate::creds::Signing {
            product_key: pk,
            device_name: dn,
            secret,
            timestamp: Some("1700000000"),
            extra: "_ss=1",
            ..crate::creds::Signing::default()
        });
        let (raw, ack) = runtime.block_on(Raw::connect(addr, &creds, true));
        (BlockingRaw { runtime, raw }, u8::from(ack.return_code))
    }

    /// Sends a packet.
    pub fn send(&mut self, packet: Packet) {
        self.runtime.block_on(self.raw.send(packet));
    }

    /// The next packet, `None` when the hub closed the connection.
    pub fn recv(&mut self) -> Option<Packet> {
        self.runtime.block_on(self.raw.recv())
    }

    /// The next PUBLISH (acknowledged if QoS 1), skipping other packets.
    pub fn recv_publish(&mut self) -> (String, Bytes) {
        loop {
            match self.recv() {
                Some(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        self.send(Packet::PublishAck { packet_id: id });
                    }
                    return (p.topic.to_string(), p.payload);
                }
                Some(_) => {}
                None => panic!("connection closed while waiting for a message"),
            }
        }
    }

    /// A QoS 0 PUBLISH.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        let payload = String::from_utf8_lossy(payload).into_owned();
        self.runtime
            .block_on(self.raw.publish(topic, &payload, QoS::AtMostOnce, 0));
    }
}
