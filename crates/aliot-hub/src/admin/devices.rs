//! `/api/v1/products/{pk}/devices…`: register, list, show, enable/disable and delete devices.

use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use aliot_admin::{
    BatchQuery, CreateBatch, CreateDevice, Credentials, Deleted, DeviceStatus, DeviceView, Format, ListQuery,
    UpdateDevice,
};

use super::AdminState;
use super::error::ApiError;
use crate::clock::format_utc;
use crate::registry::{Device, MAX_BATCH, NewDevice};
use crate::service::SessionInfo;

fn credentials(d: Device) -> Credentials {
    Credentials {
        product_key: d.product_key,
        device_name: d.device_name,
        device_secret: d.device_secret,
        iot_id: d.iot_id,
    }
}

fn view(d: Device, session: Option<SessionInfo>, properties: Option<Map<String, Value>>) -> DeviceView {
    let client_ip = session.as_ref().map(|s| s.client_ip).or(d.last_ip);
    DeviceView {
        status: if session.is_some() {
            DeviceStatus::Online
        } else {
            DeviceStatus::Offline
        },
        created_time: format_utc(d.created_ms),
        created: d.created_ms,
        last_online_time: d.last_online_ms.map(format_utc),
        last_online: d.last_online_ms,
        client_ip,
        activated: d.last_online_ms.is_some(),
        dynamic_registration: d.dynamic_registration.map(|e| e.as_str().to_owned()),
        device_token: None,
        session,
        properties,
        enabled: d.enabled,
        iot_id: d.iot_id,
        device_secret: d.device_secret,
        device_name: d.device_name,
        product_key: d.product_key,
    }
}

/// The device's full view: registry, session and last properties.
async fn full_view(state: &AdminState, d: Device) -> DeviceView {
    let service = state.service();
    let session = service.session(&d.product_key, &d.device_name);
    let properties = service.last_properties(&d.product_key, &d.device_name).await;
    let token = service.device_token(&d.product_key, &d.device_name).await;
    DeviceView {
        device_token: token,
        ..view(d, session, Some(properties.unwrap_or_default()))
    }
}

fn csv(devices: impl IntoIterator<Item = (String, String, String)>) -> Response {
    let mut out = String::new();
    for (pk, dn, secret) in devices {
        // Names and secrets are validated to hold no ',', quote or line break.
        out.push_str(&pk);
        out.push(',');
        out.push_str(&dn);
        out.push(',');
        out.push_str(&secret);
        out.push('\n');
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}

pub(super) async fn create(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    body: Result<Json<CreateDevice>, JsonRejection>,
) -> Result<(StatusCode, Json<Credentials>), ApiError> {
    let Json(body) = body?;
    let device = state
        .service()
        .create_device(&pk, &body.device_name, body.device_secret.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(credentials(device))))
}

/// `POST /api/v1/products/{pk}/{action}`: only `devices:batch` exists.
pub(super) async fn action(
    State(state): State<AdminState>,
    Path((pk, action)): Path<(String, String)>,
    query: Result<Query<BatchQuery>, QueryRejection>,
    body: Result<Json<CreateBatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    if action != "devices:batch" {
        return Err(ApiError::no_route());
    }
    let Query(query) = query?;
    let Json(body) = body?;
    let names = batch_names(body.prefix, body.count, body.start, body.device_names)?;
    let new = names.into_iter().map(NewDevice::named).collect();
    let devices = state
        .service()
        .create_devices(&pk, new, body.skip_existing)
        .await?;
    let response = match query.format.unwrap_or_default() {
        Format::Csv => csv(devices
            .into_iter()
            .map(|d| (d.product_key, d.device_name, d.device_secret))),
        Format::Json => Json(devices.into_iter().map(credentials).collect::<Vec<_>>()).into_response(),
    };
    Ok((StatusCode::CREATED, response).into_response())
}

