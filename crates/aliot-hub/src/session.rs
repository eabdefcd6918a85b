//! MQTT state of one device and the task that drives its connection.
//!
//! One tokio task per connection does everything for it: TLS handshake, CONNECT (with its
//! deadline), authentication, then a loop over three sources: the socket, the session's outbound
//! queue (fed by the broker and by the platform's own replies) and the keepalive timer. One task
//! rather than a reader and a writer, because a task costs memory and the hub must hold an idle
//! device in a few KiB.
//!
//! The state shared with the broker is a [`Session`]: identity, subscriptions, and a bounded
//! outbound queue behind a std `Mutex`, plus a `Notify` to wake the task. The QoS 1 inflight
//! window ([`Inflight`]) belongs to the task alone.
//!
//! ## Outbound queue and overflow policy
//! Each session's outbound queue holds at most `BrokerConfig::outbound_queue_capacity` messages.
//! When it is full:
//! - a QoS 0 message is dropped and counted (`aliot_hub_qos0_dropped_total`);
//! - a QoS 1 message marks the device a slow consumer: it is disconnected
//!   (`aliot_hub_slow_consumer_disconnects_total`) and, for a clean-session-0 device, that
//!   message, the queue and the unacknowledged inflight messages move to its offline queue to be
//!   re-sent (DUP) on reconnect. A clean-session-1 device loses them, as MQTT says.
//!
//! The task stops moving messages from the queue to the socket while more than
//! [`WRITE_HIGH_WATER`] bytes wait to be written, and stops reading while more than
//! [`READ_PAUSE`] bytes wait: a device that does not read cannot make the hub buffer without
//! bound, and one slow device never stalls another (each has its own task and queue).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::{ConnectAck, ConnectAckReason, Packet, QoS, SubscribeReturnCode};
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::acl;
use crate::alink::{self, PlatformReply};
use crate::auth::{self, Authenticated};
use crate::broker::{Registered, Shared, lock};
use crate::connection::{Connection, Transport};
use crate::events::{AclDeniedEvent, Event, ProblemEvent, ReplyEvent, UplinkEvent, now_ms};
use crate::metrics::{add, dec, inc};

/// Stop moving queued messages to the socket above this many unwritten bytes.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Stop reading from a device above this many unwritten bytes (its own replies pile up).
pub(crate) const READ_PAUSE: usize = 256 * 1024;
/// How long a closing connection may take to flush what is already encoded.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Locks a std mutex, ignoring poisoning: the protected data stays consistent because no
/// code path panics while holding these locks (no `unwrap` on input inside them).
fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock(m)
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The device sent DISCONNECT.
    ClientDisconnect,
    /// The socket closed or failed.
    ConnectionLost(String),
    /// Nothing received for 1.5 × keepalive.
    KeepAliveTimeout,
    /// Another connection logged in as the same device.
    Kicked,
    /// The admin API disconnected the device (disabled or deleted).
    AdminDisconnect,
    /// The device did not keep up with its QoS 1 downlinks.
    SlowConsumer,
    /// Malformed or forbidden packet.
    Protocol(String),
    /// PUBLISH outside the device's topics.
    AclDenied(String),
    /// The hub is shutting down.
    Shutdown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ClientDisconnect => f.write_str("client sent DISCONNECT"),
            CloseReason::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            CloseReason::KeepAliveTimeout => {
                f.write_str("keepalive timeout (nothing received for 1.5 x keepalive)")
            }
            CloseReason::Kicked => f.write_str("another connection logged in as the same device"),
            CloseReason::AdminDisconnect => f.write_str("disconnected by the administrator"),
            CloseReason::SlowConsumer => f.write_str("slow consumer: the QoS 1 outbound queue was full"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::AclDenied(t) => write!(f, "publish to {t:?} is not allowed for this device"),
            CloseReason::Shutdown => f.write_str("hub shutting down"),
        }
    }
}

/// A topic filter the device subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) filter: Box<str>,
    /// Granted QoS (0 or 1). Delivery uses the message's QoS (the platform's rule), so this
    /// is informational.
    pub(crate) qos: u8,
}

/// A message on its way to a device. `publish.packet_id` is set when the message was sent
/// before and is re-sent with DUP after a reconnect.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) publish: Box<Publish>,
    /// When it was queued (epoch ms), for the offline queue's retention.
    pub(crate) queued_ms: u64,
}

