//! The device table: every device the hub holds something for, and no IO.
//!
//! A device's slot holds its online [`Session`] (if any), its stored clean-session-0 state while
//! offline ([`StoredSession`] with the offline queue) and the calls waiting for its answers.
//! The table applies MQTT's session rules: a second login kicks the first, a clean-session-0
//! login inherits the stored (or the kicked) session's subscriptions and undelivered messages,
//! and QoS 1 messages for an offline clean-session-0 device wait in its offline queue. It never
//! touches a socket: the engine's connection task drives a session, the cluster seam delivers to
//! it, and the tests below drive it directly.
//!
//! ## Concurrency
//! 64 shards of `std::sync::Mutex<HashMap<key, Slot>>`, the shard picked by hashing
//! (productKey, deviceName). std `Mutex` because every critical section is a few map operations
//! with no `.await` and no I/O inside; sharding keeps two cores from contending on the message
//! path (there is no global lock between devices). Lock order: shard, then a session's own
//! mutex; never the other way round. No code path panics while holding these locks, so a
//! poisoned lock still guards consistent data and is used as is ([`lock`]).
//!
//! ## Gauges
//! The table's gauges (sessions online and stored, offline messages, waiting calls) are kept as
//! counters, adjusted by the difference each change makes to a slot, so that `/metrics` reads
//! four atomics instead of walking every slot under every shard lock.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, TableGauges, add};

mod inflight;
mod journal;
mod offline;
mod pending;
mod session;
mod subs;

pub(crate) use self::inflight::Inflight;
pub(crate) use self::journal::{Journal, NotSaved, Ticket};
pub(crate) use self::offline::{OfflineLimits, OfflineQueue, QueueFull, StoredSession};
pub(crate) use self::pending::{CallKey, Pending, PendingCalls, TooManyPending};
pub(crate) use self::session::{
    CloseReason, DeviceNames, Offer, Outgoing, QueueLimits, Session, SessionId, Subscription, reaches,
};
pub(crate) use self::subs::{LoginRefused, SubSessions};

/// Number of shards of the device table.
const SHARDS: usize = 64;

/// Locks a std mutex, ignoring poisoning (see the module docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The table's limits (from `BrokerConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableLimits {
    /// A connected device's outbound queue.
    pub(crate) outbound: QueueLimits,
    /// The offline queue's retention and size.
    pub(crate) offline: OfflineLimits,
    /// Calls that may wait for one device's answers at the same time.
    pub(crate) max_pending_calls: usize,
    /// Sub-devices one gateway connection may have logged in ([`SubSessions`]).
    pub(crate) max_online_subs_per_gateway: usize,
    /// Logins of one sub-device per minute through gateways, at most (0: no limit; 429 beyond).
    pub(crate) max_sub_logins_per_minute: u32,
    /// Bytes of messages for clean-session-0 devices waiting to be saved, at most (see
    /// `journal.rs`).
    pub(crate) unsaved_bytes: usize,
}

#[cfg(test)]
impl TableLimits {
    /// Small limits for the engine's tests (8 messages, 1 MiB).
    pub(crate) fn for_tests() -> Self {
        Self {
            outbound: QueueLimits {
                capacity: 8,
                bytes: 1 << 20,
            },
            offline: OfflineLimits {
                ttl_ms: 1,
                max_messages: 1,
                max_bytes: 1 << 20,
            },
            max_pending_calls: 1,
            max_online_subs_per_gateway: 2,
            max_sub_logins_per_minute: 0,
            unsaved_bytes: 1 << 20,
        }
    }
}

/// Everything the table keeps about one device.
#[derive(Debug, Default)]
struct Slot {
    online: Option<Arc<Session>>,
    stored: Option<Box<StoredSession>>,
    pending: PendingCalls,
}

/// What a slot adds to the gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SlotCounts {
    online: i64,
    stored: i64,
    offline_messages: i64,
    pending: i64,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.online.is_none() && self.stored.is_none() && self.pending.is_empty()
    }

    fn counts(&self) -> SlotCounts {
        SlotCounts {
            online: i64::from(self.online.is_some()),
            stored: i64::from(self.stored.is_some()),
            offline_messages: self.stored.as_ref().map_or(0, |s| s.queue.len() as i64),
            pending: self.pending.len() as i64,
        }
    }
}

/// One shard: the devices' slots, and the devices that may not log in right now (disabled or
/// being deleted, see [`DeviceTable::block`]).
#[derive(Debug, Default)]
struct ShardMap {
    slots: HashMap<Box<str>, Slot>,
    blocked: HashSet<Box<str>>,
}

type Shard = Mutex<ShardMap>;

/// The device table key: unambiguous for any productKey and deviceName.
pub(crate) fn device_key(product_key: &str, device_name: &str) -> Box<str> {
    format!("{}:{product_key}/{device_name}", product_key.len()).into_boxed_str()
}

/// The result of registering a new session.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) session: Arc<Session>,
    /// A stored session was resumed (the CONNACK's session-present flag).
    pub(crate) session_present: bool,
    /// The previous connection of the same device, now closing.
    pub(crate) kicked: Option<Arc<Session>>,
}

/// The device may not log in: it was disabled or deleted after its CONNECT was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked;

