//! The journal: every change the table makes to what a clean-session-0 device keeps (its
//! session and subscriptions, the QoS 1 messages accepted for it), in order, for a writer to
//! save (`crate::persist`). No IO here: the table pushes changes under its locks, the writer
//! takes them in batches and reports what it saved, and whoever must not answer before a
//! change is on disk waits for its [`Ticket`].
//!
//! # Order
//!
//! A message's `AddMessage` is pushed before the message can reach a connection task (under the
//! session's or the shard's lock, before the message is queued), so its `RemoveMessage` (at the
//! PUBACK) always comes after it. Batches are applied in order, each whole.
//!
//! # Bounds and overflow policy
//!
//! - Message bytes waiting to be saved: at most `max_bytes`. The table asks [`Journal::has_room`]
//!   before it accepts a message for a clean-session-0 device and refuses the message (queue
//!   full) beyond it: while the disk is slow or failing, new messages for such devices are
//!   refused instead of being held unsaved without bound.
//! - Session changes (a login, a SUBSCRIBE, a clean-session-1 login, a deletion) cannot be
//!   refused. Consecutive ones for the same device are folded into one (the latest state wins),
//!   so while nothing is saved they hold at most one change per device between message changes,
//!   and message changes are bounded as above.
//! - `RemoveMessage`s: one per message added, so bounded by the messages.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use super::session::{Outgoing, Subscription};
use super::{device_key, lock};
use crate::registry::{SavedMessage, SessionChange};

/// What has been saved: every change numbered up to `through`; `failing` while the last write
/// failed (cleared by the next one that works).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) through: u64,
    pub(crate) failing: bool,
}

/// A change to wait for ([`Journal::wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket(u64);

/// The change was not saved: the storage failed (it is retried; the message is still held in
/// memory and delivered while the hub runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotSaved;

/// Changes taken by the writer, to save in one transaction.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) changes: Vec<SessionChange>,
    /// The number of the last change in the batch.
    pub(crate) through: u64,
    bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    changes: Vec<SessionChange>,
    /// Bytes of the messages in `changes` (topic + payload).
    bytes: usize,
    /// Number of the last change pushed (from 1; folded changes count too).
    pushed: u64,
    /// Index in `changes` of each device's last change.
    last: HashMap<Box<str>, usize>,
}

/// The journal (see the module docs).
#[derive(Debug)]
pub(crate) struct Journal {
    state: Mutex<State>,
    /// Woken when a change is pushed.
    changed: Notify,
    saved: watch::Sender<Saved>,
    max_bytes: usize,
    next_id: AtomicU64,
}

fn session_key(change: &SessionChange) -> Box<str> {
    let (pk, dn) = change.device();
    device_key(pk, dn)
}

fn message_bytes(change: &SessionChange) -> usize {
    match change {
        SessionChange::AddMessage { message, .. } => message.topic.len() + message.payload.len(),
        _ => 0,
    }
}

/// `next` folded into `prev` when both are session changes of one device: the latest state wins,
/// and a `Delete` anywhere in the pair drops the earlier messages (`replace`).
fn fold(prev: &SessionChange, next: SessionChange) -> Result<SessionChange, SessionChange> {
    let earlier_replace = match prev {
        SessionChange::Put { replace, .. } => *replace,
        SessionChange::Delete { .. } => true,
        _ => return Err(next),
    };
    Ok(match next {
        SessionChange::Put {
            product_key,
            device_name,
            subscriptions,
            auto_subscribe,
            replace,
        } => SessionChange::Put {
            product_key,
            device_name,
            subscriptions,
            auto_subscribe,
            replace: replace || earlier_replace,
        },
        delete @ SessionChange::Delete { .. } => delete,
        other => return Err(other),
    })
}

/// The change that saves `msg` for the device; `None` for a message without an id.
pub(crate) fn addition(product_key: &str, device_name: &str, msg: &Outgoing) -> Option<SessionChange> {
    let id = msg.saved?;
    Some(SessionChange::AddMessage {
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
        message: SavedMessage {
            id: id.get(),
            topic: msg.topic().to_owned(),
            payload: msg.publish.payload.clone(),
            queued_ms: msg.queued_ms,
        },
    })
}

