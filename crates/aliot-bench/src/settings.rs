//! What a bench run is asked to do: [`Options`] (plain values, as a command line holds them),
//! validated into a [`Plan`] (the parent's view), which carries the [`Settings`] every process,
//! parent or worker, needs to run its slice of the fleet.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use aliot_protocol::SignMethod;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the simulated devices do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Ramp to N at `rate`, hold for `duration` (PINGREQ keeps idle devices connected).
    Connect,
    /// Post properties every `interval` at `qos`; latency post → post_reply (or, with
    /// `plain_auth`, publish → delivery to one subscriber).
    Telemetry,
    /// Property sets through the admin API; latency set → set_reply.
    Downlink,
    /// Synchronous service calls (RRPC) through the admin API; latency of the round trip.
    Rrpc,
    /// Every device tries to make the server hold memory for it: QoS 1 posts of 200 new
    /// properties as fast as the socket takes them, never reading; then a PUBLISH of
    /// `packet_bytes` left one byte short. Measure the server with `hub_metrics` or `server_pid`.
    Exhaust,
    /// Every device registers itself once with `product_secret` (dynamic registration, over
    /// MQTT with `register_auth_type`, or over HTTP(S) at `register_url`); the handshake
    /// latency is the time to the answer.
    Register,
}

impl Workload {
    /// The lowercase name (`connect`, `telemetry`, `downlink`, `rrpc`, `exhaust`, `register`).
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Connect => "connect",
            Workload::Telemetry => "telemetry",
            Workload::Downlink => "downlink",
            Workload::Rrpc => "rrpc",
            Workload::Exhaust => "exhaust",
            Workload::Register => "register",
        }
    }

    fn needs_admin(self) -> bool {
        matches!(self, Workload::Downlink | Workload::Rrpc)
    }
}

/// How the devices of the login workloads authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Auth {
    /// The CONNECT signed with the deviceSecret.
    #[default]
    Secret,
    /// `authType=connwl` with a deviceToken: each device first registers without
    /// pre-registration (`regnwl`, with `product_secret`; not timed), then logs in with its token.
    Token,
    /// HTTPS pre-authentication (`POST {auth_url}/auth/devicename`, signed with the
    /// deviceSecret), then MQTT with `securemode=-1`: both are timed as the handshake.
    Https,
}

impl Auth {
    /// `secret`, `token` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Secret => "secret",
            Auth::Token => "token",
            Auth::Https => "https",
        }
    }
}

/// Where the admin API of the hub is, and its bearer token. `Debug` redacts the token.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminTarget {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
}

impl AdminTarget {
    /// The admin API at `url` (`http://host:port`), with a bearer token if it needs one.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        Self {
            url: url.into(),
            token,
        }
    }

    /// A client of this admin API.
    ///
    /// # Errors
    /// [`Error::Admin`](crate::Error::Admin) for an unusable URL or token.
    pub(crate) fn client(&self) -> crate::Result<aliot_admin::Client> {
        let client = aliot_admin::Client::new(&self.url)
            .map_err(|e| crate::Error::admin(format!("bad admin URL {}", self.url), e))?;
        match &self.token {
            Some(t) => client
                .with_token(t)
                .map_err(|e| crate::Error::admin("bad admin token", e)),
            None => Ok(client),
        }
    }
}

impl std::fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTarget")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How to start a worker process when the fleet is split over several (`processes` > 1): a
/// program and the arguments that make it call [`run_worker`](crate::run_worker) with its stdin
/// and stdout. `aliot bench` passes its own executable and `bench --worker`.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
}

