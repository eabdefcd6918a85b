//! The online-device table and the [`Broker`] handle: what the admin API and the hub's `run`
//! use to serve listeners, push downlinks, call devices and observe them.
//!
//! ## The device table
//! 64 shards of `std::sync::Mutex<HashMap<key, Slot>>`, the shard picked by hashing
//! (productKey, deviceName). A slot holds the device's online session (if any), its stored
//! clean-session-0 state while offline, its last reported properties and the admin calls waiting
//! for its answers. std `Mutex` because every critical section is a few map operations with no
//! `.await` and no I/O inside; sharding keeps two cores from contending on the message path
//! (there is no global lock between devices). Lock order: shard, then a session's own mutex;
//! never the other way round.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rmqtt_codec::v3::QoS;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, oneshot};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::acl;
use crate::alink::{self, CallKey};
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::events::{Event, KickedEvent, RefusedEvent, StatusEvent, format_cst, format_utc, now_ms};
use crate::metrics::{Metrics, TableGauges, inc};
use crate::session::{CloseReason, Offer, Outgoing, Session, SessionInner, Subscription};

/// Number of shards of the device table.
const SHARDS: usize = 64;

/// Settings of the MQTT side of the hub. Every field has a default (`#[serde(default)]`), so a
/// TOML table may name only what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Most simultaneous connections (TCP + TLS, before and after CONNECT); more are accepted
    /// and closed at once.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, as its remaining length in bytes: 256 KiB of payload plus
    /// room for the topic and headers. Checked from the fixed header, before buffering.
    pub max_packet_size: u32,
    /// Seconds a new connection has to complete TLS and send its CONNECT.
    pub connect_timeout_secs: u64,
    /// Most topic filters per device (SUBACK 0x80 beyond).
    pub max_subscriptions: usize,
    /// QoS 1 messages sent to a device and not yet acknowledged, at most.
    pub max_inflight: u16,
    /// Messages waiting in a connected device's outbound queue, at most. Above it: QoS 0 is
    /// dropped and counted; QoS 1 disconnects the device as a slow consumer (its messages are kept
    /// for a clean-session-0 device).
    pub outbound_queue_capacity: usize,
    /// New QoS 1 messages accepted into an offline clean-session-0 device's queue, at most
    /// (messages already accepted for delivery are never dropped by this limit).
    pub offline_queue_limit: usize,
    /// Seconds an offline QoS 1 message is kept (7 days).
    pub offline_queue_ttl_secs: u64,
    /// Default deadline of property set, service and RRPC calls, in milliseconds (the platform's
    /// 8 s).
    pub rrpc_timeout_ms: u64,
    /// Admin calls that may wait for one device's answers at the same time.
    pub max_pending_calls: usize,
    /// Honour `sys.ack` = 0 in uplinks (no reply), as the platform does. When false, every
    /// request gets its `_reply`.
    pub sys_ack: bool,
    /// Capacity of the event broadcast channel; a subscriber that falls further behind skips
    /// events (it receives `Lagged`).
    pub events_capacity: usize,
    /// Milliseconds [`Broker::serve`] waits for connections to flush and close on shutdown.
    pub shutdown_grace_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 50_000,
            max_packet_size: 256 * 1024 + 1024,
            connect_timeout_secs: 10,
            max_subscriptions: 50,
            max_inflight: 32,
            outbound_queue_capacity: 1000,
            offline_queue_limit: 1000,
            offline_queue_ttl_secs: 7 * 24 * 3600,
            rrpc_timeout_ms: 8000,
            max_pending_calls: 64,
            sys_ack: true,
            events_capacity: 4096,
            shutdown_grace_ms: 5000,
        }
    }
}

