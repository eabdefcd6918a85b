//! `/api/v1/access-keys`: access keys for the OpenAPI and AMQP.
//!
//! - `POST /api/v1/access-keys` `{"description":"…"}` (body optional) → the new key with its
//!   secret (the only time it is given out), durable before the answer;
//! - `GET /api/v1/access-keys` → the keys without secrets;
//! - `DELETE /api/v1/access-keys/{id}` → `{accessKeyId, deleted:true}`, 404 `not_found` for an
//!   unknown key.

use aliot_admin::{AccessKeyCreated, AccessKeyDeleted, AccessKeyView, CreateAccessKey};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AdminState;
use super::error::ApiError;

/// `POST /api/v1/access-keys`.
pub(super) async fn create(
    State(state): State<AdminState>,
    body: Bytes,
) -> Result<(StatusCode, Json<AccessKeyCreated>), ApiError> {
    let request: CreateAccessKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateAccessKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                format!("bad access key request: {e}"),
            )
        })?
    };
    let key = state.service().create_access_key(request.description).await?;
    tracing::info!(access_key_id = %key.access_key_id, "access key created");
    Ok((
        StatusCode::CREATED,
        Json(AccessKeyCreated {
            access_key_id: key.access_key_id,
            access_key_secret: key.access_key_secret,
            created: key.created_ms,
            description: key.description,
        }),
    ))
}

/// `GET /api/v1/access-keys`.
pub(super) async fn list(State(state): State<AdminState>) -> Result<Json<Vec<AccessKeyView>>, ApiError> {
    let keys = state.service().access_keys().await?;
    Ok(Json(
        keys.into_iter()
            .map(|k| AccessKeyView {
                access_key_id: k.access_key_id,
                created: k.created_ms,
                description: k.description,
            })
            .collect(),
    ))
}

/// `DELETE /api/v1/access-keys/{id}`.
pub(super) async fn delete(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<AccessKeyDeleted>, ApiError> {
    if !state.service().delete_access_key(&id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access key {id}"),
        ));
    }
    tracing::info!(access_key_id = %id, "access key deleted");
    Ok(Json(AccessKeyDeleted {
        access_key_id: id,
        deleted: true,
    }))
}