/// What happened to a downlink given to [`DeviceTable::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// The device is online and reached by the topic: the message is in its outbound queue.
    Online,
    /// The device is offline (or closing) with a clean-session-0 session reached by the topic:
    /// the QoS 1 message waits in its offline queue.
    Queued,
    /// The device (online, or offline with a stored session) is not reached by the topic: the
    /// message was dropped, as on the platform.
    NotSubscribed,
}

/// Why a downlink was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undelivered {
    /// Offline, and the message cannot wait (QoS 0, no clean-session-0 session, or the caller
    /// wants online delivery only).
    Offline,
    /// The outbound queue (QoS 0) or the offline queue is full.
    QueueFull,
}

/// Where a downlink may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Online, or the offline queue of a clean-session-0 device (QoS 1).
    OnlineOrQueued,
    /// Online only (a call that waits for the answer).
    OnlineOnly,
}

/// The gauges, as counters (see the module docs).
#[derive(Debug, Default)]
struct Gauges {
    online: AtomicI64,
    stored: AtomicI64,
    offline_messages: AtomicI64,
    pending: AtomicI64,
}

/// A downlink the table took: where it went, and the journal's ticket when it is saved until
/// acknowledged (a QoS 1 message for a clean-session-0 device), to wait for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) delivered: Delivered,
    pub(crate) ticket: Option<Ticket>,
}

/// The device table.
#[derive(Debug)]
pub(crate) struct DeviceTable {
    shards: Box<[Shard]>,
    hasher: RandomState,
    limits: TableLimits,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    journal: Arc<Journal>,
    /// Sub-devices logged in through gateways.
    subs: Arc<SubSessions>,
}