impl BrokerConfig {
    /// Checks that the values can work together.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(what.to_owned()));
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.max_packet_size < 1024 || self.max_packet_size > 268_435_455 {
            return bad("max_packet_size must be between 1024 and 268435455 bytes");
        }
        if self.connect_timeout_secs == 0 {
            return bad("connect_timeout_secs must be at least 1");
        }
        if self.max_inflight == 0 {
            return bad("max_inflight must be at least 1");
        }
        if self.outbound_queue_capacity == 0 {
            return bad("outbound_queue_capacity must be at least 1");
        }
        if self.events_capacity == 0 {
            return bad("events_capacity must be at least 1");
        }
        if self.rrpc_timeout_ms == 0 {
            return bad("rrpc_timeout_ms must be at least 1");
        }
        Ok(())
    }

    /// The CONNECT deadline.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The default deadline of device calls.
    pub fn rrpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rrpc_timeout_ms)
    }

    /// The offline queue retention.
    pub fn offline_queue_ttl(&self) -> Duration {
        Duration::from_secs(self.offline_queue_ttl_secs)
    }

    /// The shutdown drain deadline.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// What the platform's "Pub" did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PublishOutcome {
    /// The device is online and subscribed: the message is in its outbound queue.
    Delivered,
    /// The device is offline with a clean-session-0 session and subscribed: the QoS 1 message
    /// waits in its offline queue.
    Queued,
    /// The device (online, or offline with a stored session) has no subscription matching the
    /// topic: the message was dropped, as on the platform.
    NotSubscribed,
}

/// A connected device's MQTT session, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The MQTT clientId (never a secret).
    pub client_id: String,
    /// The device's IP address.
    pub client_ip: IpAddr,
    /// When the device connected, epoch ms.
    pub connected_at: u64,
    /// The CONNECT's clean session flag.
    pub clean_session: bool,
    /// Keepalive, seconds.
    pub keep_alive: u16,
    /// Number of explicit subscriptions.
    pub subscriptions: usize,
    /// `_ss=1`: system topics are subscribed implicitly.
    pub auto_subscribe: bool,
    /// `ext` bit 0: synchronous services arrive on `/ext/rrpc/…`.
    pub ext_rrpc: bool,
}

/// Locks a std mutex, ignoring poisoning (see the module docs: no code path panics while
/// holding the hub's locks, so a poisoned lock still guards consistent data).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A clean-session-0 device's state while it is offline (and the messages accepted for it
/// while its connection was closing).
#[derive(Debug, Default)]
struct StoredSession {
    subs: Vec<Subscription>,
    /// Bounded by `offline_queue_limit` for new messages and by `offline_queue_ttl` in age.
    queue: VecDeque<Outgoing>,
    auto_subscribe: bool,
}

/// An admin call waiting for the device's answer.
#[derive(Debug)]
struct Pending {
    key: CallKey,
    tx: oneshot::Sender<Bytes>,
}

/// Everything the hub keeps about one device.
#[derive(Debug, Default)]
struct Slot {
    online: Option<Arc<Session>>,
    stored: Option<Box<StoredSession>>,
    properties: Option<Box<Map<String, Value>>>,
    /// Bounded by `max_pending_calls`.
    pending: Vec<Pending>,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.online.is_none() && self.stored.is_none() && self.properties.is_none() && self.pending.is_empty()
    }
}

type Shard = Mutex<HashMap<Box<str>, Slot>>;

/// The broker's state, shared by every connection task and every [`Broker`] handle.
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) directory: Arc<dyn Directory>,
    shards: Box<[Shard]>,
    hasher: RandomState,
    pub(crate) metrics: Metrics,
    /// Bounded by `events_capacity`; lagging receivers skip events.
    events: broadcast::Sender<Arc<Event>>,
    pub(crate) connections: Arc<Semaphore>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The device table key: unambiguous for any productKey and deviceName.
fn device_key(product_key: &str, device_name: &str) -> Box<str> {
    format!("{}:{product_key}/{device_name}", product_key.len()).into_boxed_str()
}

/// The result of registering a new session.
pub(crate) struct Registered {
    pub(crate) session: Arc<Session>,
    pub(crate) session_present: bool,
}

