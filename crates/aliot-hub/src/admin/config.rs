//! `/api/v1/products/{pk}/config`: a product's remote configuration (cloud-side §4.3).
//!
//! - `GET …/config`: the switch and the file's metadata (with a fresh download URL);
//! - `PUT …/config[?push=true]` (raw body, at most 64 KB): a new file (new `configId`),
//!   durable before the answer; with `push`, then pushed to the online devices (unless the
//!   feature is switched off for the product: then the answer has no `push`);
//! - `PATCH …/config` `{"enabled":bool}`: the product's switch (off: devices get 6713);
//! - `DELETE …/config`: no file any more (devices get 6710);
//! - `GET …/config/file`: the file's bytes;
//! - `POST …/config/push`: `thing.config.push` to the online devices → `{online, pushed}`.

use aliot_admin::{ConfigFileView, ConfigPushed, RemoteConfigView, UpdateRemoteConfig, UploadConfigQuery};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AdminState;
use super::error::ApiError;
use crate::clock::format_utc;
use crate::registry::RemoteConfig;
use crate::service::{ConfigPush, Service};

fn view(service: &Service, product_key: String, config: RemoteConfig) -> RemoteConfigView {
    RemoteConfigView {
        enabled: config.enabled,
        config: config.file.map(|f| ConfigFileView {
            url: service.config_url(&product_key, &f),
            config_id: f.config_id,
            config_size: f.size,
            sign: f.sign,
            sign_method: aliot_protocol::config::SIGN_METHOD.to_owned(),
            uploaded: f.uploaded_ms,
            uploaded_time: format_utc(f.uploaded_ms),
        }),
        product_key,
        push: None,
    }
}

fn pushed(product_key: &str, push: ConfigPush) -> Result<ConfigPushed, ApiError> {
    match push {
        ConfigPush::NoConfig => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "config_not_found",
            format!("product {product_key} has no remote configuration"),
        )),
        ConfigPush::Disabled => Err(ApiError::new(
            StatusCode::CONFLICT,
            "config_disabled",
            format!("remote configuration is switched off for product {product_key}"),
        )),
        ConfigPush::Pushed {
            config_id,
            online,
            pushed,
        } => Ok(ConfigPushed {
            product_key: product_key.to_owned(),
            config_id,
            online,
            pushed,
        }),
    }
}

/// `GET …/config`.
pub(super) async fn show(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<RemoteConfigView>, ApiError> {
    let service = state.service();
    let config = service.remote_config(&pk).await?;
    Ok(Json(view(service, pk, config)))
}

/// `PUT …/config[?push=true]`.
pub(super) async fn upload(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    query: Result<Query<UploadConfigQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<RemoteConfigView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let service = state.service();
    service.product(&pk).await?;
    let config = service.upload_config(&pk, body.to_vec()).await?;
    // With the feature switched off nothing is pushed, and the answer has no `push` (the file
    // is stored all the same).
    let push = match query.push {
        Some(true) => pushed(&pk, service.push_config(&pk).await?).ok(),
        _ => None,
    };
    Ok(Json(RemoteConfigView {
        push,
        ..view(service, pk, config)
    }))
}

/// `PATCH …/config`.
pub(super) async fn update(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    body: Result<Json<UpdateRemoteConfig>, JsonRejection>,
) -> Result<Json<RemoteConfigView>, ApiError> {
    let Json(body) = body?;
    let service = state.service();
    let config = match body.enabled {
        Some(enabled) => service.set_config_enabled(&pk, enabled).await?,
        None => service.remote_config(&pk).await?,
    };
    Ok(Json(view(service, pk, config)))
}

/// `DELETE …/config`.
pub(super) async fn delete(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<RemoteConfigView>, ApiError> {
    let service = state.service();
    let config = service.delete_config(&pk).await?;
    Ok(Json(view(service, pk, config)))
}

/// `GET …/config/file`.
pub(super) async fn download(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Response, ApiError> {
    let Some((meta, bytes)) = state.service().config_file(&pk).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "config_not_found",
            format!("product {pk} has no remote configuration"),
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::ETAG, format!("\"{}\"", meta.config_id)),
        ],
        bytes,
    )
        .into_response())
}

/// `POST …/config/push`.
pub(super) async fn push(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<ConfigPushed>, ApiError> {
    let outcome = state.service().push_config(&pk).await?;
    Ok(Json(pushed(&pk, outcome)?))
}
