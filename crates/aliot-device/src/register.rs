//! MQTT dynamic registration (spec §5.2, "一型一密"): a device that knows only its product's
//! productKey and productSecret obtains credentials of its own.
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

use aliot_protocol::register::registration_credentials;
pub use aliot_protocol::register::{Mode, Registered, RegisteredWithToken};
use aliot_protocol::{ConnackCode, DeviceIdentity, Endpoint};
use rand::distr::{Alphanumeric, SampleString as _};
use rumqttc::{AsyncClient, ConnectionError, Packet};

use crate::error::{Error, Result};
use crate::options::{DeviceOptions, Login, TrustAnchors};

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
        }
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

    /// The TLS server name (SNI) when it differs from the endpoint's host.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// How long the whole registration may take: connection, CONNACK and the answer (default
    /// 10 s).
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
    let (mut mqtt, address) = crate::transport::mqtt_options(
        creds.client_id,
        &options.endpoint,
        options.server_name.as_deref(),
        &options.trust,
    )?;
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
