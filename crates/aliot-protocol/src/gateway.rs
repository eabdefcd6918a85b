//! Gateways and sub-devices (cloud-side spec §5): the sub-device sign, the topology and session
//! payloads, their topics, limits and codes. Pure: no IO, no clock.
//!
//! ```text
//! content = "clientId" + clientId + "deviceName" + dn + "productKey" + pk + "timestamp" + ts
//! sign    = hex(HMAC_<method>(subDeviceSecret, content))
//! ```
//! The same rule signs `thing.topo.add` items and `combine.login` params. The documentation's
//! login example also prefixes `"cleanSession" + cleanSession` to the content; the C SDK 3.x and
//! things-go do not: [`verify_sub_sign`] accepts either. The timestamp is never checked for
//! freshness (the C SDK 3.x sends its uptime).
//!
//! ```
//! use aliot_protocol::gateway::{sub_sign, SubSignMethod};
//! use aliot_protocol::HexCase;
//!
//! let sign = sub_sign(
//!     SubSignMethod::HMAC_SHA1, "subsecret", "pk1.sub1|_v=sdk-c-3.0.1|", "sub1", "pk1",
//!     "2524608000000", None, HexCase::Lower,
//! );
//! assert_eq!(sign, "7a26ba83862f482455f67b82d494893911dfaa99");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::identity::DeviceIdentity;
use crate::sign::{HexCase, SignMethod, sign_content};

/// The most sub-devices in one `combine/batch_login` or `combine/batch_logout`.
pub const MAX_BATCH: usize = 50;

/// The most sub-devices a `thing.event.property.pack.post` may carry (6357 beyond).
pub const MAX_PACK_SUB_DEVICES: usize = 20;

/// The most events a `thing.event.property.pack.post` may carry (6356 beyond).
pub const MAX_PACK_EVENTS: usize = 200;

/// The platform's codes for gateway requests (cloud-side §5).
pub mod code {
    /// Topo add: the sub-device sign failed.
    pub const TOPO_SIGN_FAILED: u32 = 401;
    /// Login: too many sub-devices online on this gateway.
    pub const TOO_MANY_ONLINE: u32 = 428;
    /// A sub-device logs in too often: throttled (things-go `CodeSubDevOnlineRateLimit`).
    pub const THROTTLED: u32 = 429;
    /// Kick notice: the sub-device logged in elsewhere (another gateway or directly).
    pub const KICKED: u32 = 427;
    /// Logout or send: the sub-device has no session.
    pub const NO_SESSION: u32 = 520;
    /// Login: the sub-device was deleted.
    pub const DELETED: u32 = 521;
    /// Login: the sub-device is disabled.
    pub const DISABLED: u32 = 522;
    /// Sub-device registration: dynamic registration is off for the product.
    pub const DYNREG_OFF: u32 = 6288;
    /// Topo add: too many sub-devices on this gateway.
    pub const TOO_MANY_SUB_DEVICES: u32 = 6400;
    /// No topological relation between the gateway and the sub-device.
    pub const NO_TOPO: u32 = 6401;
    /// Topo add: a gateway cannot add itself.
    pub const ADD_ITSELF: u32 = 6402;
    /// Sub-device registration: already bound to another gateway.
    pub const BOUND_ELSEWHERE: u32 = 6619;
    /// Login: the sub-device sign failed.
    pub const LOGIN_SIGN_FAILED: u32 = 6287;
}

/// How a sub-device sign is computed: the HMACs of the CONNECT password.
///
/// The names are read case-insensitively (`hmacSha256`, `hmacsha1`, `HmacMD5`). The bare
/// `sha256` of the documentation's list has no published algorithm; the Node SDK sends
/// `hmacsha256` for it, so it is read as HMAC-SHA256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubSignMethod(pub SignMethod);

impl SubSignMethod {
    /// `hmacSha1`.
    pub const HMAC_SHA1: SubSignMethod = SubSignMethod(SignMethod::HmacSha1);
    /// `hmacSha256`.
    pub const HMAC_SHA256: SubSignMethod = SubSignMethod(SignMethod::HmacSha256);
    /// `hmacMd5`.
    pub const HMAC_MD5: SubSignMethod = SubSignMethod(SignMethod::HmacMd5);

    /// The name the SDKs send: `hmacSha1`, `hmacSha256` or `hmacMd5`.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            SignMethod::HmacSha1 => "hmacSha1",
            SignMethod::HmacSha256 => "hmacSha256",
            SignMethod::HmacMd5 => "hmacMd5",
        }
    }
}

