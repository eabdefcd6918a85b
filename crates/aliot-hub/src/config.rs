//! Hub settings: where the data lives, what to listen on, and the broker's limits.
//!
//! [`Config`] is plain data (serde, `Default`) checked by [`Config::validate`]; the CLI reads a
//! TOML file into it and then applies its flags. [`DEFAULT_CONFIG`] is the commented default
//! file that `aliot hub --print-config` prints; it parses back to `Config::default()`.
//!
//! # The data directory
//!
//! | file | what |
//! |---|---|
//! | `registry.redb` | products and devices ([`crate::registry`]) |
//! | `admin-token` | the admin API's bearer token, when the hub generated it (mode 0600) |
//! | `admin.url` | the admin API's URL, written on every start for `aliot admin --data-dir` |
//! | `tls/ca.pem`, `tls/server.pem`, `tls/server-key.pem` | the local CA and server certificate ([`crate::tls`]) |

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The commented default configuration file.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

pub use aliot_admin::data_dir::{TOKEN_FILE, URL_FILE, default_data_dir};

/// Default plain MQTT address.
pub const DEFAULT_MQTT: &str = "127.0.0.1:1883";
/// Default MQTT over TLS address (when enabled).
pub const DEFAULT_MQTTS: &str = "127.0.0.1:8883";
/// Default admin API address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8080";
/// Default device-facing HTTP(S) address (when `[device_http]` is on).
pub const DEFAULT_DEVICE_HTTP: &str = "127.0.0.1:8081";
/// Default Aliyun OpenAPI address.
pub const DEFAULT_OPENAPI: &str = "127.0.0.1:8082";

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .expect("the default addresses are valid socket addresses")
}

/// All hub settings.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory; `None` → [`default_data_dir`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Plain MQTT listener.
    pub mqtt: MqttConfig,
    /// MQTT over TLS listener; off when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtts: Option<MqttsConfig>,
    /// Admin API listener and token.
    pub admin: AdminConfig,
    /// The device-facing HTTP(S) listener (registration, pre-authentication, bootstrap, HTTP
    /// data channel); off when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_http: Option<DeviceHttpConfig>,
    /// Aliyun's OpenAPI (RPC, version 2018-01-20) for backends using the official server SDKs.
    pub openapi: OpenApiConfig,
    /// Broker limits and behaviours.
    pub broker: BrokerConfig,
    /// Registry limits.
    pub registry: RegistryConfig,
    /// Remote configuration: where devices download the files.
    pub remote_config: RemoteConfigSettings,
    /// What the hub keeps of devices' thing-model data (property history, events, call log).
    pub history: HistoryConfig,
    /// OTA: package size limit, downloads at once, URL life.
    pub ota: OtaConfig,
    /// Server-side subscription: the consumer groups' backlog limits and the ack timeout.
    pub subscription: SubscriptionConfig,
    /// The AMQP 1.0 listener for server-side subscription consumers; off when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amqp: Option<AmqpConfig>,
    /// The STOMP listener for server-side subscription consumers (the Python 3 sample); off
    /// when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stomp: Option<StompConfig>,
}

/// Default STOMP over TLS address (when `[stomp]` is on): the platform's 61614.
pub const DEFAULT_STOMPS: &str = "127.0.0.1:61614";

/// The STOMP listener (`[stomp]`): TLS with the same certificate as `[amqp]`, plain TCP only
/// when `plain_listen` is set; same login (aksign) and groups as AMQP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StompConfig {
    /// STOMP over TLS address (the platform's 61614).
    pub listen: SocketAddr,
    /// Plain STOMP address (e.g. 61613); off when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_listen: Option<SocketAddr>,
    /// Most STOMP connections at once (both listeners); more are accepted and closed at once.
    pub max_connections: usize,
}

impl Default for StompConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_STOMPS),
            plain_listen: None,
            max_connections: 10_000,
        }
    }
}

/// Default AMQP over TLS address (when `[amqp]` is on).
pub const DEFAULT_AMQPS: &str = "127.0.0.1:5671";

