//! `GET /api/v1/events`: the hub's events as server-sent events, one JSON object per `data:`
//! line, optionally filtered by productKey, deviceName and event type.
//!
//! A client that reads too slowly falls behind the broker's bounded broadcast channel; it then
//! receives `{"type":"lagged","skipped":n}` and continues with the newest events (the broker is
//! never slowed down by a listener).

use std::convert::Infallible;
use std::sync::Arc;

use aliot_admin::EventFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};

use super::AdminState;
use super::error::ApiError;
use crate::events::Event;

/// Whether an event (as JSON) passes the filter.
fn matches(filter: &EventFilter, event: &Value) -> bool {
    let field = |k: &str| event.get(k).and_then(Value::as_str);
    if filter
        .product_key
        .as_deref()
        .is_some_and(|pk| field("productKey") != Some(pk))
    {
        return false;
    }
    if filter
        .device_name
        .as_deref()
        .is_some_and(|dn| field("deviceName") != Some(dn))
    {
        return false;
    }
    if let Some(types) = &filter.types {
        let Some(t) = field("type") else { return false };
        return types.split(',').any(|want| want.trim() == t);
    }
    true
}

pub(super) async fn stream(
    State(state): State<AdminState>,
    query: Result<Query<EventFilter>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(filter) = query?;
    let rx = state.service().events();
    let closing = state.inner.closing.clone();
    let events = futures_util::stream::unfold((rx, filter), next_event).take_until(closing.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn next_event(
    (mut rx, filter): (broadcast::Receiver<Arc<Event>>, EventFilter),
) -> Option<(
    Result<SseEvent, Infallible>,
    (broadcast::Receiver<Arc<Event>>, EventFilter),
)> {
    loop {
        match rx.recv().await {
            Ok(event) => {
                let Ok(value) = serde_json::to_value(&*event) else {
                    continue;
                };
                if matches(&filter, &value) {
                    return Some((Ok(SseEvent::default().data(value.to_string())), (rx, filter)));
                }
            }
            Err(RecvError::Lagged(skipped)) => {
                let data = serde_json::json!({"type": "lagged", "skipped": skipped}).to_string();
                return Some((Ok(SseEvent::default().data(data)), (rx, filter)));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_by_device_and_type() {
        let e = serde_json::json!({"type": "uplink", "productKey": "pk", "deviceName": "dn"});
        assert!(matches(&EventFilter::default(), &e));
        let f = EventFilter {
            product_key: Some("pk".into()),
            device_name: Some("dn".into()),
            types: None,
        };
        assert!(matches(&f, &e));
        let f = EventFilter {
            device_name: Some("other".into()),
            ..EventFilter::default()
        };
        assert!(!matches(&f, &e));
        let f = EventFilter {
            types: Some("status, uplink".into()),
            ..EventFilter::default()
        };
        assert!(matches(&f, &e));
        let f = EventFilter {
            types: Some("status".into()),
            ..EventFilter::default()
        };
        assert!(!matches(&f, &e));
    }
}