impl WorkerCommand {
    /// `program args…`.
    pub fn new<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// What a bench run is asked to do, as plain values: each field is an `aliot bench` flag of the
/// same name. [`Default`] holds the flags' defaults; [`Plan::new`] validates.
///
/// `Debug` redacts the password of `plain_auth` (and [`AdminTarget`] its token).
#[derive(Clone)]
pub struct Options {
    /// Broker host.
    pub host: String,
    /// Broker port (`None`: 1883, or 8883 with `tls`).
    pub port: Option<u16>,
    /// Connect over TLS (rustls), trusting `ca_file`.
    pub tls: bool,
    /// PEM file of the CA that signed the server certificate.
    pub ca_file: Option<PathBuf>,
    /// Name checked against the server certificate (`None`: `host`).
    pub server_name: Option<String>,
    /// productKey of the generated devices (`{prefix}{index}`).
    pub product_key: Option<String>,
    /// deviceName prefix of the generated devices.
    pub prefix: String,
    /// Number of devices (with `devices`: use only the first N rows).
    pub count: Option<usize>,
    /// Register the generated devices first through the admin API (batch endpoint).
    pub register: bool,
    /// The admin API, for `register` and the downlink and rrpc workloads.
    pub admin: Option<AdminTarget>,
    /// CSV of `productKey,deviceName,deviceSecret` (a header line is skipped).
    pub devices: Option<PathBuf>,
    /// `USER:PASS` for every device, for a general broker (no signing, no platform replies).
    pub plain_auth: Option<String>,
    /// HMAC of the CONNECT signature (`hmacsha256`, `hmacsha1`, `hmacmd5`).
    pub sign_method: String,
    /// What the devices do.
    pub workload: Workload,
    /// Connects started per second while ramping up (in total, over all processes).
    pub rate: f64,
    /// Handshakes in flight at once, per process; 0 = no limit.
    pub max_pending: usize,
    /// How long to hold the fleet once connected (and run the workload).
    pub duration: Duration,
    /// telemetry: each device posts this often; zero posts as fast as `inflight` allows.
    pub interval: Duration,
    /// telemetry: QoS of the posts (0 or 1).
    pub qos: u8,
    /// telemetry: posts a device may have waiting for their reply (1..=8).
    pub inflight: u8,
    /// MQTT keepalive in seconds (the platform accepts 30..=1200).
    pub keepalive: u16,
    /// downlink/rrpc: admin API calls in flight at once (per process).
    pub concurrency: usize,
    /// rrpc: the service identifier called.
    pub service_id: String,
    /// exhaust: remaining length of the PUBLISH each device leaves one byte short (the hub's
    /// default `max_packet_size`, 263168, by default).
    pub packet_bytes: u32,
    /// How devices log in (`secret`, `token` or `https`).
    pub auth: Auth,
    /// telemetry: a thing model (the console's TSL export): each post carries every property of
    /// the model with a valid value drawn from it (else `{"t": <time>}`).
    pub tsl: Option<PathBuf>,
    /// auth https: the base URL of the pre-authentication (`http://127.0.0.1:8081`, the hub's
    /// `--device-http`); `https://` goes with `tls` (the same CA).
    pub auth_url: Option<String>,
    /// register, and auth token: the productSecret the devices sign their registration with.
    pub product_secret: Option<String>,
    /// register: `regnwl` (no pre-registration, the default) or `register` (devices registered
    /// beforehand, e.g. with `register`).
    pub register_auth_type: String,
    /// register: register over HTTP(S) at this base URL (`http://127.0.0.1:8081`, the hub's
    /// `--device-http`) instead of MQTT (`register` devices only, as the platform).
    pub register_url: Option<String>,
    /// Give up on a CONNACK after this long.
    pub connect_timeout: Duration,
    /// After `duration`, wait at most this long for outstanding replies.
    pub drain: Duration,
    /// Worker processes, each with a disjoint slice of the fleet (1..=64).
    pub processes: usize,
    /// How to start a worker process; needed when `processes` > 1.
    pub worker_command: Option<WorkerCommand>,
    /// Local addresses to connect from, round-robin: a list (`127.0.0.2,127.0.0.3`) or a range
    /// (`127.0.0.2-127.0.0.9`).
    pub source_ip: Option<String>,
    /// The hub's Prometheus `/metrics` URL: report its RSS and CPU seconds.
    pub hub_metrics: Option<String>,
    /// PID of the server (on this machine): report its RSS and CPU seconds from /proc.
    pub server_pid: Option<u32>,
    /// Draw the live progress line on stderr (when stderr is a terminal).
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: None,
            tls: false,
            ca_file: None,
            server_name: None,
            product_key: None,
            prefix: "bench-".into(),
            count: None,
            register: false,
            admin: None,
            devices: None,
            plain_auth: None,
            sign_method: "hmacsha256".into(),
            workload: Workload::Connect,
            rate: 1000.0,
            max_pending: 0,
            duration: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            qos: 1,
            inflight: 1,
            keepalive: 60,
            concurrency: 32,
            service_id: "bench".into(),
            packet_bytes: 256 * 1024 + 1024,
            auth: Auth::Secret,
            tsl: None,
            auth_url: None,
            product_secret: None,
            register_auth_type: "regnwl".into(),
            register_url: None,
            connect_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(5),
            processes: 1,
            worker_command: None,
            source_ip: None,
            hub_metrics: None,
            server_pid: None,
            progress: false,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain_auth = self
            .plain_auth
            .as_ref()
            .map(|s| format!("{}:<redacted>", s.split(':').next().unwrap_or_default()));
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("server_name", &self.server_name)
            .field("product_key", &self.product_key)
            .field("prefix", &self.prefix)
            .field("count", &self.count)
            .field("register", &self.register)
            .field("admin", &self.admin)
            .field("devices", &self.devices)
            .field("plain_auth", &plain_auth)
            .field("sign_method", &self.sign_method)
            .field("workload", &self.workload)
            .field("rate", &self.rate)
            .field("max_pending", &self.max_pending)
            .field("duration", &self.duration)
            .field("interval", &self.interval)
            .field("qos", &self.qos)
            .field("inflight", &self.inflight)
            .field("keepalive", &self.keepalive)
            .field("concurrency", &self.concurrency)
            .field("service_id", &self.service_id)
            .field("packet_bytes", &self.packet_bytes)
            .field(
                "product_secret",
                &self.product_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("auth", &self.auth)
            .field("tsl", &self.tsl)
            .field("auth_url", &self.auth_url)
            .field("register_auth_type", &self.register_auth_type)
            .field("register_url", &self.register_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("drain", &self.drain)
            .field("processes", &self.processes)
            .field("worker_command", &self.worker_command)
            .field("source_ip", &self.source_ip)
            .field("hub_metrics", &self.hub_metrics)
            .field("server_pid", &self.server_pid)
            .field("progress", &self.progress)
            .finish()
    }
}

impl Options {
    /// Whether these options need the admin API: `register`, or the downlink and rrpc workloads.
    pub fn needs_admin(&self) -> bool {
        self.workload.needs_admin() || self.register
    }
}

/// Plain MQTT credentials (`plain_auth`). `Debug` redacts the password.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PlainAuth {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for PlainAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where an HTTP registration goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RegisterUrl {
    /// The address connected to.
    pub(crate) addr: std::net::SocketAddr,
    /// `host:port`, for the `Host` header.
    pub(crate) authority: String,
}

/// The `register` workload's settings. `Debug` redacts the productSecret.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RegistrationSettings {
    pub(crate) product_secret: String,
    pub(crate) auth_type: String,
    pub(crate) url: Option<RegisterUrl>,
}