/// Server-side subscription (`[subscription]`): each consumer group's backlog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Bytes (topic + body) a group's backlog keeps at most; beyond, the oldest are dropped.
    pub max_backlog_bytes: usize,
    /// Seconds a message waits in a group at most (the platform's 1 day); older ones are dropped.
    pub max_backlog_age_secs: u64,
    /// Seconds a delivery may stay unsettled before it is redelivered (the platform's 30 s).
    pub ack_timeout_secs: u64,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        let d = crate::subscription::Settings::default();
        Self {
            max_backlog_bytes: d.limits.max_bytes,
            max_backlog_age_secs: d.limits.max_age_ms / 1000,
            ack_timeout_secs: d.ack_timeout.as_secs(),
        }
    }
}

impl SubscriptionConfig {
    /// As the subscription room takes them.
    pub fn settings(&self) -> crate::subscription::Settings {
        crate::subscription::Settings {
            limits: crate::subscription::Limits {
                max_bytes: self.max_backlog_bytes,
                max_age_ms: self.max_backlog_age_secs.saturating_mul(1000),
            },
            ack_timeout: Duration::from_secs(self.ack_timeout_secs),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.max_backlog_bytes == 0 || self.max_backlog_age_secs == 0 || self.ack_timeout_secs == 0 {
            return Err(config_err(
                "subscription.max_backlog_bytes, max_backlog_age_secs and ack_timeout_secs must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The AMQP 1.0 listener (`[amqp]`): TLS with the MQTT over TLS certificate (`[mqtts]` cert
/// and key, or the local CA in the data directory), plain TCP only when `plain_listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// AMQP over TLS address (the platform's 5671).
    pub listen: SocketAddr,
    /// Plain AMQP address (e.g. 5672); off when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_listen: Option<SocketAddr>,
    /// Most AMQP connections at once (both listeners); more are accepted and closed at once.
    pub max_connections: usize,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_AMQPS),
            plain_listen: None,
            max_connections: 10_000,
        }
    }
}

/// OTA (`[ota]`): packages and their downloads. Download URLs use the same base as remote
/// configuration's (`[remote_config] public_url`, else the device HTTP(S) or admin listener).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtaConfig {
    /// Largest package accepted, bytes (the platform's HTTPS limit is 1000 MB); above: 413.
    pub max_package_bytes: u64,
    /// Package downloads served at once; more are answered 503 with `Retry-After: 1`.
    pub max_downloads: usize,
    /// Seconds a package download URL stays valid.
    pub url_ttl_secs: u64,
}

impl Default for OtaConfig {
    fn default() -> Self {
        let d = crate::ota::OtaSettings::default();
        Self {
            max_package_bytes: d.max_package_bytes,
            max_downloads: d.max_downloads,
            url_ttl_secs: d.url_ttl_secs,
        }
    }
}

impl OtaConfig {
    /// Checks the limits.
    ///
    /// # Errors
    /// [`Error::Config`] saying which.
    pub fn validate(&self) -> Result<()> {
        if self.max_package_bytes == 0 || self.max_downloads == 0 || self.url_ttl_secs == 0 {
            return Err(config_err(
                "ota.max_package_bytes, ota.max_downloads and ota.url_ttl_secs must be at least 1",
            ));
        }
        Ok(())
    }

    /// As the OTA room takes them.
    pub fn settings(&self) -> crate::ota::OtaSettings {
        crate::ota::OtaSettings {
            max_package_bytes: self.max_package_bytes,
            max_downloads: self.max_downloads,
            url_ttl_secs: self.url_ttl_secs,
        }
    }
}

/// Remote configuration (`[remote_config]`): the URLs `thing.config.get` and
/// `thing.config.push` give devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfigSettings {
    /// The base URL devices reach the hub's download route at (`http://192.168.1.10:8081`).
    /// `None`: the device HTTP(S) listener's when it is on, else the admin listener's, each as
    /// this machine reaches it (a wildcard address becomes loopback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Seconds a download URL stays valid.
    pub url_ttl_secs: u64,
}

