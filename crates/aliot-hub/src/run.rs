//! The whole hub in one call: registry, broker, MQTT (and MQTT over TLS) listeners, admin API,
//! and the device-facing HTTP(S) listener when configured.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, TokenSource};
use crate::broker::{Broker, bind_listener};
use crate::capacity::{self, Capacity};
use crate::config::{Config, URL_FILE};
use crate::console::ConsoleState;
use crate::device_http::{self, DeviceHttpState};
use crate::error::{Error, Result};
use crate::http::{self, HttpLimits};
use crate::registry::{PgRegistry, RedbRegistry, Registry};
use crate::tls::{self, CertificateFiles};

/// A started hub: its bound addresses, its registry and broker, and the task that runs it.
///
/// The hub stops when the `shutdown` future given to [`start`] completes, or on
/// [`RunningHub::stop`]; [`RunningHub::wait`] waits for it to have stopped. Dropping a
/// `RunningHub` does not stop the hub.
#[derive(Debug)]
pub struct RunningHub {
    mqtt_addr: SocketAddr,
    mqtts_addr: Option<SocketAddr>,
    amqp_addrs: AmqpAddrs,
    stomp_addrs: AmqpAddrs,
    admin_addr: SocketAddr,
    admin_url: String,
    device_http_url: Option<String>,
    openapi_url: Option<String>,
    config_base: String,
    data_dir: PathBuf,
    token_source: TokenSource,
    tls_files: Option<CertificateFiles>,
    capacity: Capacity,
    broker: Broker,
    registry: Arc<dyn Registry>,
    stop: CancellationToken,
    task: JoinHandle<Result<()>>,
}

impl RunningHub {
    /// The plain MQTT listener's address (the real port when configured with port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The MQTT over TLS listener's address, when enabled.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.mqtts_addr
    }

    /// The AMQP over TLS listener's address (server-side subscription), when `[amqp]` is on.
    pub fn amqps_addr(&self) -> Option<SocketAddr> {
        self.amqp_addrs.tls
    }

    /// The plain AMQP listener's address, when `[amqp] plain_listen` is set.
    pub fn amqp_plain_addr(&self) -> Option<SocketAddr> {
        self.amqp_addrs.plain
    }

    /// The STOMP over TLS listener's address (server-side subscription), when `[stomp]` is on.
    pub fn stomps_addr(&self) -> Option<SocketAddr> {
        self.stomp_addrs.tls
    }

    /// The plain STOMP listener's address, when `[stomp] plain_listen` is set.
    pub fn stomp_plain_addr(&self) -> Option<SocketAddr> {
        self.stomp_addrs.plain
    }

    /// The device-facing HTTP(S) listener's base URL (`http://127.0.0.1:8081`, or `https://…`
    /// with `tls`), when enabled.
    pub fn device_http_url(&self) -> Option<&str> {
        self.device_http_url.as_deref()
    }

    /// Aliyun's OpenAPI base URL (`http://127.0.0.1:8082`, or `https://…` with `tls`), when
    /// enabled. Point the official server SDKs' endpoint at it.
    pub fn openapi_url(&self) -> Option<&str> {
        self.openapi_url.as_deref()
    }

    /// The base URL of the remote configuration downloads devices are given
    /// (`[remote_config] public_url`, else the device HTTP(S) listener's, else the admin one's).
    pub fn config_url_base(&self) -> &str {
        &self.config_base
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The admin API's base URL (`http://127.0.0.1:8080`), as written to `{data_dir}/admin.url`.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the admin token came from (the token itself is never exposed here).
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    /// The certificate files of the TLS listener, when enabled (with the local CA's path when
    /// the hub made it).
    pub fn tls_files(&self) -> Option<&CertificateFiles> {
        self.tls_files.as_ref()
    }

    /// How many MQTT connections the hub accepts at once: `broker.max_connections`, held down
    /// by the process's open-file limit when that is lower (see [`crate::capacity`]).
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The broker (its service acts on devices: downlinks, sessions, events).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The platform's API (the same the admin API calls).
    pub fn service(&self) -> &crate::Service {
        self.broker.service()
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// Stops the hub and waits until it has stopped.
    ///
    /// # Errors
    /// As [`RunningHub::wait`].
    pub async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the hub has stopped (after `shutdown` completed or [`RunningHub::stop`]).
    ///
    /// # Errors
    /// A listener that failed while running.
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::Task(e)),
        }
    }
}

fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    bind_listener(addr).map_err(|e| Error::io(format!("cannot listen on {addr} ({what})"), e))
}

