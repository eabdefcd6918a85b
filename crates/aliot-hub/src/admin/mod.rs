//! The admin HTTP API: JSON over HTTP on its own listener, behind a bearer token.
//!
//! [`router`] builds the whole API as an axum [`Router`] (testable without a socket). Every
//! route except `GET /healthz` and `GET /metrics` needs `Authorization: Bearer <token>`; a
//! missing or wrong token gets 401. Errors are `{"code":"...","message":"..."}`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_argument` | bad JSON, unknown or missing fields, bad names, QoS 2, topic not the device's |
//! | 401 | `unauthorized` | missing or wrong token |
//! | 404 | `product_not_found`, `device_not_found`, `not_found` | unknown product, device or route |
//! | 409 | `device_exists`, `product_exists` | registration of something that exists |
//! | 409 | `device_offline`, `not_subscribed` | a call that needs the device's answer, and it cannot get one |
//! | 409 | `topology_refused` | a topology change the platform refuses (the message has its code: 6402 itself, 6400 too many, 6619 another gateway's, 6401 not in it) |
//! | 409 | `version_conflict` | a desired or shadow change named a version that is not the current one |
//! | 400 | `shadow_refused` | a shadow update past its caps (128 attributes, 16 KiB) |
//! | 429 | `too_many_pending_calls` | too many calls already wait for this device |
//! | 502 | `bad_reply` | the device answered something unusable (not JSON) |
//! | 503 | `queue_full` | the device's queue cannot take the message |
//! | 503 | `storage_failed` | `GET /healthz` only: the registry's storage failed and is not reopened yet |
//! | 504 | `device_timeout` | the device did not answer in time |
//! | 500 | `internal` | the hub failed (details in its log only) |
//!
//! Endpoints (all JSON unless said):
//!
//! - `GET /healthz`, `GET /metrics` (Prometheus text; both without a token). `/healthz` answers
//!   `{"status":"ok"}` (with `"warnings":[…]` when the registry skipped undecodable records),
//!   and 503 `{"status":"unavailable","code":"storage_failed","message":…}` while the
//!   registry cannot write (see [`crate::registry`]). The message is the storage error, which
//!   may name the data directory: keep the admin listener on loopback or a trusted network.
//! - `POST /api/v1/products` `{"name","productKey"?}` → 201; `GET /api/v1/products`;
//!   `GET /api/v1/products/{pk}`
//! - `POST /api/v1/products/{pk}/devices` `{"deviceName","deviceSecret"?}` → 201;
//!   `POST /api/v1/products/{pk}/devices:batch` `{"prefix","count","start"?}` or
//!   `{"deviceNames":[…]}` (+ `"skipExisting"?`) → 201;
//!   `GET /api/v1/products/{pk}/devices[?status=online|offline][&format=csv]`
//! - `GET|PATCH|DELETE /api/v1/products/{pk}/devices/{dn}` (PATCH `{"enabled":bool}`)
//! - `POST …/devices/{dn}/publish` `{"topic","payload","qos"?,"encoding"?}`
//! - `POST …/devices/{dn}/properties` `{"params","timeout_ms"?}`,
//!   `POST …/devices/{dn}/services/{identifier}` `{"params"?,"timeout_ms"?}`,
//!   `POST …/devices/{dn}/rrpc` `{"payload","encoding"?,"timeout_ms"?}`
//! - `GET|POST …/devices/{dn}/desired` (`?identifiers=a,b`; `{"items","versions"?}`),
//!   `POST …/devices/{dn}/desired/clear` `{"identifiers","versions"?}`
//! - `GET|PUT …/devices/{dn}/shadow` (`{"method":"update","state":{"desired"},"version","deltaUpdate"?}`)
//! - `GET …/devices/{dn}/properties` (latest values), `GET …/properties/{identifier}/history`,
//!   `GET …/devices/{dn}/events`, `GET …/devices/{dn}/calls` (pages: `?from=&to=&limit=&cursor=&order=`;
//!   see `history.rs`)
//! - `GET|POST …/devices/{dn}/topology` (a gateway's sub-devices; `{"subDevices":[{productKey,
//!   deviceName}]}` adds), `POST …/topology/remove`, `POST …/topology/notify`
//!   (`thing.topo.add.notify`), `GET …/devices/{dn}/gateway` (see `gateway.rs`)
//! - `GET /api/v1/events[?productKey=&deviceName=&type=a,b]` (server-sent events)
//! - `GET|PUT|PATCH|DELETE /api/v1/products/{pk}/config`, `GET …/config/file`,
//!   `POST …/config/push`: remote configuration (see `config.rs`); without a device HTTP
//!   listener the admin listener also serves the signed downloads `GET /config/{pk}/{id}?…`
//!   without the token
//! - `GET|POST /api/v1/consumer-groups` (`{"groupId"}`), `GET|DELETE /api/v1/consumer-groups/{id}`,
//!   `GET|PUT|DELETE /api/v1/products/{pk}/subscription` (`{"consumerGroupIds","flags"}`):
//!   server-side subscription (see `subscription.rs`, [`crate::subscription`])

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::http::HttpCounters;
use crate::registry::RegistryHealth;
use crate::service::Service;