fn batch_names(
    prefix: Option<String>,
    count: Option<u64>,
    start: Option<u64>,
    names: Option<Vec<String>>,
) -> Result<Vec<String>, ApiError> {
    match (prefix, count, names) {
        (None, None, Some(names)) if start.is_none() => Ok(names),
        (Some(prefix), Some(count), None) => {
            if count == 0 || count > MAX_BATCH as u64 {
                return Err(ApiError::bad_request(format!(
                    "count must be between 1 and {MAX_BATCH}"
                )));
            }
            let start = start.unwrap_or(0);
            let end = start
                .checked_add(count)
                .ok_or_else(|| ApiError::bad_request("start + count is too large"))?;
            Ok((start..end).map(|i| format!("{prefix}{i}")).collect())
        }
        _ => Err(ApiError::bad_request(
            "give either \"prefix\" and \"count\" (and optionally \"start\"), or \"deviceNames\"",
        )),
    }
}

pub(super) async fn list(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let devices = state.service().devices(&pk).await?;
    let online: HashSet<String> = state.service().online_devices(&pk).into_iter().collect();
    let selected = devices.into_iter().filter(|d| match query.status {
        None => true,
        Some(DeviceStatus::Online) => online.contains(&d.device_name),
        Some(DeviceStatus::Offline) => !online.contains(&d.device_name),
    });
    Ok(match query.format.unwrap_or_default() {
        Format::Csv => csv(selected.map(|d| (d.product_key, d.device_name, d.device_secret))),
        Format::Json => {
            let views: Vec<DeviceView> = selected
                .map(|d| {
                    let session = if online.contains(&d.device_name) {
                        state.service().session(&d.product_key, &d.device_name)
                    } else {
                        None
                    };
                    view(d, session, None)
                })
                .collect();
            Json(views).into_response()
        }
    })
}

pub(super) async fn show(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = state.service().device(&pk, &dn).await?;
    Ok(Json(full_view(&state, device).await))
}

pub(super) async fn update(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<UpdateDevice>, JsonRejection>,
) -> Result<Json<DeviceView>, ApiError> {
    let Json(body) = body?;
    state.service().device(&pk, &dn).await?;
    let Some(enabled) = body.enabled else {
        return Err(ApiError::bad_request("nothing to change: give \"enabled\""));
    };
    let device = state.service().set_enabled(&pk, &dn, enabled).await?;
    Ok(Json(full_view(&state, device).await))
}

/// `POST …/devices/{dn}/reset`: an activated device may register dynamically again.
pub(super) async fn reset(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = state.service().reset_device(&pk, &dn).await?;
    Ok(Json(full_view(&state, device).await))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    state.service().device(&pk, &dn).await?;
    // Disconnects it too, and drops its stored session and offline queue.
    let (device, was_online) = state.service().delete_device(&pk, &dn).await?;
    Ok(Json(Deleted {
        product_key: device.product_key,
        device_name: device.device_name,
        deleted: true,
        was_online,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_come_from_a_prefix_or_a_list() {
        let names = batch_names(Some("bench-".into()), Some(3), None, None).expect("names");
        assert_eq!(names, ["bench-0", "bench-1", "bench-2"]);
        let names = batch_names(Some("d".into()), Some(2), Some(10), None).expect("names");
        assert_eq!(names, ["d10", "d11"]);
        let names = batch_names(None, None, None, Some(vec!["a".into()])).expect("names");
        assert_eq!(names, ["a"]);
        assert!(batch_names(Some("d".into()), None, None, None).is_err());
        assert!(batch_names(Some("d".into()), Some(1), None, Some(vec![])).is_err());
        assert!(batch_names(Some("d".into()), Some(0), None, None).is_err());
        assert!(batch_names(Some("d".into()), Some(MAX_BATCH as u64 + 1), None, None).is_err());
        assert!(batch_names(None, None, None, None).is_err());
    }
}