impl Shared {
    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key);
        // The modulo keeps the index in range whatever the hash.
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Whether anyone listens to events (events are built only then).
    pub(crate) fn observed(&self) -> bool {
        self.events.receiver_count() > 0
    }

    pub(crate) fn emit(&self, event: Event) {
        // An error only means nobody listens right now.
        let _ = self.events.send(Arc::new(event));
    }

    fn next_message_id(&self) -> String {
        // Alink ids are decimal strings in 0..=4294967295 (spec §3.8).
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) % (1 << 32);
        n.to_string()
    }

    /// Emits a refusal event (the caller logs it).
    pub(crate) fn refused(
        &self,
        ip: IpAddr,
        code: Option<u8>,
        client_id: Option<&str>,
        username: Option<&str>,
        reason: String,
    ) {
        if self.observed() {
            self.emit(Event::Refused(RefusedEvent {
                code,
                reason,
                client_id: client_id.map(str::to_owned),
                username: username.map(str::to_owned),
                client_ip: ip.to_string(),
                time: now_ms(),
            }));
        }
    }

    fn status_event(
        &self,
        session: &Session,
        online: bool,
        at_ms: u64,
        last_ms: u64,
        reason: Option<String>,
    ) {
        if !self.observed() {
            return;
        }
        self.emit(Event::Status(StatusEvent {
            status: if online { "online" } else { "offline" },
            iot_id: session.iot_id.to_string(),
            product_key: session.product_key.to_string(),
            device_name: session.device_name.to_string(),
            time: format_cst(at_ms),
            utc_time: format_utc(at_ms),
            last_time: format_cst(last_ms),
            utc_last_time: format_utc(last_ms),
            client_ip: session.ip.to_string(),
            reason,
        }));
    }

    /// Registers an authenticated device, closing a previous connection of the same device.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
    pub(crate) fn register(
        &self,
        product_key: String,
        device_name: String,
        iot_id: String,
        client_id: Box<str>,
        ip: IpAddr,
        connected_ms: u64,
        clean_session: bool,
        keep_alive: u16,
        auto_subscribe: bool,
        ext_rrpc: bool,
    ) -> Registered {
        let key = device_key(&product_key, &device_name);
        let ttl_ms = u64::try_from(self.config.offline_queue_ttl().as_millis()).unwrap_or(u64::MAX);
        let mut expired = 0u64;
        let (session, present, kicked) = {
            let mut shard = lock(self.shard(&key));
            let slot = shard.entry(key.clone()).or_default();
            let old = slot.online.take();
            if let Some(old) = &old {
                old.close(CloseReason::Kicked);
            }
            let stored = if clean_session {
                slot.stored = None;
                None
            } else {
                slot.stored.take()
            };
            let (subs, mut queue, present) = match (&old, stored) {
                (Some(o), st) if !clean_session && !o.clean_session => {
                    (o.subscriptions(), st.map(|s| s.queue).unwrap_or_default(), true)
                }
                (_, Some(st)) => (st.subs, st.queue, true),
                _ => (Vec::new(), VecDeque::new(), false),
            };
            let now = now_ms();
            let before = queue.len();
            queue.retain(|m| now.saturating_sub(m.queued_ms) <= ttl_ms);
            expired += (before - queue.len()) as u64;
            let session = Arc::new(Session {
                key: key.clone(),
                product_key: product_key.into_boxed_str(),
                device_name: device_name.into_boxed_str(),
                iot_id: iot_id.into_boxed_str(),
                client_id,
                ip,
                connected_ms,
                clean_session,
                keep_alive,
                auto_subscribe,
                ext_rrpc,
                inner: Mutex::new(SessionInner {
                    outbox: queue,
                    subs,
                    closing: None,
                }),
                notify: tokio::sync::Notify::new(),
            });
            slot.online = Some(session.clone());
            (session, present, old)
        };
        crate::metrics::add(&self.metrics.offline_expired, expired);
        if let Some(old) = kicked {
            info!(
                product_key = %session.product_key,
                device_name = %session.device_name,
                old_ip = %old.ip,
                new_ip = %session.ip,
                "duplicate login: closing the previous connection"
            );
            if self.observed() {
                self.emit(Event::Kicked(KickedEvent {
                    product_key: session.product_key.to_string(),
                    device_name: session.device_name.to_string(),
                    client_ip: old.ip.to_string(),
                    new_client_ip: session.ip.to_string(),
                    time: now_ms(),
                }));
                self.status_event(
                    &old,
                    false,
                    connected_ms,
                    connected_ms,
                    Some(CloseReason::Kicked.to_string()),
                );
            }
        }
        self.status_event(&session, true, connected_ms, connected_ms, None);
        Registered {
            session,
            session_present: present,
        }
    }

    /// Removes a closed session from the table, keeping what a clean-session-0 device must find
    /// on reconnect. `unacked` are the QoS 1 messages sent and not acknowledged (marked DUP).
    pub(crate) fn unregister(
        &self,
        session: &Arc<Session>,
        unacked: VecDeque<Outgoing>,
        reason: &CloseReason,
        last_rx_ms: u64,
    ) {
        let mut owned = false;
        {
            let mut shard = lock(self.shard(&session.key));
            let (outbox, subs) = {
                let mut inner = lock(&session.inner);
                (std::mem::take(&mut inner.outbox), std::mem::take(&mut inner.subs))
            };
            let mut leftovers = unacked;
            leftovers.extend(outbox.into_iter().filter(Outgoing::is_qos1));
            if let Some(slot) = shard.get_mut(&session.key) {
                if slot.online.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
                    owned = true;
                    slot.online = None;
                    // Waiting callers learn at once that the device went offline.
                    slot.pending.clear();
                    if session.clean_session {
                        slot.stored = None;
                    } else {
                        let stored = slot.stored.get_or_insert_with(Box::default);
                        stored.subs = subs;
                        stored.auto_subscribe = session.auto_subscribe;
                        // Messages accepted while the connection was closing come after ours.
                        leftovers.append(&mut stored.queue);
                        stored.queue = leftovers;
                    }
                    if slot.is_empty() {
                        shard.remove(&session.key);
                    }
                } else if let Some(new) = &slot.online
                    && !session.clean_session
                    && !new.clean_session
                    && !leftovers.is_empty()
                {
                    // Taken over by a clean-session-0 login: it inherits what we did not deliver.
                    new.requeue_front(leftovers);
                }
            }
        }
        if owned {
            self.status_event(session, false, now_ms(), last_rx_ms, Some(reason.to_string()));
        }
    }

    /// Merges reported property values into what the hub remembers for the device.
    pub(crate) fn remember_properties(&self, key: &str, reported: Map<String, Value>) {
        let mut shard = lock(self.shard(key));
        if let Some(slot) = shard.get_mut(key) {
            let props = slot.properties.get_or_insert_with(Box::default);
            alink::merge_properties(props, reported);
        }
    }

    /// Hands a device's answer to the admin call waiting for it, if any.
    pub(crate) fn complete_call(&self, key: &str, call: &CallKey, payload: Bytes) {
        let pending = {
            let mut shard = lock(self.shard(key));
            shard.get_mut(key).and_then(|slot| {
                let i = slot.pending.iter().position(|p| &p.key == call)?;
                Some(slot.pending.swap_remove(i))
            })
        };
        match pending {
            Some(p) => {
                inc(&self.metrics.calls_answered);
                // The caller may have given up in the meantime; nothing to do then.
                let _ = p.tx.send(payload);
            }
            None => debug!(?call, "answer to no pending call (late or unknown id)"),
        }
    }

    fn forget_call(&self, key: &str, call: &CallKey) {
        let mut shard = lock(self.shard(key));
        if let Some(slot) = shard.get_mut(key) {
            slot.pending.retain(|p| &p.key != call);
            if slot.is_empty() {
                shard.remove(key);
            }
        }
    }

    fn gauges(&self) -> TableGauges {
        let mut g = TableGauges::default();
        for shard in &self.shards {
            let shard = lock(shard);
            for slot in shard.values() {
                g.sessions_online += u64::from(slot.online.is_some());
                g.pending_calls += slot.pending.len() as u64;
                if let Some(st) = &slot.stored {
                    g.sessions_stored += u64::from(slot.online.is_none());
                    g.offline_queue_messages += st.queue.len() as u64;
                }
            }
        }
        g
    }
}

