//! Typed Alink topics (spec §4.3) and the topic rights of a device (spec §3.5).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A topic of the platform, parsed.
///
/// ```
/// use aliot_protocol::topic::{SysPath, Topic};
/// let t: Topic = "/sys/pk/dn/thing/event/property/post_reply".parse()?;
/// assert_eq!(t, Topic::sys("pk", "dn", SysPath::PropertyPost.reply()));
/// assert_eq!(t.to_string(), "/sys/pk/dn/thing/event/property/post_reply");
/// # Ok::<(), aliot_protocol::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `/sys/{pk}/{dn}/{path}`: Alink system topics.
    Sys {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// What follows `/sys/{pk}/{dn}/`.
        path: SysPath,
    },
    /// `/ext/ntp/{pk}/{dn}/request` (up).
    NtpRequest {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },
    /// `/ext/ntp/{pk}/{dn}/response` (down).
    NtpResponse {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },
    /// `/ext/rrpc/{messageId}{topic}`: synchronous calls on the device's own topics, answered on
    /// the same topic.
    ExtRrpc {
        /// The RRPC message id.
        message_id: String,
        /// The inner topic, starting with `/`.
        inner: Box<Topic>,
    },
    /// `/ext/error/{pk}/{dn}` (down).
    ExtError {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },
    /// `/shadow/{update|get}/{pk}/{dn}`.
    Shadow {
        /// `update` (up) or `get` (down).
        action: String,
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },
    /// `/ota/device/{inform|upgrade|progress|request}/{pk}/{dn}`.
    Ota {
        /// `inform`, `upgrade`, `progress` or `request`.
        action: String,
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },
    /// `/broadcast/{pk}/{name...}` (down, product-wide).
    Broadcast {
        /// productKey.
        product_key: String,
        /// What follows `/broadcast/{pk}/`.
        rest: String,
    },
    /// `/{pk}/{dn}/{rest}`: custom topics (`user/...`).
    Custom {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// What follows `/{pk}/{dn}/`.
        rest: String,
    },
}

/// What follows `/sys/{pk}/{dn}/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SysPath {
    /// `thing/event/property/post` (up).
    PropertyPost,
    /// `thing/event/{eventId}/post` (up).
    EventPost(String),
    /// `thing/event/property/batch/post` (up).
    PropertyBatchPost,
    /// `thing/event/property/pack/post` (up, gateways).
    PropertyPackPost,
    /// `thing/event/property/history/post` (up).
    PropertyHistoryPost,
    /// `thing/service/property/set` (down).
    PropertySet,
    /// `thing/service/property/get` (down).
    PropertyGet,
    /// `thing/service/{serviceId}` (down, asynchronous service).
    Service(String),
    /// `thing/property/desired/get` (up).
    DesiredGet,
    /// `thing/property/desired/delete` (up).
    DesiredDelete,
    /// `thing/deviceinfo/update` (up).
    DeviceInfoUpdate,
    /// `thing/deviceinfo/delete` (up).
    DeviceInfoDelete,
    /// `thing/config/get` (up).
    ConfigGet,
    /// `thing/config/push` (down).
    ConfigPush,
    /// `thing/ota/firmware/get` (up).
    OtaFirmwareGet,
    /// `thing/model/up_raw` (up).
    UpRaw,
    /// `thing/model/down_raw` (down).
    DownRaw,
    /// `rrpc/request/{messageId}` (down).
    RrpcRequest(String),
    /// `rrpc/response/{messageId}` (up).
    RrpcResponse(String),
    /// `broadcast/request/{messageId}` (down).
    BroadcastRequest(String),
    /// `{path}_reply`: the reply to a request on `path`.
    Reply(Box<SysPath>),
    /// Any other path under `/sys/{pk}/{dn}/` (kept verbatim).
    Other(String),
}

impl SysPath {
    /// The reply path of this request path (`post` → `post_reply`).
    pub fn reply(self) -> SysPath {
        SysPath::Reply(Box::new(self))
    }

    /// The Alink `method` of a request on this path, when it has one.
    pub fn method(&self) -> Option<String> {
        Some(match self {
            SysPath::PropertyPost => "thing.event.property.post".into(),
            SysPath::EventPost(e) => format!("thing.event.{e}.post"),
            SysPath::PropertyBatchPost => "thing.event.property.batch.post".into(),
            SysPath::PropertyPackPost => "thing.event.property.pack.post".into(),
            SysPath::PropertyHistoryPost => "thing.event.property.history.post".into(),
            SysPath::PropertySet => "thing.service.property.set".into(),
            SysPath::PropertyGet => "thing.service.property.get".into(),
            SysPath::Service(s) => format!("thing.service.{s}"),
            SysPath::DesiredGet => "thing.property.desired.get".into(),
            SysPath::DesiredDelete => "thing.property.desired.delete".into(),
            SysPath::DeviceInfoUpdate => "thing.deviceinfo.update".into(),
            SysPath::DeviceInfoDelete => "thing.deviceinfo.delete".into(),
            SysPath::ConfigGet => "thing.config.get".into(),
            SysPath::ConfigPush => "thing.config.push".into(),
            SysPath::OtaFirmwareGet => "thing.ota.firmware.get".into(),
            SysPath::UpRaw | SysPath::DownRaw => return None,
            SysPath::RrpcRequest(_) | SysPath::RrpcResponse(_) | SysPath::BroadcastRequest(_) => return None,
            SysPath::Reply(_) | SysPath::Other(_) => return None,
        })
    }