impl fmt::Display for SubSignMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubSignMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.eq_ignore_ascii_case("sha256") {
            return Ok(SubSignMethod::HMAC_SHA256);
        }
        s.parse().map(SubSignMethod)
    }
}

impl Serialize for SubSignMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SubSignMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// The sign content of a sub-device: `[cleanSession{cs}]clientId{cid}deviceName{dn}productKey{pk}timestamp{ts}`.
pub fn sub_sign_content(
    client_id: &str,
    device_name: &str,
    product_key: &str,
    timestamp: &str,
    clean_session: Option<&str>,
) -> String {
    let content = sign_content(client_id, device_name, product_key, Some(timestamp));
    match clean_session {
        Some(cs) => format!("cleanSession{cs}{content}"),
        None => content,
    }
}

/// The hex sign of a sub-device (topo add, combine login).
#[allow(clippy::too_many_arguments)]
pub fn sub_sign(
    method: SubSignMethod,
    device_secret: &str,
    client_id: &str,
    device_name: &str,
    product_key: &str,
    timestamp: &str,
    clean_session: Option<&str>,
    case: HexCase,
) -> String {
    let content = sub_sign_content(client_id, device_name, product_key, timestamp, clean_session);
    method.0.hex(device_secret.as_bytes(), content.as_bytes(), case)
}

/// Whether `sign` (hex, either case) is the sub-device's sign, with or without the
/// `cleanSession` prefix when `clean_session` is given. Constant-time on the MAC.
#[allow(clippy::too_many_arguments)]
pub fn verify_sub_sign(
    method: SubSignMethod,
    device_secret: &str,
    client_id: &str,
    device_name: &str,
    product_key: &str,
    timestamp: &str,
    clean_session: Option<&str>,
    sign: &str,
) -> bool {
    let plain = sub_sign_content(client_id, device_name, product_key, timestamp, None);
    if method
        .0
        .verify_hex(device_secret.as_bytes(), plain.as_bytes(), sign.as_bytes())
    {
        return true;
    }
    clean_session.is_some_and(|cs| {
        let prefixed = sub_sign_content(client_id, device_name, product_key, timestamp, Some(cs));
        method
            .0
            .verify_hex(device_secret.as_bytes(), prefixed.as_bytes(), sign.as_bytes())
    })
}

/// A timestamp sent as a JSON string (documentation, C and Python SDKs) or number (Node SDK).
fn de_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(de::Error::custom(format!(
            "timestamp must be a string or number, not {other}"
        ))),
    }
}

/// `cleanSession` sent as the string `"true"`/`"false"` (documentation, Python) or a JSON bool.
fn de_clean_session<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(de::Error::custom(format!(
            "cleanSession must be \"true\" or \"false\", not {other}"
        ))),
    }
}

/// A device named by productKey and deviceName: topo delete, topo get's answer, logout, found,
/// registration requests, topo change lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubDeviceKey {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
}

impl SubDeviceKey {
    /// A key from its parts.
    pub fn new(product_key: impl Into<String>, device_name: impl Into<String>) -> Self {
        Self {
            product_key: product_key.into(),
            device_name: device_name.into(),
        }
    }
}

impl From<&DeviceIdentity> for SubDeviceKey {
    fn from(d: &DeviceIdentity) -> Self {
        Self::new(d.product_key(), d.device_name())
    }
}

/// One item of `thing.topo.add` params (lower-case `signmethod` on the wire; `signMethod` read too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopoAddItem {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The clientId signed (any text; `pk.dn` or `pk&dn` by the SDKs).
    pub client_id: String,
    /// The timestamp signed, verbatim (never checked for freshness).
    #[serde(deserialize_with = "de_timestamp")]
    pub timestamp: String,
    /// How `sign` was computed.
    #[serde(rename = "signmethod", alias = "signMethod")]
    pub sign_method: SubSignMethod,
    /// The hex sign.
    pub sign: String,
}

/// The clientId `pk.dn` the SDK uses for `sub`, and its lower-hex sign (no `cleanSession`
/// prefix): shared by topo add and login, which sign the same content.
fn signed_client_id(sub: &DeviceIdentity, timestamp: &str, method: SubSignMethod) -> (String, String) {
    let client_id = format!("{}.{}", sub.product_key(), sub.device_name());
    let sign = sub_sign(
        method,
        sub.device_secret(),
        &client_id,
        sub.device_name(),
        sub.product_key(),
        timestamp,
        None,
        HexCase::Lower,
    );
    (client_id, sign)
}