/// The hub's MQTT engine: a cheap `Clone` handle (an `Arc` inside) to serve listeners and to act
/// on devices as the platform does.
#[derive(Clone, Debug)]
pub struct Broker {
    shared: Arc<Shared>,
}

/// Removes a pending call when its caller stops waiting (answer, timeout or a dropped future).
struct PendingGuard<'a> {
    shared: &'a Shared,
    key: Box<str>,
    call: Option<CallKey>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            self.shared.forget_call(&self.key, &call);
        }
    }
}

impl Broker {
    /// A broker over a device registry. Call [`Broker::serve`] to accept devices.
    pub fn new(config: BrokerConfig, directory: Arc<dyn Directory>) -> Broker {
        // Capacity and overflow policy: see `BrokerConfig::events_capacity`.
        let (events, _) = broadcast::channel(config.events_capacity.max(1));
        let connections = Arc::new(Semaphore::new(config.max_connections.min(Semaphore::MAX_PERMITS)));
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Broker {
            shared: Arc::new(Shared {
                config,
                directory,
                shards,
                hasher: RandomState::new(),
                metrics: Metrics::default(),
                events,
                connections,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The settings this broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.shared.config
    }

    /// Accepts MQTT connections (plain TCP, or TLS when `tls` is given) until `shutdown`
    /// completes, then stops accepting, lets every connection of this listener flush and close
    /// (up to `shutdown_grace_ms`), and returns. May run several times at once on one broker
    /// (a TCP and a TLS listener).
    ///
    /// # Errors
    /// None today (accept errors are logged and retried with backoff); the `Result` leaves room
    /// for listener failures that cannot be retried.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        crate::server::serve(self.shared.clone(), listener, tls, shutdown).await
    }

    /// The platform's "Pub": sends `payload` on `topic` to a device, at QoS 0 or 1.
    ///
    /// The topic must be one the device could subscribe to (its own namespaces or its product's
    /// broadcast topics), without wildcards.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for QoS 2, a topic outside the device's namespaces or a payload
    /// above the packet limit; [`Error::DeviceNotFound`]; [`Error::DeviceOffline`] when the device
    /// is offline and the message cannot be queued (QoS 0, or no clean-session-0 session);
    /// [`Error::QueueFull`] when the device's queue cannot take it.
    pub fn publish(
        &self,
        product_key: &str,
        device_name: &str,
        topic: &str,
        payload: Bytes,
        qos: u8,
    ) -> Result<PublishOutcome> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            q => {
                return Err(Error::InvalidArgument(format!(
                    "QoS {q} is not supported (0 or 1)"
                )));
            }
        };
        if !acl::may_deliver(product_key, device_name, topic) {
            return Err(Error::InvalidArgument(format!(
                "{topic:?} is not a topic of device {product_key}/{device_name}"
            )));
        }
        self.check_size(topic, &payload)?;
        self.ensure_known(product_key, device_name)?;
        let shared = &*self.shared;
        let key = device_key(product_key, device_name);
        let msg = Outgoing::new(topic.to_owned(), payload, qos);
        let mut shard = lock(shared.shard(&key));
        let Some(slot) = shard.get_mut(&key) else {
            return Err(offline(product_key, device_name));
        };
        let msg = match &slot.online {
            Some(session) => match session.offer(msg, shared.config.outbound_queue_capacity) {
                Offer::Accepted => return Ok(PublishOutcome::Delivered),
                Offer::NotSubscribed => return Ok(PublishOutcome::NotSubscribed),
                Offer::Dropped => {
                    inc(&shared.metrics.qos0_dropped);
                    return Err(Error::QueueFull {
                        product_key: product_key.to_owned(),
                        device_name: device_name.to_owned(),
                    });
                }
                Offer::Closing(m) if !session.clean_session && m.is_qos1() => m,
                Offer::Closing(_) => return Err(offline(product_key, device_name)),
            },
            None => {
                let Some(stored) = &slot.stored else {
                    return Err(offline(product_key, device_name));
                };
                let implicit =
                    acl::implicitly_subscribed(product_key, device_name, stored.auto_subscribe, topic);
                if !implicit && !acl::any_filter_matches(stored.subs.iter().map(|s| &*s.filter), topic) {
                    return Ok(PublishOutcome::NotSubscribed);
                }
                if !msg.is_qos1() {
                    return Err(offline(product_key, device_name));
                }
                msg
            }
        };
        // Offline (or closing) clean-session-0 device: the offline queue.
        let ttl_ms = u64::try_from(shared.config.offline_queue_ttl().as_millis()).unwrap_or(u64::MAX);
        let stored = slot.stored.get_or_insert_with(Box::default);
        let now = now_ms();
        while stored
            .queue
            .front()
            .is_some_and(|m| now.saturating_sub(m.queued_ms) > ttl_ms)
        {
            stored.queue.pop_front();
            inc(&shared.metrics.offline_expired);
        }
        if stored.queue.len() >= shared.config.offline_queue_limit {
            return Err(Error::QueueFull {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
            });
        }
        stored.queue.push_back(msg);
        inc(&shared.metrics.offline_queued);
        Ok(PublishOutcome::Queued)
    }

