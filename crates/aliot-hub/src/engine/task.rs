//! The task that drives one connection.
//!
//! One tokio task per connection does everything for it: TLS handshake, CONNECT (with its
//! deadline), the platform's verdict, then a loop over three sources: the socket, the session's
//! outbound queue (fed by the cluster's deliveries and by the platform's own replies) and the
//! keepalive timer. One task rather than a reader and a writer, because a task costs memory and
//! the hub must hold an idle device in a few KiB.
//!
//! The state shared with the table is a [`Session`] (its overflow policy is documented in
//! `table::session`). The QoS 1 inflight window ([`Inflight`]) belongs to the task alone; what
//! is left in it when the connection ends goes back to the table.
//!
//! The task stops moving messages from the queue to the socket while more than
//! [`WRITE_HIGH_WATER`] bytes wait to be written, and stops reading while more than
//! [`READ_PAUSE`] bytes wait: a device that does not read cannot make the hub buffer without
//! bound, and one slow device never stalls another (each has its own task and queue).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::{ConnectAck, Packet, QoS, SubscribeReturnCode};
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connection::{Connection, Transport};
use super::limits::PendingGuard;
use super::{Admission, ConnectRequest, EngineShared, Principal, Refused, connack};
use crate::clock::now_ms;
use crate::metrics::{add, dec, inc};
use crate::table::{CloseReason, DeviceNames, Inflight, Registered, Session, SessionId, Subscription, lock};

/// Stop moving queued messages to the socket above this many unwritten bytes.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Stop reading from a device above this many unwritten bytes (its own replies pile up).
pub(crate) const READ_PAUSE: usize = 256 * 1024;
/// How long a closing connection may take to flush what is already encoded.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Decrements the open-connection gauge and releases the connection permit when the task ends,
/// however it ends.
struct ConnectionSlot {
    shared: Arc<EngineShared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        dec(&self.shared.metrics.connections_current);
    }
}

/// The span of one connection's logs (peer address, then the device once it is known).
///
/// The caller instruments [`run`]'s future with it only when it is enabled (debug logs): an
/// `Instrumented` future keeps the span, 40 bytes, in every idle task even when it is disabled.
pub(crate) fn span(peer: SocketAddr) -> tracing::Span {
    tracing::debug_span!("mqtt", peer = %peer, device = tracing::field::Empty)
}

/// Serves one accepted socket until it closes. Never panics on input; every way out is logged.
///
/// Not an `async fn`: the returned future is the task's whole state for the life of the
/// connection, so it is kept to one layer (an `async fn` wrapper would keep its own copy of the
/// arguments).
pub(crate) fn run(
    shared: Arc<EngineShared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
    permit: OwnedSemaphorePermit,
    pending: PendingGuard,
) -> impl Future<Output = ()> + Send {
    // Created here, not in the async block, so that it is released even if the task is dropped
    // before its first poll.
    let slot = ConnectionSlot {
        shared,
        _permit: permit,
    };
    // Boxed, and created here rather than inside the async block: the handshake's state and the
    // arguments only it uses (socket, peer, TLS acceptor: 80 bytes) would otherwise stay in the
    // long-lived task future, which now captures this one pointer.
    let handshake = Box::pin(handshake(slot, stream, peer, tls, cancel, pending));
    async move {
        let Some(Accepted {
            slot,
            cancel,
            conn,
            session,
        }) = handshake.await
        else {
            return;
        };
        let mut driver = Driver::new(slot, conn, session);
        let reason = driver.run(&cancel).await;
        // Boxed, like the handshake: only the connected loop's state stays in the task. The
        // connection slot is released when the driver is dropped, at the end of `close`.
        Box::pin(driver.close(reason)).await;
    }
}

/// What a successful handshake hands to the connected loop.
struct Accepted {
    slot: ConnectionSlot,
    cancel: CancellationToken,
    conn: Connection,
    session: Arc<Session>,
}

enum ReadError {
    Io(std::io::Error),
    Decode(DecodeError),
    Eof,
}