impl std::fmt::Debug for RegistrationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationSettings")
            .field("product_secret", &"<redacted>")
            .field("auth_type", &self.auth_type)
            .field("url", &self.url)
            .finish()
    }
}

/// `http://host:port` or `https://host:port` (no path): the address, its authority and whether
/// it is HTTPS.
fn parse_register_url(url: &str) -> Result<(RegisterUrl, Option<String>)> {
    let bad = || {
        invalid(format!(
            "--register-url takes http://HOST:PORT or https://HOST:PORT, not {url:?}"
        ))
    };
    let (tls, rest) = match url.trim_end_matches('/').split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(bad()),
    };
    if rest.contains('/') || rest.is_empty() {
        return Err(bad());
    }
    let authority = if rest.contains(':') && !rest.ends_with(']') {
        rest.to_owned()
    } else {
        format!("{rest}:{}", if tls { 443 } else { 80 })
    };
    use std::net::ToSocketAddrs as _;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| invalid(format!("--register-url {url:?}: {e}")))?
        .next()
        .ok_or_else(bad)?;
    let host = authority.rsplit_once(':').map(|(h, _)| h.to_owned());
    Ok((RegisterUrl { addr, authority }, if tls { host } else { None }))
}

/// How many different posts a thing model's fleet cycles through.
const POST_SAMPLES: usize = 64;