impl TopoAddItem {
    /// Signs a topo add item for `sub` with clientId `pk.dn`.
    pub fn signed(sub: &DeviceIdentity, timestamp: &str, method: SubSignMethod) -> Self {
        let (client_id, sign) = signed_client_id(sub, timestamp, method);
        Self {
            product_key: sub.product_key().to_owned(),
            device_name: sub.device_name().to_owned(),
            client_id,
            timestamp: timestamp.to_owned(),
            sign_method: method,
            sign,
        }
    }

    /// Whether the sign is right for `device_secret`.
    pub fn verify(&self, device_secret: &str) -> bool {
        verify_sub_sign(
            self.sign_method,
            device_secret,
            &self.client_id,
            &self.device_name,
            &self.product_key,
            &self.timestamp,
            None,
            &self.sign,
        )
    }

    /// The device this item names.
    pub fn key(&self) -> SubDeviceKey {
        SubDeviceKey::new(&self.product_key, &self.device_name)
    }
}

/// `combine.login` params, and each item of a batch login's `deviceList`.
///
/// In a batch the Python SDK puts `signMethod` beside `deviceList`, not in each item:
/// [`BatchLogin::items`] fills it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginParams {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The clientId signed.
    pub client_id: String,
    /// The timestamp signed, verbatim.
    #[serde(deserialize_with = "de_timestamp")]
    pub timestamp: String,
    /// How `sign` was computed (camel-case `signMethod`; `signmethod` read too).
    #[serde(alias = "signmethod", default, skip_serializing_if = "Option::is_none")]
    pub sign_method: Option<SubSignMethod>,
    /// The hex sign.
    pub sign: String,
    /// `"true"` or `"false"`, a string on the wire.
    #[serde(
        default,
        deserialize_with = "de_clean_session",
        skip_serializing_if = "Option::is_none"
    )]
    pub clean_session: Option<String>,
}

impl LoginParams {
    /// Signs a login for `sub` with clientId `pk.dn` and `cleanSession` `"true"` (the sign
    /// content without the `cleanSession` prefix, as the C SDK 3.x signs).
    pub fn signed(sub: &DeviceIdentity, timestamp: &str, method: SubSignMethod) -> Self {
        let (client_id, sign) = signed_client_id(sub, timestamp, method);
        Self {
            product_key: sub.product_key().to_owned(),
            device_name: sub.device_name().to_owned(),
            client_id,
            timestamp: timestamp.to_owned(),
            sign_method: Some(method),
            sign,
            clean_session: Some("true".to_owned()),
        }
    }

    /// The sign method, `hmacSha1` when none is named.
    pub fn method(&self) -> SubSignMethod {
        self.sign_method.unwrap_or_default()
    }

    /// Whether the sign is right for `device_secret` (both sign-content variants).
    pub fn verify(&self, device_secret: &str) -> bool {
        verify_sub_sign(
            self.method(),
            device_secret,
            &self.client_id,
            &self.device_name,
            &self.product_key,
            &self.timestamp,
            self.clean_session.as_deref(),
            &self.sign,
        )
    }

    /// The device this login names.
    pub fn key(&self) -> SubDeviceKey {
        SubDeviceKey::new(&self.product_key, &self.device_name)
    }
}

/// `combine.batch_login` params: `{"deviceList":[…]}`, with an optional shared `signMethod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchLogin {
    /// The sign method of items that name none (the Python SDK's shape).
    #[serde(alias = "signmethod", default, skip_serializing_if = "Option::is_none")]
    pub sign_method: Option<SubSignMethod>,
    /// The logins, at most [`MAX_BATCH`].
    pub device_list: Vec<LoginParams>,
}

impl BatchLogin {
    /// The logins with the shared sign method filled in where an item names none.
    pub fn items(&self) -> Vec<LoginParams> {
        self.device_list
            .iter()
            .map(|item| {
                let mut item = item.clone();
                if item.sign_method.is_none() {
                    item.sign_method = self.sign_method;
                }
                item
            })
            .collect()
    }
}

/// What a sub-device registration (`thing/sub/register`) answers for each device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredSubDevice {
    /// The platform's id of the device.
    #[serde(default)]
    pub iot_id: String,
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// The deviceSecret.
    pub device_secret: String,
}

impl fmt::Debug for RegisteredSubDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredSubDevice")
            .field("iot_id", &self.iot_id)
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field("device_secret", &"<redacted>")
            .finish()
    }
}

/// The status of a `thing.topo.change` notice.
///
/// The documentation contradicts itself on 2 and 8 (a code comment says 2 enable, 8 disable;
/// its table says 2 disable, 8 enable); aliot follows the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopoChangeStatus {
    /// 0: the relation was created.
    Created,
    /// 1: the relation was deleted.
    Deleted,
    /// 2: the sub-devices were disabled.
    Disabled,
    /// 8: the sub-devices were enabled.
    Enabled,
    /// Any other number, kept.
    Other(u32),
}

