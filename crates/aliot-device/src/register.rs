//! Dynamic registration over MQTT (spec §5.2, "一型一密") and HTTPS (spec §5.1): a device that
//! knows only its product's productKey and productSecret obtains credentials of its own.
//!
//! [`register_https`] posts `/auth/register/device` to the auth service and serves only devices
//! created beforehand ([`Mode::PreRegistered`]); the rest of this page is about MQTT, which
//! serves both modes.
//!
//! [`register_mqtt`] connects once with a registering CONNECT (clientId
//! `{dn}.{pk}|random=…,authType=register|regnwl,securemode=…,signmethod=hmacsha256|`, a fresh
//! 15-character random from the operating system's CSPRNG, the password signed with the
//! productSecret), waits for the one message the platform pushes without any SUBSCRIBE, and
//! returns it:
//!
//! - [`Mode::PreRegistered`] (`authType=register`): the device was created beforehand; the
//!   answer is its new deviceSecret ([`Registration::Secret`]). Only the last secret obtained is
//!   valid, until the device first logs in (it is then *activated* and cannot register again).
//! - [`Mode::NoPreRegistration`] (`authType=regnwl`): the platform creates the device; the answer
//!   is a clientId and a deviceToken for the `authType=connwl` login ([`Registration::Token`],
//!   [`crate::DeviceOptions::with_token`]).
//!
//! **The caller persists the result**: the platform answers once, and a device that has logged
//! in with it cannot register again. Write it somewhere safe (the `aliot device register --save`
//! profile is written with mode 0600) before connecting with it. The secret and the token are
//! never logged, and `Debug` redacts them.
//!
//! The platform requires TLS for registration (`securemode=2`); over plain TCP (the local hub)
//! the clientId declares `securemode=3`.
//!
//! ```no_run
//! use aliot_device::register::{register_mqtt, Mode, RegisterOptions};
//! use aliot_device::Device;
//! use aliot_protocol::Endpoint;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::custom("127.0.0.1", Some(1883), false)?; // `aliot hub` on this machine
//! let options = RegisterOptions::new(endpoint.clone(), "a1B2c3D4e5F", "product-secret", "lamp-7", Mode::NoPreRegistration);
//! let registration = register_mqtt(&options).await?;
//! std::fs::write("lamp-7.json", registration.to_json())?; // persist it first
//! let (device, _events) = Device::connect(registration.device_options(endpoint)?).await?;
//! device.post_property(serde_json::json!({"LightSwitch": 1})).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aliot_protocol::http_auth::{Answer as AuthAnswer, REGISTER_PATH, default_auth_url};
use aliot_protocol::register::registration_credentials;
pub use aliot_protocol::register::{Mode, Registered, RegisteredWithToken};
use aliot_protocol::sign::{dynreg_http_body, dynreg_sign};
use aliot_protocol::{ConnackCode, DeviceIdentity, Endpoint, HexCase, SecureMode, SignMethod};
use rand::distr::{Alphanumeric, SampleString as _};
use rumqttc::{AsyncClient, ConnectionError, Packet};

use crate::error::{Error, Result};
use crate::http;
use crate::options::{DeviceOptions, Login, TrustAnchors};
use crate::url::BaseUrl;

/// Length of the registration's `random` (as the official Python SDK sends it).
pub const RANDOM_LEN: usize = 15;

/// What a registration obtained. `Debug` redacts the secret and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registration {
    /// [`Mode::PreRegistered`]: the device's new deviceSecret (`/ext/register`).
    Secret(Registered),
    /// [`Mode::NoPreRegistration`]: the clientId and deviceToken of the token login
    /// (`/ext/regnwl`).
    Token(RegisteredWithToken),
}

impl Registration {
    /// The productKey.
    pub fn product_key(&self) -> &str {
        match self {
            Registration::Secret(r) => &r.product_key,
            Registration::Token(r) => &r.product_key,
        }
    }

    /// The deviceName.
    pub fn device_name(&self) -> &str {
        match self {
            Registration::Secret(r) => &r.device_name,
            Registration::Token(r) => &r.device_name,
        }
    }

