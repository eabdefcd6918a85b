//! `/api/v1/products`: register and list products.

use aliot_admin::{CreateProduct, ProductView, TslSummary, UpdateProduct};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use super::error::ApiError;
use crate::clock::format_utc;
use crate::registry::Product;

fn view(p: Product) -> ProductView {
    ProductView {
        created_time: format_utc(p.created_ms),
        created: p.created_ms,
        device_count: p.device_count,
        product_key: p.product_key,
        name: p.name,
        product_secret: p.product_secret,
        dynamic_registration: p.dynamic_registration,
        node_type: p.node_type,
    }
}

pub(super) async fn create(
    State(state): State<AdminState>,
    body: Result<Json<CreateProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<ProductView>), ApiError> {
    let Json(body) = body?;
    let product = state
        .service()
        .create_product(&body.name, body.product_key.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(view(product))))
}

pub(super) async fn list(State(state): State<AdminState>) -> Result<Json<Vec<ProductView>>, ApiError> {
    let products = state.service().products().await?;
    Ok(Json(products.into_iter().map(view).collect()))
}

pub(super) async fn update(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    body: Result<Json<UpdateProduct>, JsonRejection>,
) -> Result<Json<ProductView>, ApiError> {
    let Json(body) = body?;
    let service = state.service();
    let mut product = match body.dynamic_registration {
        Some(enabled) => service.set_dynamic_registration(&pk, enabled).await?,
        None => service.product(&pk).await?,
    };
    if let Some(node_type) = body.node_type {
        product = service.set_node_type(&pk, node_type).await?;
    }
    Ok(Json(view(product)))
}

/// `PUT …/tsl`: the console's TSL export, stored as it is once it reads.
pub(super) async fn import_tsl(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    body: Bytes,
) -> Result<Json<TslSummary>, ApiError> {
    let service = state.service();
    service.product(&pk).await?;
    let json =
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the TSL is not UTF-8 text"))?;
    let tsl = service.import_tsl(&pk, json).await?;
    Ok(Json(TslSummary {
        product_key: pk,
        properties: tsl.model.properties.len(),
        events: tsl.model.events.len(),
        services: tsl.model.services.len(),
    }))
}

/// `GET …/tsl`: the thing model as it was imported.
pub(super) async fn export_tsl(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Response, ApiError> {
    let service = state.service();
    service.product(&pk).await?;
    let Some(tsl) = service.tsl(&pk) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "tsl_not_found",
            format!("product {pk} has no thing model"),
        ));
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        tsl.json.clone(),
    )
        .into_response())
}

/// `DELETE …/tsl`.
pub(super) async fn delete_tsl(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = state.service();
    service.product(&pk).await?;
    service.delete_tsl(&pk).await?;
    Ok(Json(serde_json::json!({"deleted": true})))
}

pub(super) async fn show(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    Ok(Json(view(state.service().product(&pk).await?)))
}
