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

use std::fmt;

use serde::Deserialize;

use crate::credentials::Endpoint;
use crate::error::{Error, Result};
use crate::identity::DeviceIdentity;
use crate::sign::SignMethod;

/// A device profile read from TOML.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// productKey.
    #[serde(alias = "productKey")]
    pub product_key: Option<String>,
    /// deviceName.
    #[serde(alias = "deviceName")]
    pub device_name: Option<String>,
    /// deviceSecret (never shown by `Debug`).
    #[serde(alias = "deviceSecret")]
    pub device_secret: Option<String>,
    /// Region of a legacy public instance (`cn-shanghai`).
    #[serde(alias = "regionId")]
    pub region: Option<String>,
    /// Instance id of a new public or Enterprise instance.
    #[serde(alias = "instanceId")]
    pub instance_id: Option<String>,
    /// A custom host (the local hub).
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Whether to use TLS.
    pub tls: Option<bool>,
    /// CA file for TLS (the hub's local CA).
    pub ca_file: Option<String>,
    /// signmethod (`hmacsha1`, `hmacsha256`, `hmacmd5`).
    pub sign_method: Option<String>,
    /// clientId prefix.
    #[serde(alias = "clientId")]
    pub client_id: Option<String>,
    /// Keepalive in seconds.
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
