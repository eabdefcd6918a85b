//! # aliot-protocol
//!
//! The Alibaba Cloud IoT Platform's device protocol, pure: no IO, no clock, no sockets.
//!
//! - [`identity`]: the (productKey, deviceName, deviceSecret) triple, with a redacting `Debug`.
//! - [`mod@sign`]: sign content and HMAC (hmacsha1, hmacsha256, hmacmd5), hex either case,
//!   constant-time verification, dynamic registration signs and TLS-PSK.
//! - [`client_id`]: the clientId grammar `prefix|key=value,...|`, built and parsed.
//! - [`credentials`]: endpoints and the signed CONNECT fields.
//! - [`auth`]: the platform's CONNECT verdict and its CONNACK codes.
//! - [`topic`]: typed Alink topics and a device's topic rights.
//! - [`alink`]: Alink request/reply envelopes and NTP.
//! - [`config`]: remote configuration: what `thing.config.get` answers, the 64 KB limit, the
//!   size and SHA-256 check of a downloaded file.
//! - [`codes`]: CONNACK, Alink and HTTPS auth codes with their causes and fix hints.
//! - [`diagnose`]: the credential doctor: why CONNECT fields would be refused.
//! - [`profile`]: TOML device profiles.
//! - [`register`]: what dynamic registration answers, and the token login after it.
//! - [`http_auth`]: the HTTPS auth service: registration and pre-authentication forms, answers
//!   and the `securemode=-1` login after pre-authentication.
//! - [`gateway`]: gateways and sub-devices: the sub-device sign, topology and session payloads,
//!   their topics, limits and codes.
//! - [`subscription`]: server-side subscription: the consumer's `aksign` login and the
//!   forwarded message bodies.
//! - [`openapi`]: Aliyun OpenAPI request signatures V1 (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256),
//!   signing and verifying, RFC 3986 encoding, form decoding.
//! - [`tsl`]: the thing model: the console's exported TSL read into types, the platform's
//!   validation of posts, events, services and sets (codes 63xx), and valid sample values.
//!
//! ## Example: sign a device's CONNECT
//!
//! ```
//! use aliot_protocol::{sign, DeviceIdentity, Endpoint, SignOptions};
//!
//! let device = DeviceIdentity::new("a14Xib5kdYd", "light1983432", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq")?;
//! let endpoint = Endpoint::region(device.product_key(), "cn-shanghai", false)?;
//! let creds = sign(&device, &SignOptions {
//!     client_id_prefix: Some("SN1928339".into()),
//!     timestamp: Some("1539421321846".into()),
//!     ..SignOptions::default()
//! })?;
//! assert_eq!(endpoint.host, "a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com");
//! assert_eq!(creds.client_id, "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|");
//! assert_eq!(creds.username, "light1983432&a14Xib5kdYd");
//! assert_eq!(creds.password, "b2488041f64f425016b467ee1c94959ebd592ad1");
//! # Ok::<(), aliot_protocol::Error>(())
//! ```
//!
//! ## Example: validate a property post against the thing model
//!
//! One good and one bad property: the post still succeeds (`code:200`), and the reply's `data`
//! maps the rejected identifier to the platform's message.
//!
//! ```
//! use aliot_protocol::tsl::Tsl;
//! use serde_json::json;
//!
//! let tsl = Tsl::from_json(r#"{"profile":{"productKey":"a1a3Xryxx97"},"properties":[
//!   {"identifier":"LightSwitch","accessMode":"rw","dataType":{"type":"bool","specs":{"0":"Off","1":"On"}}},
//!   {"identifier":"code","accessMode":"r","dataType":{"type":"int","specs":{"min":"0","max":"100"}}}]}"#)?;
//! let post = tsl.validate_property_post(&json!({"LightSwitch": 1, "code": "15"}), 1_707_149_551_046)
//!     .expect("params are an object");
//! assert!(post.items.contains_key("LightSwitch"));
//! assert_eq!(post.rejected["code"].code, 6306);
//! assert_eq!(post.rejected["code"].message, "tsl parse: data type is not int -> code");
//! assert_eq!(json!(post.reply_data()), json!({"code": "tsl parse: data type is not int"}));
//! # Ok::<(), aliot_protocol::tsl::TslError>(())
//! ```

pub mod alink;
pub mod auth;
pub mod client_id;
pub mod codes;
pub mod config;
pub mod credentials;
pub mod diagnose;
pub mod error;
pub mod forwarded;
pub mod gateway;
pub mod http_auth;
pub mod identity;
pub mod json;
pub mod openapi;
pub mod profile;
pub mod register;
pub mod sign;
pub mod subscription;
pub mod topic;
pub mod tsl;

pub use client_id::{ClientId, SecureMode};
pub use codes::{AuthCode, ConnackCode};
pub use credentials::{Credentials, Endpoint, SignOptions, sign};
pub use error::{ClientIdError, Error, Result};
pub use identity::DeviceIdentity;
pub use profile::DeviceProfile;
pub use sign::{HexCase, SignMethod};
