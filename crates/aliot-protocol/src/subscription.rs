//! Server-side subscription (cloud-side spec §2): the AMQP consumer's `aksign` login and the
//! bodies the platform forwards to consumer groups.
//!
//! # Login (§2.2)
//!
//! ```text
//! username = <clientId>|authMode=aksign,signMethod=hmacsha1,timestamp=<ms>,authId=<AccessKeyId>,iotInstanceId=<id>,consumerGroupId=<group>|
//! password = Base64(HMAC_<signMethod>(AccessKeySecret, "authId=<AccessKeyId>&timestamp=<ms>"))
//! ```
//! The keys between the two `|` come in any order; `iotInstanceId` may be absent, empty or the
//! two characters `""` (pasted from the docs). The timestamp is never checked for freshness (the
//! official samples hard-code one).
//!
//! ```
//! use aliot_protocol::subscription::AkSignLogin;
//!
//! let login = AkSignLogin::parse(
//!     "c1|authMode=aksign,signMethod=hmacsha1,timestamp=1573489088171,authId=testid,iotInstanceId=,consumerGroupId=DEFAULT_GROUP|",
//! )?;
//! assert_eq!(login.consumer_group_id, "DEFAULT_GROUP");
//! assert!(login.verify("testsecret", "RG+3WYzI9qDD0P9m6ER+maK4yH0="));
//! # Ok::<(), aliot_protocol::subscription::AkSignError>(())
//! ```
//!
//! # Forwarded bodies (§2.6)
//!
//! Builders with the platform's key names in the order real captures show; times are inputs
//! (the caller's clock), written as the platform writes them by the caller
//! (`yyyy-MM-dd HH:mm:ss.SSS` in UTC+8 and ISO 8601 UTC with milliseconds).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::sign::SignMethod;
use crate::tsl::{Item, Rejection};

/// The one `authMode` the platform accepts for consumers.
pub const AUTH_MODE_AKSIGN: &str = "aksign";

/// The consumer group every instance has.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

/// Why a consumer's username is not an `aksign` login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkSignError {
    /// Not `clientId|k=v,…|`.
    #[error("username is not clientId|key=value,...|")]
    Shape,
    /// The clientId is empty or longer than 64 characters.
    #[error("clientId must be 1 to 64 characters")]
    ClientId,
    /// A required key is missing or empty.
    #[error("username lacks {0}")]
    Missing(&'static str),
    /// `authMode` is not `aksign`.
    #[error("authMode {0:?} is not aksign")]
    AuthMode(String),
    /// `signMethod` is not hmacmd5, hmacsha1 or hmacsha256.
    #[error("signMethod {0:?} is not hmacmd5, hmacsha1 or hmacsha256")]
    SignMethod(String),
}

/// A parsed consumer username (no secret in it: `Debug` is safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkSignLogin {
    /// The consumer's clientId (before the first `|`).
    pub client_id: String,
    /// The AccessKeyId (`authId`).
    pub auth_id: String,
    /// The HMAC of the password.
    pub sign_method: SignMethod,
    /// The timestamp as sent (signed verbatim).
    pub timestamp: String,
    /// `iotInstanceId`, `None` when absent, empty or `""`.
    pub iot_instance_id: Option<String>,
    /// The consumer group.
    pub consumer_group_id: String,
    /// `cleanSession=true`: drop the group's backlog on connect.
    pub clean_session: bool,
}

impl AkSignLogin {
    /// Parses `clientId|k=v,…|` (keys unordered, unknown keys ignored).
    pub fn parse(username: &str) -> Result<Self, AkSignError> {
        let (client_id, rest) = username.split_once('|').ok_or(AkSignError::Shape)?;
        let params = rest.strip_suffix('|').ok_or(AkSignError::Shape)?;
        if params.contains('|') {
            return Err(AkSignError::Shape);
        }
        if client_id.is_empty() || client_id.chars().count() > 64 {
            return Err(AkSignError::ClientId);
        }
        let mut map = BTreeMap::new();
        for pair in params.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(AkSignError::Shape)?;
            map.insert(k.trim(), v.trim());
        }
        let need = |key: &'static str| -> Result<String, AkSignError> {
            match map.get(key) {
                Some(v) if !v.is_empty() => Ok((*v).to_owned()),
                _ => Err(AkSignError::Missing(key)),
            }
        };
        let auth_mode = need("authMode")?;
        if auth_mode != AUTH_MODE_AKSIGN {
            return Err(AkSignError::AuthMode(auth_mode));
        }
        let method = need("signMethod")?;
        let sign_method = method
            .parse::<SignMethod>()
            .map_err(|_| AkSignError::SignMethod(method))?;
        let iot_instance_id = map
            .get("iotInstanceId")
            .map(|v| v.trim_matches('"'))
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        Ok(Self {
            client_id: client_id.to_owned(),
            auth_id: need("authId")?,
            sign_method,
            timestamp: need("timestamp")?,
            iot_instance_id,
            consumer_group_id: need("consumerGroupId")?,
            clean_session: map
                .get("cleanSession")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The password a consumer holding `secret` sends.
    pub fn password(&self, secret: &str) -> String {
        aksign_password(self.sign_method, &self.auth_id, secret, &self.timestamp)
    }

    /// Whether `password` is right for `secret` (constant time).
    pub fn verify(&self, secret: &str, password: &str) -> bool {
        self.password(secret).as_bytes().ct_eq(password.as_bytes()).into()
    }
}

/// `Base64(HMAC_method(secret, "authId=<ak>&timestamp=<ts>"))`.
pub fn aksign_password(method: SignMethod, access_key_id: &str, secret: &str, timestamp: &str) -> String {
    let content = format!("authId={access_key_id}&timestamp={timestamp}");
    base64::engine::general_purpose::STANDARD.encode(method.mac(secret.as_bytes(), content.as_bytes()))
}

/// The device a forwarded body is about.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOf<'a> {
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
}

