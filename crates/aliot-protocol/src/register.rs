//! What dynamic registration answers (spec §5.1, §5.2): the topics and payloads of MQTT
//! dynamic registration, and the clientId of the token login that follows `regnwl`.
//!
//! The signature of a registration is [`dynreg_sign`](crate::sign::dynreg_sign); the platform's
//! verdict on a registering CONNECT is [`AuthType`](crate::auth::AuthType).
//!
//! ```
//! use aliot_protocol::register::{Registered, REGISTER_TOPIC};
//! let answer = Registered {
//!     product_key: "a1Lamp".into(),
//!     device_name: "lamp-7".into(),
//!     device_secret: "s3cr3t".into(),
//! };
//! assert_eq!(REGISTER_TOPIC, "/ext/register");
//! let json = answer.to_json();
//! assert_eq!(Registered::parse(&json)?, answer);
//! assert!(!format!("{answer:?}").contains("s3cr3t"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the platform answers `authType=register` (no SUBSCRIBE needed).
pub const REGISTER_TOPIC: &str = "/ext/register";

/// Where the platform answers `authType=regnwl` (no SUBSCRIBE needed).
pub const REGNWL_TOPIC: &str = "/ext/regnwl";

/// The answer to a registration of a device registered beforehand (`/ext/register`, and the
/// `data` of HTTPS `/auth/register/device`): its new deviceSecret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The new deviceSecret (the only valid one from now on).
    pub device_secret: String,
}

/// The answer to a registration without pre-registration (`/ext/regnwl`): the clientId and
/// deviceToken of the `authType=connwl` login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredWithToken {
    /// The clientId prefix of the token login ([`connwl_client_id`]).
    pub client_id: String,
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The deviceToken, the password of the token login, verbatim.
    pub device_token: String,
}

macro_rules! json_answer {
    ($t:ty) => {
        impl $t {
            /// The JSON the platform publishes.
            pub fn to_json(&self) -> Vec<u8> {
                // A struct of strings always serializes.
                serde_json::to_vec(self).unwrap_or_default()
            }

            /// Reads the JSON the platform publishes (unknown fields are ignored).
            ///
            /// # Errors
            /// When it is not such a JSON object.
            pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
                serde_json::from_slice(json)
            }
        }
    };
}
json_answer!(Registered);
json_answer!(RegisteredWithToken);

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field("device_secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for RegisteredWithToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredWithToken")
            .field("client_id", &self.client_id)
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field("device_token", &"<redacted>")
            .finish()
    }
}

/// The clientId prefix the platform gives a device registered without pre-registration:
/// `{productKey}.{deviceName}`.
pub fn token_client_id(product_key: &str, device_name: &str) -> String {
    format!("{product_key}.{device_name}")
}

/// The MQTT clientId of the token login after `regnwl` (spec §5.2):
/// `{clientId}|authType=connwl,securemode=-2,_ss=1,ext=3|`; username `deviceName&productKey`,
/// password the deviceToken verbatim.
pub fn connwl_client_id(client_id: &str) -> String {
    format!("{client_id}|authType=connwl,securemode=-2,_ss=1,ext=3|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answers_have_the_platforms_field_names() {
        let a = RegisteredWithToken {
            client_id: "pk.dn".into(),
            product_key: "pk".into(),
            device_name: "dn".into(),
            device_token: "tok".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&a.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"clientId":"pk.dn","productKey":"pk","deviceName":"dn","deviceToken":"tok"})
        );
        assert!(!format!("{a:?}").contains("tok\""));
        assert_eq!(
            connwl_client_id("pk.dn"),
            "pk.dn|authType=connwl,securemode=-2,_ss=1,ext=3|"
        );
        assert!(Registered::parse(b"{}").is_err());
    }
}
