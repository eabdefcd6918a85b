//! [`DeviceOptions`]: who the device is, where it connects, and how it behaves.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aliot_protocol::auth::KEEPALIVE_RANGE;
use aliot_protocol::register::RegisteredWithToken;
use aliot_protocol::{DeviceIdentity, DeviceProfile, Endpoint, SignMethod};

use crate::error::{Error, Result};

/// MQTT quality of service. The platform supports QoS 0 and 1 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// At most once: sent once, never acknowledged.
    #[default]
    AtMostOnce,
    /// At least once: acknowledged by the platform (PUBACK), re-sent until it is.
    AtLeastOnce,
}

impl QoS {
    /// 0 or 1.
    pub fn level(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }

    /// `0` → at most once, `1` → at least once; anything else is `None` (QoS 2 is not supported
    /// by the platform).
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            _ => None,
        }
    }
}

impl fmt::Display for QoS {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.level())
    }
}

/// Which certificates a TLS connection trusts.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustAnchors {
    /// The Alibaba Cloud IoT root CAs built into this crate: GlobalSign Root CA (R1), used on
    /// ports 1883/443, and the Aliyun IoT Root CA (2023–2053), used on port 8883 (spec §2.2).
    Aliyun,
    /// The certificates of a PEM file (for example the local CA of `aliot hub`).
    File(PathBuf),
    /// PEM text held in memory.
    Pem(Vec<u8>),
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustAnchors::Aliyun => f.write_str("Aliyun"),
            TrustAnchors::File(p) => f.debug_tuple("File").field(p).finish(),
            TrustAnchors::Pem(b) => write!(f, "Pem({} bytes)", b.len()),
        }
    }
}

/// Reconnect delays: capped exponential backoff with jitter.
///
/// The n-th consecutive failed attempt waits a random time in `[d/2, d]` where
/// `d = min(max, initial × 2ⁿ)`. The count restarts once a connection has stayed up for
/// `stable_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay (default 1 s).
    pub initial: Duration,
    /// Largest delay (default 60 s).
    pub max: Duration,
    /// How long a connection must last for the next failure to start again from `initial`
    /// (default 30 s).
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }
}

/// What to do when the platform refuses the CONNECT with a code that retrying cannot fix:
/// 4 (bad username or password), 5 (not authorized), and 1, 2 (protocol version, clientId).
/// Code 3 (server unavailable) always follows the normal [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefusalPolicy {
    /// Stop the device: the events stream ends with [`crate::Event::Stopped`] carrying
    /// [`Error::Refused`]. The default: a wrong secret never turns into a reconnect storm.
    #[default]
    Stop,
    /// Retry, but only every given interval (jittered like the backoff), for devices that may be
    /// re-enabled or re-provisioned while they run.
    RetryEvery(Duration),
}

/// How the device proves who it is at every CONNECT. `Debug` never shows the secret or the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Login {
    /// Sign every CONNECT afresh with the deviceSecret (a new timestamp each time): the usual login.
    Secret(DeviceIdentity),
    /// The `authType=connwl` login of a device registered without pre-registration
    /// ([`crate::register`], `/ext/regnwl`): the clientId the platform gave, username
    /// `deviceName&productKey`, and the deviceToken verbatim as the password. Nothing is signed:
    /// every reconnect sends the same token.
    Token(RegisteredWithToken),
    /// HTTPS pre-authentication (spec §5.3), then MQTT with `securemode=-1`: before connecting,
    /// the device posts `{auth_url}/auth/devicename` signed with the deviceSecret
    /// ([`DeviceOptions::sign_method`]; over TLS, trusting [`DeviceOptions::trust`] and
    /// verifying the URL's host) and gets an iotId and an iotToken; it then connects with clientId
    /// `{pk}.{dn}|securemode=-1,…|`, username the iotId and password the iotToken verbatim.
    ///
    /// Where it connects: the `host:port` the answer names (`data.resources.mqtt`), else the
    /// configured endpoint's. TLS or not, and the name TLS verifies, stay the configured
    /// endpoint's ([`DeviceOptions::server_name`], else the endpoint's host): the answer does not
    /// say, and on the platform the answer's host is served under the same certificate.
    ///
    /// The token is used again on every reconnect; when the platform refuses it (CONNACK 4: it
    /// expired, a newer pre-authentication replaced it, or the platform forgot it) the device
    /// pre-authenticates again at once, and after an attempt that could not reach the MQTT
    /// endpoint it pre-authenticates again before the next attempt. A refusal of a token just obtained follows the
    /// [`RefusalPolicy`]; so does a refused pre-authentication (codes 401, 403, 460).
    PreAuth {
        /// The device (its deviceSecret signs the pre-authentication).
        identity: DeviceIdentity,
        /// The auth service's base URL: `https://iot-auth.{region}.aliyuncs.com` on the
        /// platform ([`aliot_protocol::http_auth::auth_url`]), `http://127.0.0.1:8081` or
        /// `https://localhost:8443` for `aliot hub --device-http[s]`.
        auth_url: String,
    },
}

