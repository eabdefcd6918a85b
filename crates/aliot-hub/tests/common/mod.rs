//! Test helpers: an in-memory registry, a hub on 127.0.0.1:0, signed credentials as real SDKs
//! build them, and a raw MQTT client on the same codec as the hub.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aliot_hub::directory::{DeviceAuth, Directory};
use aliot_hub::events::Event;
use aliot_hub::{Broker, BrokerConfig};
use aliot_protocol::sign::{HexCase, SignMethod, sign_content};
use bytes::{Bytes, BytesMut};
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::{Codec, Connect, ConnectAck, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{Decoder, Encoder};

/// Guard against a hung test; never used to wait for something to happen.
pub const GUARD: Duration = Duration::from_secs(20);

pub const PK: &str = "a1TestPk01";
pub const SECRET: &str = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";

/// A registry in a `HashMap`.
#[derive(Default)]
pub struct MemDirectory {
    devices: Mutex<HashMap<(String, String), DeviceAuth>>,
    pub online_calls: Mutex<Vec<(String, String, IpAddr)>>,
}

impl MemDirectory {
    pub fn add(&self, pk: &str, dn: &str, secret: &str) {
        self.devices.lock().expect("lock").insert(
            (pk.to_owned(), dn.to_owned()),
            DeviceAuth {
                device_secret: secret.to_owned(),
                enabled: true,
                iot_id: format!("iot-{dn}"),
            },
        );
    }

    pub fn set_enabled(&self, pk: &str, dn: &str, enabled: bool) {
        if let Some(d) = self
            .devices
            .lock()
            .expect("lock")
            .get_mut(&(pk.to_owned(), dn.to_owned()))
        {
            d.enabled = enabled;
        }
    }
}

impl Directory for MemDirectory {
    fn device(&self, product_key: &str, device_name: &str) -> Option<DeviceAuth> {
        self.devices
            .lock()
            .expect("lock")
            .get(&(product_key.to_owned(), device_name.to_owned()))
            .cloned()
    }

    fn device_online(&self, product_key: &str, device_name: &str, ip: IpAddr, _at_ms: u64) {
        self.online_calls
            .lock()
            .expect("lock")
            .push((product_key.to_owned(), device_name.to_owned(), ip));
    }
}

/// A hub serving plain MQTT on 127.0.0.1:0.
pub struct Hub {
    pub addr: SocketAddr,
    pub broker: Broker,
    pub directory: Arc<MemDirectory>,
    /// Subscribed before the listener starts, so no event is missed.
    pub events: broadcast::Receiver<Arc<Event>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<aliot_hub::Result<()>>>,
}

impl Hub {
    pub async fn start() -> Hub {
        Hub::start_with(BrokerConfig::default()).await
    }

    pub async fn start_with(config: BrokerConfig) -> Hub {
        Hub::start_full(config, None).await
    }

    /// A hub serving MQTT over TLS with `acceptor`.
    pub async fn start_full(config: BrokerConfig, tls: Option<tokio_rustls::TlsAcceptor>) -> Hub {
        let directory = Arc::new(MemDirectory::default());
        for dn in ["dev1", "dev2", "dev3"] {
            directory.add(PK, dn, SECRET);
        }
        let broker = Broker::new(config, directory.clone());
        let events = broker.events();
        let listener = aliot_hub::bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let b = broker.clone();
        let task = tokio::spawn(async move {
            b.serve(listener, tls, async {
                let _ = rx.await;
            })
            .await
        });
        Hub {
            addr,
            broker,
            directory,
            events,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the listener and waits for serve() to return.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(GUARD, task)
                .await
                .expect("serve returns")
                .expect("join")
                .expect("serve ok");
        }
    }

    /// Waits for the first event matching `pred` (events before it are skipped).
    pub async fn event(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Arc<Event> {
        tokio::time::timeout(GUARD, async {
            loop {
                match self.events.recv().await {
                    Ok(e) if pred(&e) => return e,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
                }
            }
        })
        .await
        .expect("expected event did not arrive")
    }

    /// Waits until the device is online (its online status event).
    pub async fn online(&mut self, dn: &str) {
        let dn = dn.to_owned();
        self.event(move |e| matches!(e, Event::Status(s) if s.status == "online" && s.device_name == dn))
            .await;
    }

    /// Waits until the device is offline (its offline status event).
    pub async fn offline(&mut self, dn: &str) -> Arc<Event> {
        let dn = dn.to_owned();
        self.event(move |e| matches!(e, Event::Status(s) if s.status == "offline" && s.device_name == dn))
            .await
    }
}

/// Signed CONNECT fields.
#[derive(Clone, Debug)]
pub struct Creds {
    pub client_id: String,
    pub username: String,
    pub password: String,
}

/// Signs like the documentation's example: `prefix|securemode=3,signmethod=hmacsha1,timestamp=..|`
/// plus `extra` parameters (e.g. `_ss=1,ext=1`).
pub fn creds(dn: &str, extra: &str) -> Creds {
    creds_with(
        PK,
        dn,
        SECRET,
        &format!("{PK}.{dn}"),
        SignMethod::HmacSha1,
        Some("1539421321846"),
        extra,
        HexCase::Lower,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn creds_with(
    pk: &str,
    dn: &str,
    secret: &str,
    prefix: &str,
    method: SignMethod,
    timestamp: Option<&str>,
    extra: &str,
    case: HexCase,
) -> Creds {
    let mut params = vec![
        "securemode=3".to_owned(),
        format!("signmethod={}", method.as_str()),
    ];
    if let Some(ts) = timestamp {
        params.push(format!("timestamp={ts}"));
    }
    if !extra.is_empty() {
        params.push(extra.to_owned());
    }
    let content = sign_content(prefix, dn, pk, timestamp);
    Creds {
        client_id: format!("{prefix}|{}|", params.join(",")),
        username: format!("{dn}&{pk}"),
        password: method.hex(secret.as_bytes(), content.as_bytes(), case),
    }
}

pub fn connect_packet(c: &Creds, keep_alive: u16, clean_session: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        clean_session,
        keep_alive,
        client_id: c.client_id.clone().into(),
        username: Some(c.username.clone().into()),
        password: Some(Bytes::from(c.password.clone())),
        ..Connect::default()
    }))
}

/// A raw MQTT 3.1.1 client on rmqtt-codec.
pub struct Raw {
    stream: TcpStream,
    codec: Codec,
    buf: BytesMut,
}

impl Raw {
    pub async fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            codec: Codec::new(0),
            buf: BytesMut::new(),
        }
    }

    /// Opens a connection and sends a signed CONNECT; returns the client and the CONNACK.
    pub async fn connect(addr: SocketAddr, c: &Creds, clean_session: bool) -> (Raw, ConnectAck) {
        let mut raw = Raw::open(addr).await;
        raw.send(connect_packet(c, 60, clean_session)).await;
        let ack = raw.connack().await;
        (raw, ack)
    }

    /// Connects and asserts CONNACK 0.
    pub async fn online(addr: SocketAddr, c: &Creds) -> Raw {
        let (raw, ack) = Raw::connect(addr, c, true).await;
        assert_eq!(u8::from(ack.return_code), 0, "CONNACK");
        raw
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        self.codec.encode(packet, &mut out).expect("encode");
        self.write_raw(&out).await;
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet, or `None` when the hub closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(GUARD, self.recv_unguarded())
            .await
            .expect("no packet and no close within the guard")
    }

    /// As `recv`, with no guard (for tests running on paused time).
    pub async fn recv_unguarded(&mut self) -> Option<Packet> {
        loop {
            if let Some((p, _)) = self
                .codec
                .decode(&mut self.buf)
                .expect("hub sent a malformed packet")
            {
                return Some(p);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn connack(&mut self) -> ConnectAck {
        match self.recv().await {
            Some(Packet::ConnectAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next PUBLISH (PINGRESP, SUBACK... are not expected here).
    pub async fn publish_in(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => *p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts the hub closes the connection.
    pub async fn closed(&mut self) {
        loop {
            match self.recv().await {
                None => return,
                Some(Packet::PingResponse) => {}
                Some(other) => panic!("expected the connection to close, got {other:?}"),
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &str, qos: QoS, pid: u16) {
        self.send(Packet::Publish(Box::new(Publish {
            dup: false,
            retain: false,
            qos,
            topic: topic.to_owned().into(),
            // QoS 0 carries no packet id.
            packet_id: if qos == QoS::AtMostOnce {
                None
            } else {
                std::num::NonZeroU16::new(pid)
            },
            payload: Bytes::from(payload.to_owned()),
            properties: None,
        })))
        .await;
    }

    pub async fn subscribe(
        &mut self,
        pid: u16,
        filters: &[(&str, QoS)],
    ) -> Vec<rmqtt_codec::v3::SubscribeReturnCode> {
        self.send(Packet::Subscribe {
            packet_id: std::num::NonZeroU16::new(pid).expect("pid"),
            topic_filters: filters
                .iter()
                .map(|(f, q)| ((*f).to_owned().into(), *q))
                .collect(),
        })
        .await;
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

    pub async fn puback(&mut self, pid: std::num::NonZeroU16) {
        self.send(Packet::PublishAck { packet_id: pid }).await;
    }
}

pub fn text(p: &Publish) -> String {
    String::from_utf8(p.payload.to_vec()).expect("utf8 payload")
}

pub fn json(p: &Publish) -> serde_json::Value {
    serde_json::from_slice(&p.payload).expect("JSON payload")
}