/// `http://` URL for reaching `addr` from this machine (a wildcard address becomes loopback).
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::Task)?
}

/// Starts the hub described by `config`: opens the registry in the data directory, binds the
/// listeners (port 0 picks a free port; see the returned addresses), and serves until
/// `shutdown` completes. Then it stops accepting, lets connections drain (up to the broker's
/// `shutdown_grace_ms`), ends the admin API and flushes the registry.
///
/// Must be called inside a tokio runtime.
///
/// ```no_run
/// # async fn demo() -> aliot_hub::Result<()> {
/// let mut config = aliot_hub::Config::default();
/// config.data_dir = Some("./hub-data".into());
/// config.mqtt.listen = "127.0.0.1:0".parse().expect("an address");
/// config.admin.listen = "127.0.0.1:0".parse().expect("an address");
/// let hub = aliot_hub::start(config, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// println!("MQTT on {}, admin API on {}", hub.mqtt_addr(), hub.admin_url());
/// hub.wait().await
/// # }
/// ```
///
/// # Errors
/// [`Error::Config`] for an invalid configuration or unusable admin token file;
/// [`Error::Registry`] when the registry cannot be opened; [`Error::Io`] when a listener
/// cannot be bound or the data directory cannot be written; [`Error::Tls`] for unusable
/// certificates.
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningHub> {
    config.validate()?;
    let data_dir = config.data_dir();
    let registry: Arc<dyn Registry> = match &config.registry.url {
        Some(url) => {
            Arc::new(PgRegistry::connect(url, &config.registry, Some((&data_dir, &config.history))).await?)
        }
        None => {
            Arc::new(RedbRegistry::open_with_history(&data_dir, &config.registry, &config.history).await?)
        }
    };

    let (dir, given) = (data_dir.clone(), config.admin.token.clone());
    let (token, token_source) = blocking(move || admin::load_or_create_token(&dir, given.as_deref())).await?;

    // One certificate for MQTT over TLS and HTTPS: [mqtts]'s, or the local CA's.
    let wants_tls = config.mqtts.is_some()
        || config.device_http.as_ref().is_some_and(|d| d.tls)
        || (config.openapi.enabled && config.openapi.tls)
        || config.amqp.is_some()
        || config.stomp.is_some();
    let certificate = if wants_tls {
        let m = config.mqtts.clone().unwrap_or_default();
        let dir = data_dir.clone();
        Some(
            blocking(move || {
                let files = match (m.cert, m.key) {
                    (Some(cert), Some(key)) => CertificateFiles {
                        cert,
                        key,
                        ca: None,
                        created: false,
                    },
                    _ => tls::ensure_local_certificate(&dir)?,
                };
                let acceptor = tls::acceptor(&files.cert, &files.key)?;
                Ok((files, acceptor))
            })
            .await?,
        )
    } else {
        None
    };
    let tls_setup = config
        .mqtts
        .as_ref()
        .zip(certificate.clone())
        .map(|(m, (files, acceptor))| (m.listen, files, acceptor));

    let capacity = Capacity::of(&config, capacity::open_file_limit());
    if capacity.limited_by_open_files() {
        tracing::warn!(%capacity, "the open-file limit allows fewer connections than max_connections");
    }
    let broker_config = crate::BrokerConfig {
        max_connections: capacity.connections,
        ..config.broker.clone()
    };
    let ota = crate::ota::Opened::load(&data_dir)
        .await
        .map_err(|e| Error::Config(format!("cannot open the OTA records: {e}")))?;
    let broker = Broker::open_with_ota(broker_config, registry.clone(), ota).await?;
    broker.platform().ota().configure(config.ota.settings());
    let subscriptions = broker.service().subscriptions().clone();
    subscriptions.configure(config.subscription.settings());
    subscriptions
        .open(&data_dir)
        .await
        .map_err(|e| Error::Config(format!("cannot open the subscription backlog: {e}")))?;
    let mqtt = bind("MQTT", config.mqtt.listen)?;
    let mqtts = match &tls_setup {
        Some((addr, _, _)) => Some(bind("MQTT over TLS", *addr)?),
        None => None,
    };
    let admin_listener = bind("admin API", config.admin.listen)?;
    let amqp = match &config.amqp {
        Some(a) => Some(AmqpListeners {
            tls: bind("AMQP over TLS", a.listen)?,
            plain: a.plain_listen.map(|p| bind("plain AMQP", p)).transpose()?,
            acceptor: certificate.as_ref().map(|(_, acceptor)| acceptor.clone()),
            settings: crate::subscription::amqp::AmqpSettings {
                max_connections: a.max_connections,
                shutdown_grace: config.broker.shutdown_grace(),
            },
        }),
        None => None,
    };
    let stomp = match &config.stomp {
        Some(s) => Some(StompListeners {
            tls: bind("STOMP over TLS", s.listen)?,
            plain: s.plain_listen.map(|p| bind("plain STOMP", p)).transpose()?,
            acceptor: certificate
                .as_ref()
                .map(|(_, acceptor)| tls::without_tickets(acceptor)),
            settings: crate::subscription::stomp::StompSettings {
                max_connections: s.max_connections,
                shutdown_grace: config.broker.shutdown_grace(),
            },
        }),
        None => None,
    };
    let device_http = match &config.device_http {
        Some(d) => Some((bind("device HTTP", d.listen)?, d.clone())),
        None => None,
    };
    let openapi = if config.openapi.enabled {
        Some(bind("OpenAPI", config.openapi.listen)?)
    } else {
        None
    };
    let addr_of = |l: &TcpListener| {
        l.local_addr()
            .map_err(|e| Error::io("cannot read a listener's address", e))
    };
    let mqtt_addr = addr_of(&mqtt)?;
    let mqtts_addr = mqtts.as_ref().map(addr_of).transpose()?;
    let amqp_addrs = AmqpAddrs {
        tls: amqp.as_ref().map(|a| addr_of(&a.tls)).transpose()?,
        plain: amqp
            .as_ref()
            .and_then(|a| a.plain.as_ref())
            .map(addr_of)
            .transpose()?,
    };
    let stomp_addrs = AmqpAddrs {
        tls: stomp.as_ref().map(|s| addr_of(&s.tls)).transpose()?,
        plain: stomp
            .as_ref()
            .and_then(|s| s.plain.as_ref())
            .map(addr_of)
            .transpose()?,
    };
    let admin_addr = addr_of(&admin_listener)?;
    let admin_url = local_url(admin_addr);
    let device_http_addr = device_http.as_ref().map(|(l, _)| addr_of(l)).transpose()?;
    let openapi_url = openapi.as_ref().map(addr_of).transpose()?.map(|a| {
        let url = local_url(a);
        if config.openapi.tls {
            url.replacen("http://", "https://", 1)
        } else {
            url
        }
    });
    let device_http_url = device_http_addr.zip(config.device_http.as_ref()).map(|(a, d)| {
        let url = local_url(a);
        if d.tls {
            url.replacen("http://", "https://", 1)
        } else {
            url
        }
    });

    // Remote configuration URLs name the configured public URL, else the listener that serves
    // the download: the device HTTP(S) one when on, else the admin one.
    let config_base = config
        .remote_config
        .public_url
        .clone()
        .or_else(|| device_http_url.clone())
        .unwrap_or_else(|| admin_url.clone());
    broker
        .platform()
        .config_urls()
        .configure(&config_base, config.remote_config.url_ttl_secs);

    let url_file = data_dir.join(URL_FILE);
    let url = format!("{admin_url}\n");
    blocking(move || {
        std::fs::write(&url_file, url)
            .map_err(|e| Error::io(format!("cannot write {}", url_file.display()), e))
    })
    .await?;

    let stop = CancellationToken::new();
    let console = ConsoleState::new(broker.service().clone(), token.clone(), Some(mqtt_addr));
    let state = AdminState::new(broker.service().clone(), token);
    let (tls_files, acceptor) = match tls_setup {
        Some((_, files, acceptor)) => (Some(files), Some(acceptor)),
        // The AMQP listener's certificate (consumers trust its CA).
        None if config.amqp.is_some() || config.stomp.is_some() => {
            (certificate.as_ref().map(|(f, _)| f.clone()), None)
        }
        None => (None, None),
    };
    // Pre-authentication and bootstrap send devices to MQTT over TLS when the HTTP side is
    // HTTPS and the hub has it, else to plain MQTT.
    let device_http = device_http.map(|(listener, d)| {
        let mqtt_for_devices = match (d.tls, mqtts_addr) {
            (true, Some(a)) => a,
            _ => mqtt_addr,
        };
        DeviceHttp {
            listener,
            tls: if d.tls {
                certificate.as_ref().map(|(_, a)| a.clone())
            } else {
                None
            },
            limits: HttpLimits {
                max_connections: d.max_connections,
                header_read_timeout: Duration::from_secs(d.header_read_timeout_secs),
                shutdown_grace: config.broker.shutdown_grace(),
            },
            mqtt: mqtt_for_devices,
        }
    });
    let openapi = openapi.map(|listener| OpenApi {
        listener,
        tls: if config.openapi.tls {
            certificate.as_ref().map(|(_, a)| a.clone())
        } else {
            None
        },
        limits: HttpLimits {
            max_connections: config.openapi.max_connections,
            header_read_timeout: Duration::from_secs(config.openapi.header_read_timeout_secs),
            shutdown_grace: config.broker.shutdown_grace(),
        },
    });
    let listeners = Listeners {
        mqtt,
        mqtts: mqtts.zip(acceptor),
        admin: admin_listener,
        console,
        device_http,
        amqp,
        stomp,
        openapi,
    };
    let admin_limits = HttpLimits {
        max_connections: config.admin.max_connections,
        header_read_timeout: Duration::from_secs(config.admin.header_read_timeout_secs),
        shutdown_grace: config.broker.shutdown_grace(),
    };
    let task = tokio::spawn(serve(
        broker.clone(),
        registry.clone(),
        state,
        admin_limits,
        listeners,
        stop.clone(),
        shutdown,
    ));
    tracing::info!(mqtt = %mqtt_addr, mqtts = ?mqtts_addr, amqps = ?amqp_addrs.tls, admin = %admin_addr, device_http = ?device_http_url, openapi = ?openapi_url, data_dir = %data_dir.display(), "hub started");
    Ok(RunningHub {
        mqtt_addr,
        mqtts_addr,
        amqp_addrs,
        stomp_addrs,
        admin_addr,
        admin_url,
        device_http_url,
        openapi_url,
        config_base,
        data_dir,
        token_source,
        tls_files,
        capacity,
        broker,
        registry,
        stop,
        task,
    })
}