impl Outgoing {
    /// A fresh message (QoS 0 or 1, never retained).
    pub(crate) fn new(topic: String, payload: Bytes, qos: QoS) -> Self {
        Self {
            publish: Box::new(Publish {
                dup: false,
                retain: false,
                qos,
                topic: topic.into(),
                packet_id: None,
                payload,
                properties: None,
            }),
            queued_ms: now_ms(),
        }
    }

    pub(crate) fn is_qos1(&self) -> bool {
        self.publish.qos == QoS::AtLeastOnce
    }
}

/// The part of a session the broker shares with the connection task.
#[derive(Debug)]
pub(crate) struct Session {
    /// Key in the device table.
    pub(crate) key: Box<str>,
    pub(crate) product_key: Box<str>,
    pub(crate) device_name: Box<str>,
    pub(crate) iot_id: Box<str>,
    pub(crate) client_id: Box<str>,
    pub(crate) ip: IpAddr,
    /// Epoch ms of the CONNACK.
    pub(crate) connected_ms: u64,
    pub(crate) clean_session: bool,
    pub(crate) keep_alive: u16,
    /// `_ss=1`.
    pub(crate) auto_subscribe: bool,
    /// `ext` bit 0.
    pub(crate) ext_rrpc: bool,
    /// std Mutex: held for a few hundred nanoseconds (push/pop, a filter scan), never across
    /// an `.await`; tokio's async Mutex would only add cost.
    pub(crate) inner: Mutex<SessionInner>,
    /// Wakes the connection task: a message was queued or the session must close.
    pub(crate) notify: Notify,
}

/// Mutable session state, behind [`Session::inner`].
#[derive(Debug, Default)]
pub(crate) struct SessionInner {
    /// Bounded by `BrokerConfig::outbound_queue_capacity` (see the module docs for the policy).
    pub(crate) outbox: VecDeque<Outgoing>,
    /// At most `BrokerConfig::max_subscriptions`.
    pub(crate) subs: Vec<Subscription>,
    /// Set once: the session is closing and takes no more messages.
    pub(crate) closing: Option<CloseReason>,
}

/// What happened to a message offered to a session.
#[derive(Debug)]
pub(crate) enum Offer {
    /// Queued for the connection task.
    Accepted,
    /// The device has no subscription (explicit or implicit) matching the topic.
    NotSubscribed,
    /// QoS 0 and the queue is full: dropped (counted by the caller's metrics).
    Dropped,
    /// The session is closing (or just became a slow consumer with this QoS 1 message): the
    /// caller may keep the message for a clean-session-0 device.
    Closing(Outgoing),
}

impl Session {
    /// Whether a downlink on `topic` reaches this device (subscription or implicit).
    pub(crate) fn accepts(&self, inner: &SessionInner, topic: &str) -> bool {
        acl::implicitly_subscribed(&self.product_key, &self.device_name, self.auto_subscribe, topic)
            || acl::any_filter_matches(inner.subs.iter().map(|s| &*s.filter), topic)
    }

    /// Offers a message to the session, applying the overflow policy.
    pub(crate) fn offer(&self, msg: Outgoing, capacity: usize) -> Offer {
        let mut inner = guard(&self.inner);
        if !self.accepts(&inner, &msg.publish.topic) {
            return Offer::NotSubscribed;
        }
        if inner.closing.is_some() {
            return Offer::Closing(msg);
        }
        if inner.outbox.len() >= capacity {
            if !msg.is_qos1() {
                return Offer::Dropped;
            }
            inner.closing = Some(CloseReason::SlowConsumer);
            drop(inner);
            self.notify.notify_one();
            return Offer::Closing(msg);
        }
        inner.outbox.push_back(msg);
        drop(inner);
        self.notify.notify_one();
        Offer::Accepted
    }

