//! Calls the platform makes to devices and the answers that complete them: property set
//! (`set_reply` by Alink id), synchronous services over RRPC in both styles (answered on
//! `/sys/{pk}/{dn}/rrpc/response/{id}` or on the request's own `/ext/rrpc/{id}/…` topic), and raw
//! RRPC. Also the downlink requests themselves: their topics and their Alink bodies.

use aliot_protocol::alink::{self as proto, MessageId, Request};
use aliot_protocol::topic::{SysPath, Topic};
use bytes::Bytes;
use serde_json::Value;

use super::handling::Handling;
use crate::table::CallKey;

/// An answer from the device on a `/sys/{pk}/{dn}/…` path: an RRPC response, or a `_reply`.
/// Replies to downlinks nobody waits for (service `_reply`, config `push_reply`…) are taken
/// silently, as the platform does (they still appear as uplink events).
pub(crate) fn sys_answer(path: &SysPath, payload: &Bytes) -> Handling {
    match path {
        SysPath::RrpcResponse(id) => Handling::completes(CallKey::Rrpc(id.clone()), payload),
        SysPath::Reply(inner) if **inner == SysPath::PropertySet => match proto::read_id(payload) {
            Some(id) => Handling::completes(CallKey::PropertySet(id.as_text()), payload),
            None => Handling::problem("property set_reply without a readable id"),
        },
        _ => Handling::default(),
    }
}

/// A message on `/ext/rrpc/{id}/…`: the device answers a synchronous call on the request's own
/// topic.
pub(crate) fn ext_rrpc_answer(message_id: String, inner: &Topic, payload: &Bytes) -> Handling {
    match inner {
        Topic::Sys { .. } | Topic::Custom { .. } => Handling::completes(CallKey::Rrpc(message_id), payload),
        _ => Handling::default(),
    }
}

/// The Alink request the platform sends for a downlink call:
/// `{"id":"..","version":"1.0","params":..,"method":".."}`.
pub(crate) fn request_body(id: &str, method: &str, params: Value) -> Vec<u8> {
    Request::new(MessageId::new(id), method, params).to_vec()
}

/// `thing.service.property.set` on `/sys/{pk}/{dn}/thing/service/property/set`.
pub(crate) fn property_set(
    product_key: &str,
    device_name: &str,
    id: &str,
    params: Value,
) -> (String, Vec<u8>, CallKey) {
    let topic = Topic::sys(product_key, device_name, SysPath::PropertySet).to_string();
    let body = request_body(id, "thing.service.property.set", params);
    (topic, body, CallKey::PropertySet(id.to_owned()))
}

/// A synchronous service call over RRPC in the style the device announced in its clientId
/// (spec §4.3): with `ext` bit 0 set, on `/ext/rrpc/{id}/sys/{pk}/{dn}/thing/service/{identifier}`
/// (answered on the same topic); otherwise on `/sys/{pk}/{dn}/rrpc/request/{id}` (answered on
/// `…/rrpc/response/{id}`).
pub(crate) fn service_call(
    product_key: &str,
    device_name: &str,
    ext_rrpc: bool,
    id: &str,
    identifier: &str,
    params: Value,
) -> (String, Vec<u8>, CallKey) {
    let topic = if ext_rrpc {
        Topic::ExtRrpc {
            message_id: id.to_owned(),
            inner: Box::new(Topic::sys(
                product_key,
                device_name,
                SysPath::Service(identifier.to_owned()),
            )),
        }
    } else {
        Topic::sys(product_key, device_name, SysPath::RrpcRequest(id.to_owned()))
    };
    let body = request_body(id, &format!("thing.service.{identifier}"), params);
    (topic.to_string(), body, CallKey::Rrpc(id.to_owned()))
}

/// Raw RRPC: `payload` on `/sys/{pk}/{dn}/rrpc/request/{id}`, answered on
/// `/sys/{pk}/{dn}/rrpc/response/{id}`.
pub(crate) fn raw_rrpc(product_key: &str, device_name: &str, id: &str) -> (String, CallKey) {
    let topic = Topic::sys(product_key, device_name, SysPath::RrpcRequest(id.to_owned())).to_string();
    (topic, CallKey::Rrpc(id.to_owned()))
}

/// Whether a service identifier can name a topic level.
pub(crate) fn valid_identifier(identifier: &str) -> bool {
    !identifier.is_empty() && !identifier.contains(['/', '+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_calls_take_the_rrpc_style_of_the_device() {
        let (topic, body, key) = service_call("pk", "dn", true, "7", "Reboot", serde_json::json!({}));
        assert_eq!(topic, "/ext/rrpc/7/sys/pk/dn/thing/service/Reboot");
        assert_eq!(key, CallKey::Rrpc("7".into()));
        assert!(String::from_utf8_lossy(&body).contains(r#""method":"thing.service.Reboot""#));
        let (topic, _, _) = service_call("pk", "dn", false, "8", "Reboot", serde_json::json!({}));
        assert_eq!(topic, "/sys/pk/dn/rrpc/request/8");
        let (topic, _, key) = property_set("pk", "dn", "9", serde_json::json!({"a": 1}));
        assert_eq!(topic, "/sys/pk/dn/thing/service/property/set");
        assert_eq!(key, CallKey::PropertySet("9".into()));
        assert_eq!(raw_rrpc("pk", "dn", "5").0, "/sys/pk/dn/rrpc/request/5");
        assert!(!valid_identifier("a/b") && !valid_identifier("") && valid_identifier("Reboot"));
    }
}