    fn parse(path: &str) -> SysPath {
        if let Some(base) = path.strip_suffix("_reply") {
            return match SysPath::parse(base) {
                SysPath::Other(_) => SysPath::Other(path.to_owned()),
                p => p.reply(),
            };
        }
        let segs: Vec<&str> = path.split('/').collect();
        let one = |s: &str| !s.is_empty() && !s.contains(['+', '#']);
        match segs.as_slice() {
            ["thing", "event", "property", "post"] => SysPath::PropertyPost,
            ["thing", "event", "property", "batch", "post"] => SysPath::PropertyBatchPost,
            ["thing", "event", "property", "pack", "post"] => SysPath::PropertyPackPost,
            ["thing", "event", "property", "history", "post"] => SysPath::PropertyHistoryPost,
            ["thing", "event", e, "post"] if one(e) => SysPath::EventPost((*e).to_owned()),
            ["thing", "service", "property", "set"] => SysPath::PropertySet,
            ["thing", "service", "property", "get"] => SysPath::PropertyGet,
            ["thing", "service", s] if one(s) => SysPath::Service((*s).to_owned()),
            ["thing", "property", "desired", "get"] => SysPath::DesiredGet,
            ["thing", "property", "desired", "delete"] => SysPath::DesiredDelete,
            ["thing", "deviceinfo", "update"] => SysPath::DeviceInfoUpdate,
            ["thing", "deviceinfo", "delete"] => SysPath::DeviceInfoDelete,
            ["thing", "config", "get"] => SysPath::ConfigGet,
            ["thing", "config", "push"] => SysPath::ConfigPush,
            ["thing", "ota", "firmware", "get"] => SysPath::OtaFirmwareGet,
            ["thing", "model", "up_raw"] => SysPath::UpRaw,
            ["thing", "model", "down_raw"] => SysPath::DownRaw,
            ["rrpc", "request", id] if one(id) => SysPath::RrpcRequest((*id).to_owned()),
            ["rrpc", "response", id] if one(id) => SysPath::RrpcResponse((*id).to_owned()),
            ["broadcast", "request", id] if one(id) => SysPath::BroadcastRequest((*id).to_owned()),
            _ => SysPath::Other(path.to_owned()),
        }
    }
}

impl fmt::Display for SysPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysPath::PropertyPost => f.write_str("thing/event/property/post"),
            SysPath::EventPost(e) => write!(f, "thing/event/{e}/post"),
            SysPath::PropertyBatchPost => f.write_str("thing/event/property/batch/post"),
            SysPath::PropertyPackPost => f.write_str("thing/event/property/pack/post"),
            SysPath::PropertyHistoryPost => f.write_str("thing/event/property/history/post"),
            SysPath::PropertySet => f.write_str("thing/service/property/set"),
            SysPath::PropertyGet => f.write_str("thing/service/property/get"),
            SysPath::Service(s) => write!(f, "thing/service/{s}"),
            SysPath::DesiredGet => f.write_str("thing/property/desired/get"),
            SysPath::DesiredDelete => f.write_str("thing/property/desired/delete"),
            SysPath::DeviceInfoUpdate => f.write_str("thing/deviceinfo/update"),
            SysPath::DeviceInfoDelete => f.write_str("thing/deviceinfo/delete"),
            SysPath::ConfigGet => f.write_str("thing/config/get"),
            SysPath::ConfigPush => f.write_str("thing/config/push"),
            SysPath::OtaFirmwareGet => f.write_str("thing/ota/firmware/get"),
            SysPath::UpRaw => f.write_str("thing/model/up_raw"),
            SysPath::DownRaw => f.write_str("thing/model/down_raw"),
            SysPath::RrpcRequest(id) => write!(f, "rrpc/request/{id}"),
            SysPath::RrpcResponse(id) => write!(f, "rrpc/response/{id}"),
            SysPath::BroadcastRequest(id) => write!(f, "broadcast/request/{id}"),
            SysPath::Reply(p) => write!(f, "{p}_reply"),
            SysPath::Other(s) => f.write_str(s),
        }
    }
}

impl Topic {
    /// `/sys/{pk}/{dn}/{path}`.
    pub fn sys(product_key: &str, device_name: &str, path: SysPath) -> Topic {
        Topic::Sys {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            path,
        }
    }

