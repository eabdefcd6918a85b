//! The platform's side of a device conversation: Pub, property set, service calls and raw RRPC.

use std::time::Duration;

use aliot_admin::{Call, Publish, Published, Rrpc, RrpcAnswer};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde_json::Value;

use super::AdminState;
use super::error::ApiError;

/// Longest deadline a caller may ask for a device's answer.
const MAX_TIMEOUT_MS: u64 = 300_000;

fn deadline(state: &AdminState, timeout_ms: Option<u64>) -> Result<Duration, ApiError> {
    match timeout_ms {
        None => Ok(state.service().call_timeout()),
        Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(_) => Err(ApiError::bad_request(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        ))),
    }
}

pub(super) async fn publish(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<Publish>, JsonRejection>,
) -> Result<Json<Published>, ApiError> {
    let Json(body) = body?;
    state.service().device(&pk, &dn).await?;
    let payload = body
        .encoding
        .decode(&body.payload)
        .map_err(|e| ApiError::bad_request(format!("payload is not valid base64: {e}")))?;
    let outcome = state
        .service()
        .publish(&pk, &dn, &body.topic, payload, body.qos)
        .await?;
    Ok(Json(Published { outcome }))
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

pub(super) async fn rrpc(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<Rrpc>, JsonRejection>,
) -> Result<Json<RrpcAnswer>, ApiError> {
    let Json(body) = body?;
    let payload = body
        .encoding
        .decode(&body.payload)
        .map_err(|e| ApiError::bad_request(format!("payload is not valid base64: {e}")))?;
    let timeout = deadline(&state, body.timeout_ms)?;
    state.service().device(&pk, &dn).await?;
    let answer = state.service().rrpc(&pk, &dn, payload, timeout).await?;
    Ok(Json(RrpcAnswer::from_bytes(&answer)))
}
