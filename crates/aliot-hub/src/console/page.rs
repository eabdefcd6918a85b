//! Rendering: the templates (minijinja, embedded with `include_str!`, HTML autoescape on for
//! every template), the security headers of every console answer, and the console's error
//! page ([`Failure`]).

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value};

use crate::{registry, service};

/// The Content-Security-Policy of every console answer: no inline script or style, nothing
/// from elsewhere, no framing.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("products.html", include_str!("templates/products.html")),
    ("product.html", include_str!("templates/product.html")),
    ("devices.html", include_str!("templates/devices.html")),
    ("device.html", include_str!("templates/device.html")),
    ("live.html", include_str!("templates/live.html")),
    ("ota.html", include_str!("templates/ota.html")),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Every template escapes what it prints, whatever its name.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    // Asset URLs carry the hub's version: assets are cached for a year, a new binary is a new URL.
    env.add_global("version", env!("CARGO_PKG_VERSION"));
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // A template that does not parse is a bug caught by the console's tests; the page
            // then answers 500 naming it.
            tracing::error!(template = name, error = %e, "console template does not parse");
        }
    }
    env
});

/// Renders template `name` with `ctx`.
pub(crate) fn render(name: &str, ctx: Value) -> Response {
    render_status(StatusCode::OK, name, ctx)
}

/// Renders template `name` with `ctx`, answered with `status`.
pub(crate) fn render_status(status: StatusCode, name: &str, ctx: Value) -> Response {
    match ENV.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the console page failed to render (see the hub's log)",
            )
                .into_response()
        }
    }
}

/// Adds the console's security headers to an answer (and `no-store` unless it set its own
/// caching).
pub(crate) async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the console's own form posts.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A console request that failed: an error page with a status, a title and a message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) message: String,
    /// Where the page offers to go back to.
    pub(crate) back: Option<String>,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            title,
            message: message.into(),
            back: None,
        }
    }

    /// A 400 for bad form input.
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid input", message)
    }

    /// A 403 for a refused cross-site or token-less request.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Request refused", message)
    }

    /// Offers a link back to `url`.
    pub(crate) fn back(mut self, url: impl Into<String>) -> Self {
        self.back = Some(url.into());
        self
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        render_status(
            self.status,
            "error.html",
            minijinja::context! {
                title => self.title,
                status => self.status.as_u16(),
                message => ser(&self.message),
                back => ser(&self.back),
            },
        )
    }
}

/// An error with its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<registry::Error> for Failure {
    fn from(e: registry::Error) -> Self {
        let (status, title) = match &e {
            registry::Error::DeviceNotFound { .. } => (StatusCode::NOT_FOUND, "Device not found"),
            registry::Error::ProductNotFound { .. } => (StatusCode::NOT_FOUND, "Product not found"),
            registry::Error::DeviceExists { .. } | registry::Error::ProductExists { .. } => {
                (StatusCode::CONFLICT, "Already registered")
            }
            registry::Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "Invalid input"),
            registry::Error::Storage { .. } => (StatusCode::SERVICE_UNAVAILABLE, "Not saved"),
            registry::Error::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "Not available"),
            _ => (StatusCode::CONFLICT, "Refused"),
        };
        Self::new(status, title, chain(&e))
    }
}

impl From<service::Error> for Failure {
    fn from(e: service::Error) -> Self {
        let (status, title) = match e {
            service::Error::Registry(e) => return e.into(),
            service::Error::DeviceOffline { .. } | service::Error::NotSubscribed { .. } => {
                (StatusCode::CONFLICT, "The device cannot be reached")
            }
            service::Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "The device did not answer"),
            service::Error::InvalidArgument(_) | service::Error::ThingModel { .. } => {
                (StatusCode::BAD_REQUEST, "Invalid input")
            }
            _ => (StatusCode::CONFLICT, "Refused"),
        };
        Self::new(status, title, chain(&e))
    }
}

impl From<crate::ota::OtaError> for Failure {
    fn from(e: crate::ota::OtaError) -> Self {
        use crate::ota::OtaError;
        let (status, title) = match &e {
            OtaError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            OtaError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "Invalid input"),
            OtaError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
            OtaError::Conflict(_) => (StatusCode::CONFLICT, "Refused"),
            OtaError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "Not saved"),
        };
        Self::new(status, title, chain(&e))
    }
}

impl From<axum::extract::rejection::FormRejection> for Failure {
    fn from(r: axum::extract::rejection::FormRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(r.status(), "Too large", "the form is too large");
        }
        Self::bad_input(format!("the form could not be read: {}", r.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for Failure {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_input(format!(
            "the address's parameters could not be read: {}",
            r.body_text()
        ))
    }
}

/// A template value from anything serializable.
pub(crate) fn ser<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// The result of a console handler.
pub(crate) type PageResult = Result<Response, Failure>;