    /// Parses a topic name (no wildcards).
    ///
    /// # Errors
    /// [`Error::Topic`] for a topic outside the platform's families, an empty level where a
    /// productKey or deviceName belongs, or a wildcard; [`Error::TopicTooLong`] for one longer
    /// than [`MAX_REPLY_TOPIC_LEN`] bytes or [`MAX_TOPIC_LEVELS`] levels.
    pub fn parse(s: &str) -> Result<Topic, Error> {
        if !within_caps(s, MAX_REPLY_TOPIC_LEN) {
            // Not echoed: the point of the cap is not to copy what is beyond it.
            return Err(Error::TopicTooLong { len: s.len() });
        }
        let bad = || Error::Topic(s.to_owned());
        if s.contains(['+', '#']) || s.contains('\0') {
            return Err(bad());
        }
        let rest = s.strip_prefix('/').ok_or_else(bad)?;
        let mut it = rest.splitn(2, '/');
        let first = it.next().unwrap_or_default();
        let tail = it.next().unwrap_or_default();
        let nonempty = |x: &str| -> Result<String, Error> {
            if x.is_empty() {
                Err(bad())
            } else {
                Ok(x.to_owned())
            }
        };
        let levels: Vec<&str> = rest.split('/').collect();
        match first {
            "sys" => {
                let mut p = tail.splitn(3, '/');
                let (pk, dn, path) = (
                    p.next().unwrap_or_default(),
                    p.next().unwrap_or_default(),
                    p.next(),
                );
                let path = path.filter(|p| !p.is_empty()).ok_or_else(bad)?;
                Ok(Topic::Sys {
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                    path: SysPath::parse(path),
                })
            }
            "ext" => match levels.as_slice() {
                ["ext", "ntp", pk, dn, "request"] => Ok(Topic::NtpRequest {
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                }),
                ["ext", "ntp", pk, dn, "response"] => Ok(Topic::NtpResponse {
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                }),
                ["ext", "error", pk, dn] => Ok(Topic::ExtError {
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                }),
                ["ext", "rrpc", id, ..] if !id.is_empty() && levels.len() > 3 => {
                    let inner_start = "ext/rrpc/".len() + id.len();
                    let inner = &rest[inner_start..];
                    let inner = Topic::parse(inner)?;
                    if matches!(inner, Topic::ExtRrpc { .. }) {
                        return Err(bad());
                    }
                    Ok(Topic::ExtRrpc {
                        message_id: (*id).to_owned(),
                        inner: Box::new(inner),
                    })
                }
                _ => Err(bad()),
            },
            "shadow" => match levels.as_slice() {
                ["shadow", action @ ("update" | "get"), pk, dn] => Ok(Topic::Shadow {
                    action: (*action).to_owned(),
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                }),
                _ => Err(bad()),
            },
            "ota" => match levels.as_slice() {
                ["ota", "device", action, pk, dn] if !action.is_empty() => Ok(Topic::Ota {
                    action: (*action).to_owned(),
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                }),
                _ => Err(bad()),
            },
            "broadcast" => {
                let (pk, rest) = tail.split_once('/').ok_or_else(bad)?;
                Ok(Topic::Broadcast {
                    product_key: nonempty(pk)?,
                    rest: nonempty(rest)?,
                })
            }
            pk => {
                let (dn, rest) = tail.split_once('/').ok_or_else(bad)?;
                Ok(Topic::Custom {
                    product_key: nonempty(pk)?,
                    device_name: nonempty(dn)?,
                    rest: nonempty(rest)?,
                })
            }
        }
    }

    /// The device this topic belongs to; `None` for product-wide broadcasts.
    pub fn device(&self) -> Option<(&str, &str)> {
        match self {
            Topic::Sys {
                product_key,
                device_name,
                ..
            }
            | Topic::NtpRequest {
                product_key,
                device_name,
            }
            | Topic::NtpResponse {
                product_key,
                device_name,
            }
            | Topic::ExtError {
                product_key,
                device_name,
            }
            | Topic::Shadow {
                product_key,
                device_name,
                ..
            }
            | Topic::Ota {
                product_key,
                device_name,
                ..
            }
            | Topic::Custom {
                product_key,
                device_name,
                ..
            } => Some((product_key, device_name)),
            Topic::ExtRrpc { inner, .. } => inner.device(),
            Topic::Broadcast { .. } => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Sys {
                product_key,
                device_name,
                path,
            } => write!(f, "/sys/{product_key}/{device_name}/{path}"),
            Topic::NtpRequest {
                product_key,
                device_name,
            } => write!(f, "/ext/ntp/{product_key}/{device_name}/request"),
            Topic::NtpResponse {
                product_key,
                device_name,
            } => {
                write!(f, "/ext/ntp/{product_key}/{device_name}/response")
            }
            Topic::ExtRrpc { message_id, inner } => write!(f, "/ext/rrpc/{message_id}{inner}"),
            Topic::ExtError {
                product_key,
                device_name,
            } => write!(f, "/ext/error/{product_key}/{device_name}"),
            Topic::Shadow {
                action,
                product_key,
                device_name,
            } => write!(f, "/shadow/{action}/{product_key}/{device_name}"),
            Topic::Ota {
                action,
                product_key,
                device_name,
            } => {
                write!(f, "/ota/device/{action}/{product_key}/{device_name}")
            }
            Topic::Broadcast { product_key, rest } => write!(f, "/broadcast/{product_key}/{rest}"),
            Topic::Custom {
                product_key,
                device_name,
                rest,
            } => write!(f, "/{product_key}/{device_name}/{rest}"),
        }
    }
}

impl FromStr for Topic {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Topic::parse(s)
    }
}

/// The reply topic of a request topic: `{topic}_reply` (at most [`MAX_REPLY_TOPIC_LEN`] bytes for
/// a topic a device may publish).
pub fn reply_topic(topic: &str) -> String {
    format!("{topic}{REPLY_SUFFIX}")
}

/// Publish or subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// PUBLISH on a topic name.
    Publish,
    /// SUBSCRIBE to a topic filter.
    Subscribe,
}

/// The longest topic name or filter a device may publish on or subscribe to, in bytes.
///
/// The platform's own limit is not documented; the SDKs cap topics at 128 bytes on their side
/// (spec §1.7, §3.8). 128 would be too tight for the platform's own topics with the largest
/// productKey (20 bytes), deviceName (32) and thing-model identifier (50): a service's reply
/// `/sys/{pk}/{dn}/thing/service/{identifier}_reply` is 129 bytes, and the RRPC topic
/// `/ext/rrpc/{id}/sys/{pk}/{dn}/thing/service/{identifier}` 153 with a 20-digit id. 256 leaves
/// room for custom topics while keeping every stored filter and every match small.
pub const MAX_TOPIC_LEN: usize = 256;

