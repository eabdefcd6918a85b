//! Admin API errors: `{"code":"...","message":"..."}` with the matching HTTP status.
//!
//! Client mistakes get a 4xx and a message that says what to fix; internal faults get a 500
//! with a generic message while the cause is logged (never sent: it may name files or
//! internals).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::registry;
use crate::service;

/// An error answer of the admin API.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_argument`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// 401 `unauthorized`.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        )
    }

    /// 404 `not_found` for an unknown route.
    pub(crate) fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 500 `internal`, logging the cause.
    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "admin API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the hub's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = aliot_admin::ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> Self {
        let (status, code) = match &e {
            registry::Error::DeviceNotFound { .. } => (StatusCode::NOT_FOUND, "device_not_found"),
            registry::Error::ProductNotFound { .. } => (StatusCode::NOT_FOUND, "product_not_found"),
            registry::Error::DeviceExists { .. } => (StatusCode::CONFLICT, "device_exists"),
            registry::Error::ProductExists { .. } => (StatusCode::CONFLICT, "product_exists"),
            registry::Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            registry::Error::AlreadyActivated { .. } => (StatusCode::CONFLICT, "device_activated"),
            registry::Error::DeviceDisabled { .. } => (StatusCode::CONFLICT, "device_disabled"),
            registry::Error::VersionConflict { .. } => (StatusCode::CONFLICT, "version_conflict"),
            registry::Error::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            // The change was not saved; /healthz says the same until the storage is repaired.
            registry::Error::Storage { .. } => {
                tracing::warn!(error = %ErrorChain(&e), "admin API: the registry could not save a change");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_failed",
                    format!("not saved: {}", ErrorChain(&e)),
                );
            }
            _ => return ApiError::internal(&ErrorChain(&e)),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        let status = match e {
            service::Error::Registry(e) => return e.into(),
            service::Error::DeviceOffline { .. } | service::Error::NotSubscribed { .. } => {
                StatusCode::CONFLICT
            }
            service::Error::QueueFull { .. } | service::Error::NotSaved { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            service::Error::TooManyPendingCalls { .. } => StatusCode::TOO_MANY_REQUESTS,
            service::Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            service::Error::BadReply { .. } => StatusCode::BAD_GATEWAY,
            service::Error::InvalidArgument(_) | service::Error::ThingModel { .. } => StatusCode::BAD_REQUEST,
            service::Error::ShadowRefused(ref r) if r.code == 409 => StatusCode::CONFLICT,
            service::Error::ShadowRefused(_) => StatusCode::BAD_REQUEST,
            service::Error::Topology(_) => StatusCode::CONFLICT,
        };
        let code = e.code();
        Self::new(status, code, ErrorChain(&e).to_string())
    }
}

/// An error with its sources, `: `-separated (for messages and logs).
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "payload_too_large", r.body_text());
        }
        Self::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}
