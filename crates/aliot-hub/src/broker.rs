//! [`Broker`]: the hub without its listeners' setup, as one value. It wires the rooms together
//! (the device table, the cluster seam, the platform, the MQTT engine and the application
//! service) and offers the two things a caller needs: [`Broker::serve`] a listener, and the
//! [`Service`] to act on devices as the platform does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cluster::{Cluster, LocalCluster};
use crate::config::BrokerConfig;
use crate::engine::Engine;
use crate::error::Result;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::persist;
use crate::platform::tokens::Tokens;
use crate::platform::{Platform, PlatformConfig, SharedRooms};
use crate::registry::Registry;
use crate::service::{Service, ServiceConfig};
use crate::table::{DeviceTable, OfflineLimits, QueueLimits, TableLimits};

/// The hub's MQTT side and platform: a cheap `Clone` handle.
#[derive(Clone, Debug)]
pub struct Broker {
    config: Arc<BrokerConfig>,
    engine: Engine,
    platform: Arc<Platform>,
    service: Service,
    table: Arc<DeviceTable>,
    registry: Arc<dyn Registry>,
}

impl Broker {
    /// A broker over a device registry, in one process. Call [`Broker::serve`] to accept
    /// devices.
    pub fn new(config: BrokerConfig, registry: Arc<dyn Registry>) -> Broker {
        Self::with_ota(config, registry, crate::ota::Opened::in_memory())
    }

    /// [`Broker::new`] over OTA records read at start.
    pub fn with_ota(config: BrokerConfig, registry: Arc<dyn Registry>, ota: crate::ota::Opened) -> Broker {
        let metrics = Arc::new(Metrics::default());
        let limits = TableLimits {
            outbound: QueueLimits {
                capacity: config.outbound_queue_capacity,
                bytes: config.outbound_queue_bytes,
            },
            offline: OfflineLimits {
                ttl_ms: u64::try_from(config.offline_queue_ttl().as_millis()).unwrap_or(u64::MAX),
                max_messages: config.offline_queue_limit,
                max_bytes: config.offline_queue_bytes,
            },
            max_pending_calls: config.max_pending_calls,
            max_online_subs_per_gateway: config.max_online_subs_per_gateway,
            max_sub_logins_per_minute: config.max_sub_logins_per_minute,
            unsaved_bytes: config.max_unsaved_bytes,
        };
        let table = Arc::new(DeviceTable::new(limits, metrics.clone()));
        // Saves what clean-session-0 devices keep, as long as the registry is there.
        tokio::spawn(persist::run(table.journal().clone(), Arc::downgrade(&registry)));
        let events = EventBus::new(config.events_buffer_bytes);
        let cluster: Arc<dyn Cluster> = Arc::new(LocalCluster::new(table.clone(), events));
        let tokens = Arc::new(Tokens::new(Duration::from_secs(config.token_ttl_secs)));
        let signer = Arc::new(crate::signed_url::UrlSigner::new());
        let config_urls = Arc::new(crate::platform::config::ConfigUrls::new(signer.clone()));
        let ota = crate::ota::Ota::new(cluster.clone(), signer, ota);
        let subscriptions = crate::subscription::Subscriptions::new();
        ota.set_forwarder(crate::subscription::families::OtaForwarder::new(
            &subscriptions,
            &registry,
        ));
        subscriptions.set_access_keys(Arc::new(crate::subscription::RegistryKeys(registry.clone())));
        {
            let cluster = cluster.clone();
            subscriptions.set_problem_sink(Arc::new(move |reason| {
                cluster.publish(crate::events::Event::Problem(crate::events::ProblemEvent {
                    product_key: None,
                    device_name: None,
                    topic: None,
                    reason,
                    closed: false,
                    client_ip: String::new(),
                    time: crate::clock::now_ms(),
                }));
            }));
        }
        let platform = Arc::new(Platform::new(
            registry.clone(),
            tokens.clone(),
            cluster.clone(),
            metrics.clone(),
            PlatformConfig {
                sys_ack: config.sys_ack,
                outbound: QueueLimits {
                    capacity: config.outbound_queue_capacity,
                    bytes: config.outbound_queue_bytes,
                },
            },
            SharedRooms {
                config_urls: config_urls.clone(),
                ota: ota.clone(),
                subs: table.subs().clone(),
                subscriptions: subscriptions.clone(),
            },
        ));
        let registry_handle = registry.clone();
        let service = Service::new(
            registry,
            tokens,
            cluster,
            metrics.clone(),
            ServiceConfig {
                call_timeout: config.rrpc_timeout(),
                max_packet_size: config.max_packet_size,
            },
            config_urls,
            ota,
            subscriptions,
        );
        let engine = Engine::new(config.clone(), table.clone(), platform.clone(), metrics);
        Broker {
            config: Arc::new(config),
            engine,
            platform,
            service,
            table,
            registry: registry_handle,
        }
    }

    /// [`Broker::new`], then puts back the clean-session-0 sessions (subscriptions and owed
    /// QoS 1 messages) the registry saved before a restart. Call it before serving.
    ///
    /// # Errors
    /// The registry cannot read the saved sessions.
    pub async fn open(config: BrokerConfig, registry: Arc<dyn Registry>) -> Result<Broker> {
        Self::open_with_ota(config, registry, crate::ota::Opened::in_memory()).await
    }

    /// [`Broker::open`] over OTA records read at start.
    ///
    /// # Errors
    /// As [`Broker::open`].
    pub async fn open_with_ota(
        config: BrokerConfig,
        registry: Arc<dyn Registry>,
        ota: crate::ota::Opened,
    ) -> Result<Broker> {
        let broker = Broker::with_ota(config, registry, ota);
        persist::restore(&broker.table, broker.registry.as_ref()).await?;
        Ok(broker)
    }

    /// Waits until every change to clean-session-0 sessions is on disk, at most `limit`
    /// (at shutdown, once the connections are closed); `false` when it was not.
    pub async fn flush_sessions(&self, limit: std::time::Duration) -> bool {
        persist::flush(self.table.journal(), limit).await
    }

    /// The platform (the device side: what uplinks do), for the device-facing HTTP listener.
    pub(crate) fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// The settings this broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The platform's API (registry, downlinks, calls, sessions, events, metrics).
    pub fn service(&self) -> &Service {
        &self.service
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
        self.engine.serve(listener, tls, shutdown).await
    }
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