/// The most levels (`/`-separated parts, the empty one before a leading `/` included) in a topic
/// name or filter. The deepest topic the platform uses, an RRPC wrapping
/// `/sys/{pk}/{dn}/thing/event/property/history/post`, has 12.
pub const MAX_TOPIC_LEVELS: usize = 32;

/// What a reply topic appends to its request topic (`…/post` → `…/post_reply`).
pub const REPLY_SUFFIX: &str = "_reply";

/// The longest topic the platform sends a device on its own initiative (the "Pub" API, calls):
/// the device answers on `{topic}_reply`, which must still be within [`MAX_TOPIC_LEN`].
pub const MAX_PLATFORM_TOPIC_LEN: usize = MAX_TOPIC_LEN - REPLY_SUFFIX.len();

/// The longest topic on the wire in either direction: the platform's reply `{topic}_reply` to
/// the longest request a device may publish. [`Topic::parse`] accepts topics up to this length,
/// so that a device can read the reply to any request it was allowed to send.
pub const MAX_REPLY_TOPIC_LEN: usize = MAX_TOPIC_LEN + REPLY_SUFFIX.len();

/// The one place the length and level caps are checked: `topic` (a name or a filter) is at most
/// `max_len` bytes and [`MAX_TOPIC_LEVELS`] levels. The length is checked first, so a hostile
/// topic costs no more than `max_len` bytes of scanning.
fn within_caps(topic: &str, max_len: usize) -> bool {
    topic.len() <= max_len && topic.bytes().filter(|&b| b == b'/').count() < MAX_TOPIC_LEVELS
}

/// Whether a topic filter is valid MQTT and within the caps: `#` only as the whole last level,
/// `+` only as a whole level, at most [`MAX_TOPIC_LEN`] bytes and [`MAX_TOPIC_LEVELS`] levels.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || !within_caps(filter, MAX_TOPIC_LEN) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['#', '+']),
    })
}

/// Whether a topic name is valid for PUBLISH: non-empty, no wildcards, no NUL, at most
/// [`MAX_TOPIC_LEN`] bytes and [`MAX_TOPIC_LEVELS`] levels.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['#', '+', '\0']) && within_caps(topic, MAX_TOPIC_LEN)
}

