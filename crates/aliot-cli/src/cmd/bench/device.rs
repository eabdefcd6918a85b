//! One simulated device: a small tokio task that signs its own CONNECT, then idles, posts or
//! answers downlinks, on rmqtt-codec (the hub's codec) over a plain socket.
//!
//! Memory is the point here (≤ 4 KiB a device): the task owns its socket, a [`Session`] of a few
//! hundred bytes, one timer, and two `BytesMut` that stay empty (no allocation) while the device
//! is idle. Plain TCP reads go into a per-thread 16 KiB buffer on readiness and are copied out only
//! when they hold a partial packet; outgoing packets are encoded into a buffer that lives only
//! until it is written.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use aliot_protocol::alink::{DeviceReply, read_id};
use aliot_protocol::topic::{SysPath, Topic};
use aliot_protocol::{DeviceIdentity, SignOptions};
use bytes::{Bytes, BytesMut};
use rmqtt_codec::types::{Protocol, Publish};
use rmqtt_codec::v3::{Codec, Connect, ConnectAckReason, Packet, QoS};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::fleet::DeviceSpec;
use super::session::{Completion, Matched, Session};
use super::settings::{Settings, Workload};
use super::stats::{Stats, now_us};

/// Largest packet a device accepts (the hub's payload limit is 256 KiB).
pub(crate) const MAX_PACKET: u32 = 300 * 1024;

/// What the fleet is asked to do right now (one `watch` channel for every device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connect, then idle (keepalive only).
    Ramp,
    /// Run the workload.
    Run,
    /// No new posts: wait for outstanding replies.
    Stop,
    /// Disconnect now.
    Close,
}

/// What all devices of a process share.
pub(crate) struct Fleet {
    pub(crate) settings: Settings,
    pub(crate) devices: Vec<DeviceSpec>,
    pub(crate) stats: Stats,
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    pub(crate) phase: watch::Sender<Phase>,
    /// The first few connect errors, for the summary.
    pub(crate) errors: Mutex<Vec<String>>,
    /// Counts finished handshakes so the runner knows when the ramp is over.
    pub(crate) handshakes: Arc<super::run::Handshakes>,
    /// `--max-pending`: a permit per handshake in flight.
    pub(crate) pending: Option<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("settings", &self.settings)
            .field("devices", &self.devices.len())
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    fn note_error(&self, e: String) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() < 5 && !errors.contains(&e) {
            errors.push(e);
        }
    }

    /// The topic a device posts to: the platform's property post, or under `--plain-auth` a topic
    /// of this process that its subscriber listens to.
    pub(crate) fn post_topic(&self, d: &DeviceSpec) -> String {
        if self.settings.plain_auth.is_some() {
            format!(
                "aliot-bench/w{}/{}/{}",
                self.settings.worker_index, d.product_key, d.device_name
            )
        } else {
            format!(
                "/sys/{}/{}/thing/event/property/post",
                d.product_key, d.device_name
            )
        }
    }
}

/// An encrypted or plain connection.
pub(crate) enum Conn {
    Tcp(TcpStream),
    /// TLS keeps its own read buffer: a TLS session already costs tens of KiB, so the lean
    /// per-thread buffer trick is only worth it for plain TCP.
    Tls(Box<(TlsStream<TcpStream>, Vec<u8>)>),
}

thread_local! {
    /// Where plain-TCP reads land before they are decoded (one per runtime thread).
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice());
}

impl Conn {
    /// Waits for data and appends it to `rx`; `Ok(0)` at end of stream.
    pub(crate) async fn fill(&mut self, rx: &mut BytesMut) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => loop {
                s.readable().await?;
                let r = READ_BUF.with_borrow_mut(|buf| {
                    let n = s.try_read(buf)?;
                    rx.extend_from_slice(&buf[..n]);
                    Ok::<usize, io::Error>(n)
                });
                match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            },
            Conn::Tls(b) => {
                let (s, buf) = &mut **b;
                let n = s.read(buf).await?;
                rx.extend_from_slice(&buf[..n]);
                Ok(n)
            }
        }
    }

    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(data).await,
            Conn::Tls(b) => {
                b.0.write_all(data).await?;
                b.0.flush().await
            }
        }
    }

    pub(crate) async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown().await,
            Conn::Tls(b) => b.0.shutdown().await,
        };
    }
}

