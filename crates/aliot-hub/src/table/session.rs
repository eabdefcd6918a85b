//! One device's MQTT session as the table shares it with the connection task: identity,
//! subscriptions, and a bounded outbound queue behind a std `Mutex`, with the waker of the
//! connection task.
//!
//! ## Outbound queue and overflow policy
//! Each session holds at most `BrokerConfig::outbound_queue_capacity` messages in its outbound
//! queue and at most `BrokerConfig::outbound_queue_bytes` bytes (topic + payload) in its outbound
//! queue and its QoS 1 inflight window together (the limits are passed to [`Session::offer`] as
//! [`QueueLimits`]). When a new message would exceed either:
//! - a QoS 0 message is dropped ([`Offer::Dropped`]; the caller counts it in
//!   `aliot_hub_qos0_dropped_total`);
//! - a QoS 1 message marks the device a slow consumer: the session starts closing
//!   ([`CloseReason::SlowConsumer`]) and the message comes back as [`Offer::Closing`] so that the
//!   table can keep it, with the queue and the unacknowledged inflight messages, in the offline
//!   queue of a clean-session-0 device (re-sent with DUP on reconnect). A clean-session-1 device
//!   loses them, as MQTT says.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use aliot_protocol::topic::{filter_matches, implicitly_subscribed};
use bytes::Bytes;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::QoS;

use super::lock;

/// Why a connection ended (or must end).
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
    /// Its id in the journal when it is saved until acknowledged (a QoS 1 message accepted
    /// for a clean-session-0 device; see `journal.rs`).
    pub(crate) saved: Option<NonZeroU64>,
}

impl Outgoing {
    /// The bytes this message holds (topic and payload), as counted against the budgets.
    pub(crate) fn size(&self) -> usize {
        self.publish.topic.len() + self.publish.payload.len()
    }

    /// A fresh message (QoS 0 or 1, never retained), queued at `now_ms`.
    pub(crate) fn new(topic: String, payload: Bytes, qos: QoS, now_ms: u64) -> Self {
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
            queued_ms: now_ms,
            saved: None,
        }
    }

    pub(crate) fn is_qos1(&self) -> bool {
        self.publish.qos == QoS::AtLeastOnce
    }

    pub(crate) fn topic(&self) -> &str {
        &self.publish.topic
    }
}

/// A device's names, its table key and the connection's clientId, in one allocation.
///
/// Memory: the hub holds one per connected device. Four `Box<str>` plus the table key cost five
/// allocations (each at least 32 bytes with glibc) and 80 bytes of pointers; one string with
/// `u32` offsets costs one allocation and 32 bytes. The text is
/// `{device_key(productKey, deviceName)}{iotId}{clientId}`.
#[derive(Debug)]
pub(crate) struct DeviceNames {
    text: Box<str>,
    /// Where the productKey starts and ends, where the deviceName (and so the key) ends, and
    /// where the iotId ends (the clientId runs to the end).
    pk_start: u32,
    pk_end: u32,
    key_end: u32,
    iot_end: u32,
}

/// A byte offset into [`DeviceNames::text`] as stored.
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect(
        "a clientId is at most 65,535 bytes (an MQTT string) and productKey, deviceName and iotId          are short registry values, so their total fits in u32",
    )
}

impl DeviceNames {
    pub(crate) fn new(product_key: &str, device_name: &str, iot_id: &str, client_id: &str) -> Self {
        let mut text = super::device_key(product_key, device_name).into_string();
        let key_end = text.len();
        let pk_start = key_end - device_name.len() - 1 - product_key.len();
        text.reserve_exact(iot_id.len() + client_id.len());
        text.push_str(iot_id);
        let iot_end = text.len();
        text.push_str(client_id);
        Self {
            text: text.into_boxed_str(),
            pk_start: offset(pk_start),
            pk_end: offset(pk_start + product_key.len()),
            key_end: offset(key_end),
            iot_end: offset(iot_end),
        }
    }

    fn part(&self, start: u32, end: u32) -> &str {
        // The offsets were taken at char boundaries (between the strings joined in `new`).
        self.text.get(start as usize..end as usize).unwrap_or_default()
    }

    /// The device table key ([`super::device_key`]).
    pub(crate) fn key(&self) -> &str {
        self.part(0, self.key_end)
    }

    pub(crate) fn product_key(&self) -> &str {
        self.part(self.pk_start, self.pk_end)
    }

    pub(crate) fn device_name(&self) -> &str {
        self.part(self.pk_end + 1, self.key_end)
    }

    pub(crate) fn iot_id(&self) -> &str {
        self.part(self.key_end, self.iot_end)
    }

    pub(crate) fn client_id(&self) -> &str {
        self.text.get(self.iot_end as usize..).unwrap_or_default()
    }
}

