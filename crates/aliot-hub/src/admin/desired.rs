//! `…/devices/{dn}/desired`: desired properties (set, query, clear), through the service.

use aliot_admin::{
    ClearDesired, DesiredCleared, DesiredItem, DesiredList, DesiredQuery, DesiredSet, SetDesired,
};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};

use super::AdminState;
use super::error::ApiError;

/// `POST …/desired` `{"items":{…},"versions"?:{…}}`.
pub(super) async fn set(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<SetDesired>, JsonRejection>,
) -> Result<Json<DesiredSet>, ApiError> {
    let Json(body) = body?;
    let (outcome, pushed) = state
        .service()
        .set_desired(&pk, &dn, body.items, body.versions)
        .await?;
    Ok(Json(DesiredSet {
        versions: outcome.versions,
        pushed,
    }))
}

/// `GET …/desired[?identifiers=a,b]`: the values with their versions and times, plus the
/// thing model's name and data type when the product has one.
pub(super) async fn query(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    q: Result<Query<DesiredQuery>, QueryRejection>,
) -> Result<Json<DesiredList>, ApiError> {
    let Query(q) = q?;
    let wanted: Option<Vec<&str>> = q
        .identifiers
        .as_deref()
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect());
    if wanted
        .as_ref()
        .is_some_and(|w| w.len() > crate::service::MAX_DESIRED_PER_CALL)
    {
        return Err(ApiError::bad_request(format!(
            "ask for at most {} identifiers",
            crate::service::MAX_DESIRED_PER_CALL
        )));
    }
    let stored = state.service().desired(&pk, &dn).await?;
    let tsl = state.service().tsl(&pk);
    let items = stored
        .values()
        .filter(|(id, _)| wanted.as_ref().is_none_or(|w| w.contains(id)))
        .filter_map(|(id, v)| {
            let property = tsl.as_ref().and_then(|t| t.model.property(id));
            Some(DesiredItem {
                identifier: id.to_owned(),
                value: v.value.clone()?,
                version: v.version,
                time: v.time,
                name: property.map(|p| p.name.clone()),
                data_type: property.map(|p| p.data_type.type_name().to_owned()),
            })
        })
        .collect();
    Ok(Json(DesiredList { items }))
}

/// `POST …/desired/clear` `{"identifiers":[…],"versions"?:{…}}`.
pub(super) async fn clear(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<ClearDesired>, JsonRejection>,
) -> Result<Json<DesiredCleared>, ApiError> {
    let Json(body) = body?;
    let outcome = state
        .service()
        .clear_desired(&pk, &dn, body.identifiers, body.versions)
        .await?;
    Ok(Json(DesiredCleared {
        versions: outcome.versions,
        skipped: outcome.skipped.into_keys().collect(),
    }))
}