impl TopoChangeStatus {
    /// The number on the wire.
    pub fn code(self) -> u32 {
        match self {
            TopoChangeStatus::Created => 0,
            TopoChangeStatus::Deleted => 1,
            TopoChangeStatus::Disabled => 2,
            TopoChangeStatus::Enabled => 8,
            TopoChangeStatus::Other(n) => n,
        }
    }

    /// The status of a number on the wire.
    pub fn from_code(n: u32) -> Self {
        match n {
            0 => TopoChangeStatus::Created,
            1 => TopoChangeStatus::Deleted,
            2 => TopoChangeStatus::Disabled,
            8 => TopoChangeStatus::Enabled,
            n => TopoChangeStatus::Other(n),
        }
    }
}

/// `thing.topo.change` params: `{"status":0,"subList":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopoChange {
    /// The number of a [`TopoChangeStatus`].
    pub status: u32,
    /// The sub-devices changed.
    pub sub_list: Vec<SubDeviceKey>,
}

/// Gateway topics, by the gateway's (or, for sub-device notices, the sub-device's) pk and dn.
pub mod topic {
    /// `/sys/{pk}/{dn}/thing/topo/add`.
    pub fn topo_add(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/topo/add")
    }
    /// `/sys/{pk}/{dn}/thing/topo/delete`.
    pub fn topo_delete(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/topo/delete")
    }
    /// `/sys/{pk}/{dn}/thing/topo/get`.
    pub fn topo_get(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/topo/get")
    }
    /// `/sys/{pk}/{dn}/thing/list/found`.
    pub fn list_found(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/list/found")
    }
    /// `/sys/{pk}/{dn}/thing/topo/add/notify` (down).
    pub fn topo_add_notify(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/topo/add/notify")
    }
    /// `/sys/{pk}/{dn}/thing/topo/change` (down).
    pub fn topo_change(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/topo/change")
    }
    /// `/sys/{pk}/{dn}/thing/sub/register`.
    pub fn sub_register(pk: &str, dn: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/sub/register")
    }
    /// `/ext/session/{pk}/{dn}/combine/{action}` with action `login`, `logout`, `batch_login`
    /// or `batch_logout`.
    pub fn session(pk: &str, dn: &str, action: &str) -> String {
        format!("/ext/session/{pk}/{dn}/combine/{action}")
    }
    /// `/ext/error/{pk}/{dn}`: kick and failure notices (down).
    pub fn error(pk: &str, dn: &str) -> String {
        format!("/ext/error/{pk}/{dn}")
    }
    /// `/sys/{pk}/{dn}/thing/{disable|enable|delete}` for a sub-device (down).
    pub fn sub_notice(pk: &str, dn: &str, what: &str) -> String {
        format!("/sys/{pk}/{dn}/thing/{what}")
    }
    /// The reply topic of a request topic.
    pub fn reply(request: &str) -> String {
        format!("{request}_reply")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CID: &str = "pk1.sub1|_v=sdk-c-3.0.1|";

    #[test]
    fn the_spec_vector() {
        let content = sub_sign_content(CID, "sub1", "pk1", "2524608000000", None);
        assert_eq!(
            content,
            "clientIdpk1.sub1|_v=sdk-c-3.0.1|deviceNamesub1productKeypk1timestamp2524608000000"
        );
        let sign = sub_sign(
            SubSignMethod::HMAC_SHA1,
            "subsecret",
            CID,
            "sub1",
            "pk1",
            "2524608000000",
            None,
            HexCase::Lower,
        );
        assert_eq!(sign, "7a26ba83862f482455f67b82d494893911dfaa99");
        let upper = sign.to_ascii_uppercase();
        for s in [sign.as_str(), upper.as_str()] {
            assert!(verify_sub_sign(
                SubSignMethod::HMAC_SHA1,
                "subsecret",
                CID,
                "sub1",
                "pk1",
                "2524608000000",
                Some("true"),
                s
            ));
        }
        assert!(!verify_sub_sign(
            SubSignMethod::HMAC_SHA1,
            "other",
            CID,
            "sub1",
            "pk1",
            "2524608000000",
            None,
            &sign
        ));
        assert!(!verify_sub_sign(
            SubSignMethod::HMAC_SHA256,
            "subsecret",
            CID,
            "sub1",
            "pk1",
            "2524608000000",
            None,
            &sign
        ));
    }

    #[test]
    fn every_method_and_both_content_variants_verify() {
        for m in [
            SubSignMethod::HMAC_SHA1,
            SubSignMethod::HMAC_SHA256,
            SubSignMethod::HMAC_MD5,
        ] {
            let plain = sub_sign(m, "s", "c", "d", "p", "1", None, HexCase::Upper);
            let prefixed = sub_sign(m, "s", "c", "d", "p", "1", Some("true"), HexCase::Lower);
            assert_ne!(plain.to_ascii_lowercase(), prefixed);
            assert!(verify_sub_sign(m, "s", "c", "d", "p", "1", Some("true"), &plain));
            assert!(verify_sub_sign(
                m,
                "s",
                "c",
                "d",
                "p",
                "1",
                Some("true"),
                &prefixed
            ));
            assert!(!verify_sub_sign(m, "s", "c", "d", "p", "1", None, &prefixed));
            assert!(!verify_sub_sign(
                m,
                "s",
                "c",
                "d",
                "p",
                "1",
                Some("false"),
                &prefixed
            ));
        }
    }

    #[test]
    fn sign_method_names() {
        for (name, m) in [
            ("hmacSha1", SubSignMethod::HMAC_SHA1),
            ("hmacsha256", SubSignMethod::HMAC_SHA256),
            ("HmacMD5", SubSignMethod::HMAC_MD5),
            ("Sha256", SubSignMethod::HMAC_SHA256),
        ] {
            assert_eq!(name.parse::<SubSignMethod>().expect("known"), m);
        }
        assert!("rsa".parse::<SubSignMethod>().is_err());
    }

    #[test]
    fn topo_add_item_reads_every_sdk_shape() {
        let sub = DeviceIdentity::new("pk1", "sub1", "subsecret").expect("valid");
        let item = TopoAddItem::signed(&sub, "1700000000000", SubSignMethod::HMAC_SHA256);
        assert!(item.verify("subsecret"));
        assert!(!item.verify("other"));
        let wire = serde_json::to_value(&item).expect("serializes");
        assert_eq!(wire["signmethod"], "hmacSha256");
        assert_eq!(
            serde_json::from_value::<TopoAddItem>(wire).expect("round trip"),
            item
        );
        // The Node SDK: camel-case signMethod, numeric timestamp, clientId pk&dn.
        let node: TopoAddItem = serde_json::from_value(json!({
            "productKey": "pk1", "deviceName": "sub1", "clientId": "pk1&sub1", "timestamp": 1700000000000u64,
            "signMethod": "hmacsha1",
            "sign": sub_sign(SubSignMethod::HMAC_SHA1, "subsecret", "pk1&sub1", "sub1", "pk1", "1700000000000", None, HexCase::Lower),
        }))
        .expect("node shape");
        assert!(node.verify("subsecret"));
        assert!(serde_json::from_value::<TopoAddItem>(json!({"productKey": "p"})).is_err());
    }

    #[test]
    fn batch_login_fills_the_shared_sign_method() {
        let sub = DeviceIdentity::new("pk1", "sub1", "subsecret").expect("valid");
        let mut one = LoginParams::signed(&sub, "5", SubSignMethod::HMAC_SHA256);
        assert!(one.verify("subsecret"));
        one.sign_method = None;
        one.clean_session = None;
        let batch: BatchLogin = serde_json::from_value(json!({
            "signMethod": "hmacSha256",
            "deviceList": [serde_json::to_value(&one).expect("serializes")],
        }))
        .expect("python shape");
        let items = batch.items();
        assert_eq!(items.len(), 1);
        assert!(items[0].verify("subsecret"));
        // A bool cleanSession is read as its text.
        let bool_cs: LoginParams = serde_json::from_value(json!({
            "productKey": "p", "deviceName": "d", "clientId": "c", "timestamp": "1", "sign": "00", "cleanSession": true,
        }))
        .expect("bool cleanSession");
        assert_eq!(bool_cs.clean_session.as_deref(), Some("true"));
        assert_eq!(bool_cs.method(), SubSignMethod::HMAC_SHA1);
    }

    #[test]
    fn registered_sub_device_debug_hides_the_secret() {
        let r = RegisteredSubDevice {
            iot_id: "i".into(),
            product_key: "p".into(),
            device_name: "d".into(),
            device_secret: "topsecret".into(),
        };
        assert!(!format!("{r:?}").contains("topsecret"));
    }

    #[test]
    fn topo_change_statuses_round_trip() {
        for n in [0, 1, 2, 8, 5] {
            assert_eq!(TopoChangeStatus::from_code(n).code(), n);
        }
        assert_eq!(TopoChangeStatus::from_code(2), TopoChangeStatus::Disabled);
    }
}