impl Default for RemoteConfigSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            url_ttl_secs: 1800,
        }
    }
}

impl RemoteConfigSettings {
    /// Checks the URL's scheme and the lifetime.
    ///
    /// # Errors
    /// [`Error::Config`] saying which.
    pub fn validate(&self) -> Result<()> {
        if self.url_ttl_secs == 0 {
            return Err(config_err("remote_config.url_ttl_secs must be at least 1"));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(config_err(format!(
                "remote_config.public_url {url:?} must start with http:// or https://"
            )));
        }
        Ok(())
    }
}

/// Plain MQTT listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_MQTT),
        }
    }
}

/// MQTT over TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttsConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM); with `key`. Neither → a local CA in the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM); with `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl Default for MqttsConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_MQTTS),
            cert: None,
            key: None,
        }
    }
}

/// The device-facing HTTP(S) listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceHttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS with the MQTT over TLS certificate (`[mqtts]` cert and key, or the local
    /// CA in the data directory).
    pub tls: bool,
    /// Most HTTP connections served at the same time; more are accepted and closed at once.
    pub max_connections: usize,
    /// Seconds a request's head may take to arrive.
    pub header_read_timeout_secs: u64,
}

impl Default for DeviceHttpConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_DEVICE_HTTP),
            tls: false,
            max_connections: 1024,
            header_read_timeout_secs: 10,
        }
    }
}

/// Aliyun's OpenAPI listener (`[openapi]`): path `/`, signatures V1 and V3, access keys from
/// `aliot admin access-key create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenApiConfig {
    /// Whether the listener is on.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS with the MQTT over TLS certificate (`[mqtts]` cert and key, or the local CA).
    pub tls: bool,
    /// Most HTTP connections served at the same time; more are accepted and closed at once.
    pub max_connections: usize,
    /// Seconds a request's head may take to arrive.
    pub header_read_timeout_secs: u64,
}

impl Default for OpenApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: addr(DEFAULT_OPENAPI),
            tls: false,
            max_connections: 256,
            header_read_timeout_secs: 10,
        }
    }
}

