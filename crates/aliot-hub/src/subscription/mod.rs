//! Server-side subscription (cloud-side spec §2, §6): consumer groups, per-product subscribe
//! relations, a durable backlog per group, and the consumer interface transports use.
//!
//! - Groups: `DEFAULT_GROUP` always exists; others are created and deleted by the admin API.
//! - Relations: per product, which groups receive which message families ([`Family`], the
//!   `CreateSubscribeRelation` flags). **A product without a relation forwards nothing**, as on
//!   the cloud, where nothing reaches a consumer group before a subscription is configured.
//! - Backlog: [`Subscriptions::forward`] queues a message for every group of the product's
//!   relation that wants its family; the writer commits it to `subscription.redb` (group
//!   commit) and only then makes it visible to consumers. Settled `accepted` (or `rejected`:
//!   the consumer says it can never process it, so it is not redelivered forever) deletes it;
//!   `released`, `modified`, the ack timeout and a consumer leaving make it ready again, for
//!   any consumer of the group. Each group is bounded by bytes and age ([`backlog::Limits`]);
//!   beyond either the oldest messages are dropped, counted (`GroupInfo::dropped`) and
//!   reported as a problem event. The queue of changes not yet committed is bounded too
//!   ([`MAX_QUEUED_BYTES`]): beyond it a forwarded message is dropped and counted.
//! - Consumers: a transport authenticates ([`Subscriptions::login`]), then
//!   [`Subscriptions::attach`]es to the login's group and gets a [`Consumer`]: `next()` waits
//!   for a message (the transport calls it only when it has credit), `settle()` ends a
//!   delivery, and dropping the consumer puts whatever it had in flight back in the group.
//!   The AMQP 1.0 listener is one such transport (`amqp.rs`), the STOMP listener of the
//!   Python 3 sample another (`stomp.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use aliot_protocol::subscription::{AkSignLogin, DEFAULT_GROUP};
use bytes::Bytes;
use redb::Database;
use tokio::sync::{Notify, watch};

use crate::BoxFuture;
use crate::clock::now_ms;

pub(crate) mod amqp;
pub mod backlog;
pub(crate) mod families;
pub(crate) mod forward;
mod listener;
pub mod model;
pub(crate) mod stomp;
mod stomp_frame;
mod store;

pub use backlog::{Limits, Message};
pub use model::{Family, GroupInfo, GroupRecord, Relation};
use store::Op;

/// Bytes of changes queued for the writer and not yet committed, at most; beyond it a
/// forwarded message is dropped (counted) rather than held.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Consumers attached to one group at once, at most (the platform's 128).
pub const MAX_CONSUMERS_PER_GROUP: usize = 128;

/// Consumer groups per hub, at most (besides `DEFAULT_GROUP`; the platform allows 1000 per
/// instance).
pub const MAX_GROUPS: usize = 1000;

/// Where a transport looks up an AccessKey's secret (the hub's access keys).
pub trait AccessKeys: Send + Sync + std::fmt::Debug {
    /// The secret of `access_key_id`, if the key exists and is enabled.
    fn secret(&self, access_key_id: &str) -> Option<String>;
}

/// The hub's access keys, as the registry keeps them (`aliot admin access-key create`).
#[derive(Debug)]
pub(crate) struct RegistryKeys(pub(crate) Arc<dyn crate::registry::Registry>);

impl AccessKeys for RegistryKeys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self.0.access_key_secret(access_key_id)
    }
}

/// The subscription settings (`[subscription]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Each group's backlog bounds.
    pub limits: Limits,
    /// How long a delivery may stay unsettled before it is redelivered.
    pub ack_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limits: Limits {
                max_bytes: 256 * 1024 * 1024,
                max_age_ms: 24 * 3600 * 1000,
            },
            ack_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a subscription request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// No such consumer group.
    #[error("consumer group {0} does not exist")]
    NoSuchGroup(String),
    /// The group exists already.
    #[error("consumer group {0} exists already")]
    GroupExists(String),
    /// A bad group id or relation.
    #[error("{0}")]
    Invalid(String),
    /// `DEFAULT_GROUP` cannot be deleted.
    #[error("DEFAULT_GROUP cannot be deleted")]
    DefaultGroup,
    /// Too many groups or consumers.
    #[error("{0}")]
    Limit(String),
    /// No relation for the product.
    #[error("product {0} has no subscribe relation")]
    NoRelation(String),
    /// The change could not be saved.
    #[error("not saved: {0}")]
    Storage(String),
    /// Bad username or password.
    #[error("authentication failed: {0}")]
    Auth(String),
}