/// Who the session belongs to and how it was opened (fixed for its life).
#[derive(Debug)]
pub(crate) struct SessionId {
    pub(crate) names: DeviceNames,
    pub(crate) ip: IpAddr,
    /// Epoch ms of the CONNACK.
    pub(crate) connected_ms: u64,
    pub(crate) clean_session: bool,
    pub(crate) keep_alive: u16,
    /// `_ss=1`: system downlinks arrive without SUBSCRIBE.
    pub(crate) auto_subscribe: bool,
    /// `ext` bit 0: synchronous services use `/ext/rrpc/{id}/…`.
    pub(crate) ext_rrpc: bool,
}

impl SessionId {
    pub(crate) fn product_key(&self) -> &str {
        self.names.product_key()
    }

    pub(crate) fn device_name(&self) -> &str {
        self.names.device_name()
    }

    pub(crate) fn iot_id(&self) -> &str {
        self.names.iot_id()
    }

    pub(crate) fn client_id(&self) -> &str {
        self.names.client_id()
    }
}

/// The part of a session the table shares with the connection task.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    /// std Mutex: held for a few hundred nanoseconds (push/pop, a filter scan), never across
    /// an `.await`; tokio's async Mutex would only add cost.
    pub(crate) inner: Mutex<SessionInner>,
}

/// The limits of a session's outbound queue (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Messages in the outbound queue, at most.
    pub(crate) capacity: usize,
    /// Bytes (topic + payload) in the outbound queue and the QoS 1 inflight window, at most.
    pub(crate) bytes: usize,
}

/// Mutable session state, behind [`Session::inner`].
#[derive(Debug, Default)]
pub(crate) struct SessionInner {
    /// Bounded by the limits given to [`Session::offer`] (see the module docs).
    outbox: VecDeque<Outgoing>,
    /// At most `BrokerConfig::max_subscriptions` (checked by the connection task).
    pub(crate) subs: Vec<Subscription>,
    /// Set once: the session is closing and takes no more messages.
    pub(crate) closing: Option<CloseReason>,
    /// Wakes the connection task: a message was queued or the session must close. A waker and
    /// a flag under the lock we take anyway, rather than a `tokio::sync::Notify`: an idle
    /// connection then holds 16 bytes here instead of a 32-byte `Notify` in the session and a
    /// 64-byte `Notified` in its task (see [`Session::poll_wake`]).
    waker: Option<Waker>,
    /// A wake-up came while the task was busy (the equivalent of `Notify`'s stored permit).
    wake_pending: bool,
    /// Bytes of the messages in `outbox` plus the QoS 1 messages in the inflight window (until
    /// their PUBACK, [`Session::release`]). A `u32` beside the flag: it takes no room of its own.
    held_bytes: u32,
}

impl SessionInner {
    /// Marks a wake-up and returns the waker to wake once the lock is released.
    fn wake(&mut self) -> Option<Waker> {
        self.wake_pending = true;
        self.waker.take()
    }

    fn hold(&mut self, n: usize) {
        self.held_bytes = self
            .held_bytes
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn unhold(&mut self, n: usize) {
        self.held_bytes = self
            .held_bytes
            .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// The next message to send, if any.
    pub(crate) fn front(&self) -> Option<&Outgoing> {
        self.outbox.front()
    }

    /// Takes the next message to send. A QoS 0 message leaves the budget now; a QoS 1 message
    /// stays counted in the inflight window until its PUBACK ([`Session::release`]).
    pub(crate) fn pop(&mut self) -> Option<Outgoing> {
        let m = self.outbox.pop_front()?;
        if !m.is_qos1() {
            self.unhold(m.size());
        }
        if self.outbox.is_empty() && self.outbox.capacity() > 16 {
            // An idle session keeps no large queue allocation.
            self.outbox = VecDeque::new();
        }
        Some(m)
    }

    /// Puts back a message [`SessionInner::pop`] took (the inflight window had no room).
    pub(crate) fn unpop(&mut self, m: Outgoing) {
        if !m.is_qos1() {
            self.hold(m.size());
        }
        self.outbox.push_front(m);
    }

    /// A QoS 1 message taken by [`SessionInner::pop`] left the inflight window without a
    /// PUBACK (it could not be sent): it leaves the budget.
    pub(crate) fn release_qos1(&mut self, size: usize) {
        self.unhold(size);
    }

    /// Takes the whole queue (the session ended).
    pub(crate) fn take_outbox(&mut self) -> VecDeque<Outgoing> {
        self.held_bytes = 0;
        std::mem::take(&mut self.outbox)
    }

    /// Messages in the outbound queue.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.outbox.len()
    }
}

/// What happened to a message offered to a session.
#[derive(Debug)]
pub(crate) enum Offer {
    /// Queued for the connection task.
    Accepted,
    /// The device has no subscription (explicit or implicit) matching the topic.
    NotSubscribed,
    /// QoS 0 and the queue is full: dropped (counted by the caller).
    Dropped,
    /// The session is closing (or just became a slow consumer with this QoS 1 message): the
    /// caller may keep the message for a clean-session-0 device.
    Closing(Outgoing),
}

/// Wakes the connection task outside the session lock (the woken task takes it at once).
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

/// Whether a downlink on `topic` reaches a device with these subscriptions: one of its filters
/// matches, or the platform delivers the topic without a SUBSCRIBE (`_ss=1`, RRPC).
pub(crate) fn reaches(
    product_key: &str,
    device_name: &str,
    auto_subscribe: bool,
    subs: &[Subscription],
    topic: &str,
) -> bool {
    implicitly_subscribed(product_key, device_name, auto_subscribe, topic)
        || subs.iter().any(|s| filter_matches(&s.filter, topic))
}

impl Session {
    pub(crate) fn new(id: SessionId, outbox: VecDeque<Outgoing>, subs: Vec<Subscription>) -> Self {
        let held: usize = outbox.iter().map(Outgoing::size).sum();
        let mut inner = SessionInner {
            outbox,
            subs,
            ..SessionInner::default()
        };
        inner.hold(held);
        Self {
            id,
            inner: Mutex::new(inner),
        }
    }

