//! One consumer group's backlog, in memory and pure (no IO, no clock: times are arguments).
//!
//! A message enters once it is committed to `subscription.redb`; a consumer *claims* the oldest
//! ready message (it is then in flight to that consumer only), and the consumer's settlement
//! either removes it (`accepted`, `rejected`) or makes it ready again (`released`, `modified`,
//! ack timeout, the consumer gone). Bounds, checked on every push and claim: total bytes
//! (topic + body) and age; beyond either, the oldest messages are dropped, in flight or not,
//! and returned so the caller deletes them from disk and counts them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

/// A forwarded message as every transport sends it (cloud-side spec §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `messageId` (also the AMQP `message-id`): unique across the hub's life.
    pub id: u64,
    /// The `topic` application property.
    pub topic: String,
    /// The body bytes (one Data section).
    pub body: Bytes,
    /// `generateTime`, epoch ms.
    pub generate_time: u64,
    /// `qos` (0 or 1).
    pub qos: u8,
}

impl Message {
    /// Bytes the backlog counts for it.
    pub fn size(&self) -> usize {
        self.topic.len() + self.body.len()
    }
}

/// The limits of one group's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes (topic + body) kept at most.
    pub max_bytes: usize,
    /// Age kept at most, ms.
    pub max_age_ms: u64,
}

#[derive(Debug)]
struct Entry {
    msg: Arc<Message>,
    /// The consumer it is in flight to.
    claimed_by: Option<u64>,
}

/// Why messages left a backlog without being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Over the byte limit.
    Bytes,
    /// Older than the age limit.
    Age,
}

/// A group's messages.
#[derive(Debug, Default)]
pub struct Backlog {
    entries: BTreeMap<u64, Entry>,
    ready: BTreeSet<u64>,
    bytes: usize,
}

impl Backlog {
    /// Messages held (ready and in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.entries.len() - self.ready.len()
    }

    /// Adds a committed message; returns the ids dropped to stay within `limits`.
    pub fn push(&mut self, msg: Arc<Message>, limits: Limits, now_ms: u64) -> Vec<(u64, Dropped)> {
        self.bytes += msg.size();
        self.ready.insert(msg.id);
        self.entries.insert(
            msg.id,
            Entry {
                msg,
                claimed_by: None,
            },
        );
        self.enforce(limits, now_ms)
    }

    /// Drops the oldest messages past the limits.
    pub fn enforce(&mut self, limits: Limits, now_ms: u64) -> Vec<(u64, Dropped)> {
        let mut dropped = Vec::new();
        while let Some((&id, entry)) = self.entries.first_key_value() {
            let why = if self.bytes > limits.max_bytes {
                Dropped::Bytes
            } else if now_ms.saturating_sub(entry.msg.generate_time) > limits.max_age_ms {
                Dropped::Age
            } else {
                break;
            };
            self.remove(id);
            dropped.push((id, why));
        }
        dropped
    }

    /// The oldest ready message, now in flight to `consumer`.
    pub fn claim(&mut self, consumer: u64) -> Option<Arc<Message>> {
        let id = self.ready.pop_first()?;
        let entry = self.entries.get_mut(&id)?;
        entry.claimed_by = Some(consumer);
        Some(entry.msg.clone())
    }

    /// Removes a message (accepted, rejected, dropped); whether it was there.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.entries.remove(&id) {
            Some(e) => {
                self.ready.remove(&id);
                self.bytes -= e.msg.size();
                true
            }
            None => false,
        }
    }

    /// Makes a message in flight to `consumer` ready again; whether it was.
    pub fn release(&mut self, id: u64, consumer: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) if e.claimed_by == Some(consumer) => {
                e.claimed_by = None;
                self.ready.insert(id);
                true
            }
            _ => false,
        }
    }

    /// Makes every message in flight to `consumer` ready again; how many.
    pub fn release_all(&mut self, consumer: u64) -> usize {
        let mut n = 0;
        for (id, e) in &mut self.entries {
            if e.claimed_by == Some(consumer) {
                e.claimed_by = None;
                self.ready.insert(*id);
                n += 1;
            }
        }
        n
    }

    /// Empties the backlog; the ids removed.
    pub fn clear(&mut self) -> Vec<u64> {
        let ids = self.entries.keys().copied().collect();
        self.entries.clear();
        self.ready.clear();
        self.bytes = 0;
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, at: u64, size: usize) -> Arc<Message> {
        Arc::new(Message {
            id,
            topic: String::new(),
            body: Bytes::from(vec![0; size]),
            generate_time: at,
            qos: 0,
        })
    }

    const LIMITS: Limits = Limits {
        max_bytes: 100,
        max_age_ms: 1000,
    };

    #[test]
    fn claimed_messages_come_back_when_released_and_leave_when_accepted() {
        let mut b = Backlog::default();
        assert!(b.push(msg(1, 0, 10), LIMITS, 0).is_empty());
        assert!(b.push(msg(2, 0, 10), LIMITS, 0).is_empty());
        let m = b.claim(7).expect("one");
        assert_eq!(m.id, 1);
        assert_eq!(b.claim(8).map(|m| m.id), Some(2));
        assert!(b.claim(8).is_none());
        assert!(!b.release(1, 8), "not in flight to 8");
        assert!(b.release(1, 7));
        assert_eq!(b.claim(8).map(|m| m.id), Some(1));
        assert_eq!(b.release_all(8), 2);
        assert!(b.remove(1));
        assert_eq!((b.len(), b.bytes(), b.in_flight()), (1, 10, 0));
    }

    #[test]
    fn the_oldest_go_past_the_limits() {
        let mut b = Backlog::default();
        for id in 0..10 {
            assert!(b.push(msg(id, 0, 10), LIMITS, 0).is_empty());
        }
        assert_eq!(b.push(msg(10, 0, 10), LIMITS, 0), vec![(0, Dropped::Bytes)]);
        assert_eq!(b.bytes(), 100);
        let dropped = b.push(msg(11, 1500, 0), LIMITS, 1500);
        assert_eq!(dropped.len(), 10, "{dropped:?}");
        assert!(dropped.iter().all(|(_, why)| *why == Dropped::Age));
        assert_eq!(b.claim(1).map(|m| m.id), Some(11));
    }
}