/// MQTT topic matching: does `filter` (with `+` and `#`) match the topic name `topic`?
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[derive(Clone, Copy)]
enum Tok {
    Lit(&'static str),
    Pk,
    /// The productKey as the first level of a custom topic `/{pk}/{dn}/…`: never one of
    /// [`RESERVED_FIRST_LEVELS`], or a device with productKey `sys` would own `/sys/{dn}/…`.
    CustomPk,
    Dn,
    /// One free level (`+` allowed, `#` not).
    Any,
    /// One or more free levels (`+` and a final `#` allowed).
    Tail,
    /// `/ext/rrpc/{id}` followed by another of the device's own topics.
    Rrpc,
}

use Tok::{Any, CustomPk, Dn, Lit, Pk, Tail};

/// First levels of the platform's own topic families (and of its server-side `/as/…` topics).
const RESERVED_FIRST_LEVELS: &[&str] = &["sys", "ext", "ota", "shadow", "broadcast", "as"];

/// The namespaces a device owns (spec §3.5 and the hub issue); the last entry is subscribe-only.
const OWN: &[&[Tok]] = &[
    &[Lit(""), CustomPk, Dn, Tail],
    &[Lit(""), Lit("sys"), Pk, Dn, Tail],
    &[Lit(""), Lit("ota"), Lit("device"), Any, Pk, Dn],
    &[Lit(""), Lit("shadow"), Any, Pk, Dn],
    &[Lit(""), Lit("ext"), Lit("ntp"), Pk, Dn, Tail],
    &[Lit(""), Lit("ext"), Lit("error"), Pk, Dn],
    &[Lit(""), Lit("ext"), Lit("session"), Pk, Dn, Tail],
    &[Lit(""), Lit("ext"), Lit("rrpc"), Any, Tok::Rrpc],
];
const BROADCAST: &[Tok] = &[Lit(""), Lit("broadcast"), Pk, Tail];

fn fits(levels: &[&str], pattern: &[Tok], pk: &str, dn: &str) -> bool {
    let mut i = 0;
    for tok in pattern {
        match tok {
            Tail => return levels.len() > i,
            Tok::Rrpc => {
                // The inner topic starts with '/', so its empty first level is implied here.
                let mut inner = Vec::with_capacity(levels.len() - i + 1);
                inner.push("");
                inner.extend_from_slice(&levels[i..]);
                return OWN[..OWN.len() - 1].iter().any(|p| fits(&inner, p, pk, dn));
            }
            _ => {}
        }
        let Some(level) = levels.get(i) else { return false };
        if *level == "#" {
            return false;
        }
        let ok = match tok {
            Lit(s) => level == s,
            Pk => *level == pk,
            CustomPk => *level == pk && !RESERVED_FIRST_LEVELS.contains(&pk),
            Dn => *level == dn,
            Any => true,
            Tail | Tok::Rrpc => unreachable!("handled above"),
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    i == levels.len()
}

/// Whether device (`product_key`, `device_name`) may publish on, or subscribe to, `topic`.
///
/// A device may use only its own namespaces (`/{pk}/{dn}/…`, `/sys/{pk}/{dn}/…`,
/// `/ota/device/…/{pk}/{dn}`, `/shadow/…/{pk}/{dn}`, `/ext/ntp/{pk}/{dn}/…`, `/ext/error/{pk}/{dn}`,
/// `/ext/session/{pk}/{dn}/…`, `/ext/rrpc/{id}` + one of those) and may subscribe to
/// `/broadcast/{pk}/…`. Wildcards never reach past them: `+` or `#` where the productKey or
/// deviceName belongs is refused. Invalid topics and filters are refused, and so are those
/// beyond [`MAX_TOPIC_LEN`] bytes or [`MAX_TOPIC_LEVELS`] levels ([`valid_topic`],
/// [`valid_filter`]).
///
/// ```
/// use aliot_protocol::topic::{device_may_access, Access};
/// assert!(device_may_access("pk", "dn", "/sys/pk/dn/thing/#", Access::Subscribe));
/// assert!(!device_may_access("pk", "dn", "/sys/pk/+/thing/#", Access::Subscribe));
/// assert!(!device_may_access("pk", "dn", "/sys/#", Access::Subscribe));
/// assert!(!device_may_access("pk", "dn", "/broadcast/pk/x", Access::Publish));
/// ```
pub fn device_may_access(product_key: &str, device_name: &str, topic: &str, access: Access) -> bool {
    let valid = match access {
        Access::Publish => valid_topic(topic),
        Access::Subscribe => valid_filter(topic),
    };
    if !valid || product_key.is_empty() || device_name.is_empty() {
        return false;
    }
    let levels: Vec<&str> = topic.split('/').collect();
    if OWN.iter().any(|p| fits(&levels, p, product_key, device_name)) {
        return true;
    }
    access == Access::Subscribe && fits(&levels, BROADCAST, product_key, device_name)
}

/// Whether the platform may send a downlink on `topic` to the device at all (the "Pub" API,
/// and the topics of calls): any topic the device could subscribe to, without wildcards, and
/// at most [`MAX_PLATFORM_TOPIC_LEN`] bytes so that the device's `{topic}_reply` is still a
/// topic it may publish.
///
/// ```
/// use aliot_protocol::topic::{platform_may_send, MAX_PLATFORM_TOPIC_LEN};
/// assert!(platform_may_send("pk", "dn", "/broadcast/pk/news"));
/// assert!(!platform_may_send("pk", "dn", "/pk/dn/user/#"));
/// let long = format!("/pk/dn/user/{}", "x".repeat(MAX_PLATFORM_TOPIC_LEN));
/// assert!(!platform_may_send("pk", "dn", &long));
/// ```
pub fn platform_may_send(product_key: &str, device_name: &str, topic: &str) -> bool {
    within_caps(topic, MAX_PLATFORM_TOPIC_LEN)
        && !topic.contains(['+', '#'])
        && device_may_access(product_key, device_name, topic, Access::Subscribe)
}

/// Whether a downlink on `topic` reaches the device without any SUBSCRIBE.
///
/// - RRPC requests (`/sys/{pk}/{dn}/rrpc/request/{id}` and `/ext/rrpc/{id}/…` on one of the
///   device's own topics): the platform documents that RRPC topics need no subscription.
/// - With `_ss=1` in the clientId (`auto_subscribe`): the system downlinks and replies of spec
///   §3.6, namely `/sys/{pk}/{dn}/…`, `/ota/device/upgrade/{pk}/{dn}`, `/shadow/get/{pk}/{dn}`,
///   `/ext/ntp/{pk}/{dn}/response`, `/ext/error/{pk}/{dn}` and a gateway's session replies
///   `/ext/session/{pk}/{dn}/combine/{op}_reply`.
///
/// ```
/// use aliot_protocol::topic::implicitly_subscribed;
/// assert!(implicitly_subscribed("pk", "dn", false, "/sys/pk/dn/rrpc/request/1"));
/// assert!(implicitly_subscribed("pk", "dn", true, "/sys/pk/dn/thing/service/property/set"));
/// assert!(!implicitly_subscribed("pk", "dn", false, "/sys/pk/dn/thing/service/property/set"));
/// assert!(implicitly_subscribed("pk", "dn", true, "/ext/session/pk/dn/combine/batch_login_reply"));
/// assert!(!implicitly_subscribed("pk", "dn", false, "/ext/session/pk/dn/combine/batch_login_reply"));
/// assert!(!implicitly_subscribed("pk", "dn", true, "/ext/session/pk/dn/combine/batch_login"));
/// ```
pub fn implicitly_subscribed(
    product_key: &str,
    device_name: &str,
    auto_subscribe: bool,
    topic: &str,
) -> bool {
    let mut levels = topic.split('/');
    let own = |pk: Option<&str>, dn: Option<&str>| pk == Some(product_key) && dn == Some(device_name);
    if levels.next() != Some("") {
        return false;
    }
    match levels.next() {
        Some("sys") => {
            let (pk, dn) = (levels.next(), levels.next());
            if !own(pk, dn) {
                return false;
            }
            match (levels.next(), levels.next(), levels.next(), levels.next()) {
                (Some("rrpc"), Some("request"), Some(id), None) if !id.is_empty() => true,
                (Some(_), ..) => auto_subscribe,
                (None, ..) => false,
            }
        }
        Some("ext") => match levels.next() {
            Some("rrpc") => match levels.next() {
                Some(id) if !id.is_empty() => {
                    // The inner topic must be one of the device's own.
                    let inner = &topic["/ext/rrpc/".len() + id.len()..];
                    inner.starts_with('/') && platform_may_send(product_key, device_name, inner)
                }
                _ => false,
            },
            Some("ntp") => {
                let (pk, dn) = (levels.next(), levels.next());
                auto_subscribe && own(pk, dn) && levels.next() == Some("response") && levels.next().is_none()
            }
            Some("error") => {
                let (pk, dn) = (levels.next(), levels.next());
                auto_subscribe && own(pk, dn) && levels.next().is_none()
            }
            // A gateway's session replies (`/ext/session/{pk}/{dn}/combine/login_reply`, …):
            // the official Python SDK connects with `_ss=1` and never subscribes them.
            Some("session") => {
                let (pk, dn) = (levels.next(), levels.next());
                auto_subscribe
                    && own(pk, dn)
                    && levels.next() == Some("combine")
                    && levels.next().is_some_and(|op| op.ends_with("_reply"))
                    && levels.next().is_none()
            }
            _ => false,
        },
        Some("ota") => {
            let (a, b, pk, dn) = (levels.next(), levels.next(), levels.next(), levels.next());
            auto_subscribe
                && a == Some("device")
                && b == Some("upgrade")
                && own(pk, dn)
                && levels.next().is_none()
        }
        Some("shadow") => {
            let (a, pk, dn) = (levels.next(), levels.next(), levels.next());
            auto_subscribe && a == Some("get") && own(pk, dn) && levels.next().is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A custom topic of device (pk, dn) of exactly `len` bytes.
    fn custom_of_len(len: usize) -> String {
        let head = "/pk/dn/user/";
        format!("{head}{}", "x".repeat(len - head.len()))
    }

    /// A custom topic of device (pk, dn) with exactly `levels` levels.
    fn custom_of_levels(levels: usize) -> String {
        // "", pk, dn, user + (levels - 4) more.
        format!("/pk/dn/user{}", "/a".repeat(levels - 4))
    }

    #[test]
    fn topics_and_filters_are_capped_in_bytes_and_levels() {
        use Access::*;
        let at = custom_of_len(MAX_TOPIC_LEN);
        let over = custom_of_len(MAX_TOPIC_LEN + 1);
        assert!(valid_topic(&at) && valid_filter(&at));
        assert!(!valid_topic(&over) && !valid_filter(&over));
        assert!(device_may_access("pk", "dn", &at, Publish));
        assert!(device_may_access("pk", "dn", &at, Subscribe));
        assert!(!device_may_access("pk", "dn", &over, Publish));
        assert!(!device_may_access("pk", "dn", &over, Subscribe));
        let at = custom_of_levels(MAX_TOPIC_LEVELS);
        let over = custom_of_levels(MAX_TOPIC_LEVELS + 1);
        assert_eq!(at.split('/').count(), MAX_TOPIC_LEVELS);
        assert!(device_may_access("pk", "dn", &at, Publish));
        assert!(!device_may_access("pk", "dn", &over, Publish));
        assert!(!device_may_access("pk", "dn", &over, Subscribe));
        // A filter's wildcards count as levels too.
        let filter = format!("{}/#", custom_of_levels(MAX_TOPIC_LEVELS));
        assert!(!device_may_access("pk", "dn", &filter, Subscribe));
        // The cap holds for the 64 KiB topics MQTT allows.
        assert!(!valid_topic(&"/".repeat(65_535)));
        assert!(!valid_filter(&"/+".repeat(30_000)));
    }

    #[test]
    fn the_longest_platform_topics_fit_the_caps() {
        use Access::*;
        // productKey ≤ 20, deviceName ≤ 32 (spec §1.7), a 50-character identifier, a 20-digit id.
        let (pk, dn, ident, id) = ("p".repeat(20), "d".repeat(32), "S".repeat(50), "9".repeat(20));
        let service = format!("/sys/{pk}/{dn}/thing/service/{ident}");
        let rrpc = format!("/ext/rrpc/{id}{service}");
        assert!(platform_may_send(&pk, &dn, &service));
        assert!(platform_may_send(&pk, &dn, &rrpc));
        assert!(device_may_access(&pk, &dn, &reply_topic(&service), Publish));
        assert!(device_may_access(&pk, &dn, &rrpc, Publish));
        let deep = format!("/ext/rrpc/{id}/sys/{pk}/{dn}/thing/event/property/history/post");
        assert!(device_may_access(&pk, &dn, &deep, Publish));
        assert!(Topic::parse(&deep).is_ok());
    }

    #[test]
    fn the_platform_sends_only_topics_whose_reply_the_device_may_publish() {
        let at = custom_of_len(MAX_PLATFORM_TOPIC_LEN);
        let over = custom_of_len(MAX_PLATFORM_TOPIC_LEN + 1);
        assert!(platform_may_send("pk", "dn", &at));
        assert!(device_may_access("pk", "dn", &reply_topic(&at), Access::Publish));
        assert!(!platform_may_send("pk", "dn", &over));
        assert!(!platform_may_send(
            "pk",
            "dn",
            &custom_of_levels(MAX_TOPIC_LEVELS + 1)
        ));
    }

    #[test]
    fn topic_parse_reads_the_reply_to_the_longest_request_and_nothing_longer() {
        let (head, tail) = ("/sys/pk/dn/thing/event/", "/post");
        let request = format!(
            "{head}{}{tail}",
            "e".repeat(MAX_TOPIC_LEN - head.len() - tail.len())
        );
        assert_eq!(request.len(), MAX_TOPIC_LEN);
        let reply = reply_topic(&request);
        assert_eq!(reply.len(), MAX_REPLY_TOPIC_LEN);
        assert!(matches!(
            Topic::parse(&reply),
            Ok(Topic::Sys {
                path: SysPath::Reply(_),
                ..
            })
        ));
        let over = format!("{reply}x");
        assert_eq!(Topic::parse(&over), Err(Error::TopicTooLong { len: over.len() }));
        assert!(Topic::parse(&custom_of_levels(MAX_TOPIC_LEVELS)).is_ok());
        assert!(Topic::parse(&custom_of_levels(MAX_TOPIC_LEVELS + 1)).is_err());
        // The error's message states the caps (error.rs cannot name the constants).
        assert!(Error::TopicTooLong { len: 1 }.to_string().ends_with(&format!(
            "(at most {MAX_REPLY_TOPIC_LEN} bytes and {MAX_TOPIC_LEVELS} levels)"
        )));
    }

    #[test]
    fn rrpc_requests_need_no_subscription() {
        assert!(implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/sys/pk/dn/rrpc/request/123"
        ));
        assert!(implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/ext/rrpc/9/sys/pk/dn/thing/service/Reboot"
        ));
        assert!(!implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/sys/pk/other/rrpc/request/123"
        ));
        assert!(!implicitly_subscribed(
            "pk",
            "dn",
            false,
            "/ext/rrpc/9/sys/pk/other/thing/service/x"
        ));
        assert!(!implicitly_subscribed("pk", "dn", false, "/ext/rrpc/9"));
    }

    #[test]
    fn auto_subscribe_covers_system_downlinks_only() {
        for t in [
            "/sys/pk/dn/thing/event/property/post_reply",
            "/sys/pk/dn/thing/service/property/set",
            "/ota/device/upgrade/pk/dn",
            "/shadow/get/pk/dn",
            "/ext/ntp/pk/dn/response",
            "/ext/error/pk/dn",
        ] {
            assert!(implicitly_subscribed("pk", "dn", true, t), "{t}");
            assert!(!implicitly_subscribed("pk", "dn", false, t), "{t}");
        }
        for t in [
            "/pk/dn/user/get",
            "/sys/pk/other/thing/service/property/set",
            "/broadcast/pk/x",
            "/ota/device/upgrade/pk/dn/more",
            "/shadow/update/pk/dn",
            "/ext/ntp/pk/dn/request",
        ] {
            assert!(!implicitly_subscribed("pk", "dn", true, t), "{t}");
        }
    }

    #[test]
    fn the_platform_sends_only_inside_the_device_namespaces() {
        assert!(platform_may_send("pk", "dn", "/pk/dn/user/get"));
        assert!(platform_may_send("pk", "dn", "/broadcast/pk/news"));
        assert!(!platform_may_send("pk", "dn", "/pk/dn/user/#"));
        assert!(!platform_may_send("pk", "dn", "/pk/other/user/get"));
    }

    #[test]
    fn sys_topics_round_trip() {
        for t in [
            "/sys/pk/dn/thing/event/property/post",
            "/sys/pk/dn/thing/event/property/post_reply",
            "/sys/pk/dn/thing/event/alarm/post",
            "/sys/pk/dn/thing/service/property/set",
            "/sys/pk/dn/thing/service/property/set_reply",
            "/sys/pk/dn/thing/service/Reboot",
            "/sys/pk/dn/thing/service/Reboot_reply",
            "/sys/pk/dn/rrpc/request/123",
            "/sys/pk/dn/rrpc/response/123",
            "/sys/pk/dn/thing/deviceinfo/update",
            "/sys/pk/dn/thing/unknown/thing",
            "/ext/ntp/pk/dn/request",
            "/ext/rrpc/99/sys/pk/dn/thing/service/Reboot",
            "/ext/rrpc/99/pk/dn/user/get",
            "/shadow/get/pk/dn",
            "/ota/device/upgrade/pk/dn",
            "/broadcast/pk/news",
            "/pk/dn/user/update",
        ] {
            let parsed = Topic::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(parsed.to_string(), t);
        }
    }

    #[test]
    fn methods_come_from_the_path() {
        let Topic::Sys { path, .. } = Topic::parse("/sys/pk/dn/thing/event/alarm/post").expect("ok") else {
            panic!("sys topic expected");
        };
        assert_eq!(path.method().as_deref(), Some("thing.event.alarm.post"));
        let Topic::Sys { path, .. } =
            Topic::parse("/sys/pk/dn/thing/service/property/set_reply").expect("ok")
        else {
            panic!("sys topic expected");
        };
        assert_eq!(path, SysPath::PropertySet.reply());
    }

    #[test]
    fn non_platform_topics_are_errors() {
        for t in [
            "",
            "sys/pk/dn/x",
            "/sys/pk",
            "/sys/pk/dn/",
            "/ext/other/pk/dn",
            "/sys/+/dn/x",
            "/ext/rrpc/1",
        ] {
            assert!(Topic::parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn filter_matching_follows_mqtt() {
        assert!(filter_matches(
            "/sys/pk/dn/thing/#",
            "/sys/pk/dn/thing/service/property/set"
        ));
        assert!(filter_matches(
            "/sys/pk/dn/thing/event/+/post_reply",
            "/sys/pk/dn/thing/event/x/post_reply"
        ));
        assert!(!filter_matches(
            "/sys/pk/dn/thing/event/+/post_reply",
            "/sys/pk/dn/thing/event/x/y/post_reply"
        ));
        assert!(filter_matches("/a/#", "/a"));
        assert!(!filter_matches("/a/b", "/a/b/c"));
    }

    #[test]
    fn a_device_may_use_its_own_namespaces() {
        use Access::*;
        for (t, a) in [
            ("/pk/dn/user/update", Publish),
            ("/pk/dn/user/#", Subscribe),
            ("/pk/dn/+/get", Subscribe),
            ("/sys/pk/dn/thing/event/property/post", Publish),
            ("/sys/pk/dn/#", Subscribe),
            ("/sys/pk/dn/rrpc/request/+", Subscribe),
            ("/ota/device/inform/pk/dn", Publish),
            ("/ota/device/+/pk/dn", Subscribe),
            ("/shadow/update/pk/dn", Publish),
            ("/ext/ntp/pk/dn/request", Publish),
            ("/ext/ntp/pk/dn/response", Subscribe),
            ("/ext/error/pk/dn", Subscribe),
            ("/ext/session/pk/dn/combine/login", Publish),
            ("/ext/rrpc/+/sys/pk/dn/thing/service/+", Subscribe),
            ("/ext/rrpc/123/sys/pk/dn/thing/service/Reboot", Publish),
            ("/ext/rrpc/+/pk/dn/user/get", Subscribe),
            ("/broadcast/pk/#", Subscribe),
        ] {
            assert!(device_may_access("pk", "dn", t, a), "{t} {a:?}");
        }
    }

    #[test]
    fn wildcards_never_escape_the_device() {
        use Access::*;
        for (t, a) in [
            ("#", Subscribe),
            ("/#", Subscribe),
            ("/+/dn/user/get", Subscribe),
            ("/pk/+/user/get", Subscribe),
            ("/pk/#", Subscribe),
            ("/sys/#", Subscribe),
            ("/sys/pk/#", Subscribe),
            ("/sys/pk/other/thing/event/property/post", Publish),
            ("/other/dn/user/update", Publish),
            ("/ota/device/#", Subscribe),
            ("/ota/device/inform/pk/dn/extra", Publish),
            ("/shadow/get/pk/+", Subscribe),
            ("/ext/rrpc/#", Subscribe),
            ("/ext/rrpc/+/#", Subscribe),
            ("/ext/rrpc/+/sys/pk/+/thing/#", Subscribe),
            ("/ext/rrpc/1/ext/rrpc/2/pk/dn/x", Publish),
            ("/broadcast/pk/news", Publish),
            ("/broadcast/+/news", Subscribe),
            ("/pk/dn/user/+", Publish),
            ("/pk/dn", Publish),
            ("/pk/dn/a#", Subscribe),
            ("/ext/error/pk/dn/x", Subscribe),
            ("/sys/pk/dn2/thing/event/property/post", Publish),
            ("/sys/pk/dn2/#", Subscribe),
            ("/sys/PK/dn/thing/event/property/post", Publish),
            ("/sys/pk/DN/thing/event/property/post", Publish),
            ("/pk/dn2/user/update", Publish),
            ("/ext/ntp/pk/dn", Publish),
            ("/ext/ntp/pk/+/response", Subscribe),
            ("/ext/session/pk/+/combine/login_reply", Subscribe),
            ("/ota/device/+/+/dn", Subscribe),
            ("/ext/rrpc/+/+/dn/user/get", Subscribe),
            ("/ext/rrpc/1/broadcast/pk/x", Publish),
            ("/broadcast/pk", Subscribe),
            ("/broadcast/pk2/#", Subscribe),
            ("", Publish),
            ("", Subscribe),
            ("/sys/pk/dn/thing/#/x", Subscribe),
            ("/sys/pk/dn/thing/ev+nt", Subscribe),
            ("/sys/pk/dn/thing\0", Publish),
        ] {
            assert!(!device_may_access("pk", "dn", t, a), "{t} {a:?}");
        }
    }

    #[test]
    fn a_product_key_named_like_a_platform_family_owns_no_custom_namespace() {
        use Access::*;
        for (pk, dn, t, a) in [
            ("sys", "pkA", "/sys/pkA/dnA/thing/event/property/post", Publish),
            ("sys", "pkA", "/sys/pkA/#", Subscribe),
            ("ext", "ntp", "/ext/ntp/pkA/dnA/response", Subscribe),
            ("ext", "rrpc", "/ext/rrpc/1/sys/pkA/dnA/thing/service/x", Publish),
            ("ota", "device", "/ota/device/upgrade/pkA/dnA", Subscribe),
            ("shadow", "get", "/shadow/get/pkA/dnA", Subscribe),
            ("broadcast", "pkA", "/broadcast/pkA/x", Subscribe),
            ("as", "mqtt", "/as/mqtt/status/pkA/dnA", Publish),
            ("sys", "pkA", "/ext/rrpc/1/sys/pkA/dnA/x", Publish),
        ] {
            assert!(!device_may_access(pk, dn, t, a), "{pk}/{dn}: {t} {a:?}");
        }
        // Its system topics are still its own.
        assert!(device_may_access(
            "sys",
            "dn",
            "/sys/sys/dn/thing/event/property/post",
            Publish
        ));
    }

    #[test]
    fn empty_and_case_variants_of_the_device_do_not_match() {
        assert!(!device_may_access("", "dn", "//dn/user/x", Access::Publish));
        assert!(!device_may_access("pk", "", "/pk//user/x", Access::Publish));
        assert!(device_may_access(
            "pk",
            "dn",
            "/ext/session/pk/dn/#",
            Access::Subscribe
        ));
        assert!(device_may_access(
            "pk",
            "dn",
            "/ext/rrpc/+/pk/dn/user/#",
            Access::Subscribe
        ));
    }
}