#[derive(Debug, Default)]
struct GroupState {
    record: Option<GroupRecord>,
    backlog: backlog::Backlog,
    notify: Arc<Notify>,
    consumers: usize,
    dropped: u64,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, GroupState>,
    relations: BTreeMap<String, Relation>,
}

#[derive(Debug, Default)]
struct Queue {
    ops: Vec<Op>,
    bytes: usize,
    /// The generation the next commit reaches.
    marked: u64,
}

/// Where dropped-message problems go (the hub's event stream).
pub(crate) type ProblemSink = Arc<dyn Fn(String) + Send + Sync>;

/// The hub's server-side subscription. Shared (`Arc`) by the platform (which forwards), the
/// service, the admin API and the transports.
pub struct Subscriptions {
    state: Mutex<State>,
    queue: Mutex<Queue>,
    wake: Arc<Notify>,
    committed: watch::Sender<u64>,
    db: Mutex<Option<Arc<Database>>>,
    settings: RwLock<Settings>,
    keys: RwLock<Option<Arc<dyn AccessKeys>>>,
    problem: RwLock<Option<ProblemSink>>,
    next_id: AtomicU64,
    next_consumer: AtomicU64,
    forwarded: AtomicU64,
    lost: AtomicU64,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("forwarded", &self.forwarded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A group id: 1–64 of letters, digits, `_`, `-`.
fn valid_group_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Subscriptions {
    /// In memory (nothing survives a restart until [`Subscriptions::open`]), with its writer
    /// task started (needs a tokio runtime).
    pub fn new() -> Arc<Self> {
        let mut state = State::default();
        state
            .groups
            .insert(DEFAULT_GROUP.to_owned(), GroupState::default());
        let this = Arc::new(Self {
            state: Mutex::new(state),
            queue: Mutex::new(Queue::default()),
            wake: Arc::new(Notify::new()),
            committed: watch::channel(0).0,
            db: Mutex::new(None),
            settings: RwLock::new(Settings::default()),
            keys: RwLock::new(None),
            problem: RwLock::new(None),
            next_id: AtomicU64::new(0),
            next_consumer: AtomicU64::new(1),
            forwarded: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        });
        tokio::spawn(writer(Arc::downgrade(&this), this.wake.clone()));
        this
    }

    /// Opens `subscription.redb` in `data_dir`: groups, relations and backlogs come back.
    pub async fn open(&self, data_dir: &Path) -> Result<(), SubscriptionError> {
        let dir = data_dir.to_owned();
        let (db, loaded) = tokio::task::spawn_blocking(move || store::open(&dir))
            .await
            .map_err(|e| SubscriptionError::Storage(e.to_string()))?
            .map_err(SubscriptionError::Storage)?;
        let limits = self.settings().limits;
        let now = now_ms();
        let mut deletes = Vec::new();
        {
            let mut state = lock(&self.state);
            for (id, record) in loaded.groups {
                state.groups.entry(id).or_default().record = Some(record);
            }
            state.relations.extend(loaded.relations);
            let mut max_id = 0;
            for (group, msg) in loaded.messages {
                max_id = max_id.max(msg.id);
                match state.groups.get_mut(&group) {
                    Some(g) => {
                        for (id, _) in g.backlog.push(Arc::new(msg), limits, now) {
                            deletes.push(Op::Delete(group.clone(), id));
                        }
                    }
                    None => deletes.push(Op::Delete(group, msg.id)),
                }
            }
            self.next_id.fetch_max(max_id + 1, Ordering::Relaxed);
        }
        *lock(&self.db) = Some(db);
        if !deletes.is_empty() {
            self.queue(deletes);
        }
        Ok(())
    }

    /// Lets the database go (at shutdown, once the hub is flushed).
    pub async fn close(&self) {
        let generation = lock(&self.queue).marked;
        let _ = self.durable(generation).await;
        lock(&self.db).take();
    }

    /// Sets the backlog limits and the ack timeout.
    pub fn configure(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        *self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where consumers' AccessKey secrets come from.
    pub fn set_access_keys(&self, keys: Arc<dyn AccessKeys>) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(keys);
    }

    /// Where dropped-message problems are reported.
    pub(crate) fn set_problem_sink(&self, sink: ProblemSink) {
        *self.problem.write().unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    fn report(&self, why: String) {
        tracing::warn!(%why, "server-side subscription");
        let sink = self
            .problem
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sink) = sink {
            sink(why);
        }
    }

    /// Checks a consumer's `aksign` username and password (spec §2.2) and that its group
    /// exists. No timestamp freshness check.
    pub fn login(&self, username: &str, password: &str) -> Result<AkSignLogin, SubscriptionError> {
        let login = AkSignLogin::parse(username).map_err(|e| SubscriptionError::Auth(e.to_string()))?;
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner).clone();
        let secret = keys
            .and_then(|k| k.secret(&login.auth_id))
            .ok_or_else(|| SubscriptionError::Auth(format!("unknown AccessKeyId {}", login.auth_id)))?;
        if !login.verify(&secret, password) {
            return Err(SubscriptionError::Auth("password does not match".into()));
        }
        if !lock(&self.state).groups.contains_key(&login.consumer_group_id) {
            return Err(SubscriptionError::NoSuchGroup(login.consumer_group_id));
        }
        Ok(login)
    }

    // ---- groups and relations (admin) ----

    /// Every group.
    pub fn groups(&self) -> Vec<GroupInfo> {
        lock(&self.state)
            .groups
            .iter()
            .map(|(id, g)| GroupInfo {
                group_id: id.clone(),
                create_time: g.record.as_ref().map_or(0, |r| r.create_time),
                backlog: g.backlog.len(),
                backlog_bytes: g.backlog.bytes(),
                in_flight: g.backlog.in_flight(),
                consumers: g.consumers,
                dropped: g.dropped,
            })
            .collect()
    }

    /// One group.
    pub fn group(&self, id: &str) -> Option<GroupInfo> {
        self.groups().into_iter().find(|g| g.group_id == id)
    }

    /// Creates a group (durable when this returns).
    pub async fn create_group(&self, id: &str) -> Result<GroupInfo, SubscriptionError> {
        if !valid_group_id(id) {
            return Err(SubscriptionError::Invalid(format!(
                "bad consumer group id {id:?}: 1 to 64 letters, digits, _ or -"
            )));
        }
        let record = GroupRecord {
            create_time: now_ms(),
        };
        {
            let mut state = lock(&self.state);
            if state.groups.contains_key(id) {
                return Err(SubscriptionError::GroupExists(id.to_owned()));
            }
            if state.groups.len() > MAX_GROUPS {
                return Err(SubscriptionError::Limit(format!(
                    "at most {MAX_GROUPS} consumer groups"
                )));
            }
            state.groups.insert(
                id.to_owned(),
                GroupState {
                    record: Some(record.clone()),
                    ..GroupState::default()
                },
            );
        }
        let generation = self.queue(vec![Op::PutGroup(id.to_owned(), record)]);
        self.durable(generation).await?;
        self.group(id)
            .ok_or_else(|| SubscriptionError::NoSuchGroup(id.to_owned()))
    }

    /// Deletes a group and its backlog, and takes it out of every relation (durable when this
    /// returns). Its consumers get nothing more.
    pub async fn delete_group(&self, id: &str) -> Result<(), SubscriptionError> {
        if id == DEFAULT_GROUP {
            return Err(SubscriptionError::DefaultGroup);
        }
        let mut ops = Vec::new();
        {
            let mut state = lock(&self.state);
            let Some(g) = state.groups.remove(id) else {
                return Err(SubscriptionError::NoSuchGroup(id.to_owned()));
            };
            g.notify.notify_waiters();
            for (pk, r) in &mut state.relations {
                if r.consumer_group_ids.iter().any(|g| g == id) {
                    r.consumer_group_ids.retain(|g| g != id);
                    ops.push(Op::PutRelation(pk.clone(), r.clone()));
                }
            }
        }
        ops.push(Op::DeleteGroup(id.to_owned()));
        let generation = self.queue(ops);
        self.durable(generation).await
    }

    /// A product's relation.
    pub fn relation(&self, product_key: &str) -> Option<Relation> {
        lock(&self.state).relations.get(product_key).cloned()
    }

    /// Every relation, by product.
    pub fn relations(&self) -> BTreeMap<String, Relation> {
        lock(&self.state).relations.clone()
    }

    /// Sets a product's relation (durable when this returns); its groups must exist.
    pub async fn set_relation(
        &self,
        product_key: &str,
        mut relation: Relation,
    ) -> Result<Relation, SubscriptionError> {
        relation.flags.sort();
        relation.flags.dedup();
        relation.consumer_group_ids.dedup();
        if relation.consumer_group_ids.is_empty() {
            return Err(SubscriptionError::Invalid(
                "consumerGroupIds must name at least one group".into(),
            ));
        }
        if relation.consumer_group_ids.len() > 10 {
            return Err(SubscriptionError::Limit(
                "at most 10 consumer groups per product".into(),
            ));
        }
        {
            let mut state = lock(&self.state);
            if let Some(missing) = relation
                .consumer_group_ids
                .iter()
                .find(|g| !state.groups.contains_key(*g))
            {
                return Err(SubscriptionError::NoSuchGroup(missing.clone()));
            }
            state.relations.insert(product_key.to_owned(), relation.clone());
        }
        let generation = self.queue(vec![Op::PutRelation(product_key.to_owned(), relation.clone())]);
        self.durable(generation).await?;
        Ok(relation)
    }

    /// Deletes a product's relation (durable when this returns).
    pub async fn delete_relation(&self, product_key: &str) -> Result<(), SubscriptionError> {
        if lock(&self.state).relations.remove(product_key).is_none() {
            return Err(SubscriptionError::NoRelation(product_key.to_owned()));
        }
        let generation = self.queue(vec![Op::DeleteRelation(product_key.to_owned())]);
        self.durable(generation).await
    }

    // ---- forwarding (the platform) ----

    /// Whether a message of `family` about a device of `product_key` goes anywhere (cheap:
    /// check it before building a body).
    pub fn wants(&self, product_key: &str, family: Family) -> bool {
        lock(&self.state)
            .relations
            .get(product_key)
            .is_some_and(|r| r.has(family) && !r.consumer_group_ids.is_empty())
    }

    /// Queues a message for every group of the product's relation that wants `family`.
    /// `None` when it goes nowhere; else a future resolving once it is committed (and visible
    /// to consumers), or with why it was not kept.
    pub fn forward(
        &self,
        product_key: &str,
        family: Family,
        topic: String,
        body: Bytes,
        qos: u8,
    ) -> Option<BoxFuture<'static, Result<(), SubscriptionError>>> {
        let groups: Vec<String> = {
            let state = lock(&self.state);
            let r = state.relations.get(product_key).filter(|r| r.has(family))?;
            r.consumer_group_ids.clone()
        };
        if groups.is_empty() {
            return None;
        }
        let now = now_ms();
        let id = self.next_message_id(now);
        let msg = Arc::new(Message {
            id,
            topic,
            body,
            generate_time: now,
            qos,
        });
        {
            let queued = lock(&self.queue).bytes;
            if queued + msg.size() > MAX_QUEUED_BYTES {
                self.lost.fetch_add(1, Ordering::Relaxed);
                self.report(format!(
                    "subscription writer behind ({queued} bytes queued): message for {} dropped",
                    msg.topic
                ));
                return Some(Box::pin(async {
                    Err(SubscriptionError::Storage(
                        "the subscription writer is behind".into(),
                    ))
                }));
            }
        }
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let generation = self.queue(groups.into_iter().map(|g| Op::Append(g, msg.clone())).collect());
        let mut rx = self.committed.subscribe();
        Some(Box::pin(async move {
            rx.wait_for(|c| *c >= generation)
                .await
                .map(|_| ())
                .map_err(|_| SubscriptionError::Storage("the subscription writer stopped".into()))
        }))
    }