    /// The platform's answer as it published it: `{"productKey","deviceName","deviceSecret"}` or
    /// `{"clientId","productKey","deviceName","deviceToken"}` (secret or token included).
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            Registration::Secret(r) => r.to_json(),
            Registration::Token(r) => r.to_json(),
        }
    }

    /// How the device logs in with what it obtained.
    ///
    /// # Errors
    /// [`Error::Protocol`] when the platform's deviceSecret is not a valid one.
    pub fn login(&self) -> Result<Login> {
        Ok(match self {
            Registration::Secret(r) => Login::Secret(DeviceIdentity::new(
                r.product_key.as_str(),
                r.device_name.as_str(),
                r.device_secret.as_str(),
            )?),
            Registration::Token(r) => Login::Token(r.clone()),
        })
    }

    /// Device options that log in with what was obtained, at `endpoint` (the other settings are
    /// [`DeviceOptions::new`]'s defaults).
    ///
    /// # Errors
    /// As [`Registration::login`].
    pub fn device_options(&self, endpoint: Endpoint) -> Result<DeviceOptions> {
        Ok(DeviceOptions::with_login(self.login()?, endpoint))
    }
}

/// What to register, where, and how long to wait. `Debug` never shows the productSecret.
#[derive(Clone)]
pub struct RegisterOptions {
    endpoint: Endpoint,
    product_key: String,
    product_secret: String,
    device_name: String,
    mode: Mode,
    trust: TrustAnchors,
    server_name: Option<String>,
    timeout: Duration,
    register_url: Option<String>,
}

impl fmt::Debug for RegisterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterOptions")
            .field("endpoint", &self.endpoint)
            .field("product_key", &self.product_key)
            .field("product_secret", &"<redacted>")
            .field("device_name", &self.device_name)
            .field("mode", &self.mode)
            .field("trust", &self.trust)
            .field("server_name", &self.server_name)
            .field("timeout", &self.timeout)
            .field("register_url", &self.register_url)
            .finish()
    }
}

impl RegisterOptions {
    /// Registers `device_name` of `product_key` with the productSecret at `endpoint`; the
    /// built-in Aliyun root CAs when the endpoint uses TLS; at most 10 s in all.
    pub fn new(
        endpoint: Endpoint,
        product_key: impl Into<String>,
        product_secret: impl Into<String>,
        device_name: impl Into<String>,
        mode: Mode,
    ) -> Self {
        Self {
            endpoint,
            product_key: product_key.into(),
            product_secret: product_secret.into(),
            device_name: device_name.into(),
            mode,
            trust: TrustAnchors::Aliyun,
            server_name: None,
            timeout: Duration::from_secs(10),
            register_url: None,
        }
    }

    /// The base URL of the auth service [`register_https`] posts to: `http[s]://host[:port]`
    /// (`http://127.0.0.1:8081` or `https://localhost:8443` for `aliot hub
    /// --device-http[s]`). Default: the platform's, `https://iot-auth.{region}.aliyuncs.com`, the
    /// region taken from the endpoint's host `{pk}.iot-as-mqtt.{region}.aliyuncs.com`, else
    /// cn-shanghai ([`aliot_protocol::http_auth::default_auth_url`]).
    #[must_use]
    pub fn register_url(mut self, url: impl Into<String>) -> Self {
        self.register_url = Some(url.into());
        self
    }

    /// The base URL [`register_https`] posts to (set, or the default).
    pub fn https_url(&self) -> String {
        self.register_url
            .clone()
            .unwrap_or_else(|| default_auth_url(&self.endpoint.host))
    }

    /// Which certificates TLS trusts (default: the built-in Aliyun root CAs).
    #[must_use]
    pub fn trust(mut self, trust: TrustAnchors) -> Self {
        self.trust = trust;
        self
    }

    /// Trusts the certificates of a PEM file (the hub's local CA).
    #[must_use]
    pub fn ca_file(self, path: impl Into<PathBuf>) -> Self {
        self.trust(TrustAnchors::File(path.into()))
    }

