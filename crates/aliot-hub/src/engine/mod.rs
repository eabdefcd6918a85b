//! The MQTT engine: listeners, connections, CONNECT/CONNACK, keepalive, QoS 1 both ways. It
//! knows MQTT and nothing about Alink: whether a CONNECT is accepted, which topics a device may
//! use and what an uplink means are asked of the platform through [`Hooks`]; sessions live in
//! the [`DeviceTable`].
//!
//! - [`listener`]: the accept loop (connection limit, accept backoff, graceful shutdown).
//! - [`connection`]: bytes ↔ MQTT packets over TCP or TLS (rmqtt-codec), packet size limit.
//! - [`task`]: one connection's task: TLS, CONNECT under its deadline, the verdict, then the
//!   packet loop (keepalive, QoS 1 inflight window, subscriptions, outbound queue).
//! - [`connack`]: every CONNACK return code the engine sends, mapped in one place.
//! - [`limits`]: per-source limits before authentication (handshakes in progress, refusal
//!   logging).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use rmqtt_codec::types::Publish;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::BoxFuture;
use crate::config::BrokerConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::table::{CloseReason, DeviceTable, Session};

pub(crate) mod connack;
mod connection;
mod limits;
mod listener;
mod task;

use self::limits::{LogLimiter, PendingConnects};

/// The fields of a CONNECT that the platform judges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectRequest<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) username: Option<&'a str>,
    pub(crate) password: Option<&'a [u8]>,
    pub(crate) keep_alive: u16,
}

/// A device the platform accepted: who it is, and the clientId flags that change how the
/// platform delivers to it (kept in its session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) product_key: String,
    pub(crate) device_name: String,
    pub(crate) iot_id: String,
    /// `_ss=1`: system downlinks arrive without SUBSCRIBE.
    pub(crate) auto_subscribe: bool,
    /// `ext` bit 0: synchronous services use `/ext/rrpc/{id}/…`.
    pub(crate) ext_rrpc: bool,
}

/// What the platform admits an authenticated CONNECT to. Its `Debug` leaves out the answer's
/// payload (it carries credentials).
pub(crate) enum Admission {
    /// A session: the device is online until it leaves.
    Session(Principal),
    /// No session: after CONNACK 0 the client gets this one QoS 0 message, and the hub closes
    /// the connection (dynamic registration's answer).
    AnswerThenClose {
        /// The topic of the message.
        topic: String,
        /// Its payload.
        payload: bytes::Bytes,
    },
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admission::Session(p) => f.debug_tuple("Session").field(p).finish(),
            Admission::AnswerThenClose { topic, payload } => f
                .debug_struct("AnswerThenClose")
                .field("topic", topic)
                .field("payload_bytes", &payload.len())
                .finish(),
        }
    }
}

/// A refused CONNECT: the CONNACK return code (1 to 5) and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) code: u8,
    pub(crate) reason: String,
}

/// What the engine asks of the platform. Every method is called from a connection task and
/// must not block (the registry lookup of [`Hooks::authenticate`] is a future).
pub(crate) trait Hooks: Send + Sync + 'static {
    /// The verdict on a CONNECT.
    fn authenticate<'a>(&'a self, connect: ConnectRequest<'a>) -> BoxFuture<'a, Result<Admission, Refused>>;

    /// A connection was refused or closed before it was accepted: with a CONNACK `code`, or
    /// without one (`None`: malformed CONNECT, failed TLS handshake). The engine has counted
    /// and logged it.
    fn refused(
        &self,
        ip: IpAddr,
        code: Option<u8>,
        client_id: Option<&str>,
        username: Option<&str>,
        reason: &str,
    );

    /// A device is online with `session`; `kicked` is its previous connection, now closing.
    fn connected(&self, session: &Arc<Session>, kicked: Option<&Arc<Session>>);

    /// A device's connection ended. `owned` is false when a newer login had already taken the
    /// device over (the device is still online). `last_rx_ms` is when it last sent anything.
    fn disconnected(&self, session: &Arc<Session>, reason: &CloseReason, owned: bool, last_rx_ms: u64);

    /// May the device publish on `topic`? When not, the connection is closed (the platform
    /// reports the denial).
    fn may_publish(&self, session: &Session, topic: &str) -> bool;

    /// May the device subscribe to `filter`? When not, SUBACK carries 0x80 for it. Reports
    /// nothing: the engine reports a packet's refused filters at once
    /// ([`Hooks::subscribe_denied`]).
    fn may_subscribe(&self, session: &Session, filter: &str) -> bool;

    /// Filters of one SUBSCRIBE that are outside the device's topics (once per packet, however
    /// many filters it refused).
    fn subscribe_denied(&self, session: &Session, filters: &[&str]);

    /// How many subscriptions the connection may hold, given the configured per-device
    /// `limit`: a gateway's connection holds its sub-devices' subscriptions too (the platform's
    /// rule, e.g. one `limit` per device it speaks for). Asked before each SUBSCRIBE.
    fn max_subscriptions(&self, session: &Session, limit: usize) -> usize {
        let _ = session;
        limit
    }

    /// A PUBLISH the device may send, before its PUBACK: the platform handles it (replies,
    /// answers to waiting calls, events).
    fn uplink(&self, session: &Arc<Session>, publish: &Publish);

    /// Something the device sent could not be used (malformed packet, limit reached);
    /// `closed` says whether the engine closes the connection for it.
    fn problem(&self, session: &Session, topic: Option<&str>, reason: &str, closed: bool);
}

/// What every connection task of the engine shares.
pub(crate) struct EngineShared {
    pub(crate) config: BrokerConfig,
    pub(crate) table: Arc<DeviceTable>,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) metrics: Arc<Metrics>,
    /// The connection limit: a permit per open connection.
    pub(crate) connections: Arc<Semaphore>,
    /// Handshakes in progress per source address (`max_pending_connects_per_ip`).
    pub(crate) pending: Arc<PendingConnects>,
    /// Refusal logging per source address.
    pub(crate) refusal_log: LogLimiter,
}

impl std::fmt::Debug for EngineShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineShared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The MQTT engine: a cheap `Clone` handle.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    shared: Arc<EngineShared>,
}

impl Engine {
    pub(crate) fn new(
        config: BrokerConfig,
        table: Arc<DeviceTable>,
        hooks: Arc<dyn Hooks>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let connections = Arc::new(Semaphore::new(config.max_connections.min(Semaphore::MAX_PERMITS)));
        let pending = PendingConnects::new(config.max_pending_connects_per_ip);
        Self {
            shared: Arc::new(EngineShared {
                config,
                table,
                hooks,
                metrics,
                connections,
                pending,
                refusal_log: LogLimiter::default(),
            }),
        }
    }

    /// Accepts MQTT connections (plain TCP, or TLS when `tls` is given) until `shutdown`
    /// completes, then lets this listener's connections flush and close.
    pub(crate) async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        listener::serve(self.shared.clone(), listener, tls, shutdown).await
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }
}
