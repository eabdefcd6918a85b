//! Admin API errors: `{"code":"...","message":"..."}` with the matching HTTP status.
//!
//! Client mistakes get a 4xx and a message that says what to fix; internal faults get a 500
//! with a generic message while the cause is logged (never sent: it may name files or
//! internals).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// An error answer of the admin API.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
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
        let body = Body {
            code: self.code,
            message: &self.message,
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

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            Error::DeviceNotFound { .. } => (StatusCode::NOT_FOUND, "device_not_found"),
            Error::ProductNotFound { .. } => (StatusCode::NOT_FOUND, "product_not_found"),
            Error::DeviceExists { .. } => (StatusCode::CONFLICT, "device_exists"),
            Error::ProductExists { .. } => (StatusCode::CONFLICT, "product_exists"),
            Error::DeviceOffline { .. } => (StatusCode::CONFLICT, "device_offline"),
            Error::NotSubscribed { .. } => (StatusCode::CONFLICT, "not_subscribed"),
            Error::QueueFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "queue_full"),
            Error::TooManyPendingCalls { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_pending_calls"),
            Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "device_timeout"),
            Error::BadReply(_) => (StatusCode::BAD_GATEWAY, "bad_reply"),
            Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            #[allow(
                unreachable_patterns,
                reason = "variants added later map to 500 until they get a status"
            )]
            _ => return ApiError::internal(&e),
        };
        Self {
            status,
            code,
            message,
        }
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
