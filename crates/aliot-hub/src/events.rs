//! What happens on the hub, as a stream of JSON-serializable events.
//!
//! The broker publishes every [`Event`] on a `tokio::sync::broadcast` channel
//! ([`crate::broker::Broker::events`]); the admin API streams them as server-sent events.
//! Events are built only while someone listens, so an unobserved hub pays nothing for them.
//!
//! Device status uses the shape of the platform's server-side `/as/mqtt/status` topic (spec §3.7),
//! with a `"type":"status"` tag added; every other event carries `type` and epoch-ms `time`.
//! No event ever carries a device secret or a password.

use base64::Engine as _;
use serde::Serialize;

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

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The platform's offset for `time` fields: China Standard Time, UTC+8.
const CST_OFFSET_MS: u64 = 8 * 3600 * 1000;

/// `yyyy-MM-dd HH:mm:ss.SSS` in China Standard Time (the platform's `time` field).
pub fn format_cst(epoch_ms: u64) -> String {
    let (date, time) = civil(epoch_ms.saturating_add(CST_OFFSET_MS));
    format!("{date} {time}")
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC (the platform's `utcTime` field).
pub fn format_utc(epoch_ms: u64) -> String {
    let (date, time) = civil(epoch_ms);
    format!("{date}T{time}Z")
}

/// Splits epoch ms into (`yyyy-MM-dd`, `HH:mm:ss.SSS`), proleptic Gregorian calendar.
fn civil(epoch_ms: u64) -> (String, String) {
    let ms = epoch_ms % 1000;
    let secs = epoch_ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (h, m, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    // Days since 1970-01-01 to (year, month, day): shift the epoch to 0000-03-01 so that leap
    // days fall at the end of a 400-year era, then peel off eras, years and months.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{d:02}"),
        format!("{h:02}:{m:02}:{s:02}.{ms:03}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_the_platform() {
        // The example of the platform's documentation: 2018-08-31T07:32:28.205Z.
        let t = 1_535_700_748_205;
        assert_eq!(format_utc(t), "2018-08-31T07:32:28.205Z");
        assert_eq!(format_cst(t), "2018-08-31 15:32:28.205");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        // A leap day and the C SDK's far-future timestamp.
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_utc(2_524_608_000_000), "2050-01-01T00:00:00.000Z");
    }

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