    /// The TLS server name (SNI) when it differs from the endpoint's host (MQTT only: over HTTPS
    /// the name verified is the URL's host).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// How long the whole registration may take: connection, CONNACK and the answer, or the
    /// HTTPS exchange (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The registration mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// A registration `random`: [`RANDOM_LEN`] letters and digits from the thread's CSPRNG
/// (ChaCha, seeded by the operating system).
fn random() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), RANDOM_LEN)
}

/// Registers a device over MQTT (spec §5.2) and returns what the platform answered; see the
/// [module documentation](self). One connection, no SUBSCRIBE, no retry: the connection is
/// dropped once the answer is in (the platform closes it too).
///
/// # Errors
/// - [`Error::RegistrationRefused`]: a CONNACK refusal, with the registration's cause and fix
///   (4: wrong productSecret, unknown product, or a `register` of a device nobody created; 5:
///   the product's dynamic registration is off, the device is already activated or disabled).
/// - [`Error::RegistrationTimeout`]: no answer within [`RegisterOptions::timeout`].
/// - [`Error::Connect`], [`Error::Tls`]: the platform could not be reached, or closed the
///   connection without answering.
/// - [`Error::BadReply`]: an answer that is not the platform's JSON, or for another device.
/// - [`Error::Protocol`], [`Error::Options`]: invalid productKey, deviceName or productSecret,
///   a zero timeout, no tokio runtime.
pub async fn register_mqtt(options: &RegisterOptions) -> Result<Registration> {
    if options.timeout.is_zero() {
        return Err(Error::Options("the registration timeout must be positive".into()));
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Options("aliot-device needs a tokio runtime".into()));
    }
    let creds = registration_credentials(
        &options.product_key,
        &options.device_name,
        &options.product_secret,
        &random(),
        options.mode,
        options.endpoint.secure_mode(),
    )?;
    let (mut mqtt, dial) = crate::transport::mqtt_options(
        creds.client_id,
        &options.endpoint,
        options.server_name.as_deref(),
        &options.trust,
    )?;
    let address = dial.address();
    mqtt.set_credentials(creds.username, creds.password);
    mqtt.set_keep_alive(60);
    let (client, mut eventloop) = AsyncClient::builder(mqtt)
        .try_build()
        .map_err(|e| Error::Options(e.to_string()))?;
    let connect_timeout = options.timeout.max(Duration::from_secs(1));
    eventloop.set_network_options(crate::transport::network_options(connect_timeout));
    let topic = options.mode.answer_topic();
    tracing::debug!(
        product_key = %options.product_key,
        device_name = %options.device_name,
        auth_type = options.mode.auth_type(),
        endpoint = %address,
        "registering"
    );

    let exchange = async {
        let mut accepted = false;
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => accepted = true,
                Ok(rumqttc::Event::Incoming(Packet::Publish(p))) if p.topic.as_ref() == topic.as_bytes() => {
                    return answer(options, topic, &p.payload);
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                    tracing::debug!(topic = %String::from_utf8_lossy(&p.topic), "message ignored while registering");
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(rc)) => {
                    return Err(Error::RegistrationRefused {
                        code: ConnackCode::from_code(rc as u8).unwrap_or(ConnackCode::ServerUnavailable),
                    });
                }
                Err(ConnectionError::Tls(e)) => return Err(Error::Tls(format!("{address}: {e}"))),
                Err(e) => {
                    // The platform closes the connection right after its answer; rumqttc may
                    // read both at once and report the close before handing the answer out,
                    // which then waits in its queue of events.
                    let queued = eventloop.state.events.drain(..).find_map(|event| match event {
                        rumqttc::Event::Incoming(Packet::Publish(p))
                            if p.topic.as_ref() == topic.as_bytes() =>
                        {
                            Some(p.payload)
                        }
                        _ => None,
                    });
                    if let Some(payload) = queued {
                        return answer(options, topic, &payload);
                    }
                    let reason = if accepted {
                        format!(
                            "the platform accepted the registration but closed the connection without answering on {topic}: {e}"
                        )
                    } else {
                        e.to_string()
                    };
                    return Err(Error::Connect {
                        endpoint: address.clone(),
                        reason,
                    });
                }
            }
        }
    };
    let outcome = tokio::time::timeout(options.timeout, exchange).await;
    // Dropping the client and the event loop closes the socket: the exchange is over.
    drop(client);
    let registration = outcome.map_err(|_| Error::RegistrationTimeout {
        topic: topic.to_owned(),
        timeout: options.timeout,
    })??;
    tracing::info!(
        product_key = %registration.product_key(),
        device_name = %registration.device_name(),
        "registered"
    );
    Ok(registration)
}