impl Login {
    /// The productKey.
    pub fn product_key(&self) -> &str {
        match self {
            Login::Secret(id) | Login::PreAuth { identity: id, .. } => id.product_key(),
            Login::Token(t) => &t.product_key,
        }
    }

    /// The deviceName.
    pub fn device_name(&self) -> &str {
        match self {
            Login::Secret(id) | Login::PreAuth { identity: id, .. } => id.device_name(),
            Login::Token(t) => &t.device_name,
        }
    }
}

/// Everything a [`crate::Device`] needs: identity, endpoint and behaviour.
///
/// Built with [`DeviceOptions::new`] (deviceSecret), [`DeviceOptions::with_token`] (deviceToken)
/// or [`DeviceOptions::from_profile`], then adjusted with the chainable setters; checked by
/// [`DeviceOptions::validate`] before connecting. `Debug` never shows the device secret or token.
///
/// ```
/// use std::time::Duration;
/// use aliot_device::{DeviceOptions, QoS};
/// use aliot_protocol::{DeviceIdentity, Endpoint};
///
/// let identity = DeviceIdentity::new("a1B2c3D4e5F", "light-01", "secret")?;
/// let options = DeviceOptions::new(identity, Endpoint::custom("127.0.0.1", Some(1883), false)?)
///     .keepalive(Duration::from_secs(120))
///     .request_timeout(Duration::from_secs(5));
/// options.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DeviceOptions {
    pub(crate) login: Login,
    pub(crate) endpoint: Endpoint,
    pub(crate) trust: TrustAnchors,
    pub(crate) server_name: Option<String>,
    pub(crate) sign_method: SignMethod,
    pub(crate) client_id_prefix: Option<String>,
    pub(crate) keepalive: Duration,
    pub(crate) clean_session: bool,
    pub(crate) auto_subscribe: bool,
    pub(crate) ext_rrpc: bool,
    pub(crate) extra_params: Vec<(String, String)>,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) refusal: RefusalPolicy,
    pub(crate) event_capacity: usize,
    pub(crate) outbox_capacity: usize,
    pub(crate) max_packet_size: usize,
}

impl fmt::Debug for DeviceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceOptions")
            .field("login", &self.login)
            .field("endpoint", &self.endpoint)
            .field("trust", &self.trust)
            .field("server_name", &self.server_name)
            .field("sign_method", &self.sign_method)
            .field("client_id_prefix", &self.client_id_prefix)
            .field("keepalive", &self.keepalive)
            .field("clean_session", &self.clean_session)
            .field("auto_subscribe", &self.auto_subscribe)
            .field("ext_rrpc", &self.ext_rrpc)
            .field("extra_params", &self.extra_params)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("refusal", &self.refusal)
            .field("event_capacity", &self.event_capacity)
            .field("outbox_capacity", &self.outbox_capacity)
            .field("max_packet_size", &self.max_packet_size)
            .finish()
    }
}

