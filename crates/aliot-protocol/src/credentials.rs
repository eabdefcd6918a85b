//! Everything a device needs to connect: endpoint, clientId, username, password (spec §1, §2).

use std::fmt;

use crate::client_id::{ClientId, SecureMode};
use crate::error::{Error, Result};
use crate::identity::DeviceIdentity;
use crate::sign::{HexCase, SignMethod, sign_content};

/// Where the device connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection uses TLS.
    pub tls: bool,
}

impl Endpoint {
    /// The legacy public instance host `{pk}.iot-as-mqtt.{region}.aliyuncs.com`, port 1883 (TCP)
    /// or 443 (TLS).
    ///
    /// # Errors
    /// An empty or malformed region id.
    pub fn region(product_key: &str, region: &str, tls: bool) -> Result<Self> {
        check_label("region", region)?;
        Ok(Self {
            host: format!("{product_key}.iot-as-mqtt.{region}.aliyuncs.com"),
            port: if tls { 443 } else { 1883 },
            tls,
        })
    }

    /// A new public or Enterprise instance `{instanceId}.mqtt.iothub.aliyuncs.com`, port 1883
    /// (TCP) or 8883 (TLS, Aliyun IoT Root CA).
    ///
    /// # Errors
    /// An empty or malformed instance id.
    pub fn instance(instance_id: &str, tls: bool) -> Result<Self> {
        check_label("instance id", instance_id)?;
        Ok(Self {
            host: format!("{instance_id}.mqtt.iothub.aliyuncs.com"),
            port: if tls { 8883 } else { 1883 },
            tls,
        })
    }

    /// Any host (the local hub, a proxy): port 1883 (TCP) or 8883 (TLS) unless given.
    ///
    /// # Errors
    /// An empty host.
    pub fn custom(host: &str, port: Option<u16>, tls: bool) -> Result<Self> {
        if host.trim().is_empty() {
            return Err(Error::Endpoint("the host is empty".into()));
        }
        Ok(Self {
            host: host.to_owned(),
            port: port.unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
        })
    }

    /// The endpoint a user names with one of a host, an instance id or a region (the first one
    /// given, in that order), or `None` when none is given; `port` replaces the default port.
    /// This is how a profile's `host`/`instance_id`/`region` keys and the command line's
    /// `--host`/`--instance-id`/`--region` flags read.
    ///
    /// ```
    /// use aliot_protocol::Endpoint;
    /// let e = Endpoint::named("a1", None, Some("iot-06z00abc"), Some("cn-shanghai"), None, true)?;
    /// assert_eq!(e.map(|e| (e.host, e.port)), Some(("iot-06z00abc.mqtt.iothub.aliyuncs.com".into(), 8883)));
    /// assert_eq!(Endpoint::named("a1", None, None, None, Some(1), false)?, None);
    /// # Ok::<(), aliot_protocol::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of [`Endpoint::custom`], [`Endpoint::instance`] and [`Endpoint::region`].
    pub fn named(
        product_key: &str,
        host: Option<&str>,
        instance_id: Option<&str>,
        region: Option<&str>,
        port: Option<u16>,
        tls: bool,
    ) -> Result<Option<Self>> {
        let mut endpoint = match (host, instance_id, region) {
            (Some(h), _, _) => Self::custom(h, port, tls)?,
            (None, Some(i), _) => Self::instance(i, tls)?,
            (None, None, Some(r)) => Self::region(product_key, r, tls)?,
            (None, None, None) => return Ok(None),
        };
        if let Some(port) = port {
            endpoint.port = port;
        }
        Ok(Some(endpoint))
    }

    /// The `securemode` matching this transport: 2 for TLS, 3 for TCP.
    pub fn secure_mode(&self) -> SecureMode {
        if self.tls {
            SecureMode::Tls
        } else {
            SecureMode::Tcp
        }
    }
}

fn check_label(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::Endpoint(format!("the {what} is empty")));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(Error::Endpoint(format!("the {what} {s:?} contains {c:?}")));
    }
    Ok(())
}

/// How to sign: the choices a device makes when it builds its CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// clientId prefix; `None` → `{productKey}.{deviceName}`.
    pub client_id_prefix: Option<String>,
    /// `timestamp` parameter, copied verbatim into the sign content; `None` → no timestamp.
    /// (This crate reads no clock: the caller passes the current time.)
    pub timestamp: Option<String>,
    /// HMAC algorithm, declared as `signmethod`.
    pub sign_method: SignMethod,
    /// Declared `securemode` (3 TCP, 2 TLS).
    pub secure_mode: SecureMode,
    /// Extra clientId parameters after `securemode`, `signmethod`, `timestamp` (e.g. `_ss=1`,
    /// `ext=1`, `_v=aliot-0.1.0`).
    pub extra_params: Vec<(String, String)>,
    /// Hex case of the password.
    pub hex_case: HexCase,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            client_id_prefix: None,
            timestamp: None,
            sign_method: SignMethod::HmacSha1,
            secure_mode: SecureMode::Tcp,
            extra_params: Vec::new(),
            hex_case: HexCase::Lower,
        }
    }
}

