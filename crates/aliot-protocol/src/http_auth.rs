//! The platform's HTTPS auth service (spec §5.1, §5.3): where it is, the form bodies a device
//! posts, and how its answers read.
//!
//! - `POST {auth_url}/auth/register/device`: HTTPS dynamic registration of a device created
//!   beforehand ([`crate::sign::dynreg_http_body`]); `data` is a
//!   [`Registered`](crate::register::Registered).
//! - `POST {auth_url}/auth/devicename`: pre-authentication ([`preauth_body`]); `data` is an
//!   [`IotToken`], the MQTT login that follows is [`iot_token_credentials`] (`securemode=-1`,
//!   username the iotId, password the iotToken verbatim).
//!
//! Every answer is `{"code":…,"message":…,"data":…}` ([`Answer`]); its codes are
//! [`AuthCode`].
//!
//! ```
//! use aliot_protocol::http_auth::{Answer, IotToken, iot_token_credentials};
//! let body = br#"{"code":200,"data":{"iotId":"id-1","iotToken":"t0k","resources":{"mqtt":{"host":"127.0.0.1","port":1883}}},"message":"success"}"#;
//! let token = IotToken::from_answer(&Answer::parse(body)?)?;
//! assert_eq!(token.mqtt.as_ref().map(|m| m.port), Some(1883));
//! let c = iot_token_credentials("a1Lamp", "lamp-7", &token, &[("_ss".into(), "1".into())])?;
//! assert_eq!(c.client_id, "a1Lamp.lamp-7|securemode=-1,_ss=1|");
//! assert_eq!((c.username.as_str(), c.password.as_str()), ("id-1", "t0k"));
//! assert!(!format!("{token:?}").contains("t0k"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::client_id::{ClientId, SecureMode};
use crate::codes::AuthCode;
use crate::credentials::Credentials;
use crate::error::{ClientIdError, Error, Result};
use crate::identity::{DeviceIdentity, validate_device_name, validate_product_key};
use crate::sign::{HexCase, SignMethod, form_encode_into, sign_content};

/// The region of the platform's HTTPS auth service when none is given (the only one that
/// serves HTTPS dynamic registration, spec §5.1).
pub const DEFAULT_REGION: &str = "cn-shanghai";

/// The path of HTTPS dynamic registration.
pub const REGISTER_PATH: &str = "/auth/register/device";

/// The path of pre-authentication.
pub const PREAUTH_PATH: &str = "/auth/devicename";

/// The base URL of the platform's HTTPS auth service in a region:
/// `https://iot-auth.{region}.aliyuncs.com`.
pub fn auth_url(region: &str) -> String {
    format!("https://iot-auth.{region}.aliyuncs.com")
}

/// The auth service of the region an MQTT host names (`{pk}.iot-as-mqtt.{region}.aliyuncs.com`),
/// else of [`DEFAULT_REGION`].
///
/// ```
/// use aliot_protocol::http_auth::default_auth_url;
/// assert_eq!(default_auth_url("a1B.iot-as-mqtt.cn-beijing.aliyuncs.com"), "https://iot-auth.cn-beijing.aliyuncs.com");
/// assert_eq!(default_auth_url("127.0.0.1"), "https://iot-auth.cn-shanghai.aliyuncs.com");
/// ```
pub fn default_auth_url(mqtt_host: &str) -> String {
    let region = mqtt_host
        .split_once(".iot-as-mqtt.")
        .and_then(|(_, rest)| rest.strip_suffix(".aliyuncs.com"))
        .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(DEFAULT_REGION);
    auth_url(region)
}

/// An `application/x-www-form-urlencoded` body of `pairs`, in order.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            body.push('&');
        }
        form_encode_into(&mut body, k);
        body.push('=');
        form_encode_into(&mut body, v);
    }
    body
}