impl DeviceTable {
    pub(crate) fn new(limits: TableLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(ShardMap::default())).collect(),
            hasher: RandomState::new(),
            journal: Arc::new(Journal::new(limits.unsaved_bytes)),
            subs: Arc::new(SubSessions::new(
                limits.max_online_subs_per_gateway,
                limits.max_sub_logins_per_minute,
            )),
            limits,
            metrics,
            gauges: Gauges::default(),
        }
    }

    /// The sub-devices logged in through gateways.
    pub(crate) fn subs(&self) -> &Arc<SubSessions> {
        &self.subs
    }

    /// The journal of what clean-session-0 devices keep (for the writer that saves it).
    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Puts back the clean-session-0 sessions saved before a restart (at start, before any
    /// device connects). Returns how many messages they hold.
    pub(crate) fn restore(&self, sessions: Vec<crate::registry::SavedSession>) -> usize {
        let mut messages = 0;
        let mut max_id = 0;
        for saved in sessions {
            let key = device_key(&saved.product_key, &saved.device_name);
            let mut queued = VecDeque::with_capacity(saved.messages.len());
            for m in saved.messages {
                max_id = max_id.max(m.id);
                let mut msg =
                    Outgoing::new(m.topic, m.payload, rmqtt_codec::v3::QoS::AtLeastOnce, m.queued_ms);
                msg.saved = std::num::NonZeroU64::new(m.id);
                queued.push_back(msg);
            }
            messages += queued.len();
            let mut queue = OfflineQueue::default();
            queue.prepend(queued);
            let stored = StoredSession {
                subs: saved
                    .subscriptions
                    .into_iter()
                    .map(|(filter, qos)| Subscription {
                        filter: filter.into_boxed_str(),
                        qos,
                    })
                    .collect(),
                queue,
                auto_subscribe: saved.auto_subscribe,
            };
            let mut map = lock(self.shard(&key));
            self.with_slot(&mut map, &key, |slot| slot.stored = Some(Box::new(stored)));
        }
        self.journal.continue_after(max_id);
        messages
    }

    /// A QoS 1 message the device acknowledged: no longer owed.
    pub(crate) fn acknowledged(&self, session: &Session, msg: &Outgoing) {
        self.journal
            .remove_message(session.id.product_key(), session.id.device_name(), msg);
    }

    /// The subscriptions of `session` changed (SUBSCRIBE, UNSUBSCRIBE): a clean-session-0
    /// device keeps them.
    pub(crate) fn subscriptions_changed(&self, session: &Arc<Session>) {
        if session.id.clean_session {
            return;
        }
        let key = session.key();
        let map = lock(self.shard(key));
        let current = map
            .slots
            .get(key)
            .and_then(|slot| slot.online.as_ref())
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if current {
            let subs = session.subscriptions();
            self.journal.put_session(
                session.id.product_key(),
                session.id.device_name(),
                &subs,
                session.id.auto_subscribe,
                false,
            );
        }
        drop(map);
    }

    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key);
        // The modulo keeps the index in range whatever the hash.
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Adds the difference a change made to a slot to the gauges.
    fn account(&self, before: SlotCounts, after: SlotCounts) {
        let g = &self.gauges;
        for (c, d) in [
            (&g.online, after.online - before.online),
            (&g.stored, after.stored - before.stored),
            (
                &g.offline_messages,
                after.offline_messages - before.offline_messages,
            ),
            (&g.pending, after.pending - before.pending),
        ] {
            if d != 0 {
                c.fetch_add(d, Ordering::Relaxed);
            }
        }
    }

    /// Runs `change` on the device's slot (created when missing), keeps the gauges in step and
    /// removes the slot when it ends up empty. Under the shard lock.
    fn with_slot<T>(&self, map: &mut ShardMap, key: &str, change: impl FnOnce(&mut Slot) -> T) -> T {
        let slot = match map.slots.get_mut(key) {
            Some(slot) => slot,
            None => map.slots.entry(key.into()).or_default(),
        };
        let before = slot.counts();
        let out = change(slot);
        let after = slot.counts();
        let empty = slot.is_empty();
        self.account(before, after);
        if empty {
            map.slots.remove(key);
        }
        out
    }

    /// Registers an authenticated device's new session, closing a previous connection of the
    /// same device (`kicked`). A clean-session-0 login inherits the subscriptions and the
    /// undelivered messages of the stored session, or of the kicked one when it was
    /// clean-session-0 too.
    ///
    /// # Errors
    /// [`Blocked`] when the device was disabled or deleted after its CONNECT was authenticated
    /// (the check happens under the same lock as [`DeviceTable::block`], so a login either
    /// comes before the block, and is closed by it, or is refused here).
    pub(crate) fn register(&self, id: SessionId, now_ms: u64) -> Result<Registered, Blocked> {
        let key = id.names.key().to_owned();
        let clean_session = id.clean_session;
        let mut map = lock(self.shard(&key));
        if map.blocked.contains(key.as_str()) {
            return Err(Blocked);
        }
        let journal = &self.journal;
        let (registered, expired) = self.with_slot(&mut map, &key, |slot| {
            let old = slot.online.take();
            if let Some(old) = &old {
                old.close(CloseReason::Kicked);
            }
            let (pk, dn) = (id.product_key(), id.device_name());
            let stored = if clean_session {
                // Whatever a clean-session-0 session kept goes, on disk too.
                if slot.stored.take().is_some() || old.as_ref().is_some_and(|o| !o.id.clean_session) {
                    journal.delete_session(pk, dn);
                }
                None
            } else {
                slot.stored.take()
            };
            let (subs, mut queue, present) = match (&old, stored) {
                (Some(o), st) if !clean_session && !o.id.clean_session => {
                    (o.subscriptions(), st.map(|s| s.queue).unwrap_or_default(), true)
                }
                (_, Some(st)) => (st.subs, st.queue, true),
                _ => (Vec::new(), OfflineQueue::default(), false),
            };
            let expired = queue.expire(now_ms, self.limits.offline, |m| journal.remove_message(pk, dn, m));
            if !clean_session {
                journal.put_session(pk, dn, &subs, id.auto_subscribe, !present);
            }
            let session = Arc::new(Session::new(id, queue.into_messages(), subs));
            slot.online = Some(session.clone());
            let registered = Registered {
                session,
                session_present: present,
                kicked: old,
            };
            (registered, expired)
        });
        drop(map);
        add(&self.metrics.offline_expired, expired);
        Ok(registered)
    }

    /// Removes a closed session from the table, keeping what a clean-session-0 device must
    /// find on reconnect. `unacked` are the QoS 1 messages sent and not acknowledged (marked
    /// DUP). Returns false when a newer login of the device had taken it over (that session
    /// inherits the undelivered messages and the device stays online), true otherwise.
    ///
    /// A clean-session-0 session taken over by another clean-session-0 login that has itself
    /// already gone offline leaves its undelivered messages in front of the stored session's
    /// queue: nothing accepted is dropped by a fast takeover. A deleted device's session
    /// ([`DeviceTable::forget`]) leaves nothing behind.
    pub(crate) fn unregister(&self, session: &Arc<Session>, unacked: VecDeque<Outgoing>) -> bool {
        let key = session.key();
        let mut map = lock(self.shard(key));
        let (outbox, subs) = {
            let mut inner = lock(&session.inner);
            (inner.take_outbox(), std::mem::take(&mut inner.subs))
        };
        let mut leftovers = unacked;
        leftovers.extend(outbox.into_iter().filter(Outgoing::is_qos1));
        if !map.slots.contains_key(key) {
            // Forgotten (deleted), or a clean-session-1 successor already came and went.
            return true;
        }
        self.with_slot(&mut map, key, |slot| {
            match &slot.online {
                Some(s) if Arc::ptr_eq(s, session) => {
                    slot.online = None;
                    // Waiting callers learn at once that the device went offline.
                    slot.pending.clear();
                    if session.id.clean_session {
                        slot.stored = None;
                    } else {
                        self.journal.put_session(
                            session.id.product_key(),
                            session.id.device_name(),
                            &subs,
                            session.id.auto_subscribe,
                            false,
                        );
                        let stored = slot.stored.get_or_insert_with(Box::default);
                        stored.subs = subs;
                        stored.auto_subscribe = session.id.auto_subscribe;
                        // Messages accepted while the connection was closing come after ours.
                        stored.queue.prepend(leftovers);
                    }
                    true
                }
                Some(new) => {
                    if !session.id.clean_session && !new.id.clean_session && !leftovers.is_empty() {
                        // Taken over by a clean-session-0 login: it inherits what we did not
                        // deliver.
                        new.requeue_front(leftovers);
                    }
                    false
                }
                None => {
                    // Taken over by a clean-session-0 login that is already offline: its stored
                    // session gets our undelivered messages, ahead of its own.
                    if let Some(stored) = &mut slot.stored
                        && !session.id.clean_session
                    {
                        stored.queue.prepend(leftovers);
                    }
                    true
                }
            }
        })
    }

    /// Delivers a downlink to a device: into its outbound queue when it is online, into its
    /// offline queue when it is offline with a clean-session-0 session and the message is QoS 1
    /// (and `reach` allows it).
    pub(crate) fn deliver(
        &self,
        product_key: &str,
        device_name: &str,
        msg: Outgoing,
        reach: Reach,
        now_ms: u64,
    ) -> Result<Taken, Undelivered> {
        let key = device_key(product_key, device_name);
        let mut map = lock(self.shard(&key));
        if !map.slots.contains_key(&key) {
            return Err(Undelivered::Offline);
        }
        let journal = &self.journal;
        let mut msg = msg;
        let mut ticket = None;
        let (result, expired) = self.with_slot(&mut map, &key, |slot| {
            // Saved until acknowledged: a QoS 1 message that may wait for a clean-session-0
            // device (online or not).
            let keeps = match &slot.online {
                Some(s) => !s.id.clean_session,
                None => slot.stored.is_some(),
            };
            if keeps && msg.is_qos1() && reach == Reach::OnlineOrQueued {
                if !journal.has_room(msg.size()) {
                    return (Err(Undelivered::QueueFull), 0);
                }
                msg.saved = Some(journal.next_id());
            }
            let msg = match &slot.online {
                Some(session) => match session.offer_with(msg, self.limits.outbound, |m| {
                    ticket = journal.add_message(product_key, device_name, m);
                }) {
                    Offer::Accepted => return (Ok(Delivered::Online), 0),
                    Offer::NotSubscribed => return (Ok(Delivered::NotSubscribed), 0),
                    Offer::Dropped => {
                        add(&self.metrics.qos0_dropped, 1);
                        return (Err(Undelivered::QueueFull), 0);
                    }
                    Offer::Closing(m)
                        if !session.id.clean_session && m.is_qos1() && reach == Reach::OnlineOrQueued =>
                    {
                        m
                    }
                    Offer::Closing(_) => return (Err(Undelivered::Offline), 0),
                },
                None => {
                    let Some(stored) = &slot.stored else {
                        return (Err(Undelivered::Offline), 0);
                    };
                    // The stored session's subscriptions and `_ss=1` decide, exactly as online.
                    if !reaches(
                        product_key,
                        device_name,
                        stored.auto_subscribe,
                        &stored.subs,
                        msg.topic(),
                    ) {
                        return (Ok(Delivered::NotSubscribed), 0);
                    }
                    if !msg.is_qos1() || reach == Reach::OnlineOnly {
                        return (Err(Undelivered::Offline), 0);
                    }
                    msg
                }
            };
            // Offline (or closing) clean-session-0 device: the offline queue. Journaled under
            // the shard lock, before a new login of the device can take the queue.
            let stored = slot.stored.get_or_insert_with(Box::default);
            let addition = journal::addition(product_key, device_name, &msg);
            match stored.queue.push(msg, now_ms, self.limits.offline, |m| {
                journal.remove_message(product_key, device_name, m);
            }) {
                Ok(expired) => {
                    ticket = addition.and_then(|a| journal.add(a));
                    (Ok(Delivered::Queued), expired)
                }
                Err(QueueFull) => (Err(Undelivered::QueueFull), 0),
            }
        });
        drop(map);
        add(&self.metrics.offline_expired, expired);
        if result == Ok(Delivered::Queued) {
            add(&self.metrics.offline_queued, 1);
        }
        result.map(|delivered| Taken { delivered, ticket })
    }

    /// Delivers a downlink for a sub-device on its gateway's connection (never queued offline).
    pub(crate) fn deliver_on(&self, gateway: &Session, msg: Outgoing) -> Result<Taken, Undelivered> {
        match gateway.offer(msg, self.limits.outbound) {
            Offer::Accepted => Ok(Taken {
                delivered: Delivered::Online,
                ticket: None,
            }),
            Offer::NotSubscribed => Ok(Taken {
                delivered: Delivered::NotSubscribed,
                ticket: None,
            }),
            Offer::Dropped => {
                add(&self.metrics.qos0_dropped, 1);
                Err(Undelivered::QueueFull)
            }
            Offer::Closing(_) => Err(Undelivered::Offline),
        }
    }

    /// The device's online session.
    pub(crate) fn session(&self, product_key: &str, device_name: &str) -> Option<Arc<Session>> {
        let key = device_key(product_key, device_name);
        lock(self.shard(&key)).slots.get(&key)?.online.clone()
    }

    /// Closes the device's connection; returns whether it was online.
    pub(crate) fn disconnect(&self, product_key: &str, device_name: &str, reason: CloseReason) -> bool {
        match self.session(product_key, device_name) {
            Some(s) => {
                s.close(reason);
                true
            }
            None => false,
        }
    }

    /// Refuses the device's logins from now on (until [`DeviceTable::unblock`]) and closes its
    /// connection: the device is being disabled or deleted. Returns whether it was online.
    pub(crate) fn block(&self, product_key: &str, device_name: &str) -> bool {
        let key = device_key(product_key, device_name);
        let session = {
            let mut map = lock(self.shard(&key));
            let online = map.slots.get(&key).and_then(|s| s.online.clone());
            map.blocked.insert(key);
            online
        };
        match session {
            Some(s) => {
                s.close(CloseReason::AdminDisconnect);
                true
            }
            None => false,
        }
    }

    /// Lets the device log in again.
    pub(crate) fn unblock(&self, product_key: &str, device_name: &str) {
        let key = device_key(product_key, device_name);
        lock(self.shard(&key)).blocked.remove(&key);
    }

    /// Forgets the device's session, stored session and offline queue and closes its connection
    /// (the device was deleted): nothing of it comes back when the connection finishes closing.
    /// Returns whether it was online.
    pub(crate) fn forget(&self, product_key: &str, device_name: &str) -> bool {
        let key = device_key(product_key, device_name);
        let session = {
            let mut map = lock(self.shard(&key));
            if !map.slots.contains_key(&key) {
                return false;
            }
            self.journal.delete_session(product_key, device_name);
            self.with_slot(&mut map, &key, |slot| {
                slot.stored = None;
                // Waiting callers learn at once that the device is gone.
                slot.pending.clear();
                slot.online.take()
            })
        };
        match session {
            Some(s) => {
                s.close(CloseReason::AdminDisconnect);
                true
            }
            None => false,
        }
    }

    /// Registers a call waiting for the device's answer `key`. Register before sending the
    /// request: the answer then cannot overtake the registration.
    pub(crate) fn expect_answer(
        &self,
        product_key: &str,
        device_name: &str,
        key: CallKey,
    ) -> Result<oneshot::Receiver<Bytes>, TooManyPending> {
        let dkey = device_key(product_key, device_name);
        let mut map = lock(self.shard(&dkey));
        self.with_slot(&mut map, &dkey, |slot| {
            slot.pending.retain(|p| !p.tx.is_closed());
            if slot.pending.len() >= self.limits.max_pending_calls {
                return Err(TooManyPending);
            }
            let (tx, rx) = oneshot::channel();
            slot.pending.push(Pending { key, tx });
            Ok(rx)
        })
    }

    /// Forgets a call (its caller stopped waiting).
    pub(crate) fn forget_answer(&self, product_key: &str, device_name: &str, key: &CallKey) {
        let dkey = device_key(product_key, device_name);
        let mut map = lock(self.shard(&dkey));
        if map.slots.contains_key(&dkey) {
            self.with_slot(&mut map, &dkey, |slot| slot.pending.retain(|p| &p.key != key));
        }
    }

    /// Hands a device's answer to the call waiting for it; returns whether one was waiting.
    pub(crate) fn complete(
        &self,
        product_key: &str,
        device_name: &str,
        key: &CallKey,
        payload: Bytes,
    ) -> bool {
        let dkey = device_key(product_key, device_name);
        let pending = {
            let mut map = lock(self.shard(&dkey));
            if map.slots.contains_key(&dkey) {
                self.with_slot(&mut map, &dkey, |slot| slot.pending.take(key))
            } else {
                None
            }
        };
        match pending {
            Some(p) => {
                add(&self.metrics.calls_answered, 1);
                // The caller may have given up in the meantime; nothing to do then.
                let _ = p.tx.send(payload);
                true
            }
            None => false,
        }
    }

    /// Wakes the connection task of every online device (see [`Session::wake`]).
    pub(crate) fn wake_all(&self) {
        for shard in &self.shards {
            let map = lock(shard);
            for session in map.slots.values().filter_map(|slot| slot.online.as_ref()) {
                session.wake();
            }
        }
    }

    /// The deviceNames of a product's online devices, sorted.
    pub(crate) fn online_devices(&self, product_key: &str) -> Vec<String> {
        let mut names = Vec::new();
        for shard in &self.shards {
            let map = lock(shard);
            names.extend(
                map.slots
                    .values()
                    .filter_map(|slot| slot.online.as_ref())
                    .filter(|s| s.id.product_key() == product_key)
                    .map(|s| s.id.device_name().to_owned()),
            );
        }
        names.sort_unstable();
        names
    }

    /// Number of online devices.
    #[cfg(test)]
    pub(crate) fn online_count(&self) -> usize {
        self.gauges().sessions_online as usize
    }

    /// Gauges for `/metrics`: four counters, no walk over the table.
    pub(crate) fn gauges(&self) -> TableGauges {
        let g = &self.gauges;
        let read = |c: &AtomicI64| u64::try_from(c.load(Ordering::Relaxed)).unwrap_or(0);
        TableGauges {
            sessions_online: read(&g.online),
            sessions_stored: read(&g.stored),
            offline_queue_messages: read(&g.offline_messages),
            pending_calls: read(&g.pending),
        }
    }

    /// The gauges counted by walking every slot (what the counters must always equal).
    #[cfg(test)]
    fn scanned_gauges(&self) -> TableGauges {
        let mut c = SlotCounts::default();
        for shard in &self.shards {
            for slot in lock(shard).slots.values() {
                let s = slot.counts();
                c.online += s.online;
                c.stored += s.stored;
                c.offline_messages += s.offline_messages;
                c.pending += s.pending;
            }
        }
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        TableGauges {
            sessions_online: u(c.online),
            sessions_stored: u(c.stored),
            offline_queue_messages: u(c.offline_messages),
            pending_calls: u(c.pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rmqtt_codec::v3::QoS;

    use super::*;

    const LIMITS: TableLimits = TableLimits {
        outbound: QueueLimits {
            capacity: 4,
            bytes: usize::MAX,
        },
        offline: OfflineLimits {
            ttl_ms: 10_000,
            max_messages: 3,
            max_bytes: usize::MAX,
        },
        max_pending_calls: 2,
        max_online_subs_per_gateway: 2,
        max_sub_logins_per_minute: 0,
        unsaved_bytes: 1 << 20,
    };

    fn id(dn: &str, clean_session: bool) -> SessionId {
        SessionId {
            names: DeviceNames::new("pk", dn, "iot", "c"),
            ip: IpAddr::from([127, 0, 0, 1]),
            connected_ms: 0,
            clean_session,
            keep_alive: 60,
            auto_subscribe: false,
            ext_rrpc: false,
        }
    }

    fn msg(topic: &str, qos: QoS) -> Outgoing {
        Outgoing::new(topic.to_owned(), Bytes::from_static(b"x"), qos, 0)
    }

    fn deliver(
        t: &DeviceTable,
        pk: &str,
        dn: &str,
        msg: Outgoing,
        reach: Reach,
        now_ms: u64,
    ) -> Result<Delivered, Undelivered> {
        t.deliver(pk, dn, msg, reach, now_ms).map(|taken| taken.delivered)
    }

    fn subscribe(s: &Session, filter: &str) {
        lock(&s.inner).subs.push(Subscription {
            filter: filter.into(),
            qos: 1,
        });
    }

    fn outbox_len(s: &Session) -> usize {
        lock(&s.inner).queued()
    }

    /// Issue 8: the table keeps a slot for every device it holds something for.
    #[test]
    fn a_slot_stays_small() {
        let size = std::mem::size_of::<Slot>();
        assert!(size <= 24, "Slot grew to {size} bytes");
    }

    #[test]
    fn device_keys_are_unambiguous() {
        assert_ne!(device_key("a", "b/c"), device_key("a/b", "c"));
        assert_eq!(device_key("pk", "dn"), device_key("pk", "dn"));
    }

    #[test]
    fn a_second_login_kicks_the_first() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let first = t.register(id("d", true), 0).expect("not blocked");
        assert!(first.kicked.is_none() && !first.session_present);
        let second = t.register(id("d", true), 0).expect("not blocked");
        let kicked = second.kicked.expect("the first session is kicked");
        assert!(Arc::ptr_eq(&kicked, &first.session));
        assert_eq!(lock(&kicked.inner).closing, Some(CloseReason::Kicked));
        // The kicked session no longer owns the slot.
        assert!(!t.unregister(&first.session, VecDeque::new()));
        assert_eq!(t.online_count(), 1);
    }

    #[test]
    fn a_clean_session_0_device_keeps_subscriptions_and_qos1_messages_while_offline() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        assert!(t.unregister(&r.session, VecDeque::new()));
        assert_eq!(
            deliver(
                &t,
                "pk",
                "d",
                msg("/pk/d/user/a", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                1
            ),
            Ok(Delivered::Queued)
        );
        assert_eq!(
            deliver(
                &t,
                "pk",
                "d",
                msg("/pk/d/user/a", QoS::AtMostOnce),
                Reach::OnlineOrQueued,
                1
            ),
            Err(Undelivered::Offline)
        );
        assert_eq!(
            deliver(
                &t,
                "pk",
                "d",
                msg("/pk/d/other", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                1
            ),
            Ok(Delivered::NotSubscribed)
        );
        assert_eq!(
            deliver(
                &t,
                "pk",
                "d",
                msg("/pk/d/user/a", QoS::AtLeastOnce),
                Reach::OnlineOnly,
                1
            ),
            Err(Undelivered::Offline)
        );
        let back = t.register(id("d", false), 2).expect("not blocked");
        assert!(back.session_present);
        assert_eq!(outbox_len(&back.session), 1);
        assert_eq!(back.session.subscription_count(), 1);
    }

    #[test]
    fn a_clean_session_1_login_discards_the_stored_session() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        t.unregister(&r.session, VecDeque::new());
        let clean = t.register(id("d", true), 1).expect("not blocked");
        assert!(!clean.session_present);
        assert_eq!(clean.session.subscription_count(), 0);
    }

    #[test]
    fn the_offline_queue_has_a_limit_and_a_retention() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        t.unregister(&r.session, VecDeque::new());
        for _ in 0..3 {
            assert_eq!(
                deliver(
                    &t,
                    "pk",
                    "d",
                    msg("/pk/d/user/a", QoS::AtLeastOnce),
                    Reach::OnlineOrQueued,
                    0
                ),
                Ok(Delivered::Queued)
            );
        }
        assert_eq!(
            deliver(
                &t,
                "pk",
                "d",
                msg("/pk/d/user/a", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                0
            ),
            Err(Undelivered::QueueFull)
        );
        let back = t.register(id("d", false), 10_001).expect("not blocked");
        assert_eq!(
            t.metrics
                .offline_expired
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert_eq!(outbox_len(&back.session), 0);
    }

    #[test]
    fn unacknowledged_messages_of_a_taken_over_session_go_to_its_successor() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let first = t.register(id("d", false), 0).expect("not blocked");
        let second = t.register(id("d", false), 0).expect("not blocked");
        let unacked = VecDeque::from([msg("/pk/d/user/a", QoS::AtLeastOnce)]);
        assert!(!t.unregister(&first.session, unacked));
        assert_eq!(outbox_len(&second.session), 1);
    }

    #[test]
    fn qos1_messages_offered_while_closing_wait_in_the_offline_queue() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        r.session.close(CloseReason::KeepAliveTimeout);
        assert_eq!(
            deliver(
                &t,
                "pk",
                "d",
                msg("/pk/d/user/a", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                0
            ),
            Ok(Delivered::Queued)
        );
        t.unregister(&r.session, VecDeque::new());
        let back = t.register(id("d", false), 1).expect("not blocked");
        assert_eq!(outbox_len(&back.session), 1);
    }

    #[test]
    fn answers_complete_the_calls_that_wait_for_them() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", true), 0).expect("not blocked");
        let key = CallKey::Rrpc("1".into());
        let mut rx = t.expect_answer("pk", "d", key.clone()).expect("room");
        let _other = t
            .expect_answer("pk", "d", CallKey::Rrpc("2".into()))
            .expect("room");
        assert_eq!(
            t.expect_answer("pk", "d", CallKey::Rrpc("3".into())).err(),
            Some(TooManyPending)
        );
        assert!(t.complete("pk", "d", &key, Bytes::from_static(b"ok")));
        assert_eq!(rx.try_recv().ok(), Some(Bytes::from_static(b"ok")));
        assert!(!t.complete("pk", "d", &key, Bytes::new()));
        // Going offline ends the calls still waiting.
        let mut waiting = t
            .expect_answer("pk", "d", CallKey::Rrpc("4".into()))
            .expect("room");
        t.unregister(&r.session, VecDeque::new());
        assert!(matches!(
            waiting.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    /// Hardening 6: a login authenticated before a disable but registered after it is refused.
    #[test]
    fn a_blocked_device_cannot_register_until_unblocked() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", true), 0).expect("not blocked");
        assert!(t.block("pk", "d"));
        assert_eq!(lock(&r.session.inner).closing, Some(CloseReason::AdminDisconnect));
        assert!(t.register(id("d", true), 0).is_err());
        t.unregister(&r.session, VecDeque::new());
        t.unblock("pk", "d");
        assert!(t.register(id("d", true), 0).is_ok());
    }

    /// Hardening 11: the closing connection of a deleted device does not bring its session back.
    #[test]
    fn a_forgotten_device_leaves_nothing_when_its_connection_closes() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        assert!(t.forget("pk", "d"));
        assert!(t.unregister(
            &r.session,
            VecDeque::from([msg("/pk/d/user/a", QoS::AtLeastOnce)])
        ));
        assert_eq!(t.gauges(), TableGauges::default());
        let back = t.register(id("d", false), 1).expect("not blocked");
        assert!(!back.session_present);
    }

    /// Hardening 11: a clean-session-0 session taken over by a login that is already offline
    /// hands its unacknowledged QoS 1 messages to the stored session, in front.
    #[test]
    fn a_fast_takeover_loses_no_qos1_message() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let first = t.register(id("d", false), 0).expect("not blocked");
        let second = t.register(id("d", false), 0).expect("not blocked");
        t.unregister(
            &second.session,
            VecDeque::from([msg("/pk/d/user/second", QoS::AtLeastOnce)]),
        );
        t.unregister(
            &first.session,
            VecDeque::from([msg("/pk/d/user/first", QoS::AtLeastOnce)]),
        );
        let back = t.register(id("d", false), 1).expect("not blocked");
        let topics: Vec<String> = {
            let mut inner = lock(&back.session.inner);
            std::iter::from_fn(|| inner.pop())
                .map(|m| m.topic().to_owned())
                .collect()
        };
        assert_eq!(topics, ["/pk/d/user/first", "/pk/d/user/second"]);
    }

    /// Hardening 18: the gauges are counters kept in step with every change.
    #[test]
    fn the_gauge_counters_equal_a_full_scan() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let a = t.register(id("a", false), 0).expect("not blocked");
        subscribe(&a.session, "/pk/a/user/#");
        let _b = t.register(id("b", true), 0).expect("not blocked");
        let _call = t
            .expect_answer("pk", "b", CallKey::Rrpc("1".into()))
            .expect("room");
        assert_eq!(t.gauges(), t.scanned_gauges());
        t.unregister(&a.session, VecDeque::new());
        let m = |x| msg(x, QoS::AtLeastOnce);
        assert_eq!(
            deliver(&t, "pk", "a", m("/pk/a/user/1"), Reach::OnlineOrQueued, 1),
            Ok(Delivered::Queued)
        );
        assert_eq!(t.gauges(), t.scanned_gauges());
        assert_eq!(t.gauges().offline_queue_messages, 1);
        t.forget_answer("pk", "b", &CallKey::Rrpc("1".into()));
        let _a2 = t.register(id("a", false), 2).expect("not blocked");
        assert!(t.forget("pk", "b"));
        assert_eq!(t.gauges(), t.scanned_gauges());
        assert_eq!(
            t.gauges(),
            TableGauges {
                sessions_online: 1,
                sessions_stored: 0,
                offline_queue_messages: 0,
                pending_calls: 0
            }
        );
    }

    fn changes(t: &DeviceTable) -> Vec<crate::registry::SessionChange> {
        t.journal().take().map(|b| b.changes).unwrap_or_default()
    }

    /// Hardening 17: what a clean-session-0 device keeps is journaled, every QoS 1 message
    /// until its acknowledgement.
    #[test]
    fn a_clean_session_0_session_and_its_messages_are_journaled_until_acknowledged() {
        use crate::registry::SessionChange as C;
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        t.subscriptions_changed(&r.session);
        let c = changes(&t);
        assert_eq!(c.len(), 1, "the login and the SUBSCRIBE fold into one: {c:?}");
        assert!(matches!(&c[0], C::Put { subscriptions, replace: true, .. } if subscriptions.len() == 1));
        let taken = t
            .deliver(
                "pk",
                "d",
                msg("/pk/d/user/a", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                1,
            )
            .expect("delivered");
        assert_eq!(taken.delivered, Delivered::Online);
        assert!(taken.ticket.is_some());
        // QoS 0, and calls that wait for an answer, are not saved.
        for (qos, reach) in [
            (QoS::AtMostOnce, Reach::OnlineOrQueued),
            (QoS::AtLeastOnce, Reach::OnlineOnly),
        ] {
            let taken = t
                .deliver("pk", "d", msg("/pk/d/user/a", qos), reach, 1)
                .expect("delivered");
            assert!(taken.ticket.is_none());
        }
        assert!(matches!(&changes(&t)[..], [C::AddMessage { .. }]));
        let sent = lock(&r.session.inner).pop().expect("queued");
        t.acknowledged(&r.session, &sent);
        assert!(matches!(&changes(&t)[..], [C::RemoveMessage { id: 1, .. }]));
        // Offline: queued and saved the same way; a clean-session-1 login drops it all.
        t.unregister(&r.session, VecDeque::new());
        let taken = t
            .deliver(
                "pk",
                "d",
                msg("/pk/d/user/b", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                2,
            )
            .expect("queued");
        assert_eq!(taken.delivered, Delivered::Queued);
        assert!(taken.ticket.is_some());
        let _clean = t.register(id("d", true), 3).expect("not blocked");
        let c = changes(&t);
        assert!(
            matches!(
                &c[..],
                [
                    C::Put { replace: false, .. },
                    C::AddMessage { .. },
                    C::Delete { .. }
                ]
            ),
            "{c:?}"
        );
        // A clean-session-1 device keeps nothing: nothing journaled.
        let taken = t
            .deliver(
                "pk",
                "d",
                msg("/pk/d/user/b", QoS::AtLeastOnce),
                Reach::OnlineOrQueued,
                4,
            )
            .expect("delivered");
        assert!(taken.ticket.is_none());
        assert!(changes(&t).is_empty());
    }

    /// Hardening 17: a restart gives the stored sessions back, messages in order, and new
    /// message ids continue after the saved ones.
    #[test]
    fn restored_sessions_come_back_with_their_messages_in_order() {
        use crate::registry::{SavedMessage, SavedSession};
        let t = DeviceTable::new(LIMITS, Arc::default());
        let m = |id: u64| SavedMessage {
            id,
            topic: format!("/pk/d/user/{id}"),
            payload: Bytes::from_static(b"x"),
            queued_ms: 0,
        };
        let restored = t.restore(vec![SavedSession {
            product_key: "pk".into(),
            device_name: "d".into(),
            subscriptions: vec![("/pk/d/user/#".into(), 1)],
            auto_subscribe: false,
            messages: vec![m(4), m(9)],
        }]);
        assert_eq!(restored, 2);
        assert_eq!(t.gauges().sessions_stored, 1);
        let back = t.register(id("d", false), 1).expect("not blocked");
        assert!(back.session_present);
        assert_eq!(back.session.subscription_count(), 1);
        let topics: Vec<String> = {
            let mut inner = lock(&back.session.inner);
            std::iter::from_fn(|| inner.pop())
                .map(|m| m.topic().to_owned())
                .collect()
        };
        assert_eq!(topics, ["/pk/d/user/4", "/pk/d/user/9"]);
        assert_eq!(t.journal().next_id().get(), 10);
    }

    #[test]
    fn forgetting_a_device_drops_its_stored_session() {
        let t = DeviceTable::new(LIMITS, Arc::default());
        let r = t.register(id("d", false), 0).expect("not blocked");
        subscribe(&r.session, "/pk/d/user/#");
        t.unregister(&r.session, VecDeque::new());
        assert_eq!(t.gauges().sessions_stored, 1);
        assert!(!t.forget("pk", "d"));
        assert_eq!(t.gauges(), TableGauges::default());
    }
}
