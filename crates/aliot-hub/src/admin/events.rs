//! `GET /api/v1/events`: the hub's events as server-sent events, one JSON object per `data:`
//! line, optionally filtered by productKey, deviceName and event type.
//!
//! A client that reads too slowly falls behind the hub's bounded event ring (the hub is never
//! slowed down by a listener); its stream then ends with `{"type":"lagged","skipped":n}` (how
//! many events it missed), and it may connect again to follow the newest events.

use std::convert::Infallible;

use aliot_admin::EventFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};

use super::AdminState;
use super::error::ApiError;

pub(super) async fn stream(
    State(state): State<AdminState>,
    query: Result<Query<EventFilter>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(filter) = query?;
    let rx = state.service().events();
    let closing = state.inner.closing.clone();
    let events = crate::events::json_stream(rx, filter)
        .map(|data| Ok(SseEvent::default().data(data)))
        .take_until(closing.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::broadcast;

    use super::*;
    use crate::events::{Event, matches};

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
        // A topology event is its gateway's.
        let topo = serde_json::json!({"type": "topology", "gwProductKey": "gp", "gwDeviceName": "gw"});
        let f = EventFilter {
            product_key: Some("gp".into()),
            device_name: Some("gw".into()),
            types: Some("topology".into()),
        };
        assert!(matches(&f, &topo));
    }

    /// Hardening 4: a listener that fell behind gets the lagged marker as its last item; it
    /// does not keep a position in a ring it can never catch up with.
    #[tokio::test]
    async fn a_lagging_stream_ends_with_a_lagged_marker() {
        use futures_util::StreamExt as _;
        let (tx, rx) = broadcast::channel(2);
        for i in 0..5 {
            let e = Event::Problem(crate::events::ProblemEvent {
                product_key: None,
                device_name: None,
                topic: None,
                reason: format!("p{i}"),
                closed: false,
                client_ip: "127.0.0.1".into(),
                time: i,
            });
            tx.send(Arc::new(e)).expect("a receiver");
        }
        let items: Vec<_> = crate::events::json_stream(rx, EventFilter::default())
            .collect()
            .await;
        assert_eq!(items.len(), 1, "the marker only");
        drop(tx);
    }
}