    /// Sets properties on a device: sends `thing.service.property.set` on
    /// `/sys/{pk}/{dn}/thing/service/property/set` and returns the device's `set_reply` JSON.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::DeviceOffline`], [`Error::NotSubscribed`] (no
    /// subscription to the set topic and no `_ss=1`), [`Error::Timeout`], [`Error::BadReply`] when
    /// the answer is not JSON, [`Error::TooManyPendingCalls`], [`Error::QueueFull`].
    pub async fn set_property(
        &self,
        product_key: &str,
        device_name: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let topic = format!("/sys/{product_key}/{device_name}/thing/service/property/set");
        let reply = self
            .call(product_key, device_name, timeout, |_, id| {
                let body = alink::downlink_request(id, "thing.service.property.set", params);
                (topic, Bytes::from(body), CallKey::PropertySet(id.to_owned()))
            })
            .await?;
        json_reply(&reply)
    }

    /// Invokes a service synchronously, over RRPC in the style the device announced in its
    /// clientId (spec §4.3): with `ext` bit 0 set, on `/ext/rrpc/{id}/sys/{pk}/{dn}/thing/service/{identifier}`
    /// (answered on the same topic); otherwise on `/sys/{pk}/{dn}/rrpc/request/{id}` (answered on
    /// `…/rrpc/response/{id}`). Returns the device's reply JSON.
    ///
    /// # Errors
    /// As [`Broker::set_property`] (RRPC needs no subscription), plus [`Error::InvalidArgument`]
    /// for an identifier that is empty or contains `/`, `+` or `#`.
    pub async fn invoke_service(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        if identifier.is_empty() || identifier.contains(['/', '+', '#']) {
            return Err(Error::InvalidArgument(format!(
                "bad service identifier {identifier:?}"
            )));
        }
        let method = format!("thing.service.{identifier}");
        let reply = self
            .call(product_key, device_name, timeout, |session, id| {
                let topic = if session.ext_rrpc {
                    format!("/ext/rrpc/{id}/sys/{product_key}/{device_name}/thing/service/{identifier}")
                } else {
                    format!("/sys/{product_key}/{device_name}/rrpc/request/{id}")
                };
                let body = alink::downlink_request(id, &method, params);
                (topic, Bytes::from(body), CallKey::Rrpc(id.to_owned()))
            })
            .await?;
        json_reply(&reply)
    }