/// The form body of pre-authentication (spec §5.3), as the C SDK sends it: `productKey`,
/// `deviceName`, `signmethod`, `sign`, `version=default`, `clientId={pk}.{dn}`, `timestamp`,
/// `resources=mqtt`; `sign` is the MQTT password's HMAC of
/// `clientId{pk}.{dn}deviceName{dn}productKey{pk}timestamp{timestamp}` keyed by the deviceSecret.
pub fn preauth_body(identity: &DeviceIdentity, method: SignMethod, timestamp: &str) -> String {
    let (pk, dn) = (identity.product_key(), identity.device_name());
    let client_id = format!("{pk}.{dn}");
    let content = sign_content(&client_id, dn, pk, Some(timestamp));
    let sign = method.hex(
        identity.device_secret().as_bytes(),
        content.as_bytes(),
        HexCase::Lower,
    );
    form_body(&[
        ("productKey", pk),
        ("deviceName", dn),
        ("signmethod", method.as_str()),
        ("sign", &sign),
        ("version", "default"),
        ("clientId", &client_id),
        ("timestamp", timestamp),
        ("resources", "mqtt"),
    ])
}

/// An answer of the auth service: `{"code":…,"message":…,"data":…}`. `Debug` leaves `data`
/// out (it holds the secret or the token).
#[derive(Clone, PartialEq, Deserialize)]
pub struct Answer {
    /// The platform's code (200 on success).
    pub code: u32,
    /// The platform's message.
    #[serde(default)]
    pub message: String,
    /// What was asked for, on success.
    #[serde(default)]
    pub data: Option<Value>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Answer {
    /// Reads an answer.
    ///
    /// # Errors
    /// When the body is not such a JSON object.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The code, typed.
    pub fn auth_code(&self) -> AuthCode {
        AuthCode::from_code(self.code)
    }
}

/// Where pre-authentication tells the device to connect (`data.resources.mqtt`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MqttResource {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// What pre-authentication answers: the MQTT login (iotId, iotToken) and where to use it.
/// `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq)]
pub struct IotToken {
    /// The username of the MQTT login.
    pub iot_id: String,
    /// The password of the MQTT login, verbatim (valid until it expires or a newer
    /// pre-authentication replaces it).
    pub iot_token: String,
    /// The MQTT endpoint the answer names, if it names one.
    pub mqtt: Option<MqttResource>,
}

impl fmt::Debug for IotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IotToken")
            .field("iot_id", &self.iot_id)
            .field("iot_token", &"<redacted>")
            .field("mqtt", &self.mqtt)
            .finish()
    }
}

/// Why an answer is not a usable [`IotToken`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenAnswerError {
    /// The platform refused (any code but 200).
    #[error("code {code}: {message}")]
    Refused {
        /// The code.
        code: AuthCode,
        /// The platform's message.
        message: String,
    },
    /// Code 200 without a usable `data`.
    #[error("the answer has no usable data: {0}")]
    Malformed(String),
}

impl IotToken {
    /// The token of a pre-authentication answer.
    ///
    /// # Errors
    /// [`TokenAnswerError::Refused`] for any code but 200; [`TokenAnswerError::Malformed`]
    /// when `data.iotId` or `data.iotToken` is missing, empty or holds white space, or
    /// `data.resources.mqtt` is there but not `{"host","port"}`.
    pub fn from_answer(answer: &Answer) -> Result<Self, TokenAnswerError> {
        if answer.code != 200 {
            return Err(TokenAnswerError::Refused {
                code: answer.auth_code(),
                message: answer.message.clone(),
            });
        }
        let data = answer
            .data
            .as_ref()
            .ok_or_else(|| TokenAnswerError::Malformed("no data".into()))?;
        let field = |name: &str| {
            data.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()))
                .map(str::to_owned)
                .ok_or_else(|| TokenAnswerError::Malformed(format!("no valid data.{name}")))
        };
        let mqtt = match data.pointer("/resources/mqtt") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                MqttResource::deserialize(v)
                    .map_err(|e| TokenAnswerError::Malformed(format!("data.resources.mqtt: {e}")))?,
            ),
        };
        Ok(IotToken {
            iot_id: field("iotId")?,
            iot_token: field("iotToken")?,
            mqtt,
        })
    }
}

