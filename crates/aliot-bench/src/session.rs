//! The pure MQTT state of one simulated device: packet ids, the window of posts waiting for their
//! acknowledgement or reply, keepalive bookkeeping. No IO, no clock: times are microseconds since
//! the process's bench epoch, passed in by the caller.
//!
//! Design: it is small and fixed-size on purpose (it lives inside every device's task): the
//! window is an inline array of [`MAX_WINDOW`] slots, not a map, so an idle device owns no heap.

/// Largest `--inflight`.
pub(crate) const MAX_WINDOW: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Alink message id; 0 = free.
    msg_id: u32,
    /// MQTT packet id of a QoS 1 post, 0 once acknowledged (or for QoS 0).
    pkid: u16,
    sent_us: u64,
}

/// What a post slot is freed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// The platform's `post_reply` (the hub, Alibaba Cloud).
    Reply,
    /// The PUBACK (a general broker: delivery is measured by the subscriber), or nothing at QoS 0.
    Ack,
}

/// Per-device MQTT state.
#[derive(Debug)]
pub(crate) struct Session {
    next_pkid: u16,
    next_msg_id: u32,
    window: u8,
    completion: Completion,
    slots: [Slot; MAX_WINDOW],
    /// When the client last sent anything (keepalive counts from there).
    pub(crate) last_sent_us: u64,
}

/// The outcome of an acknowledgement or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matched {
    /// It completed a post sent at this time.
    Done { sent_us: u64 },
    /// It matched a post that stays open (a PUBACK before the reply); latency from this send time.
    Acked { sent_us: u64 },
    /// Nothing waiting matches it (late, duplicate, or not ours).
    Unknown,
}

impl Session {
    pub(crate) fn new(window: u8, completion: Completion) -> Self {
        Self {
            next_pkid: 1,
            next_msg_id: 1,
            window: window.clamp(1, MAX_WINDOW as u8),
            completion,
            slots: [Slot::default(); MAX_WINDOW],
            last_sent_us: 0,
        }
    }

    /// Posts waiting for their acknowledgement or reply.
    pub(crate) fn open(&self) -> usize {
        self.slots.iter().filter(|s| s.msg_id != 0).count()
    }

    /// Whether another post fits in the window.
    pub(crate) fn can_post(&self) -> bool {
        self.open() < usize::from(self.window)
    }

    /// A fresh packet id (1..=65535, wrapping; 0 is not a valid packet id).
    pub(crate) fn next_pkid(&mut self) -> u16 {
        let id = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        id
    }

    /// Records a post: returns (Alink message id, MQTT packet id or 0 for QoS 0), or `None` when
    /// the window is full.
    pub(crate) fn post(&mut self, qos1: bool, now_us: u64) -> Option<(u32, u16)> {
        if !self.can_post() {
            return None;
        }
        let msg_id = self.next_msg_id;
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        let pkid = if qos1 { self.next_pkid() } else { 0 };
        self.last_sent_us = now_us;
        // A QoS 0 post on a general broker has nothing to wait for.
        if !qos1 && self.completion == Completion::Ack {
            return Some((msg_id, 0));
        }
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.msg_id == 0)
            .expect("can_post checked a free slot");
        *slot = Slot {
            msg_id,
            pkid,
            sent_us: now_us,
        };
        Some((msg_id, pkid))
    }

    /// A PUBACK arrived.
    pub(crate) fn puback(&mut self, pkid: u16) -> Matched {
        let Some(slot) = self.slots.iter_mut().find(|s| s.msg_id != 0 && s.pkid == pkid) else {
            return Matched::Unknown;
        };
        let sent_us = slot.sent_us;
        match self.completion {
            Completion::Ack => {
                *slot = Slot::default();
                Matched::Done { sent_us }
            }
            Completion::Reply => {
                slot.pkid = 0;
                Matched::Acked { sent_us }
            }
        }
    }

    /// A `post_reply` for Alink id `msg_id` arrived.
    pub(crate) fn reply(&mut self, msg_id: u32) -> Matched {
        if msg_id == 0 || self.completion != Completion::Reply {
            return Matched::Unknown;
        }
        match self.slots.iter_mut().find(|s| s.msg_id == msg_id) {
            Some(slot) => {
                let sent_us = slot.sent_us;
                *slot = Slot::default();
                Matched::Done { sent_us }
            }
            None => Matched::Unknown,
        }
    }

    /// When the next PINGREQ is due (keepalive after the last packet sent).
    pub(crate) fn ping_due_us(&self, keepalive_s: u16) -> u64 {
        self.last_sent_us + u64::from(keepalive_s) * 1_000_000
    }

    /// Forgets every open post (the connection is gone): returns how many were open.
    pub(crate) fn abandon(&mut self) -> usize {
        let n = self.open();
        self.slots = [Slot::default(); MAX_WINDOW];
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_should_refuse_when_the_window_is_full() {
        let mut s = Session::new(2, Completion::Reply);
        assert_eq!(s.post(true, 10), Some((1, 1)));
        assert_eq!(s.post(true, 11), Some((2, 2)));
        assert_eq!(s.post(true, 12), None);
        assert_eq!(s.reply(1), Matched::Done { sent_us: 10 });
        assert_eq!(s.post(true, 13), Some((3, 3)));
    }

    #[test]
    fn reply_mode_should_keep_the_slot_open_after_the_puback() {
        let mut s = Session::new(1, Completion::Reply);
        let (id, pkid) = s.post(true, 100).expect("room");
        assert_eq!(s.puback(pkid), Matched::Acked { sent_us: 100 });
        assert!(!s.can_post());
        assert_eq!(
            s.puback(pkid),
            Matched::Unknown,
            "a duplicate PUBACK matches nothing"
        );
        assert_eq!(s.reply(id), Matched::Done { sent_us: 100 });
        assert!(s.can_post());
    }

    #[test]
    fn ack_mode_should_free_the_slot_on_puback_and_not_wait_at_qos0() {
        let mut s = Session::new(1, Completion::Ack);
        let (_, pkid) = s.post(true, 5).expect("room");
        assert_eq!(s.puback(pkid), Matched::Done { sent_us: 5 });
        assert!(s.post(false, 6).is_some());
        assert!(
            s.post(false, 7).is_some(),
            "QoS 0 on a general broker occupies no slot"
        );
    }

    #[test]
    fn packet_ids_should_skip_zero_when_they_wrap() {
        let mut s = Session::new(1, Completion::Reply);
        s.next_pkid = u16::MAX;
        assert_eq!(s.next_pkid(), u16::MAX);
        assert_eq!(s.next_pkid(), 1);
    }

    #[test]
    fn unknown_replies_should_match_nothing() {
        let mut s = Session::new(4, Completion::Reply);
        s.post(false, 1);
        assert_eq!(s.reply(99), Matched::Unknown);
        assert_eq!(s.reply(0), Matched::Unknown);
        assert_eq!(s.abandon(), 1);
        assert_eq!(s.open(), 0);
    }

    #[test]
    fn ping_should_be_due_one_keepalive_after_the_last_send() {
        let mut s = Session::new(1, Completion::Reply);
        s.last_sent_us = 2_000_000;
        assert_eq!(s.ping_due_us(30), 32_000_000);
    }
}
