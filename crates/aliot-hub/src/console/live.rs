//! Live messages: the page, and `GET /console/events`, the hub's events as server-sent events
//! for the signed-in console (filtered by `?pk=&dn=&types=a,b`), which every live page reads.
//!
//! A browser that reads too slowly falls behind the hub's bounded event ring; its stream then
//! ends with `{"type":"lagged","skipped":n}` and the browser's `EventSource` connects again.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};

use super::page::{PageResult, render};
use super::session::Session;
use super::{ConsoleState, base};
use crate::events::Event;

/// `GET /console/live`.
pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let products: Vec<String> = state
        .service()
        .products()
        .await?
        .into_iter()
        .map(|p| p.product_key)
        .collect();
    Ok(render(
        "live.html",
        minijinja::context! { products => super::page::ser(&products), ..base(&session, "live") },
    ))
}

/// The stream's filter.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Filter {
    #[serde(default)]
    pk: Option<String>,
    #[serde(default)]
    dn: Option<String>,
    #[serde(default)]
    types: Option<String>,
}

fn matches(f: &Filter, event: &Value) -> bool {
    let field = |k: &str| event.get(k).and_then(Value::as_str);
    let wanted = |want: &Option<String>, k: &str| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| field(k) == Some(w))
    };
    if !wanted(&f.pk, "productKey") || !wanted(&f.dn, "deviceName") {
        return false;
    }
    match f.types.as_deref().filter(|t| !t.is_empty()) {
        Some(types) => field("type").is_some_and(|t| types.split(',').any(|w| w.trim() == t)),
        None => true,
    }
}

/// `GET /console/events`.
pub(super) async fn events(
    State(state): State<ConsoleState>,
    query: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let filter = query.map(|Query(f)| f).unwrap_or_default();
    let rx = state.service().events();
    let closing = state.closing().clone();
    let stream =
        futures_util::stream::unfold((Some(rx), filter), next_event).take_until(closing.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

type StreamState = (Option<broadcast::Receiver<Arc<Event>>>, Filter);

async fn next_event((rx, filter): StreamState) -> Option<(Result<SseEvent, Infallible>, StreamState)> {
    let mut rx = rx?;
    loop {
        match rx.recv().await {
            Ok(event) => {
                let Ok(value) = serde_json::to_value(&*event) else {
                    continue;
                };
                if matches(&filter, &value) {
                    return Some((
                        Ok(SseEvent::default().data(value.to_string())),
                        (Some(rx), filter),
                    ));
                }
            }
            Err(RecvError::Lagged(skipped)) => {
                let data = serde_json::json!({"type": "lagged", "skipped": skipped}).to_string();
                return Some((Ok(SseEvent::default().data(data)), (None, filter)));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_selects_device_and_types() {
        let e = serde_json::json!({"type": "uplink", "productKey": "pk", "deviceName": "dn"});
        assert!(matches(&Filter::default(), &e));
        let f = Filter {
            dn: Some("dn".into()),
            types: Some("status,uplink".into()),
            ..Filter::default()
        };
        assert!(matches(&f, &e));
        let f = Filter {
            dn: Some("other".into()),
            ..Filter::default()
        };
        assert!(!matches(&f, &e));
    }
}
