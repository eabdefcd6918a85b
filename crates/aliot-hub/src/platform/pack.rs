//! A gateway's pack post (`thing.event.property.pack.post` on its own topic) carrying its
//! sub-devices' data in `subDevices` (aliyun-protocol.md §4.3, cloud-side §5).
//!
//! Each sub-device's entry is handled as that sub-device's own pack post: judged with its
//! product's thing model, kept in its history and latest values. The rules, all or nothing (a
//! refusal keeps nothing of the post, the gateway's own part included):
//!
//! | case | answer to the gateway |
//! |---|---|
//! | more than [`MAX_PACK_SUB_DEVICES`] sub-devices | 6357 |
//! | a sub-device not logged in through this gateway connection (which implies its topology) | 520 |
//! | a part with a whole-message fault (too many properties 6106, events 6356, bad shape 460) | that code |
//! | otherwise | the gateway's own part's reply (rejected identifiers of its own); a sub-device's rejected identifiers are reported as problem events |
//!
//! The reply leaves once every part's history rows are durable.

use aliot_protocol::alink::{Reply, Request};
use aliot_protocol::gateway::MAX_PACK_SUB_DEVICES;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::registry::DeviceRef;

/// The code for more than [`MAX_PACK_SUB_DEVICES`] sub-devices in one pack post.
pub(crate) const TOO_MANY_SUB_DEVICES: u32 = 6357;

/// The method of a pack post.
const METHOD: &str = "thing.event.property.pack.post";

/// One sub-device's part of a pack post.
#[derive(Debug, Clone)]
pub(crate) struct SubPart {
    /// The sub-device.
    pub(crate) device: DeviceRef,
    /// Its `{"properties","events"}`.
    pub(crate) params: Value,
    /// Its part as a pack post of its own (`/sys/{subPk}/{subDn}/thing/event/property/pack/post`).
    pub(crate) topic: String,
    /// The payload of that post.
    pub(crate) payload: Bytes,
}

/// The gateway's pack post, read.
#[derive(Debug)]
pub(crate) struct Pack {
    /// The request (the gateway's own part is in its params, beside `subDevices`).
    pub(crate) request: Request,
    /// The sub-devices' parts, in the order posted (entries naming the same sub-device merged
    /// as separate parts).
    pub(crate) subs: Vec<SubPart>,
}

/// Why the whole pack post is refused: the platform's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u32,
    pub(crate) message: String,
}

/// Reads a pack post of `gateway` on `topic` when it carries entries of other devices: `None`
/// for anything else (another topic, no such entry, an unusable request or entry: the single
/// device path answers those, 460 included).
///
/// # Errors
/// The request and a [`Refusal`] of 6357 for more than [`MAX_PACK_SUB_DEVICES`] sub-devices.
pub(crate) fn read(
    topic: &str,
    gateway: (&str, &str),
    payload: &[u8],
) -> Option<Result<Pack, (Request, Refusal)>> {
    let own = format!("/sys/{}/{}/thing/event/property/pack/post", gateway.0, gateway.1);
    if topic != own {
        return None;
    }
    let request = Request::parse(payload).ok()?;
    let entries = request.params.get("subDevices")?.as_array()?;
    let mut subs = Vec::new();
    let mut distinct: Vec<DeviceRef> = Vec::new();
    for e in entries {
        let identity = e.get("identity")?;
        let pk = identity.get("productKey")?.as_str()?;
        let dn = identity.get("deviceName")?.as_str()?;
        if (pk, dn) == gateway {
            // The gateway's own entry: the single device path keeps it.
            continue;
        }
        let device = (pk.to_owned(), dn.to_owned());
        if !distinct.contains(&device) {
            distinct.push(device.clone());
        }
        let mut params = Map::new();
        for key in ["properties", "events"] {
            if let Some(v) = e.get(key) {
                params.insert(key.to_owned(), v.clone());
            }
        }
        let params = Value::Object(params);
        let body = json!({"id": &request.id, "version": "1.0", "params": params, "method": METHOD});
        subs.push(SubPart {
            topic: format!("/sys/{pk}/{dn}/thing/event/property/pack/post"),
            device,
            params,
            payload: Bytes::from(body.to_string()),
        });
    }
    if subs.is_empty() {
        return None;
    }
    if distinct.len() > MAX_PACK_SUB_DEVICES {
        let refusal = Refusal {
            code: TOO_MANY_SUB_DEVICES,
            message: format!(
                "a pack post carries at most {MAX_PACK_SUB_DEVICES} sub-devices ({} given)",
                distinct.len()
            ),
        };
        return Some(Err((request, refusal)));
    }
    Some(Ok(Pack { request, subs }))
}

/// The reply refusing the whole post, unless the gateway asked for none (`sys.ack` 0, honoured
/// when `honour_sys_ack`).
pub(crate) fn refusal_reply(request: &Request, honour_sys_ack: bool, r: &Refusal) -> Option<Vec<u8>> {
    if !request.wants_reply() && honour_sys_ack {
        return None;
    }
    let method = request.method.clone().unwrap_or_else(|| METHOD.to_owned());
    Some(Reply::error(request.id.clone(), Some(method), r.code, r.message.clone()).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(subs: usize) -> Vec<u8> {
        let entries: Vec<Value> = (0..subs)
            .map(|i| json!({"identity": {"productKey": "sp", "deviceName": format!("s{i}")}, "properties": {"T": {"value": i, "time": 1}}}))
            .collect();
        json!({"id": "9", "version": "1.0", "params": {"properties": {"P": {"value": 1, "time": 1}}, "subDevices": entries}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_pack_post_is_split_by_sub_device_and_bounded() {
        let t = "/sys/gp/gw/thing/event/property/pack/post";
        let p = read(t, ("gp", "gw"), &pack(2))
            .expect("sub-devices")
            .expect("within the limit");
        assert_eq!(p.subs.len(), 2);
        assert_eq!(p.subs[1].device, ("sp".to_owned(), "s1".to_owned()));
        assert_eq!(p.subs[1].topic, "/sys/sp/s1/thing/event/property/pack/post");
        let body: Value = serde_json::from_slice(&p.subs[1].payload).expect("json");
        assert_eq!(body["id"], "9");
        assert_eq!(body["params"]["properties"]["T"]["value"], 1);
        assert!(body["params"].get("subDevices").is_none());
        let (request, r) = read(t, ("gp", "gw"), &pack(21))
            .expect("sub-devices")
            .expect_err("too many");
        assert_eq!(r.code, TOO_MANY_SUB_DEVICES);
        assert!(
            read(t, ("gp", "gw"), &pack(0)).is_none(),
            "no sub-device: the usual path"
        );
        assert!(read("/sys/gp/gw/thing/event/property/post", ("gp", "gw"), &pack(2)).is_none());
        let reply = refusal_reply(&request, true, &r).expect("reply");
        assert!(String::from_utf8_lossy(&reply).contains("6357"));
        let quiet = Request::parse(br#"{"id":"9","sys":{"ack":0},"params":{}}"#).expect("request");
        assert!(refusal_reply(&quiet, true, &r).is_none());
        assert!(refusal_reply(&quiet, false, &r).is_some());
    }
}
