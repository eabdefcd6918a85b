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
/// Capacity and overflow policy: a ring of `buffer_bytes / MAX_EVENT_BYTES` events
/// (`BrokerConfig::events_buffer_bytes`, 64 MiB by default), each at most [`MAX_EVENT_BYTES`]
/// (every field is cut to its limit when the event is published), so the ring never holds
/// more than `buffer_bytes`. A listener that falls further behind loses the oldest events and
/// is told how many (`RecvError::Lagged`); the admin API's event stream then ends with a
/// `lagged` marker. Publishing never waits.
#[derive(Debug, Clone)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    /// A bus holding at most `buffer_bytes` of events for lagging listeners.
    pub(crate) fn new(buffer_bytes: usize) -> Self {
        let (tx, _) = broadcast::channel(Self::capacity(buffer_bytes));
        Self { tx }
    }

    /// How many events of at most [`MAX_EVENT_BYTES`] fit in `buffer_bytes` (at least 1).
    pub(crate) fn capacity(buffer_bytes: usize) -> usize {
        (buffer_bytes / MAX_EVENT_BYTES).max(1)
    }

    /// Whether anyone listens (events are built only then).
    pub(crate) fn observed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event to the current listeners, its fields cut to their limits.
    pub(crate) fn publish(&self, mut event: Event) {
        event.bound();
        // An error only means nobody listens right now.
        let _ = self.tx.send(Arc::new(event));
    }

    /// A new listener.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// Whether an event (as JSON) passes an event filter: its productKey, deviceName (a topology
/// event is its gateway's: `gwProductKey`, `gwDeviceName`) and comma-separated types. The admin
/// API's event stream and the console's live pages select with this one rule.
pub(crate) fn matches(filter: &aliot_admin::EventFilter, event: &serde_json::Value) -> bool {
    use serde_json::Value;
    let field = |k: &str, gw: &str| event.get(k).or_else(|| event.get(gw)).and_then(Value::as_str);
    if filter
        .product_key
        .as_deref()
        .is_some_and(|pk| field("productKey", "gwProductKey") != Some(pk))
    {
        return false;
    }
    if filter
        .device_name
        .as_deref()
        .is_some_and(|dn| field("deviceName", "gwDeviceName") != Some(dn))
    {
        return false;
    }
    if let Some(types) = &filter.types {
        let Some(t) = field("type", "type") else {
            return false;
        };
        return types.split(',').any(|want| want.trim() == t);
    }
    true
}

