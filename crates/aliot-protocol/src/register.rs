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

use crate::client_id::{ClientId, SecureMode};
use crate::credentials::Credentials;
use crate::error::{ClientIdError, Error, Result};
use crate::identity::{validate_device_name, validate_product_key, validate_secret};
use crate::sign::{HexCase, SignMethod, dynreg_content};

/// Which MQTT dynamic registration (spec §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `authType=register`: the device was registered beforehand (by name); the platform answers
    /// its new deviceSecret on [`REGISTER_TOPIC`].
    PreRegistered,
    /// `authType=regnwl`: no pre-registration; the platform creates the device and answers a
    /// clientId and a deviceToken on [`REGNWL_TOPIC`].
    NoPreRegistration,
}

impl Mode {
    /// The clientId's `authType`: `register` or `regnwl`.
    pub fn auth_type(self) -> &'static str {
        match self {
            Mode::PreRegistered => "register",
            Mode::NoPreRegistration => "regnwl",
        }
    }

    /// The topic the platform answers on.
    pub fn answer_topic(self) -> &'static str {
        match self {
            Mode::PreRegistered => REGISTER_TOPIC,
            Mode::NoPreRegistration => REGNWL_TOPIC,
        }
    }
}

/// The CONNECT fields of an MQTT dynamic registration (spec §5.2), as the official SDKs build
/// them: clientId `{dn}.{pk}|random={random},authType={register|regnwl},securemode={mode},signmethod=hmacsha256|`,
/// username `{dn}&{pk}`, password the lowercase hex HMAC-SHA256 of
/// `deviceName{dn}productKey{pk}random{random}` keyed by the productSecret.
///
/// `random` is the caller's (this crate has no randomness): any non-empty string of letters and
/// digits; the platform requires TLS, `securemode=2`.
///
/// ```
/// use aliot_protocol::register::{registration_credentials, Mode};
/// use aliot_protocol::SecureMode;
/// let c = registration_credentials("a1Lamp", "lamp-7", "ps", "E71Lhfe8L6HLVy5", Mode::NoPreRegistration, SecureMode::Tls)?;
/// assert_eq!(c.client_id, "lamp-7.a1Lamp|random=E71Lhfe8L6HLVy5,authType=regnwl,securemode=2,signmethod=hmacsha256|");
/// assert_eq!(c.username, "lamp-7&a1Lamp");
/// # Ok::<(), aliot_protocol::Error>(())
/// ```
///
/// # Errors
/// An invalid productKey, deviceName or productSecret, or a `random` that is empty or not
/// alphanumeric ([`Error::InvalidIdentity`]).
pub fn registration_credentials(
    product_key: &str,
    device_name: &str,
    product_secret: &str,
    random: &str,
    mode: Mode,
    secure_mode: SecureMode,
) -> Result<Credentials> {
    validate_product_key(product_key)?;
    validate_device_name(device_name)?;
    validate_secret("productSecret", product_secret)?;
    if random.is_empty() || !random.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::InvalidIdentity {
            field: "random",
            reason: "must be one or more letters and digits".into(),
        });
    }
    let method = SignMethod::HmacSha256;
    let client_id = ClientId::new(format!("{device_name}.{product_key}"))?
        .with_param("random", random)?
        .with_param("authType", mode.auth_type())?
        .with_param("securemode", secure_mode.to_string())?
        .with_param("signmethod", method.as_str())?;
    let content = dynreg_content(device_name, product_key, random);
    Ok(Credentials {
        client_id: client_id.to_string(),
        username: format!("{device_name}&{product_key}"),
        password: method.hex(product_secret.as_bytes(), content.as_bytes(), HexCase::Lower),
        sign_content: content,
        sign_method: method,
        secure_mode,
        timestamp: None,
    })
}

