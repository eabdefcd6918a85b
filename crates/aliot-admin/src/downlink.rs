//! `…/devices/{dn}/publish|properties|services/{id}|rrpc`: the bodies of the platform's side of
//! a device conversation, and how payload bytes are written in JSON ([`Encoding`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a payload is written in JSON: `"text"` (UTF-8 as is, the default) or `"base64"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text, as is.
    #[default]
    Text,
    /// Standard base64 (binary payloads).
    Base64,
}

impl Encoding {
    /// The bytes of `payload` written in this encoding (base64 around surrounding whitespace).
    ///
    /// # Errors
    ///
    /// [`InvalidBase64`] when the encoding is base64 and `payload` is not.
    pub fn decode(self, payload: &str) -> Result<Bytes, InvalidBase64> {
        match self {
            Self::Text => Ok(Bytes::copy_from_slice(payload.as_bytes())),
            Self::Base64 => BASE64
                .decode(payload.trim())
                .map(Bytes::from)
                .map_err(InvalidBase64),
        }
    }

    /// `bytes` as text when they are UTF-8, else as base64, with the encoding used.
    pub fn encode(bytes: &[u8]) -> (String, Self) {
        match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), Self::Text),
            Err(_) => (BASE64.encode(bytes), Self::Base64),
        }
    }
}

/// A payload said to be base64 is not. Displays the decoder's reason only (`Invalid symbol
/// 37, offset 0.`), so callers say which payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBase64(base64::DecodeError);

impl fmt::Display for InvalidBase64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InvalidBase64 {}

/// `POST …/publish` body: `{"topic","payload"?,"qos"?,"encoding"?}` (the platform's Pub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// One of the device's topics.
    pub topic: String,
    /// The payload, written in `encoding`.
    #[serde(default)]
    pub payload: String,
    /// QoS 0 or 1.
    #[serde(default)]
    pub qos: u8,
    /// How `payload` is written.
    #[serde(default)]
    pub encoding: Encoding,
}

/// The answer to a Pub: `{"outcome"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// What the hub did with the message.
    pub outcome: PublishOutcome,
}

/// What the platform's Pub did with a message: `"delivered"`, `"queued"` or `"not_subscribed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PublishOutcome {
    /// The device is online and subscribed: the message is in its outbound queue.
    Delivered,
    /// The device is offline with a clean-session-0 session and subscribed: the QoS 1 message
    /// waits in its offline queue.
    Queued,
    /// The device has no subscription matching the topic: the message was dropped, as on the
    /// platform.
    NotSubscribed,
}

/// `POST …/properties` and `POST …/services/{identifier}` body: `{"params"?,"timeout_ms"?}`.
///
/// `timeout_ms` is snake_case on the wire, unlike the rest of the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// A JSON object: property values, or the service's input (default `{}` for a service;
    /// required for properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// How long the hub waits for the device's answer, ms (1..=300000; default the hub's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST …/rrpc` body: `{"payload","encoding"?,"timeout_ms"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rrpc {
    /// The request payload, written in `encoding`.
    pub payload: String,
    /// How `payload` is written.
    #[serde(default)]
    pub encoding: Encoding,
    /// How long the hub waits for the device's answer, ms (1..=300000; default the hub's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The device's RRPC answer: `{"payload","encoding"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrpcAnswer {
    /// The answer, written in `encoding`.
    pub payload: String,
    /// How `payload` is written (text when the bytes are UTF-8).
    pub encoding: Encoding,
}

impl RrpcAnswer {
    /// The answer of these bytes (text when UTF-8, else base64).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let (payload, encoding) = Encoding::encode(bytes);
        Self { payload, encoding }
    }

    /// The answer's bytes.
    ///
    /// # Errors
    ///
    /// [`InvalidBase64`] when the payload says base64 and is not.
    pub fn bytes(&self) -> Result<Bytes, InvalidBase64> {
        self.encoding.decode(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assert_wire;

    #[test]
    fn payloads_round_trip_as_text_or_base64() {
        assert_eq!(Encoding::Text.decode("hi").ok(), Some(Bytes::from_static(b"hi")));
        assert_eq!(
            Encoding::Base64.decode(" /wA=\n").ok(),
            Some(Bytes::from_static(&[0xff, 0]))
        );
        assert!(Encoding::Base64.decode("%%").is_err());
        assert_eq!(Encoding::encode(b"ok"), ("ok".to_owned(), Encoding::Text));
        assert_eq!(
            Encoding::encode(&[0xff, 0]),
            ("/wA=".to_owned(), Encoding::Base64)
        );
        let every_byte: Vec<u8> = (0..=255).collect();
        let answer = RrpcAnswer::from_bytes(&every_byte);
        assert_eq!(answer.bytes().ok().as_deref(), Some(&every_byte[..]));
    }

    #[test]
    fn invalid_base64_says_only_why() {
        let e = Encoding::Base64.decode("%%").expect_err("not base64");
        assert_eq!(e.to_string(), "Invalid symbol 37, offset 0.");
    }

    #[test]
    fn publish_json_is_pinned() {
        assert_wire(
            &Publish {
                topic: "/a1P/d/user/get".into(),
                payload: "aGk=".into(),
                qos: 1,
                encoding: Encoding::Base64,
            },
            r#"{"topic":"/a1P/d/user/get","payload":"aGk=","qos":1,"encoding":"base64"}"#,
        );
        let minimal: Publish = serde_json::from_str(r#"{"topic":"t"}"#).expect("defaults");
        assert_eq!((minimal.payload.as_str(), minimal.qos), ("", 0));
        assert_eq!(minimal.encoding, Encoding::Text);
        assert!(serde_json::from_str::<Publish>(r#"{"topic":"t","retain":true}"#).is_err());
    }

    #[test]
    fn every_publish_outcome_is_pinned() {
        for (outcome, json) in [
            (PublishOutcome::Delivered, r#"{"outcome":"delivered"}"#),
            (PublishOutcome::Queued, r#"{"outcome":"queued"}"#),
            (PublishOutcome::NotSubscribed, r#"{"outcome":"not_subscribed"}"#),
        ] {
            assert_wire(&Published { outcome }, json);
        }
    }

    #[test]
    fn call_json_keeps_timeout_ms_in_snake_case() {
        assert_wire(
            &Call {
                params: Some(serde_json::json!({"LightSwitch": 1})),
                timeout_ms: Some(100),
            },
            r#"{"params":{"LightSwitch":1},"timeout_ms":100}"#,
        );
        assert_wire(&Call::default(), "{}");
        assert!(serde_json::from_str::<Call>(r#"{"timeoutMs":100}"#).is_err());
    }

    #[test]
    fn rrpc_json_is_pinned() {
        assert_wire(
            &Rrpc {
                payload: "ping".into(),
                encoding: Encoding::Text,
                timeout_ms: Some(500),
            },
            r#"{"payload":"ping","encoding":"text","timeout_ms":500}"#,
        );
        assert!(serde_json::from_str::<Rrpc>(r#"{"encoding":"text"}"#).is_err());
        assert_wire(
            &RrpcAnswer {
                payload: "pong".into(),
                encoding: Encoding::Text,
            },
            r#"{"payload":"pong","encoding":"text"}"#,
        );
    }
}
