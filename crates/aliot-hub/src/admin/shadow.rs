//! `…/devices/{dn}/shadow`: the device shadow (get, update desired), through the service.

use aliot_admin::{ShadowView, UpdateShadow};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde_json::Value;

use super::AdminState;
use super::error::ApiError;

/// `GET …/shadow`: `{"shadow": document | null}`.
pub(super) async fn get(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<ShadowView>, ApiError> {
    let doc = state.service().shadow(&pk, &dn).await?;
    let shadow = serde_json::to_value(doc).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(ShadowView { shadow, pushed: None }))
}

/// `PUT …/shadow` `{"method":"update","state":{"desired":{…}},"version":N,"deltaUpdate"?}`:
/// stores desired, then pushes `control` to the device when online.
pub(super) async fn update(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<UpdateShadow>, JsonRejection>,
) -> Result<Json<ShadowView>, ApiError> {
    let Json(body) = body?;
    if body.method != "update" {
        return Err(ApiError::bad_request(format!(
            "method value is not update: {:?}",
            body.method
        )));
    }
    let desired = match body.state.get("desired") {
        Some(Value::Object(d)) => d.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "not found state in shadow message: \"state\" must be {\"desired\":{…}}",
            ));
        }
    };
    let (doc, pushed) = state
        .service()
        .update_shadow(&pk, &dn, desired, body.version, body.delta_update)
        .await?;
    let shadow = serde_json::to_value(doc).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(ShadowView {
        shadow,
        pushed: Some(pushed),
    }))
}