/// Appends the encoding of `p` to `tx`.
pub(crate) fn encode(p: Packet, tx: &mut BytesMut) -> io::Result<()> {
    use tokio_util::codec::Encoder as _;
    Codec::new(0)
        .encode(p, tx)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("encode: {e:?}")))
}

pub(crate) fn publish(topic: String, payload: Vec<u8>, qos1: bool, pkid: u16) -> Packet {
    Packet::Publish(Box::new(Publish {
        dup: false,
        retain: false,
        qos: if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce },
        topic: topic.into(),
        packet_id: if qos1 {
            std::num::NonZeroU16::new(pkid)
        } else {
            None
        },
        payload: Bytes::from(payload),
        properties: None,
    }))
}

/// Opens the socket (from the device's source address, if any) with TCP_NODELAY.
pub(crate) async fn open(fleet: &Fleet, idx: usize) -> io::Result<Conn> {
    let socket = if fleet.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_nodelay(true)?;
    let ips = &fleet.settings.source_ips;
    if !ips.is_empty() {
        socket.bind(SocketAddr::new(ips[idx % ips.len()], 0))?;
    }
    let stream = socket.connect(fleet.addr).await?;
    match &fleet.tls {
        None => Ok(Conn::Tcp(stream)),
        Some((connector, name)) => {
            let tls = connector.connect(name.clone(), stream).await?;
            Ok(Conn::Tls(Box::new((tls, vec![0u8; 16 * 1024]))))
        }
    }
}

/// The CONNECT of device `idx`: signed with a fresh timestamp, or plain credentials.
fn connect_packet(fleet: &Fleet, idx: usize) -> Result<Packet, String> {
    let s = &fleet.settings;
    let d = &fleet.devices[idx];
    let (client_id, username, password) = match (&s.plain_auth, &d.device_secret) {
        (Some(plain), _) => (
            format!("{}.{}", d.product_key, d.device_name),
            plain.username.clone(),
            plain.password.clone(),
        ),
        (None, Some(secret)) => {
            let id = DeviceIdentity::new(d.product_key.as_str(), d.device_name.as_str(), secret.as_str())
                .map_err(|e| format!("{}/{}: {e}", d.product_key, d.device_name))?;
            let ts = super::stats::unix_us() / 1000;
            let creds = aliot_protocol::sign(
                &id,
                &SignOptions {
                    timestamp: Some(ts.to_string()),
                    sign_method: s.sign_method(),
                    secure_mode: if s.tls.is_some() {
                        aliot_protocol::SecureMode::Tls
                    } else {
                        aliot_protocol::SecureMode::Tcp
                    },
                    // `_ss=1`: downlinks arrive without SUBSCRIBE; `ext=1`: RRPC on /ext/rrpc/.
                    extra_params: vec![("_ss".into(), "1".into()), ("ext".into(), "1".into())],
                    ..SignOptions::default()
                },
            )
            .map_err(|e| format!("{}/{}: {e}", d.product_key, d.device_name))?;
            (creds.client_id, creds.username, creds.password)
        }
        (None, None) => return Err(format!("{}/{} has no secret", d.product_key, d.device_name)),
    };
    Ok(Packet::Connect(Box::new(Connect {
        protocol: Protocol(4),
        clean_session: true,
        keep_alive: s.keepalive,
        last_will: None,
        client_id: client_id.into(),
        username: Some(username.into()),
        password: Some(Bytes::from(password.into_bytes())),
        cert: None,
    })))
}

/// How a connect attempt ended.
enum Handshake {
    Accepted(Conn, Codec, BytesMut),
    Refused(u8),
    Failed(String),
}