/// Registers a device created beforehand over HTTPS (spec §5.1): one
/// `POST {url}/auth/register/device` ([`RegisterOptions::register_url`]) with the form
/// `productKey, deviceName, random, sign, signMethod=hmacsha256` signed with the productSecret,
/// over TLS for an `https://` URL (trusting [`RegisterOptions::trust`], verifying the URL's
/// host). The platform answers the device's new deviceSecret ([`Registration::Secret`]); as over
/// MQTT, **persist it** before logging in with it.
///
/// Only [`Mode::PreRegistered`]: the platform has no HTTPS registration without
/// pre-registration (register those over MQTT, [`register_mqtt`]).
///
/// ```no_run
/// use aliot_device::register::{register_https, Mode, RegisterOptions};
/// use aliot_protocol::Endpoint;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let endpoint = Endpoint::custom("127.0.0.1", Some(1883), false)?; // `aliot hub` on this machine
/// let options = RegisterOptions::new(endpoint, "a1B2c3D4e5F", "product-secret", "lamp-7", Mode::PreRegistered)
///     .register_url("http://127.0.0.1:8081"); // `aliot hub --device-http 127.0.0.1:8081`
/// let registration = register_https(&options).await?;
/// std::fs::write("lamp-7.json", registration.to_json())?; // persist it first
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// - [`Error::RegistrationRejected`]: the platform's refusal, with its code, meaning and fix
///   (6288 dynamic registration off, 6289 already activated, 6292 sign method, 6600 signature,
///   460 parameters or a device not created beforehand).
/// - [`Error::Connect`], [`Error::Tls`]: the service could not be reached, did not answer
///   within [`RegisterOptions::timeout`], or answered more than 16 KiB.
/// - [`Error::BadReply`]: an answer that is not the platform's JSON, or for another device.
/// - [`Error::Options`], [`Error::Protocol`]: [`Mode::NoPreRegistration`], a bad URL, invalid
///   productKey, deviceName or productSecret, a zero timeout.
pub async fn register_https(options: &RegisterOptions) -> Result<Registration> {
    if options.mode == Mode::NoPreRegistration {
        return Err(Error::Options(
            "HTTPS dynamic registration serves only devices created beforehand (the platform has no \
             HTTPS registration without pre-registration): register over MQTT instead"
                .into(),
        ));
    }
    if options.timeout.is_zero() {
        return Err(Error::Options("the registration timeout must be positive".into()));
    }
    let (pk, dn, ps) = (
        &options.product_key,
        &options.device_name,
        &options.product_secret,
    );
    let random = random();
    // Checks productKey, deviceName and productSecret as the MQTT registration does.
    registration_credentials(pk, dn, ps, &random, options.mode, SecureMode::Tls)?;
    let base = BaseUrl::parse(&options.https_url())?;
    let method = SignMethod::HmacSha256;
    let sign = dynreg_sign(method, ps, dn, pk, &random, HexCase::Lower);
    let body = dynreg_http_body(pk, dn, &random, method, &sign);
    tracing::debug!(product_key = %pk, device_name = %dn, url = %base.address(), "registering over HTTPS");
    let reply = http::post_form(&base, REGISTER_PATH, &body, &options.trust, options.timeout).await?;
    let data = auth_answer(REGISTER_PATH, &reply).and_then(|a| {
        if a.code == 200 {
            a.data.ok_or_else(|| Error::BadReply {
                topic: REGISTER_PATH.into(),
                reason: "code 200 without data".into(),
            })
        } else {
            Err(Error::RegistrationRejected {
                code: a.auth_code(),
                message: a.message,
            })
        }
    })?;
    let payload = serde_json::to_vec(&data).map_err(|e| Error::BadReply {
        topic: REGISTER_PATH.into(),
        reason: e.to_string(),
    })?;
    let registration = answer(options, REGISTER_PATH, &payload)?;
    tracing::info!(product_key = %pk, device_name = %dn, "registered over HTTPS");
    Ok(registration)
}