/// Admin API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token; `None` → generated once into `{data_dir}/admin-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Most HTTP connections served at the same time; more are accepted and closed at once.
    pub max_connections: usize,
    /// Seconds a request's head may take to arrive (on a new or a kept-alive connection).
    pub header_read_timeout_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_ADMIN),
            token: None,
            max_connections: 256,
            header_read_timeout_secs: 10,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("mqtt", &self.mqtt)
            .field("mqtts", &self.mqtts)
            .field("admin", &self.admin)
            .field("device_http", &self.device_http)
            .field("openapi", &self.openapi)
            .field("broker", &self.broker)
            .field("registry", &self.registry)
            .finish()
    }
}

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
    /// Largest first packet (the CONNECT), as its remaining length in bytes: a CONNECT needs a
    /// few hundred bytes (clientId at most 512), so an unauthenticated peer cannot make the hub
    /// buffer a whole `max_packet_size` packet.
    pub max_connect_packet_size: u32,
    /// Connections from one IP address that have not finished their CONNECT yet, at most; more
    /// from that address are accepted and closed at once (0: no limit).
    pub max_pending_connects_per_ip: usize,
    /// Most topic filters per device (SUBACK 0x80 beyond).
    pub max_subscriptions: usize,
    /// QoS 1 messages sent to a device and not yet acknowledged, at most.
    pub max_inflight: u16,
    /// Messages waiting in a connected device's outbound queue, at most. Above it: QoS 0 is
    /// dropped and counted; QoS 1 disconnects the device as a slow consumer (its messages are kept
    /// for a clean-session-0 device).
    pub outbound_queue_capacity: usize,
    /// Bytes (topic + payload) of a connected device's outbound queue and QoS 1 inflight
    /// window together, at most; the same policy as `outbound_queue_capacity` beyond it. At
    /// least `max_packet_size`.
    pub outbound_queue_bytes: usize,
    /// New QoS 1 messages accepted into an offline clean-session-0 device's queue, at most
    /// (messages already accepted for delivery are never dropped by this limit).
    pub offline_queue_limit: usize,
    /// Bytes (topic + payload) of an offline queue, at most, for new messages (the same
    /// exception). At least `max_packet_size`.
    pub offline_queue_bytes: usize,
    /// Seconds an offline QoS 1 message is kept (7 days).
    pub offline_queue_ttl_secs: u64,
    /// Bytes (topic + payload) of QoS 1 messages for clean-session-0 devices accepted and not
    /// yet on disk, at most, hub-wide. Beyond it (the disk is slow or failing) such messages
    /// are refused as a full queue until the disk catches up. At least `max_packet_size`.
    pub max_unsaved_bytes: usize,
    /// Default deadline of property set, service and RRPC calls, in milliseconds (the platform's
    /// 8 s).
    pub rrpc_timeout_ms: u64,
    /// Admin calls that may wait for one device's answers at the same time.
    pub max_pending_calls: usize,
    /// Sub-devices one gateway connection may have logged in at the same time (the platform's
    /// 200; a login beyond gets 428).
    pub max_online_subs_per_gateway: usize,
    /// Logins of one sub-device through gateways per minute, at most (a sliding 60 s window;
    /// the platform throttles a sub-device that logs in too often with 429). 0: no limit. A
    /// batch login naming a throttled sub-device is refused whole.
    pub max_sub_logins_per_minute: u32,
    /// Honour `sys.ack` = 0 in uplinks (no reply), as the platform does. When false, every
    /// request gets its `_reply`.
    pub sys_ack: bool,
    /// Memory for events waiting for slow listeners, in bytes: the ring holds
    /// `events_buffer_bytes / MAX_EVENT_BYTES` events (every field of an event is cut to its
    /// limit). A listener that falls further behind skips events (its stream ends with a
    /// `lagged` marker).
    pub events_buffer_bytes: usize,
    /// Milliseconds [`crate::Broker::serve`] waits for connections to flush and close on shutdown.
    pub shutdown_grace_ms: u64,
    /// Seconds an iotToken (HTTPS pre-authentication) or an HTTP data channel token is valid.
    pub token_ttl_secs: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 50_000,
            max_packet_size: 256 * 1024 + 1024,
            connect_timeout_secs: 10,
            max_connect_packet_size: 8 * 1024,
            max_pending_connects_per_ip: 256,
            max_subscriptions: 50,
            max_inflight: 32,
            outbound_queue_capacity: 1000,
            outbound_queue_bytes: 1 << 20,
            offline_queue_limit: 1000,
            offline_queue_bytes: 1 << 20,
            offline_queue_ttl_secs: 7 * 24 * 3600,
            max_unsaved_bytes: 64 << 20,
            rrpc_timeout_ms: 8000,
            max_pending_calls: 64,
            max_online_subs_per_gateway: 200,
            max_sub_logins_per_minute: 60,
            sys_ack: true,
            events_buffer_bytes: 64 << 20,
            shutdown_grace_ms: 5000,
            token_ttl_secs: 48 * 3600,
        }
    }
}