async fn handshake(fleet: &Fleet, idx: usize) -> Handshake {
    let packet = match connect_packet(fleet, idx) {
        Ok(p) => p,
        Err(e) => return Handshake::Failed(e),
    };
    let mut conn = match open(fleet, idx).await {
        Ok(c) => c,
        // EMFILE: one process holds at most `ulimit -n` sockets.
        Err(e) if e.raw_os_error() == Some(24) => {
            return Handshake::Failed(format!(
                "connect {}: {e} (split the fleet with --processes)",
                fleet.addr
            ));
        }
        Err(e) => return Handshake::Failed(format!("connect {}: {e}", fleet.addr)),
    };
    let mut tx = BytesMut::new();
    if let Err(e) = encode(packet, &mut tx) {
        return Handshake::Failed(e.to_string());
    }
    if let Err(e) = conn.write_all(&tx).await {
        return Handshake::Failed(format!("sending CONNECT: {e}"));
    }
    drop(tx);
    let mut codec = Codec::new(MAX_PACKET);
    let mut rx = BytesMut::new();
    loop {
        match conn.fill(&mut rx).await {
            Ok(0) => return Handshake::Failed("the server closed the connection before CONNACK".into()),
            Ok(_) => {}
            Err(e) => return Handshake::Failed(format!("reading CONNACK: {e}")),
        }
        use tokio_util::codec::Decoder as _;
        match codec.decode(&mut rx) {
            Ok(None) => continue,
            Ok(Some((Packet::ConnectAck(ack), _))) => {
                return match ack.return_code {
                    ConnectAckReason::ConnectionAccepted => {
                        if rx.is_empty() {
                            rx = BytesMut::new();
                        }
                        Handshake::Accepted(conn, codec, rx)
                    }
                    code => Handshake::Refused(u8::from(code)),
                };
            }
            Ok(Some((p, _))) => {
                return Handshake::Failed(format!("expected CONNACK, got packet type {}", p.packet_type()));
            }
            Err(e) => return Handshake::Failed(format!("bad CONNACK: {e:?}")),
        }
    }
}

/// Runs device `idx` until the fleet closes.
pub(crate) async fn run(fleet: Arc<Fleet>, idx: usize) {
    let mut phase_rx = fleet.phase.subscribe();
    let stats = &fleet.stats;
    // The semaphore is never closed, so `acquire` only fails if it were: treat that as no limit.
    let permit = match &fleet.pending {
        Some(s) => s.acquire().await.ok(),
        None => None,
    };
    stats.mark_attempt();
    Stats::inc(&stats.attempted);
    let t0 = now_us();
    let outcome = match tokio::time::timeout(fleet.settings.connect_timeout, handshake(&fleet, idx)).await {
        Ok(h) => h,
        Err(_) => Handshake::Failed(format!("no CONNACK within {:?}", fleet.settings.connect_timeout)),
    };
    drop(permit);
    let (mut conn, codec, rx) = match outcome {
        Handshake::Accepted(c, codec, rx) => {
            stats.connack.record(idx, now_us().saturating_sub(t0));
            stats.mark_connack();
            Stats::inc(&stats.connected);
            (c, codec, rx)
        }
        Handshake::Refused(code) => {
            stats.connack.record(idx, now_us().saturating_sub(t0));
            stats.mark_connack();
            Stats::inc(&stats.refused[usize::from(code.min(6))]);
            fleet.handshakes.finish_one();
            return;
        }
        Handshake::Failed(e) => {
            Stats::inc(&stats.connect_errors);
            fleet.note_error(e);
            fleet.handshakes.finish_one();
            return;
        }
    };
    fleet.handshakes.finish_one();
    let graceful = session_loop(&fleet, idx, &mut conn, codec, rx, &mut phase_rx).await;
    if graceful {
        let mut tx = BytesMut::new();
        if encode(Packet::Disconnect, &mut tx).is_ok() {
            let _ = conn.write_all(&tx).await;
        }
        conn.shutdown().await;
    } else {
        Stats::inc(&stats.dropped);
    }
}

#[derive(Deserialize)]
struct ReplyIdCode<'a> {
    #[serde(borrow)]
    id: IdField<'a>,
    code: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdField<'a> {
    Str(&'a str),
    Num(u64),
}