/// `params` objects for property posts, every property of the model at `path` with a valid
/// value drawn from it (a fixed seed: the same run posts the same values).
fn post_params(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read --tsl {}: {e}", path.display())))?;
    let tsl = aliot_protocol::tsl::Tsl::from_json(&text)
        .map_err(|e| invalid(format!("--tsl {}: {e}", path.display())))?;
    if tsl.properties.is_empty() {
        return Err(invalid(format!(
            "--tsl {}: the model has no properties",
            path.display()
        )));
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*: a value source for the samples, nothing secret.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    Ok((0..POST_SAMPLES)
        .map(|_| {
            let params: serde_json::Map<String, serde_json::Value> = tsl
                .properties
                .iter()
                .map(|p| (p.identifier.clone(), p.data_type.sample(&mut next)))
                .collect();
            serde_json::Value::Object(params).to_string()
        })
        .collect())
}

/// TLS settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TlsSettings {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) server_name: String,
}

/// What one process needs to run its slice of the fleet (what a worker receives on stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) workload: Workload,
    /// Connects per second for this process.
    pub(crate) rate: f64,
    /// Handshakes in flight at once (0 = no limit).
    pub(crate) max_pending: usize,
    pub(crate) duration: Duration,
    pub(crate) interval: Duration,
    pub(crate) qos: u8,
    pub(crate) inflight: u8,
    pub(crate) keepalive: u16,
    pub(crate) concurrency: usize,
    pub(crate) service_id: String,
    pub(crate) packet_bytes: u32,
    pub(crate) registration: Option<RegistrationSettings>,
    pub(crate) auth: Auth,
    /// telemetry: the `params` of the posts, drawn from a thing model (empty: `{"t": <time>}`);
    /// device posts cycle through them.
    pub(crate) post_params: Vec<String>,
    /// auth https: where to pre-authenticate.
    pub(crate) auth_url: Option<RegisterUrl>,
    pub(crate) connect_timeout: Duration,
    pub(crate) drain: Duration,
    pub(crate) sign_method: String,
    pub(crate) plain_auth: Option<PlainAuth>,
    pub(crate) admin: Option<AdminTarget>,
    pub(crate) source_ips: Vec<IpAddr>,
    /// Index of this process among the workers (0 for a single process); names its subscriber's
    /// topics.
    pub(crate) worker_index: usize,
}

impl Settings {
    /// The sign method (validated by [`Plan::new`]).
    pub(crate) fn sign_method(&self) -> SignMethod {
        self.sign_method.parse().unwrap_or(SignMethod::HmacSha256)
    }
}

/// Where the devices come from (resolved by the parent into a list).
#[derive(Debug, Clone)]
pub(crate) enum FleetSource {
    /// `{prefix}{i}` for i in 0..count under `product_key`, optionally registered first.
    Generated {
        product_key: String,
        prefix: String,
        count: usize,
        register: bool,
    },
    /// Rows of a CSV file, at most `limit`.
    Csv { path: PathBuf, limit: Option<usize> },
}

/// Validated [`Options`]: a bench run ready for [`run`](crate::run).
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) settings: Settings,
    pub(crate) fleet: FleetSource,
    pub(crate) processes: usize,
    pub(crate) worker_command: Option<WorkerCommand>,
    pub(crate) progress: bool,
    pub(crate) hub_metrics: Option<String>,
    pub(crate) server_pid: Option<u32>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidOptions(msg.into())
}

