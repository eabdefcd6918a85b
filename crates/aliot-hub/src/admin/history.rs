//! What the hub keeps of a device's thing model, read back: latest values, a property's
//! history, events and the call log (`registry::History`). Pages are cursor-based: a page's
//! `nextCursor`, passed back as `cursor`, continues exactly after its last row.
//!
//! - `GET …/devices/{dn}/properties`: the latest value and time of each property (with the thing
//!   model's `name`, `dataType` and `unit` when the product has a model that defines it; the
//!   shape of the platform's QueryDevicePropertyStatus)
//! - `GET …/devices/{dn}/properties/{identifier}/history?from=&to=&limit=&cursor=&order=asc|desc`
//! - `GET …/devices/{dn}/events?identifier=&from=&to=&limit=&cursor=&order=`
//! - `GET …/devices/{dn}/calls?from=&to=&limit=&cursor=&order=`
//!
//! `from` and `to` (inclusive) are epoch ms or RFC 3339 times; `limit` is 1 to 1000 (default
//! 100). A bad parameter is a 400 naming it.

use aliot_admin::{
    CallRecord, DEFAULT_PAGE, EventRecord, HistoryQuery, LatestProperty, MAX_PAGE, Page, PropertyPoint,
};
use aliot_protocol::tsl::DataType;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use super::AdminState;
use super::error::ApiError;
use crate::clock::parse_rfc3339;
use crate::registry::{Cursor, Window};

/// Epoch ms or RFC 3339.
fn time(name: &str, value: &str) -> Result<u64, ApiError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{name}={value} is too large")));
    }
    parse_rfc3339(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name}={value:?} is neither epoch milliseconds nor an RFC 3339 time (2026-11-29T17:00:00Z)"
        ))
    })
}

/// The window of a query (`identifier` allowed or not).
fn window(q: &HistoryQuery, identifier_allowed: bool) -> Result<Window, ApiError> {
    if q.identifier.is_some() && !identifier_allowed {
        return Err(ApiError::bad_request("identifier= filters events only"));
    }
    let from = q
        .from
        .as_deref()
        .map(|v| time("from", v))
        .transpose()?
        .unwrap_or(0);
    let to =
        q.to.as_deref()
            .map(|v| time("to", v))
            .transpose()?
            .unwrap_or(u64::MAX);
    if from > to {
        return Err(ApiError::bad_request(format!("from={from} is after to={to}")));
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: give 1 to {MAX_PAGE}"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    Ok(Window {
        from,
        to,
        limit,
        after,
        order: q.order.unwrap_or_default(),
    })
}

/// `GET …/devices/{dn}/properties`.
pub(super) async fn properties(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<Vec<LatestProperty>>, ApiError> {
    let service = state.service();
    service.device(&pk, &dn).await?;
    let mut latest = service.registry().latest_properties(&pk, &dn).await?;
    if let Some(tsl) = service.tsl(&pk) {
        for p in &mut latest {
            if let Some(defined) = tsl.model.property(&p.identifier) {
                p.name = Some(defined.name.clone());
                p.data_type = Some(defined.data_type.type_name().to_owned());
                p.unit = match &defined.data_type {
                    DataType::Int { unit, .. }
                    | DataType::Float { unit, .. }
                    | DataType::Double { unit, .. } => unit.clone(),
                    _ => None,
                };
            }
        }
    }
    Ok(Json(latest))
}

/// `GET …/devices/{dn}/properties/{identifier}/history`.
pub(super) async fn property_history(
    State(state): State<AdminState>,
    Path((pk, dn, identifier)): Path<(String, String, String)>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Page<PropertyPoint>>, ApiError> {
    let Query(query) = query?;
    let window = window(&query, false)?;
    let service = state.service();
    service.device(&pk, &dn).await?;
    let page = service
        .registry()
        .property_history(&pk, &dn, &identifier, window)
        .await?;
    Ok(Json(page))
}

/// `GET …/devices/{dn}/events`.
pub(super) async fn events(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Page<EventRecord>>, ApiError> {
    let Query(query) = query?;
    let window = window(&query, true)?;
    let service = state.service();
    service.device(&pk, &dn).await?;
    let page = service
        .registry()
        .event_history(&pk, &dn, query.identifier, window)
        .await?;
    Ok(Json(page))
}

/// `GET …/devices/{dn}/calls`.
pub(super) async fn calls(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Page<CallRecord>>, ApiError> {
    let Query(query) = query?;
    let window = window(&query, false)?;
    let service = state.service();
    service.device(&pk, &dn).await?;
    let page = service.registry().call_log(&pk, &dn, window).await?;
    Ok(Json(page))
}