    /// Puts messages back at the front of the queue (a taken-over session's unacknowledged
    /// messages), ignoring the capacity: they were accepted before.
    pub(crate) fn requeue_front(&self, msgs: VecDeque<Outgoing>) {
        let mut inner = guard(&self.inner);
        for m in msgs.into_iter().rev() {
            inner.outbox.push_front(m);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Asks the connection task to close (first reason wins). Returns false if it was closing.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut inner = guard(&self.inner);
        let first = inner.closing.is_none();
        if first {
            inner.closing = Some(reason);
        }
        drop(inner);
        self.notify.notify_one();
        first
    }

    /// Number of subscriptions.
    pub(crate) fn subscription_count(&self) -> usize {
        guard(&self.inner).subs.len()
    }

    pub(crate) fn subscriptions(&self) -> Vec<Subscription> {
        guard(&self.inner).subs.clone()
    }
}

/// QoS 1 messages sent to the device and not yet acknowledged: packet-id allocation and the
/// inflight window. Pure bookkeeping, owned by the connection task.
#[derive(Debug)]
pub(crate) struct Inflight {
    window: usize,
    next: u16,
    /// In send order; PUBACKs usually arrive in that order, so the front is checked first.
    slots: VecDeque<(NonZeroU16, Outgoing)>,
}

impl Inflight {
    /// An empty window of `window` messages (at least 1).
    pub(crate) fn new(window: u16) -> Self {
        Self {
            window: usize::from(window.max(1)),
            next: 0,
            slots: VecDeque::new(),
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.slots.len() >= self.window
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn contains(&self, pid: NonZeroU16) -> bool {
        self.slots.iter().any(|(p, _)| *p == pid)
    }

    /// The next free packet id (1..=65535, wrapping, skipping ids in flight).
    pub(crate) fn allocate(&mut self) -> Option<NonZeroU16> {
        for _ in 0..=u16::MAX {
            self.next = self.next.wrapping_add(1);
            if let Some(pid) = NonZeroU16::new(self.next)
                && !self.contains(pid)
            {
                return Some(pid);
            }
        }
        None
    }

    /// Records a sent message.
    pub(crate) fn insert(&mut self, pid: NonZeroU16, msg: Outgoing) {
        self.slots.push_back((pid, msg));
    }

    /// A PUBACK: forgets the message. Returns false for an unknown packet id.
    pub(crate) fn ack(&mut self, pid: NonZeroU16) -> bool {
        let pos = if self.slots.front().is_some_and(|(p, _)| *p == pid) {
            Some(0)
        } else {
            self.slots.iter().position(|(p, _)| *p == pid)
        };
        let found = pos.and_then(|i| self.slots.remove(i)).is_some();
        if self.slots.is_empty() && self.slots.capacity() > 8 {
            self.slots = VecDeque::new();
        }
        found
    }

    /// Everything unacknowledged, marked DUP with its packet id, in send order.
    pub(crate) fn take_for_resend(&mut self) -> VecDeque<Outgoing> {
        std::mem::take(&mut self.slots)
            .into_iter()
            .map(|(pid, mut m)| {
                m.publish.dup = true;
                m.publish.packet_id = Some(pid);
                m
            })
            .collect()
    }
}

/// Decrements the open-connection gauge and releases the connection permit when the task ends,
/// however it ends.
struct ConnectionSlot {
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        dec(&self.shared.metrics.connections_current);
    }
}

/// Serves one accepted socket until it closes. Never panics on input; every way out is logged.
///
/// Not an `async fn`: the returned future is the task's whole state for the life of the
/// connection, so it is kept to one layer (an `async fn` wrapper would keep its own copy of the
/// arguments).
pub(crate) fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    let span = tracing::debug_span!("mqtt", peer = %peer, device = tracing::field::Empty);
    // Created here, not in the async block, so that it is released even if the task is dropped
    // before its first poll.
    let slot = ConnectionSlot {
        shared: shared.clone(),
        _permit: permit,
    };
    async move {
        // Boxed so that the handshake's state does not enlarge the long-lived task future; the
        // match keeps its temporaries out of scope during the connected loop.
        let mut driver = match Box::pin(handshake(&shared, stream, peer, tls, &cancel)).await {
            Some((conn, session)) => Driver::new(shared, conn, session),
            None => return,
        };
        let reason = driver.run(&cancel).await;
        // Boxed, like the handshake: only the connected loop's state stays in the task.
        Box::pin(driver.close(reason)).await;
        drop(slot);
    }
    .instrument(span)
}

enum ReadError {
    Io(std::io::Error),
    Decode(DecodeError),
    Eof,
}

/// TLS, CONNECT and the verdict, under the CONNECT deadline.
async fn handshake(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    cancel: &CancellationToken,
) -> Option<(Connection, Arc<Session>)> {
    let deadline = Instant::now() + shared.config.connect_timeout();
    let ip = peer.ip();
    let transport = match tls {
        None => Transport::Tcp(stream),
        Some(acceptor) => {
            let accept = tokio::select! {
                () = cancel.cancelled() => return None,
                r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => r,
            };
            match accept {
                Ok(Ok(s)) => Transport::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    shared.refused(ip, None, None, None, format!("TLS handshake failed: {e}"));
                    return None;
                }
                Err(_) => {
                    inc(&shared.metrics.connect_timeouts);
                    debug!("TLS handshake not finished before the CONNECT deadline");
                    return None;
                }
            }
        }
    };
    let mut conn = Connection::new(transport, shared.config.max_packet_size);
    let first = tokio::select! {
        () = cancel.cancelled() => return None,
        r = tokio::time::timeout_at(deadline, read_first(&mut conn)) => r,
    };
    let packet = match first {
        Err(_) => {
            inc(&shared.metrics.connect_timeouts);
            debug!("no CONNECT before the deadline; closing");
            return None;
        }
        Ok((Ok(p), _)) => p,
        Ok((Err(ReadError::Decode(DecodeError::UnsupportedProtocolLevel)), hint)) => {
            let reason = match hint {
                Some(ProtocolVersion::MQTT5) => {
                    "MQTT 5.0 (protocol level 5) is not supported; use 3.1.1 or 3.1"
                }
                _ => "unsupported MQTT protocol level; use 3.1.1 (level 4) or 3.1 (level 3)",
            };
            refuse(
                shared,
                &mut conn,
                ip,
                None,
                None,
                ConnectAckReason::UnacceptableProtocolVersion,
                reason.into(),
            )
            .await;
            return None;
        }
        Ok((Err(ReadError::Decode(DecodeError::InvalidClientId)), _)) => {
            let reason = "empty clientId with clean session 0".to_owned();
            refuse(
                shared,
                &mut conn,
                ip,
                None,
                None,
                ConnectAckReason::IdentifierRejected,
                reason,
            )
            .await;
            return None;
        }
        Ok((Err(ReadError::Decode(e)), _)) => {
            inc(&shared.metrics.protocol_errors);
            info!(error = %e, "malformed CONNECT; closing without CONNACK");
            shared.refused(ip, None, None, None, format!("malformed CONNECT: {e}"));
            return None;
        }
        Ok((Err(ReadError::Io(e)), _)) => {
            debug!(error = %e, "connection failed before CONNECT");
            return None;
        }
        Ok((Err(ReadError::Eof), _)) => {
            debug!("connection closed before CONNECT");
            return None;
        }
    };
    let Packet::Connect(connect) = packet else {
        inc(&shared.metrics.protocol_errors);
        info!("first packet is not CONNECT; closing");
        shared.refused(ip, None, None, None, "first packet is not CONNECT".into());
        return None;
    };
    let client_id: &str = &connect.client_id;
    let username: Option<&str> = connect.username.as_deref();
    let password: Option<&[u8]> = connect.password.as_deref();
    let verdict = auth::authenticate(
        &*shared.directory,
        client_id,
        username,
        password,
        connect.keep_alive,
    );
    let auth = match verdict {
        Ok(a) => a,
        Err(refusal) => {
            let code = match refusal.code.code() {
                1 => ConnectAckReason::UnacceptableProtocolVersion,
                2 => ConnectAckReason::IdentifierRejected,
                3 => ConnectAckReason::ServiceUnavailable,
                4 => ConnectAckReason::BadUserNameOrPassword,
                _ => ConnectAckReason::NotAuthorized,
            };
            let reason = refusal.reason.to_string();
            refuse(shared, &mut conn, ip, Some(client_id), username, code, reason).await;
            return None;
        }
    };
    let Authenticated {
        product_key,
        device_name,
        iot_id,
        auto_subscribe,
        ext_rrpc,
    } = auth;
    let connected_ms = now_ms();
    shared
        .directory
        .device_online(&product_key, &device_name, ip, connected_ms);
    let Registered {
        session,
        session_present,
    } = shared.register(
        product_key,
        device_name,
        iot_id,
        client_id.into(),
        ip,
        connected_ms,
        connect.clean_session,
        connect.keep_alive,
        auto_subscribe,
        ext_rrpc,
    );
    inc(&shared.metrics.connack[0]);
    let ack = Packet::ConnectAck(ConnectAck {
        return_code: ConnectAckReason::ConnectionAccepted,
        session_present,
    });
    if let Err(e) = conn.send(ack) {
        warn!(error = ?e, "could not encode CONNACK");
    }
    debug!(
        client_id,
        clean_session = connect.clean_session,
        keep_alive = connect.keep_alive,
        session_present,
        "device online"
    );
    Some((conn, session))
}