    /// Key in the device table.
    pub(crate) fn key(&self) -> &str {
        self.id.names.key()
    }

    /// The connection task's wait for a wake-up ([`Session::offer`], [`Session::requeue_front`],
    /// [`Session::close`]): ready once one came since the last ready, else keeps `cx`'s waker.
    pub(crate) fn poll_wake(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = lock(&self.inner);
        if std::mem::take(&mut inner.wake_pending) {
            return Poll::Ready(());
        }
        match &mut inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Offers a message to the session, applying the overflow policy (see the module docs).
    pub(crate) fn offer(&self, msg: Outgoing, limits: QueueLimits) -> Offer {
        self.offer_with(msg, limits, |_| {})
    }

    /// [`Session::offer`], calling `on_accept` with the message when it is accepted, under the
    /// session's lock: before the connection task can take it (the journal's order).
    pub(crate) fn offer_with(
        &self,
        msg: Outgoing,
        limits: QueueLimits,
        on_accept: impl FnOnce(&Outgoing),
    ) -> Offer {
        let mut inner = lock(&self.inner);
        let id = &self.id;
        if !reaches(
            id.product_key(),
            id.device_name(),
            id.auto_subscribe,
            &inner.subs,
            msg.topic(),
        ) {
            return Offer::NotSubscribed;
        }
        if inner.closing.is_some() {
            return Offer::Closing(msg);
        }
        let size = msg.size();
        let over_bytes = inner.held_bytes as usize + size > limits.bytes;
        if inner.outbox.len() >= limits.capacity || over_bytes {
            if !msg.is_qos1() {
                return Offer::Dropped;
            }
            inner.closing = Some(CloseReason::SlowConsumer);
            let waker = inner.wake();
            drop(inner);
            wake(waker);
            return Offer::Closing(msg);
        }
        on_accept(&msg);
        inner.hold(size);
        inner.outbox.push_back(msg);
        let waker = inner.wake();
        drop(inner);
        wake(waker);
        Offer::Accepted
    }

    /// A QoS 1 message of `size` bytes was acknowledged: it leaves the budget.
    pub(crate) fn release(&self, size: usize) {
        lock(&self.inner).unhold(size);
    }

    /// Puts messages back at the front of the queue (a taken-over session's unacknowledged
    /// messages), ignoring the capacity: they were accepted before.
    pub(crate) fn requeue_front(&self, msgs: VecDeque<Outgoing>) {
        let mut inner = lock(&self.inner);
        for m in msgs.into_iter().rev() {
            inner.hold(m.size());
            inner.outbox.push_front(m);
        }
        let waker = inner.wake();
        drop(inner);
        wake(waker);
    }

    /// Wakes the connection task for it to look at its state again (a listener that shuts
    /// down: the task then sees its cancellation).
    pub(crate) fn wake(&self) {
        let waker = lock(&self.inner).wake();
        wake(waker);
    }

    /// Asks the connection task to close (first reason wins). Returns false if it was closing.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut inner = lock(&self.inner);
        let first = inner.closing.is_none();
        if first {
            inner.closing = Some(reason);
        }
        let waker = inner.wake();
        drop(inner);
        wake(waker);
        first
    }