impl Journal {
    /// A journal holding at most `max_bytes` of unsaved messages.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            saved: watch::Sender::new(Saved::default()),
            max_bytes,
            next_id: AtomicU64::new(1),
        }
    }

    /// A new message id.
    pub(crate) fn next_id(&self) -> NonZeroU64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN)
    }

    /// Ids continue after `max` (the largest id saved, at start).
    pub(crate) fn continue_after(&self, max: u64) {
        self.next_id.fetch_max(max.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a message of `bytes` may be accepted (see the module docs).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        lock(&self.state).bytes.saturating_add(bytes) <= self.max_bytes
    }

    fn push(&self, change: SessionChange) -> Ticket {
        let key = session_key(&change);
        let mut st = lock(&self.state);
        st.pushed += 1;
        let ticket = Ticket(st.pushed);
        let folded = match st.last.get(&key).copied() {
            Some(i) => match fold(&st.changes[i], change) {
                Ok(merged) => {
                    st.changes[i] = merged;
                    None
                }
                Err(change) => Some(change),
            },
            None => Some(change),
        };
        if let Some(change) = folded {
            st.bytes += message_bytes(&change);
            let i = st.changes.len();
            st.changes.push(change);
            st.last.insert(key, i);
        }
        drop(st);
        self.changed.notify_one();
        ticket
    }

    /// The device has a clean-session-0 session with `subs` (`replace`: it starts afresh, the
    /// earlier session's messages are dropped).
    pub(crate) fn put_session(
        &self,
        product_key: &str,
        device_name: &str,
        subs: &[Subscription],
        auto_subscribe: bool,
        replace: bool,
    ) {
        self.push(SessionChange::Put {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            subscriptions: subs.iter().map(|s| (s.filter.to_string(), s.qos)).collect(),
            auto_subscribe,
            replace,
        });
    }

    /// The device keeps nothing any more.
    pub(crate) fn delete_session(&self, product_key: &str, device_name: &str) {
        self.push(SessionChange::Delete {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
        });
    }

    /// A message with an id ([`Outgoing::saved`]) was accepted for the device.
    pub(crate) fn add_message(&self, product_key: &str, device_name: &str, msg: &Outgoing) -> Option<Ticket> {
        self.add(addition(product_key, device_name, msg)?)
    }

    /// Pushes an [`addition`] made before the message was handed over.
    pub(crate) fn add(&self, change: SessionChange) -> Option<Ticket> {
        Some(self.push(change))
    }

    /// A saved message is no longer owed (acknowledged, expired); no-op for an unsaved one.
    pub(crate) fn remove_message(&self, product_key: &str, device_name: &str, msg: &Outgoing) {
        if let Some(id) = msg.saved {
            self.push(SessionChange::RemoveMessage {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
                id: id.get(),
            });
        }
    }

    /// Waits until a change is pushed (for the writer).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Takes every change pushed so far (for the writer); `None` when there is none.
    pub(crate) fn take(&self) -> Option<Batch> {
        let mut st = lock(&self.state);
        if st.changes.is_empty() {
            return None;
        }
        st.last.clear();
        let bytes = std::mem::take(&mut st.bytes);
        Some(Batch {
            changes: std::mem::take(&mut st.changes),
            through: st.pushed,
            bytes,
        })
    }

    /// The writer saved `batch`.
    pub(crate) fn saved(&self, batch: &Batch) {
        self.saved.send_modify(|s| {
            s.through = s.through.max(batch.through);
            s.failing = false;
        });
    }

    /// The writer could not save `batch`: it goes back in front, to be retried, and whoever
    /// waits for a change in it learns at once that it is not saved.
    pub(crate) fn failed(&self, batch: Batch) {
        let mut st = lock(&self.state);
        let mut changes = batch.changes;
        changes.append(&mut st.changes);
        st.changes = changes;
        st.bytes += batch.bytes;
        st.last.clear();
        let keys: Vec<Box<str>> = st.changes.iter().map(session_key).collect();
        for (i, key) in keys.into_iter().enumerate() {
            st.last.insert(key, i);
        }
        drop(st);
        self.saved.send_modify(|s| s.failing = true);
    }

    /// What has been saved so far.
    #[cfg(test)]
    pub(crate) fn progress(&self) -> Saved {
        *self.saved.borrow()
    }

    /// A ticket for everything pushed so far.
    pub(crate) fn everything(&self) -> Ticket {
        Ticket(lock(&self.state).pushed)
    }

    /// Waits until the change of `ticket` is saved.
    ///
    /// # Errors
    /// [`NotSaved`] when a write failed meanwhile (the change stays in the journal and is
    /// retried).
    pub(crate) async fn wait(&self, ticket: Ticket) -> Result<(), NotSaved> {
        let mut rx = self.saved.subscribe();
        loop {
            let s = *rx.borrow_and_update();
            if s.through >= ticket.0 {
                return Ok(());
            }
            if s.failing {
                return Err(NotSaved);
            }
            if rx.changed().await.is_err() {
                return Err(NotSaved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rmqtt_codec::v3::QoS;

    use super::*;

    fn saved_msg(j: &Journal, size: usize) -> Outgoing {
        let mut m = Outgoing::new(
            "/pk/d/user/a".into(),
            Bytes::from(vec![0u8; size]),
            QoS::AtLeastOnce,
            0,
        );
        m.saved = Some(j.next_id());
        m
    }

    #[test]
    fn session_changes_of_one_device_fold_into_the_latest() {
        let j = Journal::new(1 << 20);
        j.put_session("pk", "d", &[], false, false);
        j.delete_session("pk", "d");
        j.put_session("pk", "d", &[], true, false);
        j.put_session("pk", "e", &[], false, false);
        let batch = j.take().expect("changes");
        assert_eq!(batch.through, 4);
        assert_eq!(batch.changes.len(), 2);
        // The delete in between is kept as `replace`: the earlier messages go.
        assert!(matches!(
            &batch.changes[0],
            SessionChange::Put {
                replace: true,
                auto_subscribe: true,
                ..
            }
        ));
    }

    #[test]
    fn a_message_change_stops_the_folding() {
        let j = Journal::new(1 << 20);
        j.put_session("pk", "d", &[], false, false);
        let m = saved_msg(&j, 1);
        j.add_message("pk", "d", &m).expect("saved id");
        j.delete_session("pk", "d");
        assert_eq!(j.take().expect("changes").changes.len(), 3);
    }

    #[test]
    fn unsaved_message_bytes_are_bounded_and_freed_by_a_write() {
        let j = Journal::new(100);
        assert!(j.has_room(100));
        let m = saved_msg(&j, 80);
        j.add_message("pk", "d", &m);
        assert!(!j.has_room(80));
        let batch = j.take().expect("changes");
        assert!(j.has_room(80));
        // A failed write puts the batch back, with its bytes.
        j.failed(batch);
        assert!(!j.has_room(80));
        assert!(j.progress().failing);
        let batch = j.take().expect("changes again");
        j.saved(&batch);
        assert_eq!(
            j.progress(),
            Saved {
                through: 1,
                failing: false
            }
        );
    }

    #[tokio::test]
    async fn a_ticket_resolves_when_saved_and_fails_when_a_write_fails() {
        let j = Journal::new(1 << 20);
        let m = saved_msg(&j, 1);
        let t = j.add_message("pk", "d", &m).expect("saved id");
        let batch = j.take().expect("changes");
        j.failed(batch);
        assert_eq!(j.wait(t).await, Err(NotSaved));
        let batch = j.take().expect("changes");
        j.saved(&batch);
        assert_eq!(j.wait(t).await, Ok(()));
        assert_eq!(j.wait(j.everything()).await, Ok(()));
    }

    #[test]
    fn an_unsaved_message_makes_no_change() {
        let j = Journal::new(1 << 20);
        let m = Outgoing::new("/t".into(), Bytes::new(), QoS::AtLeastOnce, 0);
        assert!(j.add_message("pk", "d", &m).is_none());
        j.remove_message("pk", "d", &m);
        assert!(j.take().is_none());
    }
}