/// Reads the first packet, keeping a hint of the protocol version in case the codec refuses it.
async fn read_first(conn: &mut Connection) -> (Result<Packet, ReadError>, Option<ProtocolVersion>) {
    let mut hint = None;
    loop {
        if hint.is_none() && !conn.peek_read().is_empty() {
            let head = conn.peek_read();
            let mut copy = BytesMut::from(&head[..head.len().min(16)]);
            hint = VersionCodec.decode(&mut copy).ok().flatten();
        }
        match conn.next_packet() {
            Ok(Some(p)) => return (Ok(p), hint),
            Ok(None) => {}
            Err(e) => return (Err(ReadError::Decode(e)), hint),
        }
        match conn.io(true).await {
            Ok(p) if p.eof => return (Err(ReadError::Eof), hint),
            Ok(_) => {}
            Err(e) => return (Err(ReadError::Io(e)), hint),
        }
    }
}

/// Sends a refusing CONNACK, logs the refusal once and emits it.
async fn refuse(
    shared: &Shared,
    conn: &mut Connection,
    ip: IpAddr,
    client_id: Option<&str>,
    username: Option<&str>,
    code: ConnectAckReason,
    reason: String,
) {
    let code_byte = u8::from(code);
    if let Some(c) = shared.metrics.connack.get(usize::from(code_byte)) {
        inc(c);
    }
    info!(code = code_byte, client_id, username, %reason, "CONNECT refused");
    shared.refused(ip, Some(code_byte), client_id, username, reason);
    if conn
        .send(Packet::ConnectAck(ConnectAck {
            return_code: code,
            session_present: false,
        }))
        .is_ok()
    {
        let _ = tokio::time::timeout(CLOSE_FLUSH, conn.flush()).await;
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH, conn.shutdown()).await;
}

