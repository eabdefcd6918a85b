//! What happens on the hub, as a stream of JSON-serializable events.
//!
//! The platform publishes every [`Event`] on an `EventBus` (a `tokio::sync::broadcast`
//! channel, reached through the cluster seam so that a multi-node hub can carry events between
//! nodes); the admin API streams them as server-sent events. Events are built only while someone
//! listens, so an unobserved hub pays nothing for them.
//!
//! Device status uses the shape of the platform's server-side `/as/mqtt/status` topic (spec §3.7),
//! with a `"type":"status"` tag added; every other event carries `type` and epoch-ms `time`.
//! No event ever carries a device secret or a password.

use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use tokio::sync::broadcast;

/// The in-process event channel.
///
/// Capacity and overflow policy: a ring of `capacity` events (`BrokerConfig::events_capacity`);
/// a listener that falls further behind skips the oldest events and is told how many
/// (`RecvError::Lagged`). Publishing never waits.
#[derive(Debug, Clone)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    /// A bus holding at most `capacity` events for lagging listeners.
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Whether anyone listens (events are built only then).
    pub(crate) fn observed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event to the current listeners.
    pub(crate) fn publish(&self, event: Event) {
        // An error only means nobody listens right now.
        let _ = self.tx.send(Arc::new(event));
    }

    /// A new listener.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// One thing that happened on the hub.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A device went online or offline (`/as/mqtt/status` shape).
    Status(StatusEvent),
    /// A device published a message (after the ACL let it through).
    Uplink(UplinkEvent),
    /// The platform answered an uplink (post reply, NTP response, error reply).
    Reply(ReplyEvent),
    /// A CONNECT was refused.
    Refused(RefusedEvent),
    /// A second login of the same device closed the first connection.
    Kicked(KickedEvent),
    /// A device tried to publish or subscribe outside its own topics.
    AclDenied(AclDeniedEvent),
    /// A device sent something the hub could not use (malformed packet, QoS 2, bad JSON without
    /// a readable id, oversized packet...), or was closed for a protocol reason.
    Problem(ProblemEvent),
}

/// `online`/`offline`, as the platform forwards on `/as/mqtt/status/{pk}/{dn}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    /// `"online"` or `"offline"`.
    pub status: &'static str,
    /// The device's iotId.
    pub iot_id: String,
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// When the status changed, `yyyy-MM-dd HH:mm:ss.SSS` in China Standard Time (UTC+8) as the
    /// platform writes it.
    pub time: String,
    /// The same instant in UTC, ISO 8601 (`2018-08-31T07:32:28.205Z`).
    pub utc_time: String,
    /// The device's last communication before the change (CST).
    pub last_time: String,
    /// The device's last communication before the change (UTC).
    pub utc_last_time: String,
    /// The device's IP address.
    pub client_ip: String,
    /// Why the device went offline (hub extension; absent for `online`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A device's PUBLISH.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UplinkEvent {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The topic.
    pub topic: String,
    /// QoS of the PUBLISH.
    pub qos: u8,
    /// The payload as text when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in standard base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The payload's size in bytes.
    pub size: usize,
    /// True when only the first [`EVENT_PAYLOAD_LIMIT`] bytes are in the event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Epoch ms.
    pub time: u64,
}

/// Most payload bytes an uplink event carries. Events wait in a bounded ring for slow
/// listeners (`events_capacity` of them), so this bounds that ring's memory (64 MiB at the
/// default capacity, and only while a listener lags).
pub const EVENT_PAYLOAD_LIMIT: usize = 16 * 1024;

/// A platform reply to a device uplink.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyEvent {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The reply topic.
    pub topic: String,
    /// The Alink code of the reply (200 on success).
    pub code: u32,
    /// The reply payload as text.
    pub payload: String,
    /// Whether the device was subscribed to the reply topic (explicitly or through `_ss=1`);
    /// when false the reply was not sent, as the platform would not deliver it either.
    pub delivered: bool,
    /// Epoch ms.
    pub time: u64,
}

/// A refused CONNECT.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedEvent {
    /// The CONNACK return code sent (1..=5); absent when the connection was closed without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    /// Why, in words (never the secret or the password).
    pub reason: String,
    /// The clientId, when the CONNECT could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The username, when the CONNECT carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The client's IP address.
    pub client_ip: String,
    /// Epoch ms.
    pub time: u64,
}

/// A duplicate login.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KickedEvent {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// IP of the connection that was closed.
    pub client_ip: String,
    /// IP of the connection that replaced it.
    pub new_client_ip: String,
    /// Epoch ms.
    pub time: u64,
}

/// A refused PUBLISH or SUBSCRIBE.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AclDeniedEvent {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// `"publish"` (the connection is closed) or `"subscribe"` (SUBACK 0x80).
    pub action: &'static str,
    /// The topic or filter.
    pub topic: String,
    /// The client's IP address.
    pub client_ip: String,
    /// Epoch ms.
    pub time: u64,
}

/// Something a device sent that the hub could not use.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemEvent {
    /// productKey, when the device is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_key: Option<String>,
    /// deviceName, when the device is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The topic involved, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// What was wrong.
    pub reason: String,
    /// Whether the hub closed the connection because of it.
    pub closed: bool,
    /// The client's IP address.
    pub client_ip: String,
    /// Epoch ms.
    pub time: u64,
}

impl UplinkEvent {
    /// Builds the event, putting the payload in `payload` when it is UTF-8 and in
    /// `payloadBase64` otherwise. Payloads above [`EVENT_PAYLOAD_LIMIT`] are cut (at a
    /// character boundary for text).
    pub fn new(
        product_key: &str,
        device_name: &str,
        topic: &str,
        qos: u8,
        payload: &[u8],
        time: u64,
    ) -> Self {
        let size = payload.len();
        let head = &payload[..size.min(EVENT_PAYLOAD_LIMIT)];
        let (text, b64) = match std::str::from_utf8(head) {
            Ok(s) => (Some(s.to_owned()), None),
            // Cut inside a character: keep the valid prefix when the whole payload is text.
            Err(e) if size > EVENT_PAYLOAD_LIMIT && std::str::from_utf8(payload).is_ok() => (
                Some(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()),
                None,
            ),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(head))),
        };
        Self {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            topic: topic.to_owned(),
            qos,
            payload: text,
            payload_base64: b64,
            size,
            truncated: size > EVENT_PAYLOAD_LIMIT,
            time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_payloads_are_text_or_base64() {
        let e = UplinkEvent::new("pk", "dn", "/t", 1, b"{\"a\":1}", 5);
        assert_eq!(e.payload.as_deref(), Some("{\"a\":1}"));
        let e = UplinkEvent::new("pk", "dn", "/t", 0, &[0xff, 0x00], 5);
        assert_eq!(e.payload_base64.as_deref(), Some("/wA="));
        let big = "é".repeat(EVENT_PAYLOAD_LIMIT);
        let cut = UplinkEvent::new("pk", "dn", "/t", 0, big.as_bytes(), 5);
        assert!(cut.truncated && cut.size == big.len());
        assert_eq!(cut.payload.as_deref().map(str::len), Some(EVENT_PAYLOAD_LIMIT));
        let json = serde_json::to_value(Event::Uplink(e)).expect("serializable");
        assert_eq!(json["type"], "uplink");
        assert_eq!(json["productKey"], "pk");
    }
}