/// The connected life of a device. Returns `true` when the fleet asked it to close, `false` when
/// the connection was lost.
async fn session_loop(
    fleet: &Fleet,
    idx: usize,
    conn: &mut Conn,
    mut codec: Codec,
    mut rx: BytesMut,
    phase_rx: &mut watch::Receiver<Phase>,
) -> bool {
    use tokio_util::codec::Decoder as _;
    let s = &fleet.settings;
    let stats = &fleet.stats;
    let plain = s.plain_auth.is_some();
    let telemetry = s.workload == Workload::Telemetry;
    let qos1 = s.qos == 1;
    let mut session = Session::new(
        s.inflight,
        if plain { Completion::Ack } else { Completion::Reply },
    );
    session.last_sent_us = now_us();
    let interval_us = u64::try_from(s.interval.as_micros()).unwrap_or(u64::MAX);
    let n = fleet.devices.len().max(1) as u64;
    let mut next_post_us: Option<u64> = None;
    let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(1)));
    let mut tx = BytesMut::new();
    loop {
        let phase = *phase_rx.borrow_and_update();
        if phase == Phase::Close {
            return true;
        }
        // In `Stop` a device posts nothing new; it keeps reading the replies of its open posts
        // and stays connected (keepalive included) until `Close`.
        let now = now_us();
        if phase == Phase::Run && telemetry {
            let next = *next_post_us.get_or_insert_with(|| {
                // Spread the first posts over one interval so the fleet does not post in lockstep.
                now + if interval_us == 0 {
                    0
                } else {
                    (idx as u64 % n) * interval_us / n
                }
            });
            if next <= now && session.can_post() {
                let d = &fleet.devices[idx];
                if let Some((msg_id, pkid)) = session.post(qos1, now) {
                    let payload = format!(
                        r#"{{"id":"{msg_id}","version":"1.0","params":{{"t":{now}}},"method":"thing.event.property.post"}}"#
                    );
                    if encode(
                        publish(fleet.post_topic(d), payload.into_bytes(), qos1, pkid),
                        &mut tx,
                    )
                    .is_err()
                    {
                        return false;
                    }
                    Stats::inc(&stats.sent);
                    next_post_us = Some(if interval_us == 0 { now } else { next + interval_us });
                }
                if !tx.is_empty() {
                    if conn.write_all(&tx).await.is_err() {
                        return false;
                    }
                    tx = BytesMut::new();
                }
                continue;
            }
        }
        // Keepalive: PINGREQ when nothing was sent for a keepalive period.
        if now >= session.ping_due_us(s.keepalive) {
            if encode(Packet::PingRequest, &mut tx).is_err() || conn.write_all(&tx).await.is_err() {
                return false;
            }
            tx = BytesMut::new();
            session.last_sent_us = now;
            continue;
        }
        let mut wake = session.ping_due_us(s.keepalive);
        if phase == Phase::Run
            && telemetry
            && session.can_post()
            && let Some(next) = next_post_us
        {
            wake = wake.min(next);
        }
        sleep.as_mut().reset(super::stats::instant_at(wake));
        tokio::select! {
            r = conn.fill(&mut rx) => {
                match r {
                    Ok(0) | Err(_) => {
                        // Its open posts stay counted as sent and never replied: lost.
                        session.abandon();
                        return false;
                    }
                    Ok(_) => {}
                }
                loop {
                    match codec.decode(&mut rx) {
                        Ok(Some((p, _))) => {
                            if handle(fleet, idx, &mut session, p, &mut tx).is_err() {
                                return false;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return false,
                    }
                }
                if rx.is_empty() {
                    // Give the allocation back while idle.
                    rx = BytesMut::new();
                }
                if !tx.is_empty() {
                    if conn.write_all(&tx).await.is_err() {
                        return false;
                    }
                    session.last_sent_us = now_us();
                    tx = BytesMut::new();
                }
            }
            () = &mut sleep => {}
            r = phase_rx.changed() => {
                if r.is_err() {
                    return true;
                }
            }
        }
    }
}

/// Reacts to one packet from the server; answers go to `tx`.
fn handle(fleet: &Fleet, idx: usize, session: &mut Session, p: Packet, tx: &mut BytesMut) -> io::Result<()> {
    let stats = &fleet.stats;
    match p {
        Packet::PublishAck { packet_id } => {
            Stats::inc(&stats.acked);
            match session.puback(packet_id.get()) {
                Matched::Done { sent_us } => {
                    stats.ack.record(idx, now_us().saturating_sub(sent_us));
                }
                Matched::Acked { sent_us } => stats.ack.record(idx, now_us().saturating_sub(sent_us)),
                Matched::Unknown => {}
            }
        }
        Packet::Publish(publish) => {
            if let Some(pkid) = publish.packet_id {
                encode(Packet::PublishAck { packet_id: pkid }, tx)?;
            }
            let topic: &str = &publish.topic;
            if topic.ends_with("/thing/event/property/post_reply") {
                let Ok(r) = serde_json::from_slice::<ReplyIdCode<'_>>(&publish.payload) else {
                    Stats::inc(&stats.reply_errors);
                    return Ok(());
                };
                let msg_id = match r.id {
                    IdField::Str(s) => s.parse::<u32>().unwrap_or(0),
                    IdField::Num(n) => u32::try_from(n).unwrap_or(0),
                };
                if let Matched::Done { sent_us } = session.reply(msg_id) {
                    if r.code.unwrap_or(200) == 200 {
                        Stats::inc(&stats.replied);
                        stats.reply.record(idx, now_us().saturating_sub(sent_us));
                        stats.mark_reply();
                    } else {
                        Stats::inc(&stats.reply_errors);
                    }
                }
                return Ok(());
            }
            if let Some(reply_topic) = downlink_reply_topic(topic) {
                let Some(id) = read_id(&publish.payload) else {
                    return Ok(());
                };
                let payload = DeviceReply::success(id, serde_json::json!({})).to_vec();
                encode(publish_reply(reply_topic, payload), tx)?;
                Stats::inc(&stats.downlinks_answered);
            }
        }
        Packet::PingResponse | Packet::SubscribeAck { .. } | Packet::UnsubscribeAck { .. } => {}
        // The server must not send anything else to a client.
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected packet")),
    }
    Ok(())
}