/// The clientId of the MQTT login after pre-authentication (spec §5.3):
/// `{pk}.{dn}|securemode=-1,{extra_params}|`.
///
/// # Errors
/// An invalid productKey or deviceName, an extra parameter the clientId grammar cannot hold, or
/// an extra `securemode`.
pub fn iot_token_client_id(
    product_key: &str,
    device_name: &str,
    extra_params: &[(String, String)],
) -> Result<String> {
    validate_product_key(product_key)?;
    validate_device_name(device_name)?;
    let mut client_id = ClientId::new(format!("{product_key}.{device_name}"))?
        .with_param("securemode", SecureMode::TlsGuider.to_string())?;
    for (k, v) in extra_params {
        if k == "securemode" {
            return Err(Error::ClientId(ClientIdError::DuplicateKey(k.clone())));
        }
        client_id.set_param(k.as_str(), v.as_str())?;
    }
    Ok(client_id.to_string())
}

/// The CONNECT fields of the MQTT login after pre-authentication (spec §5.3): clientId
/// [`iot_token_client_id`], username the iotId, password the iotToken verbatim. Nothing is
/// signed.
///
/// # Errors
/// As [`iot_token_client_id`].
pub fn iot_token_credentials(
    product_key: &str,
    device_name: &str,
    token: &IotToken,
    extra_params: &[(String, String)],
) -> Result<Credentials> {
    Ok(Credentials {
        client_id: iot_token_client_id(product_key, device_name, extra_params)?,
        username: token.iot_id.clone(),
        password: token.iot_token.clone(),
        sign_content: String::new(),
        sign_method: SignMethod::HmacSha256,
        secure_mode: SecureMode::TlsGuider,
        timestamp: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthType, ConnectFields, parse_connect};

    #[test]
    fn the_preauth_body_signs_as_the_hub_checks_it() {
        let id = DeviceIdentity::new("pk", "dn@1", "s3cret").expect("identity");
        let body = preauth_body(&id, SignMethod::HmacSha256, "2524608000000");
        let content = sign_content("pk.dn@1", "dn@1", "pk", Some("2524608000000"));
        let sign = SignMethod::HmacSha256.hex(b"s3cret", content.as_bytes(), HexCase::Lower);
        assert_eq!(
            body,
            format!(
                "productKey=pk&deviceName=dn%401&signmethod=hmacsha256&sign={sign}&version=default&clientId=pk.dn%401&timestamp=2524608000000&resources=mqtt"
            )
        );
    }

    #[test]
    fn answers_become_tokens_or_refusals() {
        let refused = Answer::parse(br#"{"code":401,"message":"no"}"#).expect("answer");
        assert_eq!(
            IotToken::from_answer(&refused),
            Err(TokenAnswerError::Refused {
                code: AuthCode::AuthFailed,
                message: "no".into()
            })
        );
        for bad in [
            r#"{"code":200}"#,
            r#"{"code":200,"data":{"iotId":"i"}}"#,
            r#"{"code":200,"data":{"iotId":"i","iotToken":"a b"}}"#,
            r#"{"code":200,"data":{"iotId":"i","iotToken":"t","resources":{"mqtt":{"host":"h"}}}}"#,
        ] {
            let a = Answer::parse(bad.as_bytes()).expect("answer");
            assert!(
                matches!(IotToken::from_answer(&a), Err(TokenAnswerError::Malformed(_))),
                "{bad}"
            );
        }
        let a = Answer::parse(br#"{"code":200,"data":{"iotId":"i","iotToken":"t"}}"#).expect("answer");
        assert!(!format!("{a:?}").contains("\"t\""));
        assert_eq!(IotToken::from_answer(&a).expect("token").mqtt, None);
    }

    #[test]
    fn the_login_parses_as_an_iot_token_login() {
        let token = IotToken {
            iot_id: "iot-1".into(),
            iot_token: "tok".into(),
            mqtt: None,
        };
        let c = iot_token_credentials("pk", "dn", &token, &[("ext".into(), "1".into())]).expect("creds");
        let r = parse_connect(&ConnectFields {
            client_id: &c.client_id,
            username: Some(&c.username),
            password: Some(c.password.as_bytes()),
            keep_alive: 60,
        })
        .expect("a valid CONNECT");
        assert_eq!(
            r.auth,
            AuthType::IotToken {
                iot_id: "iot-1".into()
            }
        );
        assert!(r.verify("tok", b"tok").is_ok());
        assert!(iot_token_client_id("pk", "dn", &[("securemode".into(), "2".into())]).is_err());
    }
}