/// The auth service's `{"code","message","data"}` in an HTTP answer (status 200).
pub(crate) fn auth_answer(path: &str, reply: &http::Answer) -> Result<AuthAnswer> {
    let bad = |reason: String| Error::BadReply {
        topic: path.to_owned(),
        reason,
    };
    if reply.status != 200 {
        let text = String::from_utf8_lossy(&reply.body);
        let text: String = text.chars().take(200).collect();
        return Err(bad(format!("HTTP status {}: {text}", reply.status)));
    }
    AuthAnswer::parse(&reply.body).map_err(|e| bad(format!("not the auth service's JSON: {e}")))
}

/// Reads the platform's answer and checks that it is for this device.
fn answer(options: &RegisterOptions, topic: &str, payload: &[u8]) -> Result<Registration> {
    let bad = |reason: String| Error::BadReply {
        topic: topic.to_owned(),
        reason,
    };
    let registration = match options.mode {
        Mode::PreRegistered => {
            Registration::Secret(Registered::parse(payload).map_err(|e| bad(e.to_string()))?)
        }
        Mode::NoPreRegistration => {
            Registration::Token(RegisteredWithToken::parse(payload).map_err(|e| bad(e.to_string()))?)
        }
    };
    if registration.product_key() != options.product_key || registration.device_name() != options.device_name
    {
        return Err(bad(format!(
            "the answer is for {}/{}, not {}/{}",
            registration.product_key(),
            registration.device_name(),
            options.product_key,
            options.device_name
        )));
    }
    Ok(registration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randoms_are_fifteen_alphanumerics_and_differ() {
        let (a, b) = (random(), random());
        assert_eq!(a.len(), RANDOM_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    fn options(mode: Mode) -> RegisterOptions {
        let endpoint = Endpoint::custom("127.0.0.1", Some(1), false).expect("endpoint");
        RegisterOptions::new(endpoint, "pk", "product-s3cret", "dn", mode)
    }

    #[test]
    fn answers_are_read_and_checked_against_the_device() {
        let secret = br#"{"productKey":"pk","deviceName":"dn","deviceSecret":"s"}"#;
        let r = answer(&options(Mode::PreRegistered), "/ext/register", secret).expect("answer");
        assert!(matches!(&r, Registration::Secret(s) if s.device_secret == "s"));
        assert!(matches!(r.login(), Ok(Login::Secret(_))));
        let other = br#"{"productKey":"pk","deviceName":"other","deviceSecret":"s"}"#;
        let e = answer(&options(Mode::PreRegistered), "/ext/register", other).unwrap_err();
        assert!(e.to_string().contains("pk/other"), "{e}");
        let e = answer(&options(Mode::NoPreRegistration), "/ext/regnwl", secret).unwrap_err();
        assert!(matches!(e, Error::BadReply { .. }), "{e}");
        let token = br#"{"clientId":"pk.dn","productKey":"pk","deviceName":"dn","deviceToken":"t0k"}"#;
        let r = answer(&options(Mode::NoPreRegistration), "/ext/regnwl", token).expect("answer");
        assert!(!format!("{r:?}").contains("t0k"));
        assert_eq!(r.to_json(), token.to_vec());
    }

    #[test]
    fn debug_never_shows_the_product_secret() {
        assert!(!format!("{:?}", options(Mode::PreRegistered)).contains("s3cret"));
    }
}
