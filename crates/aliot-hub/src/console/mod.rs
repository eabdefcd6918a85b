//! The hub's web console: server-rendered pages under `/console/` on the admin listener.
//!
//! Sign-in with the admin token opens a session (a random id in an `HttpOnly`,
//! `SameSite=Strict`, `Path=/console` cookie; the table is bounded and sessions expire when
//! idle). Every state-changing request carries the session's CSRF token (a hidden form field,
//! or the `X-CSRF-Token` header of `fetch` calls) and must come from the console's own origin
//! (`Origin`, `Sec-Fetch-Site`); anything else is refused with a 403 page. Every answer carries a
//! Content-Security-Policy without inline scripts (see docs/console.md).
//!
//! Everything the console does goes through [`Service`], the same calls as the admin REST API.
//! Live updates come over `GET /console/events` (server-sent events from
//! [`Service::events`], filtered per page). The browser assets (`assets/console/…` and uPlot,
//! unmodified with its licence) are embedded in the binary.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | redirects to `/console/` |
//! | `GET/POST /console/signin`, `POST /console/signout` | the session |
//! | `GET /console/` | overview (`/console/overview.json`: the chart's series) |
//! | `GET/POST /console/products`, `GET /console/products/{pk}` (+ `…/tsl`, `…/tsl.json`, `…/dynreg`, `…/secret`) | products |
//! | `GET /console/devices`, `POST /console/products/{pk}/devices` (+ `…:batch` → CSV) | devices |
//! | `GET /console/devices/{pk}/{dn}` (+ `…/enable`, `…/disable`, `…/delete`, `…/secret`, `…/set`, `…/call`, `…/publish`, `…/history.json`) | one device |
//! | `GET /console/live`, `GET /console/events` | live messages |
//! | `GET /console/ota` (+ `…/packages`, `…/jobs`, `…/jobs/{id}/cancel`) | OTA |
//! | `GET /console/static/{file}` | assets |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::admin::AdminToken;
use crate::service::Service;

mod assets;
mod devices;
mod live;
mod ota;
mod overview;
mod page;
mod products;
mod session;
mod signin;

use self::page::Failure;
use self::session::{Lookup, Session, Sessions};

/// Most sessions kept at once (the longest idle is dropped past it).
pub const MAX_SESSIONS: usize = 256;
/// A session unused this long expires.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Largest form accepted (a batch of names, a TSL fits); OTA uploads have their own limit.
pub const FORM_LIMIT: usize = 1024 * 1024;
/// Overview samples kept: one each [`SAMPLE_EVERY`], ten minutes of them.
const SAMPLES: usize = 120;
/// How often the overview's counters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the console's handlers share. A cheap `Clone`.
#[derive(Clone, Debug)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: Service,
    token: AdminToken,
    mqtt: Option<SocketAddr>,
    sessions: Sessions,
    secure: bool,
    closing: CancellationToken,
    /// The overview's samples: (epoch s, connects, messages in, messages out), oldest first.
    samples: Mutex<VecDeque<overview::Sample>>,
}

impl ConsoleState {
    /// The console over `service`, signed into with `token`.
    /// `mqtt` is the MQTT listener's address, for the credentials the device pages show.
    pub fn new(service: Service, token: AdminToken, mqtt: Option<SocketAddr>) -> Self {
        Self::with_sessions(service, token, mqtt, MAX_SESSIONS, SESSION_IDLE)
    }

    /// As [`ConsoleState::new`] with the session table's bound and idle expiry.
    pub fn with_sessions(
        service: Service,
        token: AdminToken,
        mqtt: Option<SocketAddr>,
        max: usize,
        idle: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                service,
                token,
                mqtt,
                sessions: Sessions::new(max, idle),
                secure: false,
                closing: CancellationToken::new(),
                samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            }),
        }
    }

    /// Ends the console's event streams and its sampler (call it when the server shuts down).
    pub fn close(&self) {
        self.inner.closing.cancel();
    }

    pub(crate) fn service(&self) -> &Service {
        &self.inner.service
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub(crate) fn token(&self) -> &AdminToken {
        &self.inner.token
    }

    pub(crate) fn mqtt(&self) -> Option<SocketAddr> {
        self.inner.mqtt
    }

    pub(crate) fn secure(&self) -> bool {
        self.inner.secure
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }
}