impl BrokerConfig {
    /// Checks that the values can work together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
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
        if self.max_connect_packet_size < 512 || self.max_connect_packet_size > self.max_packet_size {
            return bad("max_connect_packet_size must be between 512 and max_packet_size");
        }
        let max_packet = self.max_packet_size as usize;
        if self.outbound_queue_bytes < max_packet {
            return bad("outbound_queue_bytes must be at least max_packet_size (one message must fit)");
        }
        if self.offline_queue_bytes < max_packet {
            return bad("offline_queue_bytes must be at least max_packet_size (one message must fit)");
        }
        if self.max_unsaved_bytes < max_packet {
            return bad("max_unsaved_bytes must be at least max_packet_size (one message must fit)");
        }
        if self.events_buffer_bytes < crate::events::MAX_EVENT_BYTES {
            return bad("events_buffer_bytes must hold at least one event (27648 bytes)");
        }
        if self.rrpc_timeout_ms == 0 {
            return bad("rrpc_timeout_ms must be at least 1");
        }
        if self.token_ttl_secs == 0 {
            return bad("token_ttl_secs must be at least 1");
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

/// Settings of the registry (`[registry]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry on PostgreSQL (`postgres://user@host:port/db`) instead of the embedded
    /// `registry.redb`: several hub processes can share it (docs/hub.md, "Registry on
    /// PostgreSQL"). Its password, if any, is never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Distinct property identifiers remembered per device. A property post that would take a
    /// device past it is answered with code 6106 and not stored.
    pub max_properties_per_device: usize,
    /// Bytes of remembered property values per device (each identifier plus its value as
    /// compact JSON). A property post that would take a device past it is answered with code
    /// 6106 and not stored.
    pub max_property_bytes_per_device: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        // Also the defaults of a registry opened without a configuration
        // (`registry::PropertyLimits::default`). 1000 identifiers: five full posts of distinct
        // ones. 64 KiB: 1,000 devices at their budget hold 64 MiB of values.
        Self {
            url: None,
            max_properties_per_device: 1000,
            max_property_bytes_per_device: 64 * 1024,
        }
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("max_properties_per_device", &self.max_properties_per_device)
            .field(
                "max_property_bytes_per_device",
                &self.max_property_bytes_per_device,
            )
            .finish()
    }
}

/// A database URL without its password (`postgres://user:<redacted>@host/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains("password") {
            "<redacted>".into()
        } else {
            url.to_owned()
        };
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:<redacted>@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl RegistryConfig {
    /// Checks the limits.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(config_err(
                "registry url must start with postgres:// or postgresql://",
            ));
        }
        if self.max_properties_per_device == 0 {
            return Err(config_err("max_properties_per_device must be at least 1"));
        }
        if self.max_property_bytes_per_device < 1024 {
            return Err(config_err("max_property_bytes_per_device must be at least 1024"));
        }
        Ok(())
    }
}

/// What the hub keeps of devices' thing-model data (`[history]`): every kept property value,
/// every event, every call made to a device, in `history.redb` beside the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep history at all (the latest values are kept either way, in memory).
    pub enabled: bool,
    /// Rows older than this many days (by their own time) are pruned.
    pub retention_days: u32,
    /// How often pruning runs, in seconds (also once when the hub starts).
    pub prune_interval_secs: u64,
    /// Kept property values per device (all its properties together); beyond it the oldest
    /// posts go first, whole.
    pub max_values_per_device: u64,
    /// Deprecated: the per-property cap of the first history layout, read and ignored (a
    /// warning says so when the history opens); use `max_values_per_device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_points_per_property: Option<u64>,
    /// Kept events per device; the oldest go first.
    pub max_events_per_device: u64,
    /// Kept call-log entries per device; the oldest go first.
    pub max_calls_per_device: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        // 30 days: what the platform keeps of thing-model data by default. The caps bound one
        // device's share whatever the retention: 1,000,000 values of ~25 bytes (a number and its
        // identifier in a post's row) are ~25 MB per device, 20,000 posts of 50 properties.
        Self {
            enabled: true,
            retention_days: 30,
            prune_interval_secs: 3600,
            max_values_per_device: 1_000_000,
            max_points_per_property: None,
            max_events_per_device: 10_000,
            max_calls_per_device: 10_000,
        }
    }
}

impl HistoryConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.retention_days == 0 {
            return Err(config_err("history.retention_days must be at least 1"));
        }
        if self.prune_interval_secs == 0 {
            return Err(config_err("history.prune_interval_secs must be at least 1"));
        }
        if self.max_values_per_device == 0
            || self.max_events_per_device == 0
            || self.max_calls_per_device == 0
        {
            return Err(config_err(
                "history caps (max_values_per_device, max_events_per_device, max_calls_per_device) must be at least 1",
            ));
        }
        Ok(())
    }

    /// The retention as milliseconds.
    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_days) * 24 * 3600 * 1000
    }
}

