//! The platform's side of a device conversation: Pub, property set, service calls and raw RRPC.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AdminState;
use super::error::ApiError;
use crate::service::PublishOutcome;

/// Longest deadline a caller may ask for a device's answer.
const MAX_TIMEOUT_MS: u64 = 300_000;

/// How a payload is written in JSON.
#[derive(Deserialize, Serialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub(super) enum Encoding {
    /// UTF-8 text, as is.
    #[default]
    Text,
    /// Standard base64 (binary payloads).
    Base64,
}

fn decode_payload(payload: &str, encoding: Encoding) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Text => Ok(Bytes::copy_from_slice(payload.as_bytes())),
        Encoding::Base64 => BASE64
            .decode(payload.trim())
            .map(Bytes::from)
            .map_err(|e| ApiError::bad_request(format!("payload is not valid base64: {e}"))),
    }
}

/// The payload as text when it is UTF-8, else as base64.
fn encode_payload(bytes: &[u8]) -> (String, Encoding) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), Encoding::Text),
        Err(_) => (BASE64.encode(bytes), Encoding::Base64),
    }
}

fn deadline(state: &AdminState, timeout_ms: Option<u64>) -> Result<Duration, ApiError> {
    match timeout_ms {
        None => Ok(state.service().call_timeout()),
        Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(_) => Err(ApiError::bad_request(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        ))),
    }
}

/// `POST …/publish` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Publish {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    encoding: Encoding,
}

/// What happened to a published message.
#[derive(Serialize)]
pub(super) struct Published {
    outcome: PublishOutcome,
}

pub(super) async fn publish(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<Publish>, JsonRejection>,
) -> Result<Json<Published>, ApiError> {
    let Json(body) = body?;
    state.service().device(&pk, &dn).await?;
    let payload = decode_payload(&body.payload, body.encoding)?;
    let outcome = state
        .service()
        .publish(&pk, &dn, &body.topic, payload, body.qos)
        .await?;
    Ok(Json(Published { outcome }))
}

/// `POST …/properties` and `POST …/services/{identifier}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Call {
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

pub(super) async fn set_properties(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<Call>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let params = match body.params {
        Some(p @ Value::Object(_)) => p,
        _ => {
            return Err(ApiError::bad_request(
                "\"params\" must be an object of property values",
            ));
        }
    };
    let timeout = deadline(&state, body.timeout_ms)?;
    state.service().device(&pk, &dn).await?;
    Ok(Json(
        state.service().set_property(&pk, &dn, params, timeout).await?,
    ))
}

pub(super) async fn invoke_service(
    State(state): State<AdminState>,
    Path((pk, dn, identifier)): Path<(String, String, String)>,
    body: Result<Json<Call>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let params = match body.params {
        None => Value::Object(serde_json::Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Err(ApiError::bad_request("\"params\" must be an object")),
    };
    let timeout = deadline(&state, body.timeout_ms)?;
    state.service().device(&pk, &dn).await?;
    Ok(Json(
        state
            .service()
            .invoke_service(&pk, &dn, &identifier, params, timeout)
            .await?,
    ))
}

/// `POST …/rrpc` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rrpc {
    payload: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The device's RRPC answer.
#[derive(Serialize)]
pub(super) struct RrpcAnswer {
    payload: String,
    encoding: Encoding,
}

pub(super) async fn rrpc(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<Rrpc>, JsonRejection>,
) -> Result<Json<RrpcAnswer>, ApiError> {
    let Json(body) = body?;
    let payload = decode_payload(&body.payload, body.encoding)?;
    let timeout = deadline(&state, body.timeout_ms)?;
    state.service().device(&pk, &dn).await?;
    let answer = state.service().rrpc(&pk, &dn, payload, timeout).await?;
    let (payload, encoding) = encode_payload(&answer);
    Ok(Json(RrpcAnswer { payload, encoding }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_as_text_or_base64() {
        assert_eq!(
            decode_payload("hi", Encoding::Text).ok(),
            Some(Bytes::from_static(b"hi"))
        );
        assert_eq!(
            decode_payload("/wA=", Encoding::Base64).ok(),
            Some(Bytes::from_static(&[0xff, 0]))
        );
        assert!(decode_payload("%%", Encoding::Base64).is_err());
        assert_eq!(encode_payload(b"ok"), ("ok".to_owned(), Encoding::Text));
        assert_eq!(encode_payload(&[0xff, 0]), ("/wA=".to_owned(), Encoding::Base64));
    }
}