/// The console's routes (merge them into the admin listener's router). Starts the overview's
/// sampler, which ends with [`ConsoleState::close`].
pub fn router(state: ConsoleState) -> Router {
    overview::spawn_sampler(state.clone());
    let signed_in = Router::new()
        .route("/console/", get(overview::page))
        .route("/console/overview.json", get(overview::series))
        .route("/console/signout", post(signin::sign_out))
        .route("/console/products", get(products::list).post(products::create))
        .route("/console/products/{pk}", get(products::show))
        .route("/console/products/{pk}/tsl", post(products::import_tsl))
        .route("/console/products/{pk}/tsl.json", get(products::export_tsl))
        .route("/console/products/{pk}/dynreg", post(products::dynreg))
        .route("/console/products/{pk}/secret", post(products::secret))
        .route("/console/products/{pk}/devices", post(devices::create))
        .route("/console/products/{pk}/batch", post(devices::batch))
        .route("/console/devices", get(devices::list))
        .route("/console/devices/{pk}/{dn}", get(devices::show))
        .route("/console/devices/{pk}/{dn}/{action}", post(devices::action))
        .route("/console/devices/{pk}/{dn}/history.json", get(devices::history))
        .route("/console/live", get(live::page))
        .route("/console/events", get(live::events))
        .route("/console/ota", get(ota::page))
        .route(
            "/console/ota/packages",
            post(ota::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/console/ota/jobs", post(ota::create_job))
        .route("/console/ota/jobs/{id}/cancel", post(ota::cancel_job))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/signin", get(signin::form).post(signin::sign_in))
        .route("/console/static/{file}", get(assets::serve))
        .merge(signed_in)
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(middleware::map_response(page::secure_headers))
        .with_state(state)
}

/// Whether a page (HTML) or a data endpoint is asked for: data endpoints answer 401 rather than
/// a redirect to sign-in.
fn wants_data(path: &str) -> bool {
    path.ends_with(".json") || path == "/console/events"
}

/// The signed-in guard: a live session (else sign-in, with a message when it expired), and for
/// every state-changing request the origin checks and the session's CSRF token (form field
/// `csrf` or the `X-CSRF-Token` header). The session is handed to the handler as an extension.
async fn guard(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let session = match state.sessions().lookup(request.headers()) {
        Lookup::Live(s) => s,
        other => {
            if wants_data(&path) {
                return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
            }
            let to = if matches!(other, Lookup::Expired) {
                "/console/signin?expired=1"
            } else {
                "/console/signin"
            };
            return Redirect::to(to).into_response();
        }
    };
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let mut request = request;
        request.extensions_mut().insert(session);
        return next.run(request).await;
    }
    if let Err(why) = session::same_origin(request.headers()) {
        tracing::warn!(path, why, "console: cross-site request refused");
        return Failure::forbidden(format!("{why}: refused, nothing was changed.")).into_response();
    }
    let header_token = request
        .headers()
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(t) = header_token {
        if !session::csrf_matches(&session, Some(&t)) {
            return Failure::forbidden("the request's CSRF token is wrong: refused, nothing was changed.")
                .into_response();
        }
        let mut request = request;
        request.extensions_mut().insert(session);
        return next.run(request).await;
    }
    // A form: its `csrf` field (letters and digits, so compared without decoding).
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                format!(
                    "the form is larger than {} KiB: nothing was changed.",
                    FORM_LIMIT / 1024
                ),
            )
            .into_response();
        }
    };
    let field = bytes
        .split(|b| *b == b'&')
        .find_map(|pair| pair.strip_prefix(b"csrf="))
        .and_then(|v| std::str::from_utf8(v).ok());
    if !session::csrf_matches(&session, field) {
        return Failure::forbidden(
            "the form has no valid CSRF token (reload the page and send it again): refused, nothing was changed.",
        )
        .into_response();
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert::<Session>(session);
    next.run(request).await
}

/// Epoch ms as the console shows times (UTC, ISO 8601).
pub(crate) fn time(ms: u64) -> String {
    crate::clock::format_utc(ms)
}

/// What every signed-in page's layout needs: the CSRF token, who is signed in, the menu entry.
pub(crate) fn base(session: &Session, nav: &str) -> minijinja::Value {
    minijinja::context! {
        csrf => session.csrf.clone(),
        who => session.who.clone(),
        nav => nav,
    }
}