/// `/as/mqtt/status/${pk}/${dn}`: times already written (`time`, `lastTime` in UTC+8
/// `yyyy-MM-dd HH:mm:ss.SSS`; `utcTime`, `utcLastTime` ISO 8601 with ms).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody<'a> {
    /// `online` or `offline`.
    pub status: &'a str,
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// When (UTC+8).
    pub time: &'a str,
    /// When (UTC).
    pub utc_time: &'a str,
    /// Last communication (UTC+8).
    pub last_time: &'a str,
    /// Last communication (UTC).
    pub utc_last_time: &'a str,
    /// The device's IP address.
    pub client_ip: &'a str,
    /// `427` on offline (the platform's code for a closed connection); absent when online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_reason_code: Option<u32>,
}

/// The status topic of a device.
pub fn status_topic(product_key: &str, device_name: &str) -> String {
    format!("/as/mqtt/status/{product_key}/{device_name}")
}

/// The forwarded topic of a `/sys/…` uplink: the same path without `/sys` (§2.6).
pub fn forwarded_sys_topic(topic: &str) -> &str {
    topic.strip_prefix("/sys").unwrap_or(topic)
}

/// A value with its time, as in `items`.
#[derive(Debug, Clone, Serialize)]
pub struct TimedValue {
    /// The value.
    pub value: Value,
    /// Epoch ms (the device's time, else when the hub received it).
    pub time: i64,
}

/// A rejected value, as in `checkFailedData`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckFailed {
    /// The 63xx code.
    pub code: u32,
    /// `tsl parse: … -> identifier`.
    pub message: String,
    /// Epoch ms.
    pub time: i64,
    /// The value as posted.
    pub value: Value,
}

/// `items` of valid values: each with its own time, else `received_ms`.
pub fn items_of(items: &BTreeMap<String, Item>, received_ms: i64) -> BTreeMap<String, TimedValue> {
    items
        .iter()
        .map(|(id, item)| {
            let timed = TimedValue {
                value: item.value.clone(),
                time: item.time.unwrap_or(received_ms),
            };
            (id.clone(), timed)
        })
        .collect()
}

/// `checkFailedData` of rejected values.
pub fn check_failed_of(
    rejected: &BTreeMap<String, Rejection>,
    received_ms: i64,
) -> BTreeMap<String, CheckFailed> {
    rejected
        .iter()
        .map(|(id, r)| {
            let failed = CheckFailed {
                code: r.code,
                message: r.message.clone(),
                time: received_ms,
                value: r.value.clone(),
            };
            (id.clone(), failed)
        })
        .collect()
}

/// `/${pk}/${dn}/thing/event/property/post`, keys in the captured order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyPostBody<'a> {
    /// The product's category (`CustomCategory`).
    pub device_type: &'a str,
    /// iotId.
    pub iot_id: &'a str,
    /// The Alink `id` as a string (`"null"` when absent).
    pub request_id: &'a str,
    /// Rejected values.
    pub check_failed_data: &'a BTreeMap<String, CheckFailed>,
    /// productKey.
    pub product_key: &'a str,
    /// Forwarding time, epoch ms.
    pub gmt_create: i64,
    /// deviceName.
    pub device_name: &'a str,
    /// Valid values.
    pub items: &'a BTreeMap<String, TimedValue>,
}

/// `/${pk}/${dn}/thing/event/${identifier}/post`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPostBody<'a> {
    /// The event's identifier.
    pub identifier: &'a str,
    /// The event's name in the thing model (the identifier without one).
    pub name: &'a str,
    /// `info`, `alert` or `error`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// iotId.
    pub iot_id: &'a str,
    /// The Alink `id` as a string.
    pub request_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// Forwarding time, epoch ms.
    pub gmt_create: i64,
    /// The event's valid outputs.
    pub value: &'a serde_json::Map<String, Value>,
    /// Rejected outputs.
    pub check_failed_data: &'a BTreeMap<String, CheckFailed>,
    /// The event's time, epoch ms.
    pub time: i64,
    /// The product's category.
    pub device_type: &'a str,
}