mod access_keys;
mod config;
mod desired;
mod devices;
mod downlink;
mod error;
mod events;
mod gateway;
mod history;
mod ota;
mod process;
mod products;
mod shadow;
mod subscription;
mod token;

pub use token::{AdminToken, TokenSource, load_or_create as load_or_create_token};

/// Largest request body (a batch of 100 000 device names fits).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the admin handlers share: the platform's service and the token. A cheap `Clone`.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<StateInner>,
}

struct StateInner {
    service: Service,
    token: AdminToken,
    /// The HTTP listener's counters (connections accepted and refused at the limit).
    http: Arc<HttpCounters>,
    /// Cancelled when the hub shuts down: ends the event streams, which would otherwise keep
    /// the HTTP server's graceful shutdown waiting forever.
    closing: CancellationToken,
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("service", &self.inner.service)
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// State over the platform's service, protected by `token`.
    pub fn new(service: Service, token: AdminToken) -> Self {
        Self {
            inner: Arc::new(StateInner {
                service,
                token,
                http: Arc::default(),
                closing: CancellationToken::new(),
            }),
        }
    }

    /// Ends the event streams (call it when the HTTP server shuts down).
    pub fn close_streams(&self) {
        self.inner.closing.cancel();
    }

    pub(crate) fn service(&self) -> &Service {
        &self.inner.service
    }

    pub(crate) fn http_counters(&self) -> &Arc<HttpCounters> {
        &self.inner.http
    }
}

/// The admin API.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/products", get(products::list).post(products::create))
        .route(
            "/api/v1/products/{pk}",
            get(products::show).patch(products::update),
        )
        .route(
            "/api/v1/products/{pk}/tsl",
            get(products::export_tsl)
                .put(products::import_tsl)
                .delete(products::delete_tsl),
        )
        .route(
            "/api/v1/products/{pk}/config",
            get(config::show)
                .put(config::upload)
                .patch(config::update)
                .delete(config::delete),
        )
        .route("/api/v1/products/{pk}/config/file", get(config::download))
        .route("/api/v1/products/{pk}/config/push", post(config::push))
        .route(
            "/api/v1/products/{pk}/devices",
            get(devices::list).post(devices::create),
        )
        // `devices:batch`: a literal suffix after a path parameter cannot be routed as such,
        // so the segment is a parameter and the handler checks it.
        .route("/api/v1/products/{pk}/{action}", post(devices::action))
        .route(
            "/api/v1/products/{pk}/devices/{dn}",
            get(devices::show).patch(devices::update).delete(devices::delete),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/publish",
            post(downlink::publish),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/properties",
            get(history::properties).post(downlink::set_properties),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/properties/{identifier}/history",
            get(history::property_history),
        )
        .route("/api/v1/products/{pk}/devices/{dn}/events", get(history::events))
        .route("/api/v1/products/{pk}/devices/{dn}/calls", get(history::calls))
        .route(
            "/api/v1/products/{pk}/devices/{dn}/services/{identifier}",
            post(downlink::invoke_service),
        )
        .route("/api/v1/products/{pk}/devices/{dn}/rrpc", post(downlink::rrpc))
        .route("/api/v1/products/{pk}/devices/{dn}/reset", post(devices::reset))
        .route(
            "/api/v1/products/{pk}/devices/{dn}/topology",
            get(gateway::topology).post(gateway::add),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/topology/remove",
            post(gateway::remove),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/topology/notify",
            post(gateway::notify),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/gateway",
            get(gateway::gateway),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/desired",
            get(desired::query).post(desired::set),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/desired/clear",
            post(desired::clear),
        )
        .route(
            "/api/v1/products/{pk}/devices/{dn}/shadow",
            get(shadow::get).put(shadow::update),
        )
        .route(
            "/api/v1/ota/packages",
            get(ota::list_packages)
                .post(ota::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/ota/packages/{id}",
            get(ota::show_package).delete(ota::delete_package),
        )
        .route("/api/v1/ota/jobs", get(ota::list_jobs).post(ota::create_job))
        .route("/api/v1/ota/jobs/{id}", get(ota::show_job))
        .route("/api/v1/ota/jobs/{id}/cancel", post(ota::cancel_job))
        .route("/api/v1/products/{pk}/devices/{dn}/ota", get(ota::device_modules))
        .route(
            "/api/v1/consumer-groups",
            get(subscription::list_groups).post(subscription::create_group),
        )
        .route(
            "/api/v1/consumer-groups/{id}",
            get(subscription::show_group).delete(subscription::delete_group),
        )
        .route(
            "/api/v1/products/{pk}/subscription",
            get(subscription::show_relation)
                .put(subscription::set_relation)
                .delete(subscription::delete_relation),
        )
        .route(
            "/api/v1/access-keys",
            get(access_keys::list).post(access_keys::create),
        )
        .route(
            "/api/v1/access-keys/{id}",
            axum::routing::delete(access_keys::delete),
        )
        .route("/api/v1/events", get(events::stream))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        // Without a token, like most Prometheus exporters (scrapers and `aliot bench
        // --hub-metrics` read it as is): it holds counts only, never names or secrets.
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// 401 unless the request carries `Authorization: Bearer <token>` (scheme case-insensitive).
async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes();
        (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
    });
    match presented {
        Some(t) if state.inner.token.matches(t) => next.run(request).await,
        _ => error::ApiError::unauthorized().into_response(),
    }
}

