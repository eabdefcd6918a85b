//! `/api/v1/products`: register and list products.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::ApiError;
use crate::events::format_utc;
use crate::store::Product;

/// `POST /api/v1/products` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateProduct {
    name: String,
    #[serde(default)]
    product_key: Option<String>,
}

/// A product in answers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProductView {
    product_key: String,
    name: String,
    product_secret: String,
    /// Epoch ms.
    created: u64,
    /// ISO 8601 UTC.
    created_time: String,
    device_count: usize,
}

fn view(state: &AdminState, p: Product) -> ProductView {
    let device_count = state.store().device_count(&p.product_key);
    ProductView {
        created_time: format_utc(p.created_ms),
        created: p.created_ms,
        device_count,
        product_key: p.product_key,
        name: p.name,
        product_secret: p.product_secret,
    }
}

pub(super) async fn create(
    State(state): State<AdminState>,
    body: Result<Json<CreateProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<ProductView>), ApiError> {
    let Json(body) = body?;
    let product = state
        .store()
        .create_product(&body.name, body.product_key.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, product))))
}

pub(super) async fn list(State(state): State<AdminState>) -> Json<Vec<ProductView>> {
    Json(
        state
            .store()
            .products()
            .into_iter()
            .map(|p| view(&state, p))
            .collect(),
    )
}

pub(super) async fn show(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let product = state
        .store()
        .product(&pk)
        .ok_or(crate::Error::ProductNotFound { product_key: pk })?;
    Ok(Json(view(&state, product)))
}
