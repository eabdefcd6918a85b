//! QoS 1 messages sent to a device and not yet acknowledged: packet-id allocation and the
//! inflight window. Pure bookkeeping, owned by the connection task; what is left in it when the
//! connection ends goes back to the table ([`Inflight::take_for_resend`]).

use std::collections::VecDeque;
use std::num::NonZeroU16;

use super::session::Outgoing;

/// The inflight window of one connection.
#[derive(Debug)]
pub(crate) struct Inflight {
    /// `u16`, next to `next`: the struct lives in every connection's task (40 bytes, not 48).
    window: u16,
    next: u16,
    /// In send order; PUBACKs usually arrive in that order, so the front is checked first.
    slots: VecDeque<(NonZeroU16, Outgoing)>,
}

impl Inflight {
    /// An empty window of `window` messages (at least 1).
    pub(crate) fn new(window: u16) -> Self {
        Self {
            window: window.max(1),
            next: 0,
            slots: VecDeque::new(),
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.slots.len() >= usize::from(self.window)
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

    /// A PUBACK: forgets the message and returns it (`None` for an unknown packet id).
    pub(crate) fn ack(&mut self, pid: NonZeroU16) -> Option<Outgoing> {
        let pos = if self.slots.front().is_some_and(|(p, _)| *p == pid) {
            Some(0)
        } else {
            self.slots.iter().position(|(p, _)| *p == pid)
        };
        let found = pos.and_then(|i| self.slots.remove(i)).map(|(_, m)| m);
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rmqtt_codec::v3::QoS;

    use super::*;

    fn msg(topic: &str, qos: QoS) -> Outgoing {
        Outgoing::new(topic.to_owned(), Bytes::from_static(b"x"), qos, 0)
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
        assert!(f.ack(NonZeroU16::new(2).expect("nonzero")).is_some());
        assert!(f.ack(NonZeroU16::new(2).expect("nonzero")).is_none());
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