impl Plan {
    /// Validates the options.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for a value out of range or options that do not go together,
    /// [`Error::NoAdminApi`] when the admin API is needed (see [`Options::needs_admin`]) and
    /// `admin` is `None`.
    pub fn new(o: Options) -> Result<Plan> {
        let needs_admin = o.needs_admin();
        let mut tls = o.tls.then(|| TlsSettings {
            ca_file: o.ca_file.clone(),
            server_name: o.server_name.clone().unwrap_or_else(|| o.host.clone()),
        });
        if o.auth != Auth::Secret && (o.plain_auth.is_some() || o.workload == Workload::Register) {
            return Err(invalid(
                "--auth token|https goes with neither --plain-auth nor the register workload",
            ));
        }
        let auth_url = match (o.auth, &o.auth_url) {
            (Auth::Https, None) => {
                return Err(invalid(
                    "--auth https needs --auth-url (the hub's --device-http URL)",
                ));
            }
            (Auth::Https, Some(u)) => {
                let (url, https_host) = parse_register_url(u)?;
                if https_host.is_some() != o.tls {
                    return Err(invalid(
                        "--auth-url https:// goes with --tls (the same CA), http:// without it",
                    ));
                }
                Some(url)
            }
            _ => None,
        };
        let registration = if o.auth == Auth::Token {
            let product_secret = o.product_secret.clone().ok_or_else(|| {
                invalid("--auth token needs --product-secret (each device registers for its token)")
            })?;
            Some(RegistrationSettings {
                product_secret,
                auth_type: "regnwl".into(),
                url: None,
            })
        } else if o.workload == Workload::Register {
            let product_secret = o
                .product_secret
                .clone()
                .ok_or_else(|| invalid("the register workload needs --product-secret"))?;
            if !matches!(o.register_auth_type.as_str(), "register" | "regnwl") {
                return Err(invalid("--register-auth-type is register or regnwl"));
            }
            let url = match &o.register_url {
                None => None,
                Some(u) => {
                    if o.register_auth_type != "register" {
                        return Err(invalid(
                            "registration over HTTP(S) is for devices registered beforehand: add --register-auth-type register",
                        ));
                    }
                    let (url, https_host) = parse_register_url(u)?;
                    if let Some(host) = https_host {
                        tls = Some(TlsSettings {
                            ca_file: o.ca_file.clone(),
                            server_name: o.server_name.clone().unwrap_or(host),
                        });
                    }
                    Some(url)
                }
            };
            Some(RegistrationSettings {
                product_secret,
                auth_type: o.register_auth_type.clone(),
                url,
            })
        } else {
            None
        };
        let port = o.port.unwrap_or(if o.tls { 8883 } else { 1883 });
        let sign_method: SignMethod = o
            .sign_method
            .parse()
            .map_err(|_| invalid(format!("unknown --sign-method {:?}", o.sign_method)))?;
        let plain_auth = match &o.plain_auth {
            None => None,
            Some(s) => {
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| invalid("--plain-auth takes USER:PASS"))?;
                Some(PlainAuth {
                    username: u.to_owned(),
                    password: p.to_owned(),
                })
            }
        };
        if !(o.rate.is_finite() && o.rate > 0.0) {
            return Err(invalid("--rate must be a positive number of connects per second"));
        }
        if o.processes == 0 || o.processes > 64 {
            return Err(invalid("--processes must be between 1 and 64"));
        }
        if o.concurrency == 0 {
            return Err(invalid("--concurrency must be at least 1"));
        }
        if plain_auth.is_none() && !(30..=1200).contains(&o.keepalive) {
            return Err(invalid(
                "--keepalive must be within 30..=1200 s (the platform refuses others with CONNACK 2)",
            ));
        }
        if o.keepalive == 0 {
            return Err(invalid("--keepalive must be at least 1 s"));
        }
        if needs_admin && plain_auth.is_some() {
            return Err(invalid(
                "the downlink and rrpc workloads need the hub's admin API; they cannot run with --plain-auth",
            ));
        }
        let admin = if needs_admin {
            let admin = o.admin.clone().ok_or(Error::NoAdminApi)?;
            let url = admin.url.trim().trim_end_matches('/').to_owned();
            if !url.starts_with("http://") {
                return Err(invalid(format!(
                    "--admin-url must be an http:// URL, not {url:?}"
                )));
            }
            Some(AdminTarget {
                url,
                token: admin.token,
            })
        } else {
            None
        };
        if o.register && (o.devices.is_some() || plain_auth.is_some()) {
            return Err(invalid(
                "--register generates the devices: it goes with neither --devices nor --plain-auth",
            ));
        }
        if o.devices.is_some() && plain_auth.is_some() {
            return Err(invalid("--devices and --plain-auth do not go together"));
        }
        let fleet = match (&o.devices, &o.product_key) {
            (Some(path), _) => FleetSource::Csv {
                path: path.clone(),
                limit: o.count,
            },
            (None, Some(pk)) => {
                let count = o
                    .count
                    .ok_or_else(|| invalid("--count is needed with --product-key"))?;
                if count == 0 {
                    return Err(invalid("--count must be at least 1"));
                }
                if !o.register
                    && plain_auth.is_none()
                    && o.workload != Workload::Register
                    && o.auth != Auth::Token
                {
                    return Err(invalid(
                        "generated devices need their secrets: add --register (the hub creates them), or use --devices FILE, or --plain-auth",
                    ));
                }
                FleetSource::Generated {
                    product_key: pk.clone(),
                    prefix: o.prefix.clone(),
                    count,
                    register: o.register,
                }
            }
            (None, None) => {
                return Err(invalid(
                    "say which devices: --product-key PK --count N [--register], or --devices FILE",
                ));
            }
        };
        let source_ips = match &o.source_ip {
            Some(s) => parse_source_ips(s)?,
            None => Vec::new(),
        };
        if let Some(url) = &o.hub_metrics
            && !url.starts_with("http://")
        {
            return Err(invalid("--hub-metrics takes an http:// URL"));
        }
        if o.qos > 1 {
            return Err(invalid("--qos must be 0 or 1"));
        }
        if !(1..=8).contains(&o.inflight) {
            return Err(invalid("--inflight must be within 1..=8"));
        }
        if o.processes > 1 && o.worker_command.is_none() {
            return Err(invalid(
                "--processes above 1 needs the command that starts a worker process",
            ));
        }
        let settings = Settings {
            host: o.host,
            port,
            tls,
            workload: o.workload,
            rate: o.rate,
            max_pending: o.max_pending,
            duration: o.duration,
            interval: o.interval,
            qos: o.qos,
            inflight: o.inflight,
            keepalive: o.keepalive,
            concurrency: o.concurrency,
            service_id: o.service_id,
            packet_bytes: o.packet_bytes,
            registration,
            auth: o.auth,
            post_params: match &o.tsl {
                Some(path) => post_params(path)?,
                None => Vec::new(),
            },
            auth_url,
            connect_timeout: o.connect_timeout,
            drain: o.drain,
            sign_method: sign_method.as_str().to_owned(),
            plain_auth,
            admin,
            source_ips,
            worker_index: 0,
        };
        Ok(Plan {
            settings,
            fleet,
            processes: o.processes,
            worker_command: o.worker_command,
            progress: o.progress,
            hub_metrics: o.hub_metrics,
            server_pid: o.server_pid,
        })
    }

    /// The workload.
    pub fn workload(&self) -> Workload {
        self.settings.workload
    }
}