    /// Messages forwarded (queued for at least one group) since start.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// A `messageId` unique across restarts: at least `now_ms · 4096`, above every earlier one.
    fn next_message_id(&self, now: u64) -> u64 {
        let floor = now.saturating_mul(4096);
        let mut id = 0;
        let _ = self
            .next_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |prev| {
                id = prev.max(floor);
                Some(id + 1)
            });
        id
    }

    // ---- consumers (the transports) ----

    /// Attaches a consumer to `group` (`clean`: drop its backlog first, `cleanSession=true`).
    pub fn attach(self: &Arc<Self>, group: &str, clean: bool) -> Result<Consumer, SubscriptionError> {
        let notify = {
            let mut state = lock(&self.state);
            let g = state
                .groups
                .get_mut(group)
                .ok_or_else(|| SubscriptionError::NoSuchGroup(group.to_owned()))?;
            if g.consumers >= MAX_CONSUMERS_PER_GROUP {
                return Err(SubscriptionError::Limit(format!(
                    "at most {MAX_CONSUMERS_PER_GROUP} consumers per group"
                )));
            }
            g.consumers += 1;
            if clean {
                g.backlog.clear();
            }
            g.notify.clone()
        };
        if clean {
            self.queue(vec![Op::ClearGroup(group.to_owned())]);
        }
        Ok(Consumer {
            subs: self.clone(),
            group: group.to_owned(),
            id: self.next_consumer.fetch_add(1, Ordering::Relaxed),
            notify,
        })
    }

    /// Queues changes for the writer; the generation that makes them durable.
    fn queue(&self, ops: Vec<Op>) -> u64 {
        let mut q = lock(&self.queue);
        q.bytes += ops.iter().map(Op::size).sum::<usize>();
        q.ops.extend(ops);
        q.marked += 1;
        let generation = q.marked;
        drop(q);
        self.wake.notify_one();
        generation
    }

    async fn durable(&self, generation: u64) -> Result<(), SubscriptionError> {
        let mut rx = self.committed.subscribe();
        rx.wait_for(|c| *c >= generation)
            .await
            .map(|_| ())
            .map_err(|_| SubscriptionError::Storage("the subscription writer stopped".into()))
    }

    /// After a commit: appended messages enter their groups' backlogs (the dropped ones are
    /// deleted next), and waiting consumers wake.
    fn apply(&self, ops: Vec<Op>) {
        let limits = self.settings().limits;
        let now = now_ms();
        let mut deletes = Vec::new();
        let mut reports = Vec::new();
        {
            let mut state = lock(&self.state);
            for op in ops {
                if let Op::Append(group, msg) = op
                    && let Some(g) = state.groups.get_mut(&group)
                {
                    let dropped = g.backlog.push(msg, limits, now);
                    if !dropped.is_empty() {
                        g.dropped += dropped.len() as u64;
                        reports.push(format!(
                            "consumer group {group}: {} oldest message(s) dropped (backlog over its {:?} limit)",
                            dropped.len(),
                            dropped[0].1
                        ));
                        deletes.extend(dropped.into_iter().map(|(id, _)| Op::Delete(group.clone(), id)));
                    }
                    g.notify.notify_waiters();
                }
            }
        }
        for r in reports {
            self.report(r);
        }
        if !deletes.is_empty() {
            self.queue(deletes);
        }
    }
}

