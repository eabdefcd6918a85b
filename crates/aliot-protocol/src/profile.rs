//! TOML device profiles: a device's identity and how it connects, in one file.
//!
//! ```toml
//! product_key = "a1B2c3D4e5F"
//! device_name = "light-01"
//! device_secret = "..."
//! # optional
//! host = "127.0.0.1"        # or region = "cn-shanghai", or instance_id = "iot-06z00..."
//! port = 1883
//! tls = false
//! ca_file = "ca.pem"
//! sign_method = "hmacsha256"
//! client_id = "SN1928339"   # clientId prefix
//! keepalive = 60
//! ```
//! camelCase keys (`productKey`, `deviceName`, `deviceSecret`), as the console shows them, are
//! accepted too.
//!
//! Dynamic registration (spec §5.2) adds two keys: `product_secret`, the key a device registers
//! with, and `device_token`, which a device registered without pre-registration logs in with
//! (together with `client_id`, the clientId the platform gave it):
//!
//! ```toml
//! product_key = "a1B2c3D4e5F"
//! device_name = "light-01"
//! client_id = "a1B2c3D4e5F.light-01"
//! device_token = "..."
//! host = "127.0.0.1"
//! ```
//!
//! [`DeviceProfile::to_toml`] writes a profile back (the keys it holds, snake_case).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::credentials::Endpoint;
use crate::error::{Error, Result};
use crate::identity::{DeviceIdentity, validate_device_name, validate_product_key};
use crate::register::{RegisteredWithToken, token_client_id};
use crate::sign::SignMethod;

/// A device profile read from TOML.
///
/// `Debug` never shows `device_secret`, `product_secret` or `device_token`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// productKey.
    #[serde(alias = "productKey")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_key: Option<String>,
    /// deviceName.
    #[serde(alias = "deviceName")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// deviceSecret (never shown by `Debug`).
    #[serde(alias = "deviceSecret")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<String>,
    /// productSecret, the key of dynamic registration (never shown by `Debug`).
    #[serde(alias = "productSecret")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_secret: Option<String>,
    /// deviceToken from registration without pre-registration (`/ext/regnwl`), the password of
    /// the `authType=connwl` login; its clientId is `client_id` (never shown by `Debug`).
    #[serde(alias = "deviceToken")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Region of a legacy public instance (`cn-shanghai`).
    #[serde(alias = "regionId")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Instance id of a new public or Enterprise instance.
    #[serde(alias = "instanceId")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// A custom host (the local hub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Whether to use TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// CA file for TLS (the hub's local CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// signmethod (`hmacsha1`, `hmacsha256`, `hmacmd5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_method: Option<String>,
    /// clientId prefix; for a token login, the clientId the platform gave with the token.
    #[serde(alias = "clientId")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Keepalive in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<u16>,
}