fn config_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

impl Config {
    /// Parses a TOML configuration (missing keys take their defaults, unknown keys are errors)
    /// and validates it.
    ///
    /// # Errors
    /// [`Error::Config`] with TOML's own message (it names the key and the line).
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| config_err(one_line(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML configuration file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| match e {
            Error::Config(msg) => config_err(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// The data directory: the configured one, else [`default_data_dir`].
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// Checks what serde cannot: paths, pairs of settings, address clashes, the token's shape.
    ///
    /// # Errors
    /// [`Error::Config`] saying which setting is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.data_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(config_err("data_dir is empty"));
        }
        if let Some(token) = &self.admin.token {
            validate_token(token)?;
        }
        if self.admin.max_connections == 0 {
            return Err(config_err("admin.max_connections must be at least 1"));
        }
        if self.admin.header_read_timeout_secs == 0 {
            return Err(config_err("admin.header_read_timeout_secs must be at least 1"));
        }
        if let Some(d) = &self.device_http {
            if d.max_connections == 0 {
                return Err(config_err("device_http.max_connections must be at least 1"));
            }
            if d.header_read_timeout_secs == 0 {
                return Err(config_err(
                    "device_http.header_read_timeout_secs must be at least 1",
                ));
            }
        }
        if self.openapi.max_connections == 0 || self.openapi.header_read_timeout_secs == 0 {
            return Err(config_err(
                "openapi.max_connections and openapi.header_read_timeout_secs must be at least 1",
            ));
        }
        let mut addrs = vec![
            ("mqtt.listen", self.mqtt.listen),
            ("admin.listen", self.admin.listen),
        ];
        if let Some(tls) = &self.mqtts {
            match (&tls.cert, &tls.key) {
                (Some(_), None) => return Err(config_err("mqtts.cert is set but mqtts.key is not")),
                (None, Some(_)) => return Err(config_err("mqtts.key is set but mqtts.cert is not")),
                _ => {}
            }
            addrs.push(("mqtts.listen", tls.listen));
        }
        if let Some(a) = &self.amqp {
            addrs.push(("amqp.listen", a.listen));
            if let Some(plain) = a.plain_listen {
                addrs.push(("amqp.plain_listen", plain));
            }
        }
        if let Some(s) = &self.stomp {
            addrs.push(("stomp.listen", s.listen));
            if let Some(plain) = s.plain_listen {
                addrs.push(("stomp.plain_listen", plain));
            }
        }
        if self.openapi.enabled {
            addrs.push(("openapi.listen", self.openapi.listen));
        }
        for (i, (name_a, a)) in addrs.iter().enumerate() {
            for (name_b, b) in &addrs[i + 1..] {
                if a.port() != 0 && a == b {
                    return Err(config_err(format!("{name_a} and {name_b} are both {a}")));
                }
            }
        }
        self.broker.validate().map_err(|e| match e {
            Error::Config(msg) => config_err(format!("[broker] {msg}")),
            other => other,
        })?;
        self.registry.validate().map_err(|e| match e {
            Error::Config(msg) => config_err(format!("[registry] {msg}")),
            other => other,
        })?;
        self.remote_config.validate()?;
        self.ota.validate()?;
        self.subscription.validate()?;
        if self.amqp.as_ref().is_some_and(|a| a.max_connections == 0) {
            return Err(config_err("amqp.max_connections must be at least 1"));
        }
        if self.stomp.as_ref().is_some_and(|s| s.max_connections == 0) {
            return Err(config_err("stomp.max_connections must be at least 1"));
        }
        self.history.validate()
    }

    /// The configuration as TOML (the token, if any, included: this is for writing files).
    ///
    /// # Errors
    /// [`Error::Config`] if a value cannot be written as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| config_err(e.to_string()))
    }
}

/// A TOML error on one line: `line 3, column 1: unknown field ...`.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Checks an admin token: 1 to 256 printable characters without white space.
///
/// # Errors
/// [`Error::Config`] saying what is wrong (never echoing the token).
pub fn validate_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(config_err("the admin token is empty"));
    }
    if token.len() > 256 {
        return Err(config_err("the admin token is longer than 256 bytes"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config_err(
            "the admin token contains white space or control characters",
        ));
    }
    Ok(())
}

