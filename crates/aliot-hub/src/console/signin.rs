//! Sign-in and sign-out.

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::ConsoleState;
use super::page::{Failure, render, render_status};
use super::session::{self, Session};

#[derive(Debug, Deserialize)]
pub(super) struct SignInQuery {
    #[serde(default)]
    expired: Option<String>,
}

/// `GET /console/signin`.
pub(super) async fn form(Query(q): Query<SignInQuery>) -> Response {
    let message = q
        .expired
        .is_some()
        .then_some("Your session expired or ended: sign in again.");
    render(
        "signin.html",
        minijinja::context! { message => super::page::ser(&message) },
    )
}

/// The sign-in form: the admin token, or an access key pair.
#[derive(Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
}

/// Who the form signs in, if anyone: `admin` for the admin token, the AccessKeyId for a key
/// pair whose secret matches (constant time).
fn who(state: &ConsoleState, form: &SignIn) -> Option<String> {
    let token = form.token.trim();
    if !token.is_empty() {
        return state
            .token()
            .matches(token.as_bytes())
            .then(|| "admin".to_owned());
    }
    let id = form.access_key_id.trim();
    if id.is_empty() || form.access_key_secret.is_empty() {
        return None;
    }
    let secret = state.service().access_key_secret(id)?;
    bool::from(secret.as_bytes().ct_eq(form.access_key_secret.trim().as_bytes())).then(|| id.to_owned())
}

/// `POST /console/signin`: a new session for the right token; the form again (401) otherwise.
pub(super) async fn sign_in(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    if let Err(why) = session::same_origin(&headers) {
        return Failure::forbidden(format!("{why}: refused.")).into_response();
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(e) => return Failure::from(e).into_response(),
    };
    let Some(who) = who(&state, &form) else {
        tracing::warn!("console: sign-in refused (wrong token or access key)");
        return render_status(
            StatusCode::UNAUTHORIZED,
            "signin.html",
            minijinja::context! { error => super::page::ser(&"Wrong token or access key: sign-in refused.") },
        );
    };
    tracing::info!(who, "console: signed in");
    let (id, _) = state.sessions().create(who);
    let mut response = Redirect::to("/console/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, state.secure())) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `POST /console/signout`.
pub(super) async fn sign_out(
    State(state): State<ConsoleState>,
    Extension(_session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    state.sessions().remove(&headers);
    let mut response = Redirect::to("/console/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(state.secure())) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