/// Starts the hub and runs it until `shutdown` completes (see [`start`]).
///
/// # Errors
/// As [`start`] and [`RunningHub::wait`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    start(config, shutdown).await?.wait().await
}

struct Listeners {
    mqtt: TcpListener,
    mqtts: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    admin: TcpListener,
    /// The web console, served on the admin listener.
    console: ConsoleState,
    device_http: Option<DeviceHttp>,
    amqp: Option<AmqpListeners>,
    stomp: Option<StompListeners>,
    openapi: Option<OpenApi>,
}

/// The STOMP listeners of server-side subscription.
struct StompListeners {
    tls: TcpListener,
    plain: Option<TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    settings: crate::subscription::stomp::StompSettings,
}

/// The AMQP listeners of server-side subscription.
struct AmqpListeners {
    tls: TcpListener,
    plain: Option<TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    settings: crate::subscription::amqp::AmqpSettings,
}

/// Where a subscription transport's listeners (AMQP, STOMP) listen.
#[derive(Debug, Clone, Copy, Default)]
struct AmqpAddrs {
    tls: Option<SocketAddr>,
    plain: Option<SocketAddr>,
}

/// Aliyun's OpenAPI listener.
struct OpenApi {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: HttpLimits,
}

/// The device-facing HTTP(S) listener and what it serves with.
struct DeviceHttp {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: HttpLimits,
    /// The MQTT listener devices are sent to.
    mqtt: SocketAddr,
}

