//! Products: list, create, one product's page (its TSL viewed, imported and exported, the
//! dynamic registration switch, its secret on demand).

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect};
use serde::{Deserialize, Serialize};

use super::page::{Failure, PageResult, render};
use super::session::Session;
use super::{ConsoleState, base, time};
use crate::registry::{NodeType, Product};

/// A product as the pages show it (never its secret, unless asked).
#[derive(Serialize)]
struct ProductRow {
    product_key: String,
    name: String,
    devices: usize,
    online: usize,
    dynamic_registration: bool,
    node_type: NodeType,
    created: String,
}

fn row(state: &ConsoleState, p: &Product) -> ProductRow {
    ProductRow {
        product_key: p.product_key.clone(),
        name: p.name.clone(),
        devices: p.device_count,
        online: state.service().online_devices(&p.product_key).len(),
        dynamic_registration: p.dynamic_registration,
        node_type: p.node_type,
        created: time(p.created_ms),
    }
}

/// `GET /console/products`.
pub(super) async fn list(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let products = state.service().products().await?;
    let rows: Vec<ProductRow> = products.iter().map(|p| row(&state, p)).collect();
    Ok(render(
        "products.html",
        minijinja::context! { products => super::page::ser(&rows), ..base(&session, "products") },
    ))
}

/// The create form.
#[derive(Deserialize)]
pub(super) struct CreateProduct {
    name: String,
    #[serde(default)]
    product_key: String,
    #[serde(default)]
    node_type: String,
}

/// `POST /console/products`.
pub(super) async fn create(
    State(state): State<ConsoleState>,
    form: Result<Form<CreateProduct>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let node_type = match form.node_type.as_str() {
        "" | "direct" => NodeType::Direct,
        "gateway" => NodeType::Gateway,
        "sub" => NodeType::Sub,
        other => {
            return Err(Failure::bad_input(format!("unknown node type {other:?}")).back("/console/products"));
        }
    };
    let key = form.product_key.trim();
    let service = state.service();
    let product = service
        .create_product(form.name.trim(), (!key.is_empty()).then_some(key))
        .await
        .map_err(|e| Failure::from(e).back("/console/products"))?;
    if node_type != NodeType::Direct {
        service.set_node_type(&product.product_key, node_type).await?;
    }
    Ok(Redirect::to(&format!("/console/products/{}", product.product_key)).into_response())
}

async fn show_page(
    state: &ConsoleState,
    session: &Session,
    pk: &str,
    secret: bool,
    message: Option<String>,
) -> PageResult {
    let service = state.service();
    let product = service.product(pk).await?;
    let tsl = service.tsl(pk);
    let pretty = tsl.as_ref().map(|t| {
        serde_json::from_str::<serde_json::Value>(&t.json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| t.json.clone())
    });
    let model = tsl.as_ref().map(|t| super::devices::model_view(&t.model));
    Ok(render(
        "product.html",
        minijinja::context! {
            product => super::page::ser(&row(state, &product)),
            secret => super::page::ser(&secret.then(|| product.product_secret.clone())),
            tsl => super::page::ser(&pretty),
            model => super::page::ser(&model),
            message => super::page::ser(&message),
            ..base(session, "products"),
        },
    ))
}

/// `GET /console/products/{pk}`.
pub(super) async fn show(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(pk): Path<String>,
) -> PageResult {
    show_page(&state, &session, &pk, false, None).await
}

/// `POST /console/products/{pk}/secret`: the page with the product secret shown.
pub(super) async fn secret(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(pk): Path<String>,
) -> PageResult {
    show_page(&state, &session, &pk, true, None).await
}

/// The switch's form.
#[derive(Deserialize)]
pub(super) struct Switch {
    #[serde(default)]
    enabled: String,
}

/// `POST /console/products/{pk}/dynreg`.
pub(super) async fn dynreg(
    State(state): State<ConsoleState>,
    Path(pk): Path<String>,
    form: Result<Form<Switch>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(Failure::bad_input(format!("enabled={other:?}: true or false"))),
    };
    state.service().set_dynamic_registration(&pk, enabled).await?;
    Ok(Redirect::to(&format!("/console/products/{pk}")).into_response())
}

/// The import form: the TSL JSON (the page's script fills it from a chosen file).
#[derive(Deserialize)]
pub(super) struct ImportTsl {
    tsl: String,
}

/// `POST /console/products/{pk}/tsl`.
pub(super) async fn import_tsl(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(pk): Path<String>,
    form: Result<Form<ImportTsl>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    if form.tsl.trim().is_empty() {
        return Err(
            Failure::bad_input("the TSL is empty: paste it or choose its file")
                .back(format!("/console/products/{pk}")),
        );
    }
    state
        .service()
        .import_tsl(&pk, form.tsl)
        .await
        .map_err(|e| Failure::from(e).back(format!("/console/products/{pk}")))?;
    show_page(&state, &session, &pk, false, Some("Thing model imported.".into())).await
}

/// `GET /console/products/{pk}/tsl.json`: the TSL as a download.
pub(super) async fn export_tsl(State(state): State<ConsoleState>, Path(pk): Path<String>) -> PageResult {
    let service = state.service();
    service.product(&pk).await?;
    let Some(tsl) = service.tsl(&pk) else {
        return Err(Failure::new(
            axum::http::StatusCode::NOT_FOUND,
            "No thing model",
            format!("product {pk} has no thing model yet"),
        ));
    };
    let mut response = tsl.json.clone().into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{pk}-tsl.json\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
