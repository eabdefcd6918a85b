//! What a clean-session-0 device keeps while it is offline: its subscriptions and its offline
//! queue of QoS 1 messages. The queue's limits (retention, messages, bytes) live here and
//! nowhere else.

use std::collections::VecDeque;

use super::session::{Outgoing, Subscription};

/// How long an offline message is kept and how many new ones a queue accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfflineLimits {
    /// Retention of a queued message, in ms (7 days by default).
    pub(crate) ttl_ms: u64,
    /// New messages accepted while offline, at most. Messages that were already accepted for
    /// delivery (the outbound queue and the unacknowledged inflight window of a connection that
    /// closed) are kept whatever this says: they were promised to the device.
    pub(crate) max_messages: usize,
    /// Bytes (topic + payload) of the queue, at most, for new messages (the same exception).
    pub(crate) max_bytes: usize,
}

/// A clean-session-0 device's state while it is offline (and the messages accepted for it
/// while its connection was closing).
#[derive(Debug, Default)]
pub(crate) struct StoredSession {
    pub(crate) subs: Vec<Subscription>,
    pub(crate) queue: OfflineQueue,
    pub(crate) auto_subscribe: bool,
}

/// The offline queue: QoS 1 messages in delivery order.
#[derive(Debug, Default)]
pub(crate) struct OfflineQueue {
    msgs: VecDeque<Outgoing>,
    /// Bytes of `msgs` (topic + payload).
    bytes: usize,
}

/// The offline queue cannot take a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

impl OfflineQueue {
    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Drops messages older than the retention, calling `dropped` with each; returns how many.
    pub(crate) fn expire(
        &mut self,
        now_ms: u64,
        limits: OfflineLimits,
        mut dropped: impl FnMut(&Outgoing),
    ) -> u64 {
        let before = self.msgs.len();
        let mut dropped_bytes = 0;
        self.msgs.retain(|m| {
            let keep = now_ms.saturating_sub(m.queued_ms) <= limits.ttl_ms;
            if !keep {
                dropped_bytes += m.size();
                dropped(m);
            }
            keep
        });
        self.bytes -= dropped_bytes;
        (before - self.msgs.len()) as u64
    }

    /// Accepts a new message unless the queue is at its limit (after dropping expired ones,
    /// each given to `dropped`). Returns how many expired messages were dropped.
    pub(crate) fn push(
        &mut self,
        msg: Outgoing,
        now_ms: u64,
        limits: OfflineLimits,
        dropped: impl FnMut(&Outgoing),
    ) -> Result<u64, QueueFull> {
        let expired = self.expire(now_ms, limits, dropped);
        if self.msgs.len() >= limits.max_messages || self.bytes + msg.size() > limits.max_bytes {
            return Err(QueueFull);
        }
        self.bytes += msg.size();
        self.msgs.push_back(msg);
        Ok(expired)
    }

    /// Puts messages that were already accepted for delivery in front of the queue.
    pub(crate) fn prepend(&mut self, mut accepted: VecDeque<Outgoing>) {
        self.bytes += accepted.iter().map(Outgoing::size).sum::<usize>();
        accepted.append(&mut self.msgs);
        self.msgs = accepted;
    }

    /// Everything queued, in delivery order.
    pub(crate) fn into_messages(self) -> VecDeque<Outgoing> {
        self.msgs
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rmqtt_codec::v3::QoS;

    use super::*;

    const LIMITS: OfflineLimits = OfflineLimits {
        ttl_ms: 1000,
        max_messages: 2,
        max_bytes: usize::MAX,
    };

    fn msg(at: u64) -> Outgoing {
        Outgoing::new("/t".into(), Bytes::from_static(b"x"), QoS::AtLeastOnce, at)
    }

    #[test]
    fn new_messages_stop_at_the_limit_but_accepted_ones_stay() {
        let mut q = OfflineQueue::default();
        assert_eq!(q.push(msg(0), 0, LIMITS, |_| {}), Ok(0));
        assert_eq!(q.push(msg(0), 0, LIMITS, |_| {}), Ok(0));
        assert_eq!(q.push(msg(0), 0, LIMITS, |_| {}), Err(QueueFull));
        q.prepend(VecDeque::from([msg(0), msg(0)]));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn messages_past_the_retention_are_dropped() {
        let mut q = OfflineQueue::default();
        assert_eq!(q.push(msg(0), 0, LIMITS, |_| {}), Ok(0));
        assert_eq!(q.push(msg(500), 500, LIMITS, |_| {}), Ok(0));
        // At 1001 the first one is 1001 ms old: dropped, which makes room for a new one.
        assert_eq!(q.push(msg(1001), 1001, LIMITS, |_| {}), Ok(1));
        assert_eq!(q.expire(1600, LIMITS, |_| {}), 1);
        assert_eq!(q.len(), 1);
    }

    /// Hardening 3: the offline queue is bounded by bytes too.
    #[test]
    fn new_messages_stop_at_the_byte_budget() {
        let limits = OfflineLimits {
            ttl_ms: 1000,
            max_messages: 100,
            max_bytes: 1000,
        };
        let big = |at| Outgoing::new("/t".into(), Bytes::from(vec![0u8; 600]), QoS::AtLeastOnce, at);
        let mut q = OfflineQueue::default();
        assert_eq!(q.push(big(0), 0, limits, |_| {}), Ok(0));
        assert_eq!(q.push(big(0), 0, limits, |_| {}), Err(QueueFull));
        // Expired messages give their bytes back.
        assert_eq!(q.push(big(2000), 2000, limits, |_| {}), Ok(1));
    }
}