    /// Raw RRPC: sends `payload` on `/sys/{pk}/{dn}/rrpc/request/{id}` and returns the bytes the
    /// device answers on `/sys/{pk}/{dn}/rrpc/response/{id}`.
    ///
    /// # Errors
    /// As [`Broker::invoke_service`].
    pub async fn rrpc(
        &self,
        product_key: &str,
        device_name: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        self.call(product_key, device_name, timeout, |_, id| {
            let topic = format!("/sys/{product_key}/{device_name}/rrpc/request/{id}");
            (topic, payload, CallKey::Rrpc(id.to_owned()))
        })
        .await
    }

    /// Sends a QoS 0 downlink built by `build(session, message_id)` and waits for the answer
    /// matching the returned [`CallKey`].
    async fn call(
        &self,
        product_key: &str,
        device_name: &str,
        timeout: Duration,
        build: impl FnOnce(&Session, &str) -> (String, Bytes, CallKey),
    ) -> Result<Bytes> {
        self.ensure_known(product_key, device_name)?;
        let shared = &*self.shared;
        let key = device_key(product_key, device_name);
        let id = shared.next_message_id();
        let (tx, rx) = oneshot::channel();
        let call = {
            let mut shard = lock(shared.shard(&key));
            let Some(slot) = shard.get_mut(&key) else {
                return Err(offline(product_key, device_name));
            };
            let Some(session) = slot.online.clone() else {
                return Err(offline(product_key, device_name));
            };
            slot.pending.retain(|p| !p.tx.is_closed());
            if slot.pending.len() >= shared.config.max_pending_calls {
                return Err(Error::TooManyPendingCalls {
                    product_key: product_key.to_owned(),
                    device_name: device_name.to_owned(),
                });
            }
            let (topic, payload, call) = build(&session, &id);
            self.check_size(&topic, &payload)?;
            let msg = Outgoing::new(topic.clone(), payload, QoS::AtMostOnce);
            match session.offer(msg, shared.config.outbound_queue_capacity) {
                Offer::Accepted => {}
                Offer::NotSubscribed => {
                    return Err(Error::NotSubscribed {
                        product_key: product_key.to_owned(),
                        device_name: device_name.to_owned(),
                        topic,
                    });
                }
                Offer::Dropped => {
                    inc(&shared.metrics.qos0_dropped);
                    return Err(Error::QueueFull {
                        product_key: product_key.to_owned(),
                        device_name: device_name.to_owned(),
                    });
                }
                Offer::Closing(_) => return Err(offline(product_key, device_name)),
            }
            // Registered under the shard lock, which the device's answer also needs: the answer
            // cannot overtake the registration.
            slot.pending.push(Pending {
                key: call.clone(),
                tx,
            });
            call
        };
        let mut guard = PendingGuard {
            shared,
            key,
            call: Some(call),
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => {
                guard.call = None;
                Ok(answer)
            }
            Ok(Err(_)) => Err(offline(product_key, device_name)),
            Err(_) => {
                inc(&shared.metrics.calls_timed_out);
                Err(Error::Timeout(timeout))
            }
        }
    }