/// The events `rx` receives that pass `filter`, each as its JSON text. A listener that falls
/// behind the ring gets `{"type":"lagged","skipped":n}` as its last item: it does not keep a
/// position in a ring it can never catch up with, and may listen again to follow the newest.
pub(crate) fn json_stream(
    rx: broadcast::Receiver<Arc<Event>>,
    filter: aliot_admin::EventFilter,
) -> impl futures_util::Stream<Item = String> + Send + 'static {
    use tokio::sync::broadcast::error::RecvError;
    futures_util::stream::unfold((Some(rx), filter), |(rx, filter)| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let Ok(value) = serde_json::to_value(&*event) else {
                        continue;
                    };
                    if matches(&filter, &value) {
                        return Some((value.to_string(), (Some(rx), filter)));
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    let data = serde_json::json!({"type": "lagged", "skipped": skipped}).to_string();
                    return Some((data, (None, filter)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    /// A device registered itself with its product's secret (dynamic registration).
    Registered(RegisteredEvent),
    /// A device got a token over HTTP (pre-authentication's iotToken, the data channel's).
    TokenIssued(TokenIssuedEvent),
    /// A device tried to publish or subscribe outside its own topics.
    AclDenied(AclDeniedEvent),
    /// A device sent something the hub could not use (malformed packet, QoS 2, bad JSON without
    /// a readable id, oversized packet...), or was closed for a protocol reason.
    Problem(ProblemEvent),
    /// OTA: a task changed state, a device reported a version, or a report matched nothing.
    Ota(OtaEvent),
    /// A gateway's topology changed (the platform's `thing/topo/lifecycle`, cloud-side §2.6).
    Topology(TopologyEvent),
}

/// A device of a [`TopologyEvent`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyDevice {
    /// The device's iotId (empty when the device is already gone).
    pub iot_id: String,
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
}

/// A gateway's topology changed, in the shape of the platform's `/{pk}/{dn}/thing/topo/lifecycle`
/// forwarded message (cloud-side §2.6): `action` is `add` or `remove` (topology added or
/// removed: by the gateway, by the admin, or a sub-device deleted), `enable` or `disable` (a
/// sub-device of the topology enabled or disabled). A change naming more than
/// [`TOPOLOGY_EVENT_DEVICES`] sub-devices is published as several events of that many.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyEvent {
    /// `add`, `remove`, `enable` or `disable`.
    pub action: &'static str,
    /// Who changed it: `gateway` (its `thing.topo.add|delete`), `admin`, `deleted` (a
    /// sub-device deleted), `enabled`/`disabled` (a sub-device enabled or disabled).
    pub by: &'static str,
    /// The gateway's iotId.
    pub gw_iot_id: String,
    /// The gateway's productKey.
    pub gw_product_key: String,
    /// The gateway's deviceName.
    pub gw_device_name: String,
    /// The sub-devices concerned.
    pub devices: Vec<TopologyDevice>,
    /// When, epoch ms (the platform's name).
    pub message_create_time: u64,
    /// When, epoch ms (as every event).
    pub time: u64,
}

/// The most sub-devices one [`TopologyEvent`] names.
pub const TOPOLOGY_EVENT_DEVICES: usize = 50;

/// The longest iotId, productKey or deviceName a [`TopologyEvent`] carries (longer ones are
/// cut): the platform's names are at most 32 characters.
const TOPOLOGY_NAME_LIMIT: usize = 64;

impl TopologyEvent {
    /// The events of one topology change of `gateway` (at most [`TOPOLOGY_EVENT_DEVICES`]
    /// sub-devices each), iotIds read from the registry.
    pub(crate) async fn of(
        registry: &dyn crate::registry::Registry,
        action: &'static str,
        by: &'static str,
        gateway: &crate::registry::DeviceRef,
        devices: &[crate::registry::DeviceRef],
        at_ms: u64,
    ) -> Vec<Event> {
        let iot_id = |pk: &str, dn: &str| {
            let (pk, dn) = (pk.to_owned(), dn.to_owned());
            async move {
                registry
                    .device_auth(&pk, &dn)
                    .await
                    .map(|a| a.iot_id.to_string())
                    .unwrap_or_default()
            }
        };
        let gw_iot_id = iot_id(&gateway.0, &gateway.1).await;
        let mut named = Vec::with_capacity(devices.len());
        for (pk, dn) in devices {
            named.push(TopologyDevice {
                iot_id: iot_id(pk, dn).await,
                product_key: pk.clone(),
                device_name: dn.clone(),
            });
        }
        named
            .chunks(TOPOLOGY_EVENT_DEVICES)
            .map(|chunk| {
                Event::Topology(TopologyEvent {
                    action,
                    by,
                    gw_iot_id: gw_iot_id.clone(),
                    gw_product_key: gateway.0.clone(),
                    gw_device_name: gateway.1.clone(),
                    devices: chunk.to_vec(),
                    message_create_time: at_ms,
                    time: at_ms,
                })
            })
            .collect()
    }
}

/// An OTA happening: `kind` is `task` (a task changed state), `inform` (a device reported a
/// module version) or `unmatched` (progress or a report for no task, unreadable reports).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtaEvent {
    /// `task`, `inform` or `unmatched`.
    pub kind: &'static str,
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The job (`task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The task (`task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Its new state (`task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_status: Option<&'static str>,
    /// The module reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The version reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The task's last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// Why (failures, unmatched reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// When, epoch ms.
    pub time: u64,
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

/// Most payload bytes an event carries (an uplink's text payload, a reply's payload). A binary
/// payload is carried as base64 of its first [`EVENT_BINARY_LIMIT`] bytes, which fits too.
pub const EVENT_PAYLOAD_LIMIT: usize = 16 * 1024;

/// Most bytes of a binary payload carried (as base64, at most [`EVENT_PAYLOAD_LIMIT`] long).
pub const EVENT_BINARY_LIMIT: usize = EVENT_PAYLOAD_LIMIT / 4 * 3;

/// Most bytes of any other text field of an event (topic, reason, clientId…); longer ones are
/// cut at a character boundary and end with `…`.
pub const EVENT_FIELD_LIMIT: usize = 1024;

/// The most memory one published event holds: its payload, ten other fields at their limit,
/// and the event itself. The event ring's memory is bounded by its capacity times this.
pub const MAX_EVENT_BYTES: usize = EVENT_PAYLOAD_LIMIT + 10 * EVENT_FIELD_LIMIT + 1024;

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

/// A dynamic registration the platform stored and answered (the answer's credentials are not
/// in the event).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredEvent {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// `register` (pre-registered: a new deviceSecret) or `regnwl` (a deviceToken).
    pub auth_type: &'static str,
    /// `mqtt` or `https`.
    pub via: &'static str,
    /// Epoch ms.
    pub time: u64,
}

/// A token issued over HTTP (the token itself is not in the event).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenIssuedEvent {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// `iotToken` (pre-authentication, for MQTT with `securemode=-1`) or `http` (the HTTP data
    /// channel).
    pub kind: &'static str,
    /// When it expires, epoch ms.
    pub expires: u64,
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
    /// The topic or filter (the first refused one of a SUBSCRIBE).
    pub topic: String,
    /// How many more filters the same SUBSCRIBE had refused (one event per packet).
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
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
        let (text, b64, truncated) = match std::str::from_utf8(head) {
            Ok(s) => (Some(s.to_owned()), None, size > EVENT_PAYLOAD_LIMIT),
            // Cut inside a character: keep the valid prefix when the whole payload is text.
            Err(e) if size > EVENT_PAYLOAD_LIMIT && std::str::from_utf8(payload).is_ok() => (
                Some(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()),
                None,
                true,
            ),
            Err(_) => {
                let head = &payload[..size.min(EVENT_BINARY_LIMIT)];
                let b64 = base64::engine::general_purpose::STANDARD.encode(head);
                (None, Some(b64), size > EVENT_BINARY_LIMIT)
            }
        };
        Self {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            topic: topic.to_owned(),
            qos,
            payload: text,
            payload_base64: b64,
            size,
            truncated,
            time,
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary (ending with `…`) and gives the
/// spare capacity back; returns whether it was cut.
fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        if s.capacity() > max {
            s.shrink_to_fit();
        }
        return false;
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push(ellipsis);
    s.shrink_to_fit();
    true
}

fn cut_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        cut(s, max);
    }
}

impl Event {
    /// Cuts every field to its limit (see [`MAX_EVENT_BYTES`]).
    fn bound(&mut self) {
        const F: usize = EVENT_FIELD_LIMIT;
        match self {
            Event::Status(e) => {
                for s in [
                    &mut e.iot_id,
                    &mut e.product_key,
                    &mut e.device_name,
                    &mut e.client_ip,
                ] {
                    cut(s, F);
                }
                cut_opt(&mut e.reason, F);
            }
            Event::Uplink(e) => {
                for s in [&mut e.product_key, &mut e.device_name, &mut e.topic] {
                    cut(s, F);
                }
                if let Some(p) = &mut e.payload {
                    e.truncated |= cut(p, EVENT_PAYLOAD_LIMIT);
                }
                if let Some(p) = &mut e.payload_base64 {
                    e.truncated |= cut(p, EVENT_PAYLOAD_LIMIT);
                }
            }
            Event::Reply(e) => {
                for s in [&mut e.product_key, &mut e.device_name, &mut e.topic] {
                    cut(s, F);
                }
                cut(&mut e.payload, EVENT_PAYLOAD_LIMIT);
            }
            Event::Refused(e) => {
                cut(&mut e.reason, F);
                cut(&mut e.client_ip, F);
                cut_opt(&mut e.client_id, F);
                cut_opt(&mut e.username, F);
            }
            Event::Kicked(e) => {
                for s in [
                    &mut e.product_key,
                    &mut e.device_name,
                    &mut e.client_ip,
                    &mut e.new_client_ip,
                ] {
                    cut(s, F);
                }
            }
            Event::AclDenied(e) => {
                for s in [
                    &mut e.product_key,
                    &mut e.device_name,
                    &mut e.topic,
                    &mut e.client_ip,
                ] {
                    cut(s, F);
                }
            }
            Event::Registered(e) => {
                cut(&mut e.product_key, F);
                cut(&mut e.device_name, F);
            }
            Event::TokenIssued(e) => {
                cut(&mut e.product_key, F);
                cut(&mut e.device_name, F);
            }
            Event::Topology(e) => {
                for s in [&mut e.gw_iot_id, &mut e.gw_product_key, &mut e.gw_device_name] {
                    cut(s, TOPOLOGY_NAME_LIMIT);
                }
                e.devices.truncate(TOPOLOGY_EVENT_DEVICES);
                for d in &mut e.devices {
                    for s in [&mut d.iot_id, &mut d.product_key, &mut d.device_name] {
                        cut(s, TOPOLOGY_NAME_LIMIT);
                    }
                }
            }
            Event::Ota(e) => {
                cut(&mut e.product_key, F);
                cut(&mut e.device_name, F);
                cut_opt(&mut e.module, F);
                cut_opt(&mut e.version, F);
                cut_opt(&mut e.desc, F);
            }
            Event::Problem(e) => {
                cut(&mut e.reason, F);
                cut(&mut e.client_ip, F);
                cut_opt(&mut e.product_key, F);
                cut_opt(&mut e.device_name, F);
                cut_opt(&mut e.topic, F);
            }
        }
    }

    /// Heap bytes held by the event's fields (their capacities).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let o = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        match self {
            Event::Status(e) => {
                e.iot_id.capacity()
                    + e.product_key.capacity()
                    + e.device_name.capacity()
                    + e.time.capacity()
                    + e.utc_time.capacity()
                    + e.last_time.capacity()
                    + e.utc_last_time.capacity()
                    + e.client_ip.capacity()
                    + o(&e.reason)
            }
            Event::Uplink(e) => {
                e.product_key.capacity()
                    + e.device_name.capacity()
                    + e.topic.capacity()
                    + o(&e.payload)
                    + o(&e.payload_base64)
            }
            Event::Reply(e) => {
                e.product_key.capacity()
                    + e.device_name.capacity()
                    + e.topic.capacity()
                    + e.payload.capacity()
            }
            Event::Refused(e) => {
                e.reason.capacity() + e.client_ip.capacity() + o(&e.client_id) + o(&e.username)
            }
            Event::Kicked(e) => {
                e.product_key.capacity()
                    + e.device_name.capacity()
                    + e.client_ip.capacity()
                    + e.new_client_ip.capacity()
            }
            Event::AclDenied(e) => {
                e.product_key.capacity()
                    + e.device_name.capacity()
                    + e.topic.capacity()
                    + e.client_ip.capacity()
            }
            Event::Registered(e) => e.product_key.capacity() + e.device_name.capacity(),
            Event::TokenIssued(e) => e.product_key.capacity() + e.device_name.capacity(),
            Event::Topology(e) => {
                e.gw_iot_id.capacity()
                    + e.gw_product_key.capacity()
                    + e.gw_device_name.capacity()
                    + e.devices.capacity() * std::mem::size_of::<TopologyDevice>()
                    + e.devices
                        .iter()
                        .map(|d| d.iot_id.capacity() + d.product_key.capacity() + d.device_name.capacity())
                        .sum::<usize>()
            }
            Event::Ota(e) => {
                e.product_key.capacity()
                    + e.device_name.capacity()
                    + o(&e.module)
                    + o(&e.version)
                    + o(&e.desc)
            }
            Event::Problem(e) => {
                e.reason.capacity()
                    + e.client_ip.capacity()
                    + o(&e.product_key)
                    + o(&e.device_name)
                    + o(&e.topic)
            }
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
        let binary = vec![0xffu8; 3 * EVENT_PAYLOAD_LIMIT];
        let b = UplinkEvent::new("pk", "dn", "/t", 0, &binary, 5);
        assert!(b.truncated && b.payload_base64.as_deref().map(str::len) == Some(EVENT_PAYLOAD_LIMIT));
        let big = "é".repeat(EVENT_PAYLOAD_LIMIT);
        let cut = UplinkEvent::new("pk", "dn", "/t", 0, big.as_bytes(), 5);
        assert!(cut.truncated && cut.size == big.len());
        assert_eq!(cut.payload.as_deref().map(str::len), Some(EVENT_PAYLOAD_LIMIT));
        let json = serde_json::to_value(Event::Uplink(e)).expect("serializable");
        assert_eq!(json["type"], "uplink");
        assert_eq!(json["productKey"], "pk");
    }

    /// Hardening 4: whatever a device sends, one event holds at most MAX_EVENT_BYTES, so the
    /// ring (its capacity times that) stays within its byte budget.
    #[test]
    fn every_field_of_every_event_is_cut_to_its_limit() {
        let huge = "x".repeat(200_000);
        let events = vec![
            Event::Uplink(UplinkEvent::new("pk", "dn", &huge, 1, huge.as_bytes(), 1)),
            Event::Reply(ReplyEvent {
                product_key: huge.clone(),
                device_name: huge.clone(),
                topic: huge.clone(),
                code: 460,
                payload: huge.clone(),
                delivered: true,
                time: 1,
            }),
            Event::Refused(RefusedEvent {
                code: Some(2),
                reason: huge.clone(),
                client_id: Some(huge.clone()),
                username: Some(huge.clone()),
                client_ip: "127.0.0.1".into(),
                time: 1,
            }),
            Event::AclDenied(AclDeniedEvent {
                product_key: "pk".into(),
                device_name: "dn".into(),
                action: "subscribe",
                topic: huge.clone(),
                more: 0,
                client_ip: "127.0.0.1".into(),
                time: 1,
            }),
            Event::Problem(ProblemEvent {
                product_key: Some(huge.clone()),
                device_name: Some(huge.clone()),
                topic: Some(huge.clone()),
                reason: huge.clone(),
                closed: true,
                client_ip: "127.0.0.1".into(),
                time: 1,
            }),
        ];
        let bus = EventBus::new(10 * MAX_EVENT_BYTES);
        let mut rx = bus.subscribe();
        for e in events {
            bus.publish(e);
            let got = rx.try_recv().expect("published");
            assert!(
                got.heap_bytes() + std::mem::size_of::<Event>() <= MAX_EVENT_BYTES,
                "{}",
                got.heap_bytes()
            );
            let text = serde_json::to_string(&*got).expect("json");
            assert!(text.len() < MAX_EVENT_BYTES, "{}", text.len());
        }
        assert_eq!(EventBus::capacity(64 << 20), (64 << 20) / MAX_EVENT_BYTES);
        let mut s = "ééé".to_owned();
        assert!(cut(&mut s, 4));
        assert_eq!(s, "…");
    }
}