impl fmt::Debug for DeviceProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceProfile")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "product_secret",
                &self.product_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .field("region", &self.region)
            .field("instance_id", &self.instance_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("sign_method", &self.sign_method)
            .field("client_id", &self.client_id)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl DeviceProfile {
    /// Parses a profile from TOML text.
    ///
    /// # Errors
    /// [`Error::Profile`] with the TOML error (line, column, unknown key…); never the secret.
    pub fn from_toml(text: &str) -> Result<Self> {
        let p: DeviceProfile = toml::from_str(text).map_err(|e| Error::Profile(e.message().to_owned()))?;
        if let Some(m) = &p.sign_method {
            m.parse::<SignMethod>()?;
        }
        Ok(p)
    }

    /// The endpoint the profile names: its `host`, else its `instance_id`, else its `region`
    /// (for `product_key`), with its `port` when it gives one; `None` when it names none.
    ///
    /// # Errors
    /// A malformed host, instance id or region ([`Error::Endpoint`]).
    pub fn endpoint(&self, product_key: &str, tls: bool) -> Result<Option<Endpoint>> {
        Endpoint::named(
            product_key,
            self.host.as_deref(),
            self.instance_id.as_deref(),
            self.region.as_deref(),
            self.port,
            tls,
        )
    }

    /// The profile as TOML (the keys it holds, snake_case), for writing it to a file.
    ///
    /// # Errors
    /// [`Error::Profile`] if it cannot be written as TOML (not expected: every field is a string,
    /// a number or a boolean).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Profile(e.to_string()))
    }

    /// The token login the profile holds: `device_token` with `client_id` (default
    /// `{productKey}.{deviceName}`, [`token_client_id`]),
    /// `product_key` and `device_name`; `None` when it holds no `device_token`.
    ///
    /// # Errors
    /// [`Error::Profile`] naming a missing field, or [`Error::InvalidIdentity`].
    pub fn token_login(&self) -> Result<Option<RegisteredWithToken>> {
        let Some(token) = &self.device_token else {
            return Ok(None);
        };
        let product_key = self.field(&self.product_key, "product_key")?;
        let device_name = self.field(&self.device_name, "device_name")?;
        validate_product_key(&product_key)?;
        validate_device_name(&device_name)?;
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Profile(
                "device_token is empty or contains white space".into(),
            ));
        }
        Ok(Some(RegisteredWithToken {
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| token_client_id(&product_key, &device_name)),
            product_key,
            device_name,
            device_token: token.clone(),
        }))
    }

    fn field(&self, v: &Option<String>, name: &str) -> Result<String> {
        v.clone().ok_or_else(|| Error::Profile(format!("missing {name}")))
    }

    /// The identity, when the profile has all three fields.
    ///
    /// # Errors
    /// [`Error::Profile`] naming a missing field, or [`Error::InvalidIdentity`].
    pub fn identity(&self) -> Result<DeviceIdentity> {
        let need = |v: &Option<String>, name: &str| {
            v.clone().ok_or_else(|| Error::Profile(format!("missing {name}")))
        };
        DeviceIdentity::new(
            need(&self.product_key, "product_key")?,
            need(&self.device_name, "device_name")?,
            need(&self.device_secret, "device_secret")?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_accept_snake_and_camel_case() {
        let p = DeviceProfile::from_toml(
            "productKey = \"pk\"\ndevice_name = \"dn\"\ndeviceSecret = \"s\"\nport = 1\n",
        )
        .expect("parse");
        assert_eq!(p.identity().expect("identity").username(), "dn&pk");
        assert!(!format!("{p:?}").contains("\"s\""));
    }

    #[test]
    fn the_profile_names_its_endpoint_with_its_port() {
        let p = DeviceProfile::from_toml("region = \"cn-shanghai\"\nport = 8443\n").expect("parse");
        let e = p.endpoint("a1", true).expect("valid").expect("named");
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("a1.iot-as-mqtt.cn-shanghai.aliyuncs.com", 8443, true)
        );
        assert_eq!(DeviceProfile::default().endpoint("a1", false), Ok(None));
    }

    #[test]
    fn registration_keys_are_read_redacted_and_written_back() {
        let text = "productKey = \"pk\"\ndevice_name = \"dn\"\nproductSecret = \"ps-1\"\n\
                    device_token = \"tok-1\"\nhost = \"h\"\nport = 1\ntls = false\n";
        let p = DeviceProfile::from_toml(text).expect("parse");
        assert_eq!(p.product_secret.as_deref(), Some("ps-1"));
        let debug = format!("{p:?}");
        assert!(!debug.contains("ps-1") && !debug.contains("tok-1"), "{debug}");
        let login = p.token_login().expect("valid").expect("a token");
        assert_eq!(
            (login.client_id.as_str(), login.device_token.as_str()),
            ("pk.dn", "tok-1")
        );
        let written = p.to_toml().expect("toml");
        assert!(written.contains("product_key = \"pk\""), "{written}");
        assert!(!written.contains("region"), "absent keys are left out: {written}");
        assert_eq!(DeviceProfile::from_toml(&written).expect("read back"), p);
        let with_id = DeviceProfile {
            client_id: Some("given".into()),
            ..p.clone()
        };
        assert_eq!(
            with_id.token_login().expect("valid").expect("token").client_id,
            "given"
        );
        assert_eq!(DeviceProfile::default().token_login(), Ok(None));
        let nameless = DeviceProfile {
            device_name: None,
            ..p
        };
        assert!(nameless.token_login().is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(DeviceProfile::from_toml("product_kee = \"pk\"").is_err());
        assert!(DeviceProfile::from_toml("port = \"x\"").is_err());
        assert!(DeviceProfile::from_toml("sign_method = \"sha1\"").is_err());
        let e = DeviceProfile::from_toml("product_key = \"pk\"")
            .expect("parse")
            .identity()
            .unwrap_err();
        assert!(e.to_string().contains("device_name"));
    }
}