/// The CONNECT fields of the token login after `regnwl` (spec §5.2): clientId
/// `{clientId}|authType=connwl,securemode=-2,{extra_params}|` (with `extra_params`
/// `_ss=1,ext=3` that is [`connwl_client_id`]), username `{dn}&{pk}`, password the deviceToken
/// verbatim. Nothing is signed: every reconnect sends the same fields.
///
/// ```
/// use aliot_protocol::register::{connwl_client_id, token_credentials, RegisteredWithToken};
/// let login = RegisteredWithToken {
///     client_id: "a1Lamp.lamp-7".into(),
///     product_key: "a1Lamp".into(),
///     device_name: "lamp-7".into(),
///     device_token: "tok".into(),
/// };
/// let c = token_credentials(&login, &[("_ss".into(), "1".into()), ("ext".into(), "3".into())])?;
/// assert_eq!(c.client_id, connwl_client_id("a1Lamp.lamp-7"));
/// assert_eq!((c.username.as_str(), c.password.as_str()), ("lamp-7&a1Lamp", "tok"));
/// # Ok::<(), aliot_protocol::Error>(())
/// ```
///
/// # Errors
/// An invalid productKey or deviceName, an empty deviceToken or one with white space, a clientId
/// or extra parameter the clientId grammar cannot hold, or an extra `authType` or `securemode`.
pub fn token_credentials(
    login: &RegisteredWithToken,
    extra_params: &[(String, String)],
) -> Result<Credentials> {
    validate_product_key(&login.product_key)?;
    validate_device_name(&login.device_name)?;
    let token = &login.device_token;
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidIdentity {
            field: "deviceToken",
            reason: "is empty or contains white space".into(),
        });
    }
    let secure_mode = SecureMode::NoPreRegistration;
    let mut client_id = ClientId::new(login.client_id.as_str())?
        .with_param("authType", "connwl")?
        .with_param("securemode", secure_mode.to_string())?;
    for (k, v) in extra_params {
        if matches!(k.as_str(), "authType" | "securemode") {
            return Err(Error::ClientId(ClientIdError::DuplicateKey(k.clone())));
        }
        client_id.set_param(k.as_str(), v.as_str())?;
    }
    Ok(Credentials {
        client_id: client_id.to_string(),
        username: format!("{}&{}", login.device_name, login.product_key),
        password: token.clone(),
        sign_content: String::new(),
        sign_method: SignMethod::HmacSha256,
        secure_mode,
        timestamp: None,
    })
}

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

    #[test]
    fn registration_credentials_verify_as_the_platform_reads_them() {
        use crate::auth::{AuthType, ConnectFields, parse_connect};
        for mode in [Mode::PreRegistered, Mode::NoPreRegistration] {
            let c =
                registration_credentials("pk", "dn", "ps", "r4nd0m", mode, SecureMode::Tls).expect("sign");
            let request = parse_connect(&ConnectFields {
                client_id: &c.client_id,
                username: Some(&c.username),
                password: Some(c.password.as_bytes()),
                keep_alive: 60,
            })
            .expect("a valid CONNECT");
            let random = "r4nd0m".to_owned();
            let expected = match mode {
                Mode::PreRegistered => AuthType::Register { random },
                Mode::NoPreRegistration => AuthType::RegisterNoPreRegistration { random },
            };
            assert_eq!(request.auth, expected);
            assert!(request.verify("ps", c.password.as_bytes()).is_ok());
            assert!(request.verify("other", c.password.as_bytes()).is_err());
            assert!(!format!("{c:?}").contains(&c.password));
        }
        for bad in ["", "a,b", "a|b", "x y"] {
            assert!(
                registration_credentials("pk", "dn", "ps", bad, Mode::PreRegistered, SecureMode::Tls)
                    .is_err(),
                "{bad:?}"
            );
        }
        assert!(registration_credentials("pk", "dn", "", "r", Mode::PreRegistered, SecureMode::Tls).is_err());
        assert!(
            registration_credentials("p k", "dn", "ps", "r", Mode::PreRegistered, SecureMode::Tls).is_err()
        );
    }

    #[test]
    fn token_credentials_send_the_token_verbatim() {
        let login = RegisteredWithToken {
            client_id: "pk.dn".into(),
            product_key: "pk".into(),
            device_name: "dn".into(),
            device_token: "Tok3n".into(),
        };
        let extra = [
            ("_ss".to_owned(), "1".to_owned()),
            ("ext".to_owned(), "3".to_owned()),
        ];
        let c = token_credentials(&login, &extra).expect("credentials");
        assert_eq!(c.client_id, connwl_client_id("pk.dn"));
        assert_eq!(c.password, "Tok3n");
        assert!(!format!("{c:?}").contains("Tok3n"));
        let clash = [("authType".to_owned(), "x".to_owned())];
        assert!(token_credentials(&login, &clash).is_err());
        for token in ["", "a b"] {
            let bad = RegisteredWithToken {
                device_token: token.into(),
                ..login.clone()
            };
            assert!(token_credentials(&bad, &[]).is_err());
        }
    }
}