impl TryFrom<Options> for Plan {
    type Error = Error;

    fn try_from(o: Options) -> Result<Plan> {
        Plan::new(o)
    }
}

/// Parses a duration: `5s`, `250ms`, `500us`, `2m`, `1h`, `1.5s` or a bare number of seconds, up
/// to a week.
///
/// # Errors
/// [`Error::InvalidOptions`] naming what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| invalid(format!("{s:?} is not a duration (try 30s, 500ms, 2m)")))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1_000_000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(invalid(format!(
                "unknown unit {unit:?} in {s:?} (use us, ms, s, m, h)"
            )));
        }
    };
    if !secs.is_finite() || !(0.0..=7.0 * 24.0 * 3600.0).contains(&secs) {
        return Err(invalid(format!("{s:?} is out of range")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `127.0.0.2,127.0.0.3` or `127.0.0.2-127.0.0.9` (IPv4 ranges up to 1024 addresses), or
/// a mix separated by commas.
fn parse_source_ips(s: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{a:?} is not an IPv4 address")))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{b:?} is not an IPv4 address")))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a >= 1024 {
                return Err(invalid(format!(
                    "the range {part:?} is empty or longer than 1024 addresses"
                )));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| invalid(format!("{part:?} is not an IP address")))?,
            );
        }
    }
    if out.is_empty() {
        return Err(invalid("--source-ip names no address"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_should_accept_units_and_bare_seconds() {
        let d = |s| parse_duration(s).ok();
        assert_eq!(d("5s"), Some(Duration::from_secs(5)));
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(d("2900us"), Some(Duration::from_micros(2900)));
        assert_eq!(d("2m"), Some(Duration::from_secs(120)));
        assert_eq!(d("3"), Some(Duration::from_secs(3)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn source_ips_should_expand_ranges_and_lists() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.4,127.0.0.9").expect("valid");
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"]);
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("nope").is_err());
    }

    fn plain(count: usize) -> Options {
        Options {
            product_key: Some("pk".into()),
            count: Some(count),
            plain_auth: Some("u:p".into()),
            ..Options::default()
        }
    }

    #[test]
    fn generated_devices_without_secrets_should_be_refused_naming_register() {
        let o = Options {
            plain_auth: None,
            ..plain(3)
        };
        let e = Plan::new(o).expect_err("no secrets");
        assert!(e.is_usage() && e.to_string().contains("--register"), "{e}");
    }

    #[test]
    fn the_admin_api_should_be_required_only_when_needed() {
        assert!(Plan::new(plain(3)).is_ok());
        let o = Options {
            plain_auth: None,
            register: true,
            ..plain(3)
        };
        assert!(matches!(Plan::new(o.clone()), Err(Error::NoAdminApi)));
        let with = Options {
            admin: Some(AdminTarget::new("http://127.0.0.1:1/", None)),
            ..o.clone()
        };
        let plan = Plan::new(with).expect("valid");
        assert_eq!(
            plan.settings.admin.map(|a| a.url).as_deref(),
            Some("http://127.0.0.1:1")
        );
        let https = Options {
            admin: Some(AdminTarget::new("https://x", None)),
            ..o
        };
        assert!(matches!(Plan::new(https), Err(Error::InvalidOptions(_))));
    }

    #[test]
    fn several_processes_should_need_a_worker_command() {
        let o = Options {
            processes: 2,
            ..plain(3)
        };
        assert!(Plan::new(o.clone()).is_err());
        let o = Options {
            worker_command: Some(WorkerCommand::new("/bin/true", ["--worker"])),
            ..o
        };
        assert_eq!(Plan::new(o).expect("valid").processes, 2);
    }

    #[test]
    fn secrets_should_not_appear_in_debug_output() {
        let o = Options {
            admin: Some(AdminTarget::new("http://h", Some("t0ken".into()))),
            plain_auth: Some("user:hunter2".into()),
            product_key: Some("pk".into()),
            count: Some(1),
            ..Options::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"), "{o:?}");
        let plan = Plan::new(o).expect("valid");
        let text = format!("{plan:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{:?}", AdminTarget::new("http://h", Some("t0ken".into()))).contains("t0ken"));
    }
}