/// `GET /healthz`: 503 while the registry cannot write, with the reason (a load balancer or an
/// operator then knows that registrations, changes and deletions fail). Reads and MQTT keep
/// working meanwhile: the registry serves them from memory.
async fn healthz(State(state): State<AdminState>) -> Response {
    let health = state.service().registry().health();
    let mut warnings = Vec::new();
    if health.records_skipped > 0 {
        warnings.push(format!(
            "registry: {} record(s) could not be decoded and were skipped: {}",
            health.records_skipped,
            health.skipped_records.join(", ")
        ));
    }
    let (status, body) = match &health.storage_error {
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            aliot_admin::Health {
                status: "unavailable".into(),
                code: Some("storage_failed".into()),
                message: Some(format!(
                    "the registry cannot write (registrations, changes and deletions fail until its \
                     storage is reopened): {reason}"
                )),
                warnings,
            },
        ),
        None => (
            StatusCode::OK,
            aliot_admin::Health {
                status: "ok".into(),
                warnings,
                ..aliot_admin::Health::default()
            },
        ),
    };
    (status, axum::Json(body)).into_response()
}

async fn no_route() -> error::ApiError {
    error::ApiError::no_route()
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

fn render_http(out: &mut String, counters: &HttpCounters) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let _ = write!(
        out,
        "# HELP aliot_hub_admin_connections_total Admin API connections accepted.\n\
         # TYPE aliot_hub_admin_connections_total counter\naliot_hub_admin_connections_total {}\n\
         # HELP aliot_hub_admin_connections_rejected_total Admin API connections closed at accept \
         because the connection limit was reached.\n\
         # TYPE aliot_hub_admin_connections_rejected_total counter\n\
         aliot_hub_admin_connections_rejected_total {}\n",
        counters.accepted.load(Relaxed),
        counters.rejected.load(Relaxed),
    );
}

fn render_registry_health(out: &mut String, health: &RegistryHealth) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "# HELP aliot_hub_registry_storage_ok Whether the registry can write (0 after a storage \
         failure, until its file is reopened).\n\
         # TYPE aliot_hub_registry_storage_ok gauge\naliot_hub_registry_storage_ok {}\n\
         # HELP aliot_hub_registry_storage_failures_total Registry writes, syncs and reopens that \
         failed in storage.\n\
         # TYPE aliot_hub_registry_storage_failures_total counter\n\
         aliot_hub_registry_storage_failures_total {}\n\
         # HELP aliot_hub_registry_reopens_total Times the registry file was reopened after a \
         storage failure.\n\
         # TYPE aliot_hub_registry_reopens_total counter\naliot_hub_registry_reopens_total {}\n\
         # HELP aliot_hub_registry_records_skipped Registry records skipped because they could \
         not be decoded.\n\
         # TYPE aliot_hub_registry_records_skipped gauge\naliot_hub_registry_records_skipped {}\n\
         # HELP aliot_hub_registry_properties_refused_total Property posts refused at the \
         per-device limits of remembered properties (answered 6106).\n\
         # TYPE aliot_hub_registry_properties_refused_total counter\n\
         aliot_hub_registry_properties_refused_total {}\n\
         # HELP aliot_hub_history_rows_written_total History rows (property values, events, calls) \
         written durably.\n\
         # TYPE aliot_hub_history_rows_written_total counter\n\
         aliot_hub_history_rows_written_total {}\n\
         # HELP aliot_hub_history_rows_refused_total History rows not kept: the writer's queue was \
         full or the write failed (their posts were answered 500).\n\
         # TYPE aliot_hub_history_rows_refused_total counter\n\
         aliot_hub_history_rows_refused_total {}\n",
        u8::from(health.storage_error.is_none()),
        health.storage_failures,
        health.reopens,
        health.records_skipped,
        health.properties_refused,
        health.history_rows_written,
        health.history_rows_refused,
    );
}

/// Prometheus text: the hub's counters, the registry's counts and health, the process's memory
/// and CPU.
async fn metrics(State(state): State<AdminState>) -> Response {
    let mut out = state.service().render_metrics();
    render_registry_health(&mut out, &state.service().registry().health());
    render_http(&mut out, state.http_counters());
    ota::render(&mut out, state.service().ota());
    process::render(&mut out);
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