/// The writer task: commits what is queued, one transaction at a time, until the room is gone.
async fn writer(this: std::sync::Weak<Subscriptions>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(subs) = this.upgrade() else { return };
        let (ops, generation) = {
            let mut q = lock(&subs.queue);
            q.bytes = 0;
            (std::mem::take(&mut q.ops), q.marked)
        };
        if !ops.is_empty() {
            let db = lock(&subs.db).clone();
            if let Some(db) = db {
                let batch = ops.clone();
                match tokio::task::spawn_blocking(move || store::commit(&db, &batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "subscription backlog not saved"),
                    Err(e) => tracing::error!(error = %e, "subscription writer failed"),
                }
            }
            subs.apply(ops);
        }
        subs.committed.send_replace(generation);
    }
}

/// How a consumer settled a delivery (or why it was not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Processed: delete it.
    Accepted,
    /// Never processable: delete it (not redelivered forever).
    Rejected,
    /// Not now (`released`, `modified`, ack timeout): redeliver.
    Released,
}

/// One consumer attached to a group. Dropping it puts its unsettled messages back.
#[derive(Debug)]
pub struct Consumer {
    subs: Arc<Subscriptions>,
    group: String,
    id: u64,
    notify: Arc<Notify>,
}

impl Consumer {
    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The next ready message, now in flight to this consumer (waits for one). Call it only
    /// with credit to send it. `None` when the group was deleted.
    pub async fn next(&self) -> Option<Arc<Message>> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = lock(&self.subs.state);
                let g = state.groups.get_mut(&self.group)?;
                if let Some(m) = g.backlog.claim(self.id) {
                    return Some(m);
                }
            }
            notified.await;
        }
    }

    /// Settles a message this consumer had in flight.
    pub fn settle(&self, id: u64, how: Settlement) {
        let mut state = lock(&self.subs.state);
        let Some(g) = state.groups.get_mut(&self.group) else {
            return;
        };
        match how {
            Settlement::Accepted | Settlement::Rejected => {
                if g.backlog.remove(id) {
                    drop(state);
                    self.subs.queue(vec![Op::Delete(self.group.clone(), id)]);
                }
            }
            Settlement::Released => {
                if g.backlog.release(id, self.id) {
                    g.notify.notify_waiters();
                }
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let mut state = lock(&self.subs.state);
        if let Some(g) = state.groups.get_mut(&self.group) {
            g.consumers = g.consumers.saturating_sub(1);
            if g.backlog.release_all(self.id) > 0 {
                g.notify.notify_waiters();
            }
        }
    }
}