/// `/${pk}/${dn}/thing/downlink/reply/message`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownlinkReplyBody<'a> {
    /// Forwarding time, epoch ms.
    pub gmt_create: i64,
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// The downlink's MessageId (a number when the id is numeric, else the string).
    pub request_id: Value,
    /// The device's code.
    pub code: Value,
    /// The device's message (`success` when absent).
    pub message: Value,
    /// The reply topic the device answered on (`…/property/set_reply`, `…/service/{id}_reply`).
    pub topic: &'a str,
    /// The device's `data`.
    pub data: Value,
}

/// `/${pk}/${dn}/thing/lifecycle`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleBody<'a> {
    /// `create`, `delete`, `enable` or `disable`.
    pub action: &'a str,
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// The device's secret, on `create` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<&'a str>,
    /// Epoch ms.
    pub message_create_time: i64,
}

/// A body as JSON bytes (serializing these plain structs cannot fail; an empty object if it did).
pub fn to_bytes(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_vectors() {
        let p = |m| aksign_password(m, "testid", "testsecret", "1573489088171");
        assert_eq!(p(SignMethod::HmacSha1), "RG+3WYzI9qDD0P9m6ER+maK4yH0=");
        assert_eq!(
            p(SignMethod::HmacSha256),
            "dAMr0c09P/ECCozeLuJydCVfplDP8RzdvNouS3nf3EA="
        );
        assert_eq!(p(SignMethod::HmacMd5), "I/Tb6mPPa1CH7tc+1vO7lQ==");
    }

    #[test]
    fn usernames_in_every_shape_the_samples_send() {
        let l = AkSignLogin::parse(
            "c|iotInstanceId=\"\",consumerGroupId=g1,authMode=aksign,timestamp=1573489088171,signMethod=hmacsha256,authId=testid|",
        )
        .expect("parsed");
        assert_eq!(l.iot_instance_id, None);
        assert_eq!(l.consumer_group_id, "g1");
        assert!(l.verify("testsecret", "dAMr0c09P/ECCozeLuJydCVfplDP8RzdvNouS3nf3EA="));
        assert!(!l.verify("other", "dAMr0c09P/ECCozeLuJydCVfplDP8RzdvNouS3nf3EA="));
        assert!(!l.clean_session);
        let l = AkSignLogin::parse(
            "c|authMode=aksign,signMethod=hmacmd5,timestamp=1,authId=a,consumerGroupId=g,cleanSession=true,iotInstanceId=iot-1|",
        )
        .expect("parsed");
        assert!(l.clean_session);
        assert_eq!(l.iot_instance_id.as_deref(), Some("iot-1"));
        for (bad, why) in [
            ("c|authMode=aksign|", AkSignError::Missing("signMethod")),
            ("nobars", AkSignError::Shape),
            (
                "c|authMode=sign,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=g|",
                AkSignError::AuthMode("sign".into()),
            ),
            (
                "c|authMode=aksign,signMethod=sha1,timestamp=1,authId=a,consumerGroupId=g|",
                AkSignError::SignMethod("sha1".into()),
            ),
            (
                "|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=g|",
                AkSignError::ClientId,
            ),
            (
                "c|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a|",
                AkSignError::Missing("consumerGroupId"),
            ),
        ] {
            assert_eq!(AkSignLogin::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn bodies_keep_the_captured_key_order() {
        let items = BTreeMap::from([(
            "T".to_owned(),
            TimedValue {
                value: Value::from(24.45),
                time: 5,
            },
        )]);
        let failed = BTreeMap::new();
        let body = PropertyPostBody {
            device_type: "CustomCategory",
            iot_id: "i",
            request_id: "1",
            check_failed_data: &failed,
            product_key: "pk",
            gmt_create: 9,
            device_name: "dn",
            items: &items,
        };
        assert_eq!(
            String::from_utf8(to_bytes(&body)).expect("utf8"),
            r#"{"deviceType":"CustomCategory","iotId":"i","requestId":"1","checkFailedData":{},"productKey":"pk","gmtCreate":9,"deviceName":"dn","items":{"T":{"value":24.45,"time":5}}}"#
        );
        let status = StatusBody {
            status: "offline",
            iot_id: "i",
            product_key: "pk",
            device_name: "dn",
            time: "2018-08-31 15:32:28.205",
            utc_time: "2018-08-31T07:32:28.205Z",
            last_time: "2018-08-31 15:32:28.195",
            utc_last_time: "2018-08-31T07:32:28.195Z",
            client_ip: "192.0.2.1",
            offline_reason_code: Some(427),
        };
        assert_eq!(
            String::from_utf8(to_bytes(&status)).expect("utf8"),
            r#"{"status":"offline","iotId":"i","productKey":"pk","deviceName":"dn","time":"2018-08-31 15:32:28.205","utcTime":"2018-08-31T07:32:28.205Z","lastTime":"2018-08-31 15:32:28.195","utcLastTime":"2018-08-31T07:32:28.195Z","clientIp":"192.0.2.1","offlineReasonCode":427}"#
        );
        assert_eq!(
            forwarded_sys_topic("/sys/pk/dn/thing/event/property/post"),
            "/pk/dn/thing/event/property/post"
        );
    }
}