    /// Number of subscriptions.
    pub(crate) fn subscription_count(&self) -> usize {
        lock(&self.inner).subs.len()
    }

    pub(crate) fn subscriptions(&self) -> Vec<Subscription> {
        lock(&self.inner).subs.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(auto_subscribe: bool) -> Session {
        let id = SessionId {
            names: DeviceNames::new("pk", "dn", "iot", "c"),
            ip: IpAddr::from([127, 0, 0, 1]),
            connected_ms: 1,
            clean_session: true,
            keep_alive: 60,
            auto_subscribe,
            ext_rrpc: false,
        };
        Session::new(id, VecDeque::new(), Vec::new())
    }

    fn msg(topic: &str, qos: QoS) -> Outgoing {
        Outgoing::new(topic.to_owned(), Bytes::from_static(b"x"), qos, 0)
    }

    fn count(capacity: usize) -> QueueLimits {
        QueueLimits {
            capacity,
            bytes: usize::MAX,
        }
    }

    /// Hardening 3: the queue is bounded by bytes too, the inflight window included, whatever
    /// the number of messages.
    #[test]
    fn the_byte_budget_drops_qos0_closes_on_qos1_and_counts_the_inflight_window() {
        let s = session(true);
        let big = |qos| Outgoing::new("/sys/pk/dn/thing/a".into(), Bytes::from(vec![0u8; 600]), qos, 0);
        let limits = QueueLimits {
            capacity: 1000,
            bytes: 1000,
        };
        assert!(matches!(s.offer(big(QoS::AtLeastOnce), limits), Offer::Accepted));
        // The QoS 1 message moves to the inflight window: still counted.
        let sent = lock(&s.inner).pop().expect("queued");
        assert!(matches!(s.offer(big(QoS::AtMostOnce), limits), Offer::Dropped));
        s.release(sent.size());
        assert!(matches!(s.offer(big(QoS::AtMostOnce), limits), Offer::Accepted));
        assert!(matches!(
            s.offer(big(QoS::AtLeastOnce), limits),
            Offer::Closing(_)
        ));
        assert_eq!(lock(&s.inner).closing, Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn a_full_queue_drops_qos0_and_closes_on_qos1() {
        let s = session(true);
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtMostOnce), count(1)),
            Offer::Accepted
        ));
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtMostOnce), count(1)),
            Offer::Dropped
        ));
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtLeastOnce), count(1)),
            Offer::Closing(_)
        ));
        assert_eq!(lock(&s.inner).closing, Some(CloseReason::SlowConsumer));
        // Once closing, nothing more is accepted.
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtMostOnce), count(10)),
            Offer::Closing(_)
        ));
    }

    #[test]
    fn only_subscribed_or_implicit_topics_are_accepted() {
        let s = session(false);
        assert!(matches!(
            s.offer(msg("/pk/dn/user/get", QoS::AtMostOnce), count(10)),
            Offer::NotSubscribed
        ));
        lock(&s.inner).subs.push(Subscription {
            filter: "/pk/dn/user/#".into(),
            qos: 0,
        });
        assert!(matches!(
            s.offer(msg("/pk/dn/user/get", QoS::AtMostOnce), count(10)),
            Offer::Accepted
        ));
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/rrpc/request/1", QoS::AtMostOnce), count(10)),
            Offer::Accepted
        ));
    }

    /// The hub holds one session per connected device (issue 8): keep it small. 184 bytes
    /// (200 with the `Arc` counts) since the identity became one string and the `Notify` a
    /// waker; it was 240 plus five separately allocated strings.
    #[test]
    fn a_session_stays_small() {
        let size = std::mem::size_of::<Session>();
        assert!(size <= 184, "Session grew to {size} bytes");
    }

    #[test]
    fn device_names_come_back_whole() {
        let n = DeviceNames::new("a1b/c", "d:1", "iot", "cid|x=1|");
        assert_eq!(n.key(), &*super::super::device_key("a1b/c", "d:1"));
        assert_eq!(
            (n.product_key(), n.device_name(), n.iot_id(), n.client_id()),
            ("a1b/c", "d:1", "iot", "cid|x=1|")
        );
    }

    #[test]
    fn a_wake_up_before_the_wait_is_kept() {
        let s = session(true);
        s.close(CloseReason::Kicked);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(s.poll_wake(&mut cx), Poll::Ready(()));
        assert_eq!(s.poll_wake(&mut cx), Poll::Pending);
    }

    #[test]
    fn the_first_close_reason_wins() {
        let s = session(false);
        assert!(s.close(CloseReason::Kicked));
        assert!(!s.close(CloseReason::Shutdown));
        assert_eq!(lock(&s.inner).closing, Some(CloseReason::Kicked));
    }
}