/// Cancels the token when dropped: any part of the hub that ends, for whatever reason, stops
/// the others.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn serve(
    broker: Broker,
    registry: Arc<dyn Registry>,
    state: AdminState,
    admin_limits: HttpLimits,
    listeners: Listeners,
    stop: CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // One shutdown mechanism: the caller's future or `RunningHub::stop` cancels `stop`, and
    // every listener watches `stop`.
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => stop.cancel(),
                () = stop.cancelled() => {}
            }
        })
    };
    let mqtt_task = {
        let (broker, guard) = (broker.clone(), StopOnDrop(stop.clone()));
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _guard = guard;
            broker.serve(listeners.mqtt, None, until).await
        })
    };
    let mqtts_task = listeners.mqtts.map(|(listener, acceptor)| {
        let (broker, guard) = (broker.clone(), StopOnDrop(stop.clone()));
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _guard = guard;
            broker.serve(listener, Some(acceptor), until).await
        })
    });
    let admin_task = {
        let guard = StopOnDrop(stop.clone());
        let console = listeners.console.clone();
        let mut app = admin::router(state.clone()).merge(crate::console::router(console.clone()));
        if listeners.device_http.is_none() {
            // Without a device listener, the signed remote config downloads are served here
            // (the signature is their only credential, not the admin token).
            app = app.merge(device_http::config::router(broker.platform().clone()));
            app = app.merge(device_http::ota::router(broker.platform().ota().clone()));
        }
        let closing = state.clone();
        let counters = state.http_counters().clone();
        let until = stop.clone().cancelled_owned();
        let listener = listeners.admin;
        // Admin requests still waiting for a device's answer end with the device's connection:
        // they get the broker's grace period, and are cut off after it.
        let limits = HttpLimits {
            shutdown_grace: broker.config().shutdown_grace() + Duration::from_secs(1),
            ..admin_limits
        };
        tokio::spawn(async move {
            let _guard = guard;
            let shutdown = async move {
                until.await;
                closing.close_streams();
                console.close();
            };
            http::serve(listener, None, app, limits, counters, shutdown).await;
        })
    };
    let device_http_task = listeners.device_http.map(|d| {
        let guard = StopOnDrop(stop.clone());
        let state = DeviceHttpState::new(
            broker.platform().clone(),
            d.mqtt,
            broker.config().max_packet_size as usize,
        );
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _guard = guard;
            let counters = Arc::new(http::HttpCounters::default());
            http::serve(
                d.listener,
                d.tls,
                device_http::router(state),
                d.limits,
                counters,
                until,
            )
            .await;
        })
    });
    let openapi_task = listeners.openapi.map(|o| {
        let guard = StopOnDrop(stop.clone());
        let state = crate::openapi::OpenApiState::new(broker.service().clone());
        let until = stop.clone().cancelled_owned();
        // Calls waiting for a device's answer end with the device's connection.
        let limits = HttpLimits {
            shutdown_grace: broker.config().shutdown_grace() + Duration::from_secs(1),
            ..o.limits
        };
        tokio::spawn(async move {
            let _guard = guard;
            let counters = Arc::new(http::HttpCounters::default());
            http::serve(
                o.listener,
                o.tls,
                crate::openapi::router(state),
                limits,
                counters,
                until,
            )
            .await;
        })
    });

    let amqp_tasks: Vec<JoinHandle<()>> = match listeners.amqp {
        Some(a) => {
            let subs = broker.service().subscriptions().clone();
            let mut tasks = vec![tokio::spawn(crate::subscription::amqp::serve(
                a.tls,
                a.acceptor,
                subs.clone(),
                a.settings.clone(),
                stop.clone(),
            ))];
            if let Some(plain) = a.plain {
                tasks.push(tokio::spawn(crate::subscription::amqp::serve(
                    plain,
                    None,
                    subs,
                    a.settings,
                    stop.clone(),
                )));
            }
            tasks
        }
        None => Vec::new(),
    };

    let mut amqp_tasks = amqp_tasks;
    if let Some(s) = listeners.stomp {
        let subs = broker.service().subscriptions().clone();
        amqp_tasks.push(tokio::spawn(crate::subscription::stomp::serve(
            s.tls,
            s.acceptor,
            subs.clone(),
            s.settings.clone(),
            stop.clone(),
        )));
        if let Some(plain) = s.plain {
            amqp_tasks.push(tokio::spawn(crate::subscription::stomp::serve(
                plain,
                None,
                subs,
                s.settings,
                stop.clone(),
            )));
        }
    }

    stop.cancelled().await;
    tracing::info!("hub stopping");
    for t in amqp_tasks {
        let _ = t.await;
    }
    state.close_streams();
    let mut result = join(mqtt_task.await);
    if let Some(t) = mqtts_task {
        result = result.and(join(t.await));
    }
    let admin_result = admin_task.await.map_err(Error::Task);
    if let Some(t) = device_http_task {
        result = result.and(t.await.map_err(Error::Task));
    }
    if let Some(t) = openapi_task {
        result = result.and(t.await.map_err(Error::Task));
    }
    watcher.abort();
    // The connections are closed: what clean-session-0 devices keep is final.
    if !broker.flush_sessions(Duration::from_secs(10)).await {
        tracing::warn!("clean-session-0 sessions could not all be saved before stopping");
    }
    // Device reports are saved by group commit: wait for the last one.
    if tokio::time::timeout(Duration::from_secs(10), broker.platform().ota().close())
        .await
        .is_err()
    {
        tracing::warn!("OTA task states could not all be saved before stopping");
    }
    broker.service().subscriptions().close().await;
    registry.close().await;
    tracing::info!("hub stopped");
    result.and(admin_result)
}

fn join(r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.map_err(Error::Task)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_admin_addresses_are_reached_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8080".parse().expect("addr")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(local_url("[::]:8080".parse().expect("addr")), "http://[::1]:8080");
        assert_eq!(
            local_url("10.0.0.5:80".parse().expect("addr")),
            "http://10.0.0.5:80"
        );
    }
}