fn publish_reply(topic: String, payload: Vec<u8>) -> Packet {
    publish(topic, payload, false, 0)
}

/// Where a device answers a downlink: property set → `set_reply`, async service → `{id}_reply`,
/// RRPC (`/sys/…/rrpc/request/{id}` → `/response/{id}`; `/ext/rrpc/…` on the same topic).
fn downlink_reply_topic(topic: &str) -> Option<String> {
    match Topic::parse(topic).ok()? {
        Topic::ExtRrpc { .. } => Some(topic.to_owned()),
        Topic::Sys {
            product_key,
            device_name,
            path,
        } => match path {
            SysPath::PropertySet | SysPath::Service(_) | SysPath::PropertyGet => {
                Some(format!("{topic}_reply"))
            }
            SysPath::RrpcRequest(id) => {
                Some(Topic::sys(&product_key, &device_name, SysPath::RrpcResponse(id)).to_string())
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downlinks_should_be_answered_on_the_topics_the_platform_waits_on() {
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/thing/service/property/set").as_deref(),
            Some("/sys/pk/dn/thing/service/property/set_reply")
        );
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/rrpc/request/42").as_deref(),
            Some("/sys/pk/dn/rrpc/response/42")
        );
        assert_eq!(
            downlink_reply_topic("/ext/rrpc/7/sys/pk/dn/thing/service/reboot").as_deref(),
            Some("/ext/rrpc/7/sys/pk/dn/thing/service/reboot")
        );
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/thing/service/reboot").as_deref(),
            Some("/sys/pk/dn/thing/service/reboot_reply")
        );
        assert_eq!(
            downlink_reply_topic("/sys/pk/dn/thing/event/property/post_reply"),
            None
        );
    }

    #[test]
    fn the_future_of_a_device_should_stay_small() {
        // The task of every simulated device holds this future; keep it well under 4 KiB.
        let (tx, _) = watch::channel(Phase::Ramp);
        let fleet = Arc::new(Fleet {
            settings: serde_json::from_value(serde_json::json!({
                "host": "127.0.0.1", "port": 1, "tls": null, "workload": "connect", "rate": 1.0,
                "max_pending": 0, "duration": {"secs": 1, "nanos": 0}, "interval": {"secs": 1, "nanos": 0}, "qos": 1, "inflight": 1,
                "keepalive": 60, "concurrency": 1, "service_id": "x", "connect_timeout": {"secs": 1, "nanos": 0},
                "drain": {"secs": 1, "nanos": 0}, "sign_method": "hmacsha256", "plain_auth": null, "admin": null,
                "source_ips": [], "worker_index": 0
            }))
            .expect("settings"),
            devices: Vec::new(),
            stats: Stats::new(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            tls: None,
            phase: tx,
            errors: Mutex::new(Vec::new()),
            handshakes: Arc::new(super::super::run::Handshakes::for_test(0)),
            pending: None,
        });
        let size = std::mem::size_of_val(&run(fleet, 0));
        assert!(size < 2048, "a device's future is {size} bytes");
    }
}
