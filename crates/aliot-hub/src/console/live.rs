//! Live messages: the page, and `GET /console/events`, the hub's events as server-sent events
//! for the signed-in console (filtered by `?pk=&dn=&types=a,b`), which every live page reads.
//!
//! A browser that reads too slowly falls behind the hub's bounded event ring; its stream then
//! ends with `{"type":"lagged","skipped":n}` and the browser's `EventSource` connects again.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;

use super::page::{PageResult, render};
use super::session::Session;
use super::{ConsoleState, base};

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

impl Filter {
    /// The hub's event filter (an empty field selects everything).
    fn event_filter(self) -> aliot_admin::EventFilter {
        let given = |v: Option<String>| v.filter(|v| !v.is_empty());
        aliot_admin::EventFilter {
            product_key: given(self.pk),
            device_name: given(self.dn),
            types: given(self.types),
        }
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
    let stream = crate::events::json_stream(rx, filter.event_filter())
        .map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)))
        .take_until(closing.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::matches;

    #[test]
    fn the_filter_selects_device_and_types_and_empty_fields_select_all() {
        let e = serde_json::json!({"type": "uplink", "productKey": "pk", "deviceName": "dn"});
        assert!(matches(&Filter::default().event_filter(), &e));
        let all = Filter {
            pk: Some(String::new()),
            dn: Some(String::new()),
            types: Some(String::new()),
        };
        assert!(matches(&all.event_filter(), &e));
        let f = Filter {
            dn: Some("dn".into()),
            types: Some("status,uplink".into()),
            ..Filter::default()
        };
        assert!(matches(&f.event_filter(), &e));
        let f = Filter {
            dn: Some("other".into()),
            ..Filter::default()
        };
        assert!(!matches(&f.event_filter(), &e));
    }
}