/// Creates a directory (and its parents) that only its owner can enter (mode 0700 on unix), or
/// makes an existing one so: the data directory holds every device's secret.
///
/// # Errors
/// The IO error.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes sure a file exists and only its owner can read it (mode 0600 on unix): created empty
/// with that mode when missing (so it is never readable by others, not even for a moment), its
/// mode tightened when present.
///
/// # Errors
/// The IO error.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    drop(file);
    Ok(())
}

/// Writes a file only its owner can read (mode 0600 on unix), atomically: a temporary file in
/// the same directory, synced, then renamed over `path`.
///
/// # Errors
/// The IO error.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_per_property_history_cap_is_read_and_ignored() {
        let c = Config::parse("[history]\nmax_points_per_property = 5\n").expect("accepted");
        assert_eq!(c.history.max_points_per_property, Some(5));
        assert_eq!(
            c.history.max_values_per_device,
            HistoryConfig::default().max_values_per_device
        );
        c.validate().expect("valid");
    }

    #[test]
    fn the_default_file_parses_back_to_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG).expect("the embedded default config parses");
        let a = toml::Value::try_from(&parsed).expect("serializable");
        let b = toml::Value::try_from(Config::default()).expect("serializable");
        assert_eq!(a, b);
        Config::default().validate().expect("the defaults are valid");
    }

    #[test]
    fn every_default_setting_is_in_the_default_file() {
        // Each key of the serialized defaults appears (commented or not) in the file, so the
        // printed config documents every setting.
        let defaults = toml::Value::try_from(Config::default()).expect("serializable");
        let toml::Value::Table(sections) = defaults else {
            panic!("a table")
        };
        for (section, value) in sections {
            assert!(
                DEFAULT_CONFIG.contains(&format!("[{section}]")),
                "section [{section}] missing"
            );
            if let toml::Value::Table(keys) = value {
                for key in keys.keys() {
                    assert!(
                        DEFAULT_CONFIG.contains(&format!("{key} =")),
                        "{section}.{key} missing"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::parse("[mqtt]\nlisten = \"127.0.0.1:1\"\nlsten = 1\n").unwrap_err();
        assert!(err.to_string().contains("lsten"), "{err}");
        let err = Config::parse("colour = \"blue\"\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        // One line, with the position.
        let err = Config::parse("[mqtt]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(err.to_string().contains("line 2, column 10"), "{err}");
    }

    #[test]
    fn settings_that_need_each_other_are_checked() {
        let err = Config::parse("[mqtts]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("mqtts.key"), "{err}");
        let err =
            Config::parse("[mqtt]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        assert!(
            Config::parse("[mqtt]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n").is_ok()
        );
        let err = Config::parse("[admin]\ntoken = \"a b\"\n").unwrap_err();
        assert!(err.to_string().contains("white space"), "{err}");
    }

    #[test]
    fn registry_limits_are_read_and_checked() {
        let c = Config::parse("[registry]\nmax_properties_per_device = 10\n").expect("valid");
        assert_eq!(c.registry.max_properties_per_device, 10);
        assert_eq!(c.registry.max_property_bytes_per_device, 64 * 1024);
        let err = Config::parse("[registry]\nmax_properties_per_device = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("[registry] max_properties_per_device"),
            "{err}"
        );
        let err = Config::parse("[registry]\nmax_property_bytes_per_device = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_property_bytes_per_device"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut c = Config::default();
        c.admin.token = Some("hunter2-token".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("secret");
        write_private_file(&p, b"x").expect("written");
        write_private_file(&p, b"y").expect("overwritten");
        assert_eq!(std::fs::read(&p).expect("readable"), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
                0o600
            );
        }
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