impl DeviceOptions {
    /// Options with the defaults: signmethod hmacsha256, clientId prefix `{pk}.{dn}`, keepalive
    /// 60 s, clean session, `_ss=1` (auto-subscription) and `ext=1` (RRPC on `/ext/rrpc/...`),
    /// request timeout 10 s, the built-in Aliyun root CAs when the endpoint uses TLS.
    pub fn new(identity: DeviceIdentity, endpoint: Endpoint) -> Self {
        Self::with_login(Login::Secret(identity), endpoint)
    }

    /// Options for the token login of a device registered without pre-registration: the
    /// [`RegisteredWithToken`] that [`crate::register::register_mqtt`] returned (or that was
    /// saved from it). Every (re)connect sends clientId
    /// `{clientId}|authType=connwl,securemode=-2,…,_ss=1,ext=3|` and the token verbatim; the
    /// signing settings ([`DeviceOptions::sign_method`], [`DeviceOptions::client_id_prefix`])
    /// do not apply. The other defaults are those of [`DeviceOptions::new`].
    ///
    /// ```
    /// use aliot_device::DeviceOptions;
    /// use aliot_protocol::Endpoint;
    /// use aliot_protocol::register::RegisteredWithToken;
    ///
    /// let token = RegisteredWithToken {
    ///     client_id: "a1B2c3D4e5F.light-01".into(),
    ///     product_key: "a1B2c3D4e5F".into(),
    ///     device_name: "light-01".into(),
    ///     device_token: "the-token".into(),
    /// };
    /// let options = DeviceOptions::with_token(token, Endpoint::custom("127.0.0.1", Some(1883), false)?);
    /// options.validate()?;
    /// assert!(!format!("{options:?}").contains("the-token"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_token(token: RegisteredWithToken, endpoint: Endpoint) -> Self {
        Self::with_login(Login::Token(token), endpoint)
    }

    /// Options for the login after HTTPS pre-authentication ([`Login::PreAuth`]) at `auth_url`;
    /// `endpoint` says whether MQTT uses TLS, and where to connect when the answer names no
    /// endpoint. The other defaults are those of [`DeviceOptions::new`].
    ///
    /// ```
    /// use aliot_device::DeviceOptions;
    /// use aliot_protocol::{DeviceIdentity, Endpoint};
    ///
    /// let identity = DeviceIdentity::new("a1B2c3D4e5F", "light-01", "secret")?;
    /// let local = Endpoint::custom("127.0.0.1", Some(1883), false)?; // `aliot hub --device-http`
    /// let options = DeviceOptions::with_pre_auth(identity, "http://127.0.0.1:8081", local);
    /// options.validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_pre_auth(identity: DeviceIdentity, auth_url: impl Into<String>, endpoint: Endpoint) -> Self {
        Self::with_login(
            Login::PreAuth {
                identity,
                auth_url: auth_url.into(),
            },
            endpoint,
        )
    }

    /// Options for a [`Login`] of any kind.
    pub fn with_login(login: Login, endpoint: Endpoint) -> Self {
        Self {
            login,
            endpoint,
            trust: TrustAnchors::Aliyun,
            server_name: None,
            sign_method: SignMethod::HmacSha256,
            client_id_prefix: None,
            keepalive: Duration::from_secs(60),
            clean_session: true,
            auto_subscribe: true,
            ext_rrpc: true,
            extra_params: vec![
                ("_v".into(), format!("aliot-{}", env!("CARGO_PKG_VERSION"))),
                ("lan".into(), "Rust".into()),
            ],
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            refusal: RefusalPolicy::Stop,
            event_capacity: 256,
            outbox_capacity: 1000,
            max_packet_size: 512 * 1024,
        }
    }

    /// Options from a TOML device profile: identity, endpoint (`host`/`port`, `region` or
    /// `instance_id`), `tls`, `ca_file`, `sign_method`, `client_id` (prefix) and `keepalive`.
    ///
    /// A profile with a `device_token` and no `device_secret` logs in with the token
    /// ([`DeviceOptions::with_token`], `client_id` being the clientId the platform gave with it);
    /// any other profile signs with its `device_secret`, as before.
    ///
    /// # Errors
    /// A missing or invalid identity field, no endpoint at all, or a bad value.
    pub fn from_profile(profile: &DeviceProfile) -> Result<Self> {
        let login = match profile.token_login()? {
            Some(token) if profile.device_secret.is_none() => Login::Token(token),
            _ => Login::Secret(profile.identity()?),
        };
        let endpoint = profile
            .endpoint(login.product_key(), profile.tls.unwrap_or(false))?
            .ok_or_else(|| {
                Error::Options("the profile names no endpoint: set host, region or instance_id".into())
            })?;
        Self::with_login(login, endpoint).profile_settings(profile)
    }

    /// Takes the connection settings of a profile that it gives: `ca_file`, `sign_method`,
    /// `client_id` (prefix) and `keepalive`; leaves the identity and the endpoint alone. For
    /// callers that take the identity or the endpoint from elsewhere (the command line, the
    /// environment) and the rest from a profile; call the setters afterwards to override it.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a `sign_method` that is not one of the platform's.
    pub fn profile_settings(mut self, profile: &DeviceProfile) -> Result<Self> {
        if let Some(ca) = &profile.ca_file {
            self.trust = TrustAnchors::File(PathBuf::from(ca));
        }
        if let Some(method) = &profile.sign_method {
            self.sign_method = method.parse()?;
        }
        if let Some(prefix) = &profile.client_id {
            self.client_id_prefix = Some(prefix.clone());
        }
        if let Some(k) = profile.keepalive {
            self.keepalive = Duration::from_secs(u64::from(k));
        }
        Ok(self)
    }

    /// How the device logs in.
    pub fn login(&self) -> &Login {
        &self.login
    }

    /// The device identity (productKey, deviceName, deviceSecret) of a secret or pre-auth
    /// login; `None` for a token login.
    pub fn identity(&self) -> Option<&DeviceIdentity> {
        match &self.login {
            Login::Secret(id) | Login::PreAuth { identity: id, .. } => Some(id),
            Login::Token(_) => None,
        }
    }

    /// The productKey.
    pub fn product_key(&self) -> &str {
        self.login.product_key()
    }

    /// The deviceName.
    pub fn device_name(&self) -> &str {
        self.login.device_name()
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Replaces the endpoint.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Which certificates TLS trusts (default: the built-in Aliyun root CAs).
    #[must_use]
    pub fn trust(mut self, trust: TrustAnchors) -> Self {
        self.trust = trust;
        self
    }

    /// Trusts the certificates of a PEM file instead of the built-in roots (the hub's local CA).
    #[must_use]
    pub fn ca_file(self, path: impl Into<PathBuf>) -> Self {
        self.trust(TrustAnchors::File(path.into()))
    }

    /// The TLS server name (SNI, and the name the certificate must carry); default: the
    /// endpoint's host.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The HMAC algorithm of the password (default hmacsha256).
    #[must_use]
    pub fn sign_method(mut self, method: SignMethod) -> Self {
        self.sign_method = method;
        self
    }

    /// The clientId prefix (default `{productKey}.{deviceName}`; at most 64 characters).
    #[must_use]
    pub fn client_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.client_id_prefix = Some(prefix.into());
        self
    }

    /// MQTT keepalive (default 60 s). The platform accepts 30..=1200 s; [`Self::validate`]
    /// checks it before connecting.
    #[must_use]
    pub fn keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// MQTT clean session (default true). With `false` the platform keeps QoS 1 downlinks for an
    /// offline device.
    #[must_use]
    pub fn clean_session(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }

    /// Announce `_ss=1` (default true): the platform subscribes the device to its system topics
    /// itself. When false, the SDK subscribes to the reply, property-set, service, RRPC and NTP
    /// topics after every connect.
    #[must_use]
    pub fn auto_subscribe(mut self, on: bool) -> Self {
        self.auto_subscribe = on;
        self
    }

    /// Announce `ext=1` (default true): synchronous service calls arrive on
    /// `/ext/rrpc/{id}/sys/{pk}/{dn}/thing/service/{id}` instead of `/sys/{pk}/{dn}/rrpc/request/{id}`.
    /// The SDK answers both styles either way.
    #[must_use]
    pub fn ext_rrpc(mut self, on: bool) -> Self {
        self.ext_rrpc = on;
        self
    }

    /// Adds (or replaces) a clientId parameter, such as `_v` or `lan`. `securemode`,
    /// `signmethod`, `timestamp`, `_ss` and `ext` are set by the SDK.
    #[must_use]
    pub fn client_id_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = value.into();
        match self.extra_params.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.extra_params.push((key, value)),
        }
        self
    }

    /// How long a request (property post, event post, NTP...) waits for the platform's reply,
    /// queueing and reconnects included (default 10 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long one connection attempt (TCP, TLS, CONNECT/CONNACK) may take (default 10 s,
    /// whole seconds).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reconnect backoff.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// What to do on CONNACK refusals 1, 2, 4 and 5 (default [`RefusalPolicy::Stop`]).
    #[must_use]
    pub fn on_refusal(mut self, policy: RefusalPolicy) -> Self {
        self.refusal = policy;
        self
    }

    /// Capacity of the event queue between the network loop and the [`crate::Events`] stream
    /// (default 256). When it is full, new property sets and service calls are answered at once
    /// with Alink code 429, new raw RRPC requests are left unanswered (their caller times out),
    /// and other events are dropped; all are counted ([`crate::Device::stats`]). The network loop
    /// never waits for the application.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// How many QoS 1 messages may wait for their acknowledgement, offline or not (default
    /// 1000). Beyond it [`crate::Device::publish`] fails with [`Error::QueueFull`] and the new
    /// message is not queued; queued messages are never dropped.
    #[must_use]
    pub fn outbox_capacity(mut self, capacity: usize) -> Self {
        self.outbox_capacity = capacity;
        self
    }

    /// Largest MQTT packet sent or accepted (default 512 KiB).
    #[must_use]
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.max_packet_size = bytes;
        self
    }

    /// Checks the options the platform would refuse, before any connection is made.
    ///
    /// # Errors
    /// [`Error::Options`] for a keepalive outside 30..=1200 s, a zero capacity or timeout, a
    /// backoff whose maximum is below its start, or a pre-auth URL that is not
    /// `http[s]://host[:port][/path]`.
    pub fn validate(&self) -> Result<()> {
        if let Login::PreAuth { auth_url, .. } = &self.login {
            crate::url::BaseUrl::parse(auth_url)?;
        }
        let secs = self.keepalive.as_secs();
        let in_range = u16::try_from(secs).is_ok_and(|s| KEEPALIVE_RANGE.contains(&s));
        if !in_range || self.keepalive.subsec_nanos() != 0 {
            return Err(Error::Options(format!(
                "keepalive {:?} is outside {}..={} s: the platform would refuse the connection",
                self.keepalive,
                KEEPALIVE_RANGE.start(),
                KEEPALIVE_RANGE.end()
            )));
        }
        if self.event_capacity == 0 || self.outbox_capacity == 0 {
            return Err(Error::Options("queue capacities must be at least 1".into()));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.as_secs() == 0 {
            return Err(Error::Options(
                "timeouts must be positive (the connect timeout in whole seconds)".into(),
            ));
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(Error::Options("backoff needs 0 < initial <= max".into()));
        }
        if let RefusalPolicy::RetryEvery(d) = self.refusal
            && d.is_zero()
        {
            return Err(Error::Options(
                "the refusal retry interval must be positive".into(),
            ));
        }
        if self.max_packet_size < 1024 {
            return Err(Error::Options("max packet size must be at least 1 KiB".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DeviceOptions {
        let id = DeviceIdentity::new("pk", "dn", "very-secret").expect("valid identity");
        DeviceOptions::new(
            id,
            Endpoint::custom("127.0.0.1", Some(1883), false).expect("endpoint"),
        )
    }

    #[test]
    fn keepalive_outside_the_platform_range_is_refused_before_connecting() {
        assert!(options().validate().is_ok());
        for bad in [0, 29, 1201, 5000] {
            let e = options()
                .keepalive(Duration::from_secs(bad))
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("30..=1200"), "{e}");
        }
        assert!(
            options()
                .keepalive(Duration::from_millis(30_500))
                .validate()
                .is_err()
        );
        assert!(options().keepalive(Duration::from_secs(30)).validate().is_ok());
        assert!(options().keepalive(Duration::from_secs(1200)).validate().is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let text = format!("{:?}", options());
        assert!(!text.contains("very-secret"), "{text}");
    }

    #[test]
    fn profiles_become_options() {
        let p = DeviceProfile::from_toml(
            "product_key = \"pk\"\ndevice_name = \"dn\"\ndevice_secret = \"s\"\nhost = \"h\"\nport = 1999\n\
             tls = true\nca_file = \"ca.pem\"\nsign_method = \"hmacsha1\"\nclient_id = \"SN1\"\nkeepalive = 300\n",
        )
        .expect("profile");
        let o = DeviceOptions::from_profile(&p).expect("options");
        assert_eq!(
            (o.endpoint.host.as_str(), o.endpoint.port, o.endpoint.tls),
            ("h", 1999, true)
        );
        assert_eq!(o.trust, TrustAnchors::File("ca.pem".into()));
        assert_eq!(o.sign_method, SignMethod::HmacSha1);
        assert_eq!(o.client_id_prefix.as_deref(), Some("SN1"));
        assert_eq!(o.keepalive, Duration::from_secs(300));
        let p =
            DeviceProfile::from_toml("product_key = \"pk\"\ndevice_name = \"dn\"\ndevice_secret = \"s\"\n")
                .expect("profile");
        assert!(DeviceOptions::from_profile(&p).is_err());
        let p = DeviceProfile::from_toml(
            "product_key = \"pk\"\ndevice_name = \"dn\"\ndevice_secret = \"s\"\nregion = \"cn-shanghai\"\n",
        )
        .expect("profile");
        assert_eq!(
            DeviceOptions::from_profile(&p).expect("options").endpoint.host,
            "pk.iot-as-mqtt.cn-shanghai.aliyuncs.com"
        );
    }

    #[test]
    fn profile_settings_leave_the_identity_and_endpoint_alone() {
        let p = DeviceProfile::from_toml(
            "product_key = \"other\"\nhost = \"h\"\nsign_method = \"hmacmd5\"\nkeepalive = 90\n",
        )
        .expect("profile");
        let o = options().profile_settings(&p).expect("options");
        assert_eq!((o.product_key(), o.endpoint.host.as_str()), ("pk", "127.0.0.1"));
        assert_eq!(
            (o.sign_method, o.keepalive),
            (SignMethod::HmacMd5, Duration::from_secs(90))
        );
        assert_eq!((o.trust, o.client_id_prefix), (TrustAnchors::Aliyun, None));
    }

    #[test]
    fn a_profile_with_a_token_and_no_secret_logs_in_with_the_token() {
        let p = DeviceProfile::from_toml(
            "product_key = \"pk\"\ndevice_name = \"dn\"\nclient_id = \"pk.dn\"\ndevice_token = \"tok-9\"\nhost = \"h\"\n",
        )
        .expect("profile");
        let o = DeviceOptions::from_profile(&p).expect("options");
        match o.login() {
            Login::Token(t) => assert_eq!(
                (t.client_id.as_str(), t.device_token.as_str()),
                ("pk.dn", "tok-9")
            ),
            other => panic!("a token login expected, got {other:?}"),
        }
        assert!(o.identity().is_none());
        assert_eq!((o.product_key(), o.device_name()), ("pk", "dn"));
        assert!(!format!("{o:?}").contains("tok-9"));
        // With a secret too, the profile signs with the secret, as before.
        let both = DeviceProfile {
            device_secret: Some("s".into()),
            ..p
        };
        assert!(
            DeviceOptions::from_profile(&both)
                .expect("options")
                .identity()
                .is_some()
        );
    }

    #[test]
    fn client_id_params_replace_by_key() {
        let o = options().client_id_param("_v", "x").client_id_param("k", "v");
        assert!(o.extra_params.contains(&("_v".into(), "x".into())));
        assert!(o.extra_params.contains(&("k".into(), "v".into())));
        assert_eq!(o.extra_params.iter().filter(|(k, _)| k == "_v").count(), 1);
    }
}