    fn check_size(&self, topic: &str, payload: &Bytes) -> Result<()> {
        let size = 2 + topic.len() + 2 + payload.len();
        if size > self.shared.config.max_packet_size as usize {
            return Err(Error::InvalidArgument(format!(
                "message of {size} bytes exceeds the packet limit of {} bytes",
                self.shared.config.max_packet_size
            )));
        }
        Ok(())
    }

    fn ensure_known(&self, product_key: &str, device_name: &str) -> Result<()> {
        match self.shared.directory.device(product_key, device_name) {
            Some(_) => Ok(()),
            None => Err(Error::DeviceNotFound {
                product_key: product_key.to_owned(),
                device_name: device_name.to_owned(),
            }),
        }
    }

    /// The device's MQTT session, when it is online.
    pub fn session(&self, product_key: &str, device_name: &str) -> Option<SessionInfo> {
        let key = device_key(product_key, device_name);
        let session = lock(self.shared.shard(&key)).get(&key)?.online.clone()?;
        Some(SessionInfo {
            client_id: session.client_id.to_string(),
            client_ip: session.ip,
            connected_at: session.connected_ms,
            clean_session: session.clean_session,
            keep_alive: session.keep_alive,
            subscriptions: session.subscription_count(),
            auto_subscribe: session.auto_subscribe,
            ext_rrpc: session.ext_rrpc,
        })
    }

    /// Whether the device is online.
    pub fn is_online(&self, product_key: &str, device_name: &str) -> bool {
        let key = device_key(product_key, device_name);
        lock(self.shared.shard(&key))
            .get(&key)
            .is_some_and(|s| s.online.is_some())
    }

    /// The deviceNames of a product's online devices, sorted.
    pub fn online_devices(&self, product_key: &str) -> Vec<String> {
        let mut names = Vec::new();
        for shard in &self.shared.shards {
            let shard = lock(shard);
            names.extend(
                shard
                    .values()
                    .filter_map(|slot| slot.online.as_ref())
                    .filter(|s| &*s.product_key == product_key)
                    .map(|s| s.device_name.to_string()),
            );
        }
        names.sort_unstable();
        names
    }