/// TLS, CONNECT and the verdict, under the CONNECT deadline. `pending` holds this address's
/// place among the handshakes in progress until the handshake ends, however it ends.
async fn handshake(
    slot: ConnectionSlot,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
    pending: PendingGuard,
) -> Option<Accepted> {
    let shared = &slot.shared;
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
                    let reason = format!("TLS handshake failed: {e}");
                    shared.hooks.refused(ip, None, None, None, &reason);
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
    // The CONNECT is read with its own small limit: an unauthenticated peer cannot make the hub
    // buffer a whole `max_packet_size` packet.
    let mut conn = Connection::new(transport, shared.config.max_connect_packet_size);
    // Declared after the connection so that it is dropped before it: the address's place is
    // free again by the time the peer sees the connection close.
    let _pending = pending;
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
            refuse(
                shared,
                &mut conn,
                ip,
                None,
                None,
                connack::unsupported_level(hint),
            )
            .await;
            return None;
        }
        Ok((Err(ReadError::Decode(DecodeError::InvalidClientId)), _)) => {
            refuse(shared, &mut conn, ip, None, None, connack::empty_client_id()).await;
            return None;
        }
        Ok((Err(ReadError::Decode(e)), _)) => {
            inc(&shared.metrics.protocol_errors);
            if let Some(held) = shared.refusal_log.allow(ip) {
                info!(%ip, error = %e, held_back = held, "malformed CONNECT; closing without CONNACK");
            }
            let reason = match e {
                DecodeError::MaxSizeExceeded { size, max } => {
                    format!("first packet of {size} bytes exceeds the CONNECT limit of {max} bytes")
                }
                other => format!("malformed CONNECT: {other}"),
            };
            shared.hooks.refused(ip, None, None, None, &reason);
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
        if let Some(held) = shared.refusal_log.allow(ip) {
            info!(%ip, held_back = held, "first packet is not CONNECT; closing");
        }
        shared
            .hooks
            .refused(ip, None, None, None, "first packet is not CONNECT");
        return None;
    };
    let client_id: &str = &connect.client_id;
    let username: Option<&str> = connect.username.as_deref();
    let request = ConnectRequest {
        client_id,
        username,
        password: connect.password.as_deref(),
        keep_alive: connect.keep_alive,
    };
    let principal = match shared.hooks.authenticate(request).await {
        Ok(Admission::Session(p)) => p,
        Ok(Admission::AnswerThenClose { topic, payload }) => {
            answer_then_close(shared, &mut conn, topic, payload).await;
            return None;
        }
        Err(refused) => {
            refuse(shared, &mut conn, ip, Some(client_id), username, refused).await;
            return None;
        }
    };
    let Principal {
        product_key,
        device_name,
        iot_id,
        auto_subscribe,
        ext_rrpc,
    } = principal;
    let connected_ms = now_ms();
    let id = SessionId {
        names: DeviceNames::new(&product_key, &device_name, &iot_id, client_id),
        ip,
        connected_ms,
        clean_session: connect.clean_session,
        keep_alive: connect.keep_alive,
        auto_subscribe,
        ext_rrpc,
    };
    let Ok(Registered {
        session,
        session_present,
        kicked,
    }) = shared.table.register(id, connected_ms)
    else {
        // Disabled or deleted while this CONNECT was being authenticated.
        let refused = Refused {
            code: 5,
            reason: "device disabled or deleted".into(),
        };
        refuse(shared, &mut conn, ip, Some(client_id), username, refused).await;
        return None;
    };
    // The CONNECT is read: the packets after it may be as large as any.
    conn.set_max_packet(shared.config.max_packet_size);
    if let Some(old) = &kicked {
        info!(old_ip = %old.id.ip, new_ip = %ip, "duplicate login: closing the previous connection");
    }
    shared.hooks.connected(&session, kicked.as_ref());
    inc(&shared.metrics.connack[0]);
    let ack = Packet::ConnectAck(ConnectAck {
        return_code: connack::reason(0),
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
    Some(Accepted {
        slot,
        cancel,
        conn,
        session,
    })
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

/// CONNACK 0, one QoS 0 message, then the connection is closed (the platform has reported
/// what happened: an answer needs no session).
async fn answer_then_close(
    shared: &EngineShared,
    conn: &mut Connection,
    topic: String,
    payload: bytes::Bytes,
) {
    inc(&shared.metrics.connack[0]);
    let ack = Packet::ConnectAck(ConnectAck {
        return_code: connack::reason(0),
        session_present: false,
    });
    let answer = Packet::Publish(Box::new(Publish {
        dup: false,
        retain: false,
        qos: QoS::AtMostOnce,
        topic: topic.into(),
        packet_id: None,
        payload,
        properties: None,
    }));
    if conn.send(ack).is_ok() && conn.send(answer).is_ok() {
        let _ = tokio::time::timeout(CLOSE_FLUSH, conn.flush()).await;
    } else {
        warn!("could not encode a CONNECT's answer");
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH, conn.shutdown()).await;
}

/// Sends a refusing CONNACK, counts and logs the refusal once and reports it to the platform.
async fn refuse(
    shared: &EngineShared,
    conn: &mut Connection,
    ip: IpAddr,
    client_id: Option<&str>,
    username: Option<&str>,
    refused: Refused,
) {
    let code = connack::reason(refused.code);
    let code_byte = u8::from(code);
    if let Some(c) = shared.metrics.connack.get(usize::from(code_byte)) {
        inc(c);
    }
    if let Some(held) = shared.refusal_log.allow(ip) {
        info!(%ip, code = code_byte, client_id, username, reason = %refused.reason, held_back = held, "CONNECT refused");
    }
    shared
        .hooks
        .refused(ip, Some(code_byte), client_id, username, &refused.reason);
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

/// The connected phase of one device. Kept small: it is most of an idle connection's task.
struct Driver {
    /// The engine's shared state (`slot.shared`) and this connection's permit.
    slot: ConnectionSlot,
    conn: Connection,
    session: Arc<Session>,
    inflight: Inflight,
    last_rx: Instant,
}

impl Driver {
    fn new(slot: ConnectionSlot, mut conn: Connection, session: Arc<Session>) -> Self {
        // The CONNECT has been decoded: an idle connection keeps no read buffer.
        conn.release_read_buffer();
        tracing::Span::current().record(
            "device",
            format_args!("{}/{}", session.id.product_key(), session.id.device_name()),
        );
        Driver {
            inflight: Inflight::new(slot.shared.config.max_inflight),
            last_rx: Instant::now(),
            slot,
            conn,
            session,
        }
    }

    fn shared(&self) -> &EngineShared {
        &self.slot.shared
    }

    /// 1.5 × the CONNECT keepalive (computed, not stored: the driver stays small).
    fn keepalive(&self) -> Duration {
        Duration::from_millis(u64::from(self.session.id.keep_alive) * 1500)
    }

    /// The connected loop; returns why it ended.
    async fn run(&mut self, cancel: &CancellationToken) -> CloseReason {
        // Clients may send packets right behind their CONNECT, in the same segment.
        if let Err(reason) = self.on_readable() {
            return reason;
        }
        let sleep = tokio::time::sleep(self.keepalive());
        tokio::pin!(sleep);
        loop {
            if let Err(reason) = self.pump(false) {
                return reason;
            }
            // Checked on every turn rather than awaited: the listener wakes every session when
            // it cancels (see `listener::serve`), and an idle task keeps no `cancelled()` future.
            if cancel.is_cancelled() {
                return CloseReason::Shutdown;
            }
            let want_read = self.conn.write_backlog() < READ_PAUSE;
            tokio::select! {
                biased;
                res = self.conn.io(want_read) => match res {
                    Err(e) => return CloseReason::ConnectionLost(e.to_string()),
                    Ok(progress) => {
                        add(&self.shared().metrics.bytes_out, progress.written as u64);
                        if progress.read > 0 {
                            add(&self.shared().metrics.bytes_in, progress.read as u64);
                            if let Err(reason) = self.on_readable() {
                                return reason;
                            }
                        }
                        if progress.eof {
                            return CloseReason::ConnectionLost("closed by the device".into());
                        }
                    }
                },
                () = std::future::poll_fn(|cx| self.session.poll_wake(cx)) => {}
                () = &mut sleep => {
                    let deadline = self.last_rx + self.keepalive();
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
        let mut inner = lock(&self.session.inner);
        if !force && let Some(reason) = &inner.closing {
            return Err(reason.clone());
        }
        while self.conn.write_backlog() < WRITE_HIGH_WATER {
            match inner.front() {
                None => break,
                Some(m) if m.is_qos1() && self.inflight.is_full() => break,
                Some(_) => {}
            }
            let Some(mut out) = inner.pop() else {
                break;
            };
            let pid = if out.is_qos1() {
                let resend = out.publish.packet_id.filter(|p| !self.inflight.contains(*p));
                let pid = match resend {
                    Some(pid) => {
                        inc(&self.shared().metrics.qos1_resent);
                        pid
                    }
                    None => {
                        out.publish.dup = false;
                        match self.inflight.allocate() {
                            Some(pid) => pid,
                            None => {
                                inner.unpop(out);
                                break;
                            }
                        }
                    }
                };
                out.publish.packet_id = Some(pid);
                Some(pid)
            } else {
                out.publish.packet_id = None;
                None
            };
            // Encoded first, recorded in flight only once it is in the write buffer: a message
            // that cannot be encoded is dropped whole (and leaves the budget), never half-sent.
            match self.conn.send(Packet::Publish(out.publish.clone())) {
                Ok(()) => {
                    inc(&self.shared().metrics.messages_out);
                    if let Some(pid) = pid {
                        self.inflight.insert(pid, out);
                    }
                }
                Err(e) => {
                    inc(&self.shared().metrics.encode_failures);
                    warn!(error = ?e, topic = %out.publish.topic, "could not encode a PUBLISH; dropped");
                    if pid.is_some() {
                        inner.release_qos1(out.size());
                    }
                }
            }
        }
        Ok(())
    }

    /// Decodes and handles every complete packet read so far. Only a complete packet counts as
    /// activity for the keepalive (MQTT-3.1.2-24): a peer trickling an unfinished packet is
    /// closed like a silent one.
    fn on_readable(&mut self) -> Result<(), CloseReason> {
        loop {
            match self.conn.next_packet() {
                Ok(Some(packet)) => {
                    self.last_rx = Instant::now();
                    self.on_packet(packet)?;
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = match e {
                        DecodeError::MaxSizeExceeded { size, max } => {
                            format!("packet of {size} bytes exceeds the limit of {max} bytes")
                        }
                        other => format!("malformed packet: {other}"),
                    };
                    self.problem(None, &reason, true);
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
                match self.inflight.ack(packet_id) {
                    Some(acked) => {
                        self.session.release(acked.size());
                        self.shared().table.acknowledged(&self.session, &acked);
                    }
                    None => debug!(packet_id, "PUBACK for an unknown packet id; ignored"),
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
                    let mut inner = lock(&self.session.inner);
                    inner
                        .subs
                        .retain(|s| !topic_filters.iter().any(|f| **f == *s.filter));
                }
                self.shared().table.subscriptions_changed(&self.session);
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
        self.problem(None, what, true);
        Err(CloseReason::Protocol(what.to_owned()))
    }

    fn send(&mut self, packet: Packet) {
        if let Err(e) = self.conn.send(packet) {
            warn!(error = ?e, "could not encode a packet");
        }
    }

    fn on_publish(&mut self, publish: Publish) -> Result<(), CloseReason> {
        inc(&self.shared().metrics.messages_in);
        let topic: &str = &publish.topic;
        if publish.qos == QoS::ExactlyOnce {
            let reason = "QoS 2 PUBLISH is not supported (QoS 0 and 1 only)".to_owned();
            self.problem(Some(topic), &reason, true);
            return Err(CloseReason::Protocol(reason));
        }
        if !self.shared().hooks.may_publish(&self.session, topic) {
            inc(&self.shared().metrics.acl_denied_publish);
            info!(topic, "PUBLISH outside the device's topics; closing");
            return Err(CloseReason::AclDenied(topic.to_owned()));
        }
        self.shared().hooks.uplink(&self.session, &publish);
        // PUBACK only now: the platform has handled the message.
        if publish.qos == QoS::AtLeastOnce
            && let Some(packet_id) = publish.packet_id
        {
            self.send(Packet::PublishAck { packet_id });
        }
        Ok(())
    }

    fn on_subscribe<S: std::ops::Deref<Target = str>>(
        &mut self,
        packet_id: NonZeroU16,
        filters: Vec<(S, QoS)>,
    ) {
        let max = self
            .shared()
            .hooks
            .max_subscriptions(&self.session, self.shared().config.max_subscriptions);
        // Asked before taking the session lock: the platform reports denials as events.
        let allowed: Vec<bool> = filters
            .iter()
            .map(|(f, _)| self.shared().hooks.may_subscribe(&self.session, f))
            .collect();
        let mut status = Vec::with_capacity(filters.len());
        let mut over_limit: Vec<&str> = Vec::new();
        let mut denied: Vec<&str> = Vec::new();
        {
            let mut inner = lock(&self.session.inner);
            for ((filter, qos), allowed) in filters.iter().zip(allowed) {
                let filter: &str = filter;
                if !allowed {
                    denied.push(filter);
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
                    over_limit.push(filter);
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
        // One log line and one event per packet, however many filters it refused: a SUBSCRIBE of
        // thousands of bad filters is one line, not thousands.
        if let Some(first) = denied.first() {
            add(&self.shared().metrics.acl_denied_subscribe, denied.len() as u64);
            info!(
                first,
                refused = denied.len(),
                "SUBSCRIBE outside the device's topics; SUBACK 0x80"
            );
            self.shared().hooks.subscribe_denied(&self.session, &denied);
        }
        if let Some(first) = over_limit.first() {
            info!(
                first,
                refused = over_limit.len(),
                max,
                "subscription limit reached; SUBACK 0x80"
            );
            let reason = format!(
                "subscription limit of {max} reached: {} filter(s) refused",
                over_limit.len()
            );
            self.problem(Some(first), &reason, false);
        }
        self.shared().table.subscriptions_changed(&self.session);
        self.send(Packet::SubscribeAck { packet_id, status });
    }

    fn problem(&self, topic: Option<&str>, reason: &str, closed: bool) {
        if closed {
            inc(&self.shared().metrics.protocol_errors);
            info!(%reason, "closing the connection");
        }
        self.shared().hooks.problem(&self.session, topic, reason, closed);
    }

    async fn close(mut self, reason: CloseReason) {
        if reason == CloseReason::Shutdown {
            // Graceful shutdown: hand the device what is already queued before closing.
            let _ = self.pump(true);
        }
        self.session.close(reason.clone());
        let metrics = &self.shared().metrics;
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
        let owned = self.shared().table.unregister(&self.session, unacked);
        self.shared()
            .hooks
            .disconnected(&self.session, &reason, owned, last_rx_ms);
        if !matches!(reason, CloseReason::ConnectionLost(_)) {
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.conn.flush()).await;
        }
        let _ = tokio::time::timeout(CLOSE_FLUSH, self.conn.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::BoxFuture;
    use crate::config::BrokerConfig;
    use crate::engine::{Engine, Hooks};
    use crate::metrics::Metrics;
    use crate::table::{DeviceTable, TableLimits};

    /// Refuses everyone; observes nothing.
    struct NoHooks;

    impl Hooks for NoHooks {
        fn authenticate<'a>(&'a self, _: ConnectRequest<'a>) -> BoxFuture<'a, Result<Admission, Refused>> {
            Box::pin(std::future::ready(Err(Refused {
                code: 4,
                reason: "no".into(),
            })))
        }
        fn refused(&self, _: IpAddr, _: Option<u8>, _: Option<&str>, _: Option<&str>, _: &str) {}
        fn connected(&self, _: &Arc<Session>, _: Option<&Arc<Session>>) {}
        fn disconnected(&self, _: &Arc<Session>, _: &CloseReason, _: bool, _: u64) {}
        fn may_publish(&self, _: &Session, _: &str) -> bool {
            false
        }
        fn may_subscribe(&self, _: &Session, _: &str) -> bool {
            false
        }
        fn subscribe_denied(&self, _: &Session, _: &[&str]) {}
        fn uplink(&self, _: &Arc<Session>, _: &Publish) {}
        fn problem(&self, _: &Session, _: Option<&str>, _: &str, _: bool) {}
    }

    /// The size of a connection task's future, for a freshly accepted socket.
    async fn connection_task_size() -> usize {
        let metrics = Arc::new(Metrics::default());
        let table = Arc::new(DeviceTable::new(TableLimits::for_tests(), metrics.clone()));
        let engine = Engine::new(BrokerConfig::default(), table, Arc::new(NoHooks), metrics);
        let listener = crate::bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let shared = engine.shared().clone();
        let permit = shared.connections.clone().try_acquire_owned().expect("permit");
        let pending = shared.pending.enter(peer.ip()).expect("room");
        let task = run(
            shared,
            stream,
            peer,
            None,
            CancellationToken::new(),
            permit,
            pending,
        );
        let size = std::mem::size_of_val(&task);
        drop(client);
        size
    }

    /// The connection task's future is most of an idle device's memory: keep it small.
    /// Measured: 760 bytes in a debug build, 408 since issue 8.
    ///
    /// Issue 8: tokio allocates a task as a 128-byte-aligned cell of about 96 bytes plus the
    /// future, rounded up to a multiple of 128. At 416 bytes or less the cell takes 512 bytes
    /// (it took 768 before issue 8, measured in a release build with heaptrack).
    #[tokio::test]
    async fn the_connection_task_fits_a_512_byte_cell() {
        let size = connection_task_size().await;
        assert!(size <= 416, "the connection future grew to {size} bytes");
    }
}
