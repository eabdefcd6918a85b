//! Aliyun's OpenAPI (RPC style, version 2018-01-20; cloud-side spec §1) over the platform's
//! service, so a backend written with the official server SDKs runs against the hub.
//!
//! Its own HTTP(S) listener (`[openapi]`, default `127.0.0.1:8082`), path `/`, GET and POST:
//! [`verify`] reads the parameters and checks the signature, time and nonce; [`actions`] runs
//! the action through the [`Service`]; [`envelope`] writes the answer (JSON, or XML with
//! `Format=XML`).
//!
//! Decisions (docs/backend.md): `IotInstanceId` is accepted and ignored (one hub is one
//! instance); `RegionId` is not needed; versions 2018-01-20 and 2017-04-20 are answered, others
//! get 400 `InvalidVersion`; a body above [`MAX_BODY`] gets 413 `RequestTooLarge`. The request
//! target (`/?query`) may be up to 65,534 bytes (the `http` crate's URI limit; longer: 414),
//! the whole head about 400 KiB (431).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request};
use axum::response::Response;

use crate::service::Service;

pub(crate) mod action;
pub(crate) mod actions;
mod envelope;
mod replay;
mod verify;

use self::action::{ApiError, Ctx};
use self::envelope::Format;

/// Largest request body read, bytes; above: 413 `RequestTooLarge`.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// What the listener serves with. A cheap `Clone` handle.
#[derive(Debug, Clone)]
pub(crate) struct OpenApiState {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: Service,
    nonces: replay::Nonces,
}

impl OpenApiState {
    /// State over the platform's service.
    pub(crate) fn new(service: Service) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                service,
                nonces: replay::Nonces::default(),
            }),
        }
    }
}

/// The OpenAPI as an axum router: every path and method comes to one handler (the platform's
/// path is `/`; anything else gets its error in the envelope).
pub(crate) fn router(state: OpenApiState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<OpenApiState>, request: Request<Body>) -> Response {
    let request_id = envelope::request_id();
    let (parts, body) = request.into_parts();
    let service = &state.inner.service;
    let query = parts.uri.query().unwrap_or("").to_owned();
    let format_hint = Format::of(
        aliot_protocol::openapi::form_decode(&query)
            .iter()
            .find(|(k, _)| k == "Format")
            .map(|(_, v)| v.as_str()),
    );
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            service.metrics().openapi_call("(none)", "RequestTooLarge");
            let e = ApiError::gateway(
                413,
                "RequestTooLarge",
                format!("The request body exceeds {MAX_BODY} bytes."),
            );
            return envelope::respond(format_hint, None, &request_id, Err(e));
        }
    };
    if parts.uri.path() != "/" || !matches!(parts.method, Method::GET | Method::POST) {
        service.metrics().openapi_call("(none)", "InvalidAction.NotFound");
        let e = ApiError::gateway(
            404,
            "InvalidAction.NotFound",
            format!(
                "Specified api is not found, please check your url and method: {} {} (the OpenAPI is GET or POST on /).",
                parts.method,
                parts.uri.path()
            ),
        );
        return envelope::respond(format_hint, None, &request_id, Err(e));
    }
    let incoming = verify::Incoming {
        method: parts.method.as_str(),
        query: &query,
        headers: &parts.headers,
        body: &body,
    };
    let parsed = verify::parse(&incoming);
    let format = Format::of(parsed.params.get("Format"));
    let action = parsed.action.clone();
    let authenticated = verify::authenticate(
        &incoming,
        &parsed,
        |id| service.access_key_secret(id),
        &state.inner.nonces,
        crate::clock::now_ms(),
    );
    let access_key_id = match authenticated {
        Ok(id) => id,
        Err(e) => {
            service.metrics().openapi_call("(none)", &e.code);
            tracing::debug!(code = %e.code, action = ?action, "OpenAPI request refused");
            return envelope::respond(format, action.as_deref(), &request_id, Err(e));
        }
    };
    let Some(action) = action else {
        service.metrics().openapi_call("(none)", "MissingParameter");
        let e = ApiError::gateway(
            400,
            "MissingParameter",
            "The input parameter \"Action\" that is mandatory for processing this request is not supplied.",
        );
        return envelope::respond(format, None, &request_id, Err(e));
    };
    let ctx = Ctx {
        service,
        params: &parsed.params,
        access_key_id: &access_key_id,
    };
    let (label, result) = match actions::run(&action, ctx).await {
        Some(result) => (action.as_str(), result),
        None => (
            "unknown",
            Err(ApiError::gateway(
                404,
                "InvalidAction.NotFound",
                format!("Specified api is not found, please check your url and method: {action}"),
            )),
        ),
    };
    let code = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_ref(),
    };
    service.metrics().openapi_call(label, code);
    tracing::debug!(action = %action, code, request_id = %request_id, access_key_id = ctx.access_key_id, "OpenAPI call");
    envelope::respond(format, Some(&action), &request_id, result)
}