    /// Number of online devices.
    pub fn online_count(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|s| lock(s).values().filter(|slot| slot.online.is_some()).count())
            .sum()
    }

    /// Closes the device's connection (an administrator disabled or deleted it). Returns whether
    /// it was online.
    pub fn disconnect(&self, product_key: &str, device_name: &str) -> bool {
        let key = device_key(product_key, device_name);
        let session = lock(self.shared.shard(&key))
            .get(&key)
            .and_then(|s| s.online.clone());
        match session {
            Some(s) => {
                s.close(CloseReason::AdminDisconnect);
                true
            }
            None => false,
        }
    }

    /// Forgets everything the hub keeps about a device that was deleted from the registry
    /// (stored session, offline queue, remembered properties) and disconnects it.
    pub fn forget_device(&self, product_key: &str, device_name: &str) {
        let key = device_key(product_key, device_name);
        let session = {
            let mut shard = lock(self.shared.shard(&key));
            shard.get_mut(&key).and_then(|slot| {
                slot.stored = None;
                slot.properties = None;
                slot.online.clone()
            })
        };
        if let Some(s) = session {
            s.close(CloseReason::AdminDisconnect);
        }
    }

    /// The device's last reported property values, merged per property (from property posts in
    /// the short form `{"k": v}` and the long form `{"k": {"value": v, "time": t}}`).
    pub fn last_properties(&self, product_key: &str, device_name: &str) -> Option<Map<String, Value>> {
        let key = device_key(product_key, device_name);
        lock(self.shared.shard(&key))
            .get(&key)?
            .properties
            .as_deref()
            .cloned()
    }

    /// A new subscription to the hub's events (see [`crate::events`]). A receiver that falls more
    /// than `events_capacity` events behind gets `RecvError::Lagged` and skips ahead.
    pub fn events(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }

    /// The MQTT counters in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render(self.shared.gauges())
    }
}

fn offline(product_key: &str, device_name: &str) -> Error {
    Error::DeviceOffline {
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
    }
}

fn json_reply(reply: &Bytes) -> Result<Value> {
    serde_json::from_slice(reply).map_err(|e| {
        let preview = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
        Error::BadReply(format!("not JSON ({e}): {preview}"))
    })
}

/// Binds a TCP listener with a backlog of 1024 (bursts of CONNECTs are not dropped by a short
/// backlog) and `SO_REUSEADDR`.
///
/// # Errors
/// The socket cannot be created or bound.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;

    impl Directory for Nobody {
        fn device(&self, _: &str, _: &str) -> Option<crate::directory::DeviceAuth> {
            None
        }
        fn device_online(&self, _: &str, _: &str, _: IpAddr, _: u64) {}
    }

    /// The connection task's future is most of an idle device's memory (a 2 KiB budget per
    /// device in total): keep it small. Measured: 760 bytes in a debug build.
    #[tokio::test]
    async fn the_connection_task_future_stays_small() {
        let broker = Broker::new(BrokerConfig::default(), Arc::new(Nobody));
        let listener = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let permit = broker
            .shared
            .connections
            .clone()
            .try_acquire_owned()
            .expect("permit");
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = crate::session::run(broker.shared.clone(), stream, peer, None, cancel, permit);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1024, "the connection future grew to {size} bytes");
        drop(client);
    }

    #[test]
    fn device_keys_are_unambiguous() {
        assert_ne!(device_key("a", "b/c"), device_key("a/b", "c"));
        assert_eq!(device_key("pk", "dn"), device_key("pk", "dn"));
    }

    #[test]
    fn the_default_config_is_valid_and_round_trips_through_toml() {
        let config = BrokerConfig::default();
        config.validate().expect("valid");
        let text = toml::to_string(&config).expect("serialize");
        let back: BrokerConfig = toml::from_str(&text).expect("parse");
        assert_eq!(back, config);
        let partial: BrokerConfig = toml::from_str("max_subscriptions = 10").expect("parse");
        assert_eq!(partial.max_subscriptions, 10);
        assert!(
            BrokerConfig {
                max_inflight: 0,
                ..config
            }
            .validate()
            .is_err()
        );
    }
}
