//! Waiting for the hub's events.

use std::sync::Arc;

use aliot_hub::events::Event;
use tokio::sync::broadcast;

use crate::guard::guard;

/// Waits for the first event matching `pred` (events before it are skipped).
///
/// # Panics
/// When the event channel closes or no matching event arrives within the guard.
pub async fn next_event(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    mut pred: impl FnMut(&Event) -> bool,
) -> Arc<Event> {
    guard("an expected hub event", async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the hub's event channel closed"),
            }
        }
    })
    .await
}

/// Waits until the device's online status event.
pub async fn online(rx: &mut broadcast::Receiver<Arc<Event>>, device_name: &str) -> Arc<Event> {
    next_event(
        rx,
        |e| matches!(e, Event::Status(s) if s.status == "online" && s.device_name == device_name),
    )
    .await
}

/// Waits until the device's offline status event.
pub async fn offline(rx: &mut broadcast::Receiver<Arc<Event>>, device_name: &str) -> Arc<Event> {
    next_event(
        rx,
        |e| matches!(e, Event::Status(s) if s.status == "offline" && s.device_name == device_name),
    )
    .await
}

/// Waits for the next uplink the hub saw on `topic`; returns its text payload.
pub async fn next_uplink(rx: &mut broadcast::Receiver<Arc<Event>>, topic: &str) -> String {
    let e = next_event(rx, |e| matches!(e, Event::Uplink(u) if u.topic == topic)).await;
    match &*e {
        Event::Uplink(u) => u.payload.clone().unwrap_or_default(),
        _ => unreachable!("next_event returned a matching uplink"),
    }
}

/// Every event already in the receiver (never waits).
pub fn drain(rx: &mut broadcast::Receiver<Arc<Event>>) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return out,
        }
    }
}
