//! One device's MQTT session as the table shares it with the connection task: identity,
//! subscriptions, and a bounded outbound queue behind a std `Mutex`, plus a `Notify` that wakes
//! the task.
//!
//! ## Outbound queue and overflow policy
//! Each session's outbound queue holds at most `BrokerConfig::outbound_queue_capacity` messages
//! (the capacity is passed to [`Session::offer`] by its callers). When it is full:
//! - a QoS 0 message is dropped ([`Offer::Dropped`]; the caller counts it in
//!   `aliot_hub_qos0_dropped_total`);
//! - a QoS 1 message marks the device a slow consumer: the session starts closing
//!   ([`CloseReason::SlowConsumer`]) and the message comes back as [`Offer::Closing`] so that the
//!   table can keep it, with the queue and the unacknowledged inflight messages, in the offline
//!   queue of a clean-session-0 device (re-sent with DUP on reconnect). A clean-session-1 device
//!   loses them, as MQTT says.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use aliot_protocol::topic::{filter_matches, implicitly_subscribed};
use bytes::Bytes;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::QoS;
use tokio::sync::Notify;

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
}

impl Outgoing {
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
        }
    }

    pub(crate) fn is_qos1(&self) -> bool {
        self.publish.qos == QoS::AtLeastOnce
    }

    pub(crate) fn topic(&self) -> &str {
        &self.publish.topic
    }
}

/// Who the session belongs to and how it was opened (fixed for its life).
#[derive(Debug)]
pub(crate) struct SessionId {
    pub(crate) product_key: Box<str>,
    pub(crate) device_name: Box<str>,
    pub(crate) iot_id: Box<str>,
    pub(crate) client_id: Box<str>,
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

/// The part of a session the table shares with the connection task.
#[derive(Debug)]
pub(crate) struct Session {
    /// Key in the device table.
    pub(crate) key: Box<str>,
    pub(crate) id: SessionId,
    /// std Mutex: held for a few hundred nanoseconds (push/pop, a filter scan), never across
    /// an `.await`; tokio's async Mutex would only add cost.
    pub(crate) inner: Mutex<SessionInner>,
    /// Wakes the connection task: a message was queued or the session must close.
    pub(crate) notify: Notify,
}

/// Mutable session state, behind [`Session::inner`].
#[derive(Debug, Default)]
pub(crate) struct SessionInner {
    /// Bounded by the capacity given to [`Session::offer`] (see the module docs).
    pub(crate) outbox: VecDeque<Outgoing>,
    /// At most `BrokerConfig::max_subscriptions` (checked by the connection task).
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
    /// QoS 0 and the queue is full: dropped (counted by the caller).
    Dropped,
    /// The session is closing (or just became a slow consumer with this QoS 1 message): the
    /// caller may keep the message for a clean-session-0 device.
    Closing(Outgoing),
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
    pub(crate) fn new(
        key: Box<str>,
        id: SessionId,
        outbox: VecDeque<Outgoing>,
        subs: Vec<Subscription>,
    ) -> Self {
        Self {
            key,
            id,
            inner: Mutex::new(SessionInner {
                outbox,
                subs,
                closing: None,
            }),
            notify: Notify::new(),
        }
    }

    /// Offers a message to the session, applying the overflow policy (see the module docs).
    pub(crate) fn offer(&self, msg: Outgoing, capacity: usize) -> Offer {
        let mut inner = lock(&self.inner);
        let id = &self.id;
        if !reaches(
            &id.product_key,
            &id.device_name,
            id.auto_subscribe,
            &inner.subs,
            msg.topic(),
        ) {
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
        let mut inner = lock(&self.inner);
        for m in msgs.into_iter().rev() {
            inner.outbox.push_front(m);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Asks the connection task to close (first reason wins). Returns false if it was closing.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut inner = lock(&self.inner);
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
            product_key: "pk".into(),
            device_name: "dn".into(),
            iot_id: "iot".into(),
            client_id: "c".into(),
            ip: IpAddr::from([127, 0, 0, 1]),
            connected_ms: 1,
            clean_session: true,
            keep_alive: 60,
            auto_subscribe,
            ext_rrpc: false,
        };
        Session::new("k".into(), id, VecDeque::new(), Vec::new())
    }

    fn msg(topic: &str, qos: QoS) -> Outgoing {
        Outgoing::new(topic.to_owned(), Bytes::from_static(b"x"), qos, 0)
    }

    #[test]
    fn a_full_queue_drops_qos0_and_closes_on_qos1() {
        let s = session(true);
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtMostOnce), 1),
            Offer::Accepted
        ));
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtMostOnce), 1),
            Offer::Dropped
        ));
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtLeastOnce), 1),
            Offer::Closing(_)
        ));
        assert_eq!(lock(&s.inner).closing, Some(CloseReason::SlowConsumer));
        // Once closing, nothing more is accepted.
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/thing/a", QoS::AtMostOnce), 10),
            Offer::Closing(_)
        ));
    }

    #[test]
    fn only_subscribed_or_implicit_topics_are_accepted() {
        let s = session(false);
        assert!(matches!(
            s.offer(msg("/pk/dn/user/get", QoS::AtMostOnce), 10),
            Offer::NotSubscribed
        ));
        lock(&s.inner).subs.push(Subscription {
            filter: "/pk/dn/user/#".into(),
            qos: 0,
        });
        assert!(matches!(
            s.offer(msg("/pk/dn/user/get", QoS::AtMostOnce), 10),
            Offer::Accepted
        ));
        assert!(matches!(
            s.offer(msg("/sys/pk/dn/rrpc/request/1", QoS::AtMostOnce), 10),
            Offer::Accepted
        ));
    }

    #[test]
    fn the_first_close_reason_wins() {
        let s = session(false);
        assert!(s.close(CloseReason::Kicked));
        assert!(!s.close(CloseReason::Shutdown));
        assert_eq!(lock(&s.inner).closing, Some(CloseReason::Kicked));
    }
}