/// The CONNECT fields of a signed device.
///
/// `Debug` redacts the password (it is as good as the secret for as long as the platform accepts it).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The full MQTT clientId, `prefix|securemode=..,signmethod=..,timestamp=..|`.
    pub client_id: String,
    /// `deviceName&productKey`.
    pub username: String,
    /// Hex HMAC.
    pub password: String,
    /// The string that was signed.
    pub sign_content: String,
    /// The algorithm.
    pub sign_method: SignMethod,
    /// The declared securemode.
    pub secure_mode: SecureMode,
    /// The timestamp, if any.
    pub timestamp: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("sign_method", &self.sign_method)
            .field("secure_mode", &self.secure_mode)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// Signs a device's CONNECT (spec §1.2).
///
/// ```
/// use aliot_protocol::{sign, DeviceIdentity, SignOptions};
/// let id = DeviceIdentity::new("a14Xib5kdYd", "light1983432", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq")?;
/// let creds = sign(&id, &SignOptions {
///     client_id_prefix: Some("SN1928339".into()),
///     timestamp: Some("1539421321846".into()),
///     ..SignOptions::default()
/// })?;
/// assert_eq!(creds.client_id, "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|");
/// assert_eq!(creds.username, "light1983432&a14Xib5kdYd");
/// assert_eq!(creds.password, "b2488041f64f425016b467ee1c94959ebd592ad1");
/// # Ok::<(), aliot_protocol::Error>(())
/// ```
///
/// # Errors
/// A prefix or extra parameter that cannot be encoded in the clientId grammar, or a timestamp
/// containing `,` or `|`.
pub fn sign(identity: &DeviceIdentity, options: &SignOptions) -> Result<Credentials> {
    let prefix = match &options.client_id_prefix {
        Some(p) => p.clone(),
        None => format!("{}.{}", identity.product_key(), identity.device_name()),
    };
    let mut cid = ClientId::new(prefix)?
        .with_param("securemode", options.secure_mode.to_string())?
        .with_param("signmethod", options.sign_method.as_str())?;
    if let Some(ts) = &options.timestamp {
        cid.set_param("timestamp", ts.as_str())?;
    }
    for (k, v) in &options.extra_params {
        if matches!(k.as_str(), "securemode" | "signmethod" | "timestamp") {
            return Err(Error::ClientId(crate::error::ClientIdError::DuplicateKey(
                k.clone(),
            )));
        }
        cid.set_param(k.as_str(), v.as_str())?;
    }
    let content = sign_content(
        cid.prefix(),
        identity.device_name(),
        identity.product_key(),
        options.timestamp.as_deref(),
    );
    let password = options.sign_method.hex(
        identity.device_secret().as_bytes(),
        content.as_bytes(),
        options.hex_case,
    );
    Ok(Credentials {
        client_id: cid.to_string(),
        username: identity.username(),
        password,
        sign_content: content,
        sign_method: options.sign_method,
        secure_mode: options.secure_mode,
        timestamp: options.timestamp.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prefix_is_product_key_dot_device_name() {
        let id = DeviceIdentity::new("pk1", "dn1", "s").expect("valid");
        let c = sign(&id, &SignOptions::default()).expect("sign");
        assert_eq!(c.client_id, "pk1.dn1|securemode=3,signmethod=hmacsha1|");
        assert_eq!(c.sign_content, "clientIdpk1.dn1deviceNamedn1productKeypk1");
        assert!(!format!("{c:?}").contains(&c.password));
    }

    #[test]
    fn endpoints_follow_the_platform_hosts() {
        let e = Endpoint::region("a1", "cn-shanghai", false).expect("ok");
        assert_eq!(
            (e.host.as_str(), e.port),
            ("a1.iot-as-mqtt.cn-shanghai.aliyuncs.com", 1883)
        );
        let e = Endpoint::instance("iot-06z00abc", true).expect("ok");
        assert_eq!(
            (e.host.as_str(), e.port),
            ("iot-06z00abc.mqtt.iothub.aliyuncs.com", 8883)
        );
        assert!(Endpoint::region("a1", "cn/shanghai", false).is_err());
        assert_eq!(
            Endpoint::custom("127.0.0.1", Some(1999), false).expect("ok").port,
            1999
        );
    }

    #[test]
    fn a_named_endpoint_takes_the_host_then_the_instance_then_the_region() {
        let named = |h, i, r, port| {
            Endpoint::named("a1", h, i, r, port, false)
                .expect("ok")
                .map(|e| (e.host, e.port))
        };
        let host = Some("127.0.0.1");
        let (instance, region) = (Some("iot-06z00abc"), Some("cn-shanghai"));
        assert_eq!(
            named(host, instance, region, None),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            named(None, instance, region, Some(1999)),
            Some(("iot-06z00abc.mqtt.iothub.aliyuncs.com".into(), 1999))
        );
        assert_eq!(
            named(None, None, region, None),
            Some(("a1.iot-as-mqtt.cn-shanghai.aliyuncs.com".into(), 1883))
        );
        assert_eq!(named(None, None, None, Some(1)), None);
        assert!(Endpoint::named("a1", None, None, Some("cn/x"), None, false).is_err());
    }

    #[test]
    fn extra_params_cannot_override_signed_ones() {
        let id = DeviceIdentity::new("pk1", "dn1", "s").expect("valid");
        let o = SignOptions {
            extra_params: vec![("timestamp".into(), "1".into())],
            ..SignOptions::default()
        };
        assert!(sign(&id, &o).is_err());
    }
}