/// The connected phase of one device.
struct Driver {
    shared: Arc<Shared>,
    conn: Connection,
    session: Arc<Session>,
    inflight: Inflight,
    /// 1.5 × the CONNECT keepalive.
    keepalive: Duration,
    last_rx: Instant,
}

impl Driver {
    fn new(shared: Arc<Shared>, mut conn: Connection, session: Arc<Session>) -> Self {
        // The CONNECT has been decoded: an idle connection keeps no read buffer.
        conn.release_read_buffer();
        tracing::Span::current().record(
            "device",
            format_args!("{}/{}", session.product_key, session.device_name),
        );
        Driver {
            inflight: Inflight::new(shared.config.max_inflight),
            keepalive: Duration::from_millis(u64::from(session.keep_alive) * 1500),
            last_rx: Instant::now(),
            shared,
            conn,
            session,
        }
    }

    /// The connected loop; returns why it ended.
    async fn run(&mut self, cancel: &CancellationToken) -> CloseReason {
        // Clients may send packets right behind their CONNECT, in the same segment.
        if let Err(reason) = self.on_readable() {
            return reason;
        }
        let sleep = tokio::time::sleep(self.keepalive);
        tokio::pin!(sleep);
        loop {
            if let Err(reason) = self.pump(false) {
                return reason;
            }
            let want_read = self.conn.write_backlog() < READ_PAUSE;
            tokio::select! {
                biased;
                () = cancel.cancelled() => return CloseReason::Shutdown,
                res = self.conn.io(want_read) => match res {
                    Err(e) => return CloseReason::ConnectionLost(e.to_string()),
                    Ok(progress) => {
                        add(&self.shared.metrics.bytes_out, progress.written as u64);
                        if progress.read > 0 {
                            add(&self.shared.metrics.bytes_in, progress.read as u64);
                            self.last_rx = Instant::now();
                            if let Err(reason) = self.on_readable() {
                                return reason;
                            }
                        }
                        if progress.eof {
                            return CloseReason::ConnectionLost("closed by the device".into());
                        }
                    }
                },
                () = self.session.notify.notified() => {}
                () = &mut sleep => {
                    let deadline = self.last_rx + self.keepalive;
                    if Instant::now() >= deadline {
                        return CloseReason::KeepAliveTimeout;
                    }
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Moves queued messages to the write buffer while the socket keeps up and the inflight
    /// window has room. Returns the close reason once the session is closing (unless `force`).
    fn pump(&mut self, force: bool) -> Result<(), CloseReason> {
        let mut inner = guard(&self.session.inner);
        if !force && let Some(reason) = &inner.closing {
            return Err(reason.clone());
        }
        while self.conn.write_backlog() < WRITE_HIGH_WATER {
            match inner.outbox.front() {
                None => break,
                Some(m) if m.is_qos1() && self.inflight.is_full() => break,
                Some(_) => {}
            }
            let Some(mut out) = inner.outbox.pop_front() else {
                break;
            };
            if out.is_qos1() {
                let resend = out.publish.packet_id.filter(|p| !self.inflight.contains(*p));
                let pid = match resend {
                    Some(pid) => {
                        inc(&self.shared.metrics.qos1_resent);
                        pid
                    }
                    None => {
                        out.publish.dup = false;
                        match self.inflight.allocate() {
                            Some(pid) => pid,
                            None => {
                                inner.outbox.push_front(out);
                                break;
                            }
                        }
                    }
                };
                out.publish.packet_id = Some(pid);
                self.inflight.insert(pid, out.clone());
            } else {
                out.publish.packet_id = None;
            }
            inc(&self.shared.metrics.messages_out);
            if let Err(e) = self.conn.send(Packet::Publish(out.publish)) {
                warn!(error = ?e, "could not encode a PUBLISH; dropped");
            }
        }
        if inner.outbox.is_empty() && inner.outbox.capacity() > 16 {
            inner.outbox = VecDeque::new();
        }
        Ok(())
    }

    /// Decodes and handles every complete packet read so far.
    fn on_readable(&mut self) -> Result<(), CloseReason> {
        loop {
            match self.conn.next_packet() {
                Ok(Some(packet)) => self.on_packet(packet)?,
                Ok(None) => break,
                Err(e) => {
                    let reason = match e {
                        DecodeError::MaxSizeExceeded { size, max } => {
                            format!("packet of {size} bytes exceeds the limit of {max} bytes")
                        }
                        other => format!("malformed packet: {other}"),
                    };
                    self.problem(None, reason.clone(), true);
                    return Err(CloseReason::Protocol(reason));
                }
            }
        }
        self.conn.release_read_buffer();
        Ok(())
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(publish) => self.on_publish(*publish),
            Packet::PublishAck { packet_id } => {
                if !self.inflight.ack(packet_id) {
                    debug!(packet_id, "PUBACK for an unknown packet id; ignored");
                }
                Ok(())
            }
            Packet::Subscribe {
                packet_id,
                topic_filters,
            } => {
                self.on_subscribe(packet_id, topic_filters);
                Ok(())
            }
            Packet::Unsubscribe {
                packet_id,
                topic_filters,
            } => {
                {
                    let mut inner = guard(&self.session.inner);
                    inner
                        .subs
                        .retain(|s| !topic_filters.iter().any(|f| **f == *s.filter));
                }
                self.send(Packet::UnsubscribeAck { packet_id });
                Ok(())
            }
            Packet::PingRequest => {
                self.send(Packet::PingResponse);
                Ok(())
            }
            Packet::Disconnect => Err(CloseReason::ClientDisconnect),
            Packet::Connect(_) => self.protocol_violation("second CONNECT on the same connection"),
            Packet::PublishReceived { .. }
            | Packet::PublishRelease { .. }
            | Packet::PublishComplete { .. } => {
                self.protocol_violation("QoS 2 flow (PUBREC/PUBREL/PUBCOMP) is not supported")
            }
            Packet::ConnectAck(_)
            | Packet::SubscribeAck { .. }
            | Packet::UnsubscribeAck { .. }
            | Packet::PingResponse => self.protocol_violation("server-to-client packet sent by a device"),
        }
    }

    fn protocol_violation(&mut self, what: &str) -> Result<(), CloseReason> {
        self.problem(None, what.to_owned(), true);
        Err(CloseReason::Protocol(what.to_owned()))
    }

    fn send(&mut self, packet: Packet) {
        if let Err(e) = self.conn.send(packet) {
            warn!(error = ?e, "could not encode a packet");
        }
    }

    fn on_publish(&mut self, publish: Publish) -> Result<(), CloseReason> {
        let metrics = &self.shared.metrics;
        inc(&metrics.messages_in);
        let topic: &str = &publish.topic;
        if publish.qos == QoS::ExactlyOnce {
            let reason = "QoS 2 PUBLISH is not supported (QoS 0 and 1 only)".to_owned();
            self.problem(Some(topic.to_owned()), reason.clone(), true);
            return Err(CloseReason::Protocol(reason));
        }
        let session = &self.session;
        if !acl::may_publish(&session.product_key, &session.device_name, topic) {
            inc(&metrics.acl_denied_publish);
            info!(topic, "PUBLISH outside the device's topics; closing");
            if self.shared.observed() {
                self.shared.emit(Event::AclDenied(AclDeniedEvent {
                    product_key: session.product_key.to_string(),
                    device_name: session.device_name.to_string(),
                    action: "publish",
                    topic: topic.to_owned(),
                    client_ip: session.ip.to_string(),
                    time: now_ms(),
                }));
            }
            return Err(CloseReason::AclDenied(topic.to_owned()));
        }
        let recv_ms = now_ms();
        if self.shared.observed() {
            self.shared.emit(Event::Uplink(UplinkEvent::new(
                &session.product_key,
                &session.device_name,
                topic,
                publish.qos.value(),
                &publish.payload,
                recv_ms,
            )));
        }
        let handling = alink::handle_uplink(
            topic,
            &publish.payload,
            recv_ms,
            now_ms(),
            self.shared.config.sys_ack,
        );
        if let Some(props) = handling.properties {
            self.shared.remember_properties(&session.key, props);
        }
        if let Some((key, payload)) = handling.completes {
            self.shared.complete_call(&session.key, &key, payload);
        }
        if let Some(problem) = handling.problem {
            debug!(topic, %problem, "unusable uplink");
            self.problem(Some(topic.to_owned()), problem, false);
        }
        if let Some(reply) = handling.reply {
            self.reply(reply, publish.qos);
        }
        // PUBACK only now: the platform has handled the message.
        if publish.qos == QoS::AtLeastOnce
            && let Some(packet_id) = publish.packet_id
        {
            self.send(Packet::PublishAck { packet_id });
        }
        Ok(())
    }

    /// Queues a platform reply, at the QoS of the uplink, if the device is subscribed to it.
    fn reply(&mut self, reply: PlatformReply, qos: QoS) {
        inc(&self.shared.metrics.replies);
        let observed = self.shared.observed();
        let text = if observed {
            String::from_utf8_lossy(&reply.payload).into_owned()
        } else {
            String::new()
        };
        let msg = Outgoing::new(reply.topic.clone(), Bytes::from(reply.payload), qos);
        let delivered = match self
            .session
            .offer(msg, self.shared.config.outbound_queue_capacity)
        {
            Offer::Accepted => true,
            Offer::Dropped => {
                inc(&self.shared.metrics.qos0_dropped);
                false
            }
            Offer::NotSubscribed | Offer::Closing(_) => false,
        };
        if observed {
            self.shared.emit(Event::Reply(ReplyEvent {
                product_key: self.session.product_key.to_string(),
                device_name: self.session.device_name.to_string(),
                topic: reply.topic,
                code: reply.code,
                payload: text,
                delivered,
                time: now_ms(),
            }));
        }
    }

    fn on_subscribe<S: std::ops::Deref<Target = str>>(
        &mut self,
        packet_id: NonZeroU16,
        filters: Vec<(S, QoS)>,
    ) {
        let max = self.shared.config.max_subscriptions;
        let (pk, dn) = (&*self.session.product_key, &*self.session.device_name);
        let mut status = Vec::with_capacity(filters.len());
        let mut denied: Vec<String> = Vec::new();
        let mut over_limit: Vec<String> = Vec::new();
        {
            let mut inner = guard(&self.session.inner);
            for (filter, qos) in &filters {
                let filter: &str = filter;
                if !acl::may_subscribe(pk, dn, filter) {
                    denied.push(filter.to_owned());
                    status.push(SubscribeReturnCode::Failure);
                    continue;
                }
                // Subscription QoS 2 is granted as QoS 1 (spec §12 Q4).
                let granted = if *qos == QoS::AtMostOnce {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                if let Some(existing) = inner.subs.iter_mut().find(|s| &*s.filter == filter) {
                    existing.qos = granted.value();
                } else if inner.subs.len() >= max {
                    over_limit.push(filter.to_owned());
                    status.push(SubscribeReturnCode::Failure);
                    continue;
                } else {
                    inner.subs.push(Subscription {
                        filter: filter.into(),
                        qos: granted.value(),
                    });
                }
                status.push(SubscribeReturnCode::Success(granted));
            }
        }
        for filter in denied {
            inc(&self.shared.metrics.acl_denied_subscribe);
            info!(filter, "SUBSCRIBE outside the device's topics; SUBACK 0x80");
            if self.shared.observed() {
                self.shared.emit(Event::AclDenied(AclDeniedEvent {
                    product_key: pk.to_owned(),
                    device_name: dn.to_owned(),
                    action: "subscribe",
                    topic: filter,
                    client_ip: self.session.ip.to_string(),
                    time: now_ms(),
                }));
            }
        }
        for filter in over_limit {
            info!(filter, max, "subscription limit reached; SUBACK 0x80");
            self.problem(
                Some(filter),
                format!("subscription limit of {max} reached"),
                false,
            );
        }
        self.send(Packet::SubscribeAck { packet_id, status });
    }

    fn problem(&self, topic: Option<String>, reason: String, closed: bool) {
        if closed {
            inc(&self.shared.metrics.protocol_errors);
            info!(%reason, "closing the connection");
        }
        if self.shared.observed() {
            self.shared.emit(Event::Problem(ProblemEvent {
                product_key: Some(self.session.product_key.to_string()),
                device_name: Some(self.session.device_name.to_string()),
                topic,
                reason,
                closed,
                client_ip: self.session.ip.to_string(),
                time: now_ms(),
            }));
        }
    }

    async fn close(mut self, reason: CloseReason) {
        if reason == CloseReason::Shutdown {
            // Graceful shutdown: hand the device what is already queued before closing.
            let _ = self.pump(true);
        }
        self.session.close(reason.clone());
        let metrics = &self.shared.metrics;
        match &reason {
            CloseReason::KeepAliveTimeout => inc(&metrics.keepalive_timeouts),
            CloseReason::SlowConsumer => inc(&metrics.slow_consumer_disconnects),
            CloseReason::Kicked => inc(&metrics.duplicate_logins),
            _ => {}
        }
        let last_rx_ms =
            now_ms().saturating_sub(u64::try_from(self.last_rx.elapsed().as_millis()).unwrap_or(0));
        debug!(%reason, inflight = self.inflight.len(), "device offline");
        let unacked = self.inflight.take_for_resend();
        self.shared
            .unregister(&self.session, unacked, &reason, last_rx_ms);
        if !matches!(reason, CloseReason::ConnectionLost(_)) {
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.conn.flush()).await;
        }
        let _ = tokio::time::timeout(CLOSE_FLUSH, self.conn.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, qos: QoS) -> Outgoing {
        Outgoing::new(topic.to_owned(), Bytes::from_static(b"x"), qos)
    }

    #[test]
    fn packet_ids_skip_ids_in_flight_and_wrap() {
        let mut f = Inflight::new(3);
        let a = f.allocate().expect("id");
        f.insert(a, msg("/t", QoS::AtLeastOnce));
        assert_eq!(a.get(), 1);
        f.next = u16::MAX - 1;
        let b = f.allocate().expect("id");
        assert_eq!(b.get(), u16::MAX);
        f.insert(b, msg("/t", QoS::AtLeastOnce));
        // 0 is skipped, 1 is in flight.
        assert_eq!(f.allocate().map(NonZeroU16::get), Some(2));
    }

    #[test]
    fn the_window_fills_and_acks_free_it() {
        let mut f = Inflight::new(2);
        for _ in 0..2 {
            let p = f.allocate().expect("id");
            f.insert(p, msg("/t", QoS::AtLeastOnce));
        }
        assert!(f.is_full());
        assert!(f.ack(NonZeroU16::new(2).expect("nonzero")));
        assert!(!f.ack(NonZeroU16::new(2).expect("nonzero")));
        assert!(!f.is_full());
    }

    #[test]
    fn unacknowledged_messages_are_resent_with_dup_and_their_ids() {
        let mut f = Inflight::new(4);
        for _ in 0..3 {
            let p = f.allocate().expect("id");
            f.insert(p, msg("/t", QoS::AtLeastOnce));
        }
        f.ack(NonZeroU16::new(2).expect("nonzero"));
        let again: Vec<_> = f
            .take_for_resend()
            .into_iter()
            .map(|m| (m.publish.dup, m.publish.packet_id))
            .collect();
        assert_eq!(
            again,
            vec![(true, NonZeroU16::new(1)), (true, NonZeroU16::new(3))]
        );
        assert_eq!(f.len(), 0);
    }
}
