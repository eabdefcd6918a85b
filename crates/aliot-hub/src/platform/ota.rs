//! OTA requests of devices (aliyun-protocol §4.4): `thing.ota.firmware.get` answered with the
//! device's pending task (the push's `data`, or `{}`), and the version and progress reports on
//! `/ota/device/inform|progress/{pk}/{dn}` handed to the OTA room (`crate::ota`, where the
//! task rules live). No reply goes to inform or progress, as on the platform.

use aliot_protocol::alink::Reply;
use aliot_protocol::topic::{SysPath, Topic};
use bytes::Bytes;
use serde_json::Value;

use super::handling::{Context, Handling, method_of, parse_request, send_reply};
use crate::ota::Ota;

/// Answers `thing.ota.firmware.get` with what `pending` gives for the requested module.
pub(crate) fn firmware_get(
    topic: &str,
    path: &SysPath,
    payload: &Bytes,
    ctx: Context,
    pending: &dyn Fn(Option<&str>) -> Value,
) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let module = request
        .params
        .get("module")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    let reply = Reply {
        data: pending(module),
        ..Reply::success(
            request.id.clone(),
            request.method.clone().or_else(|| method_of(topic, path)),
        )
    };
    let mut handling = Handling::default();
    send_reply(&mut handling, topic, &request, reply, ctx);
    handling
}

/// Hands `/ota/device/inform` and `/ota/device/progress` of the device itself to the room.
pub(crate) fn observe(ota: &Ota, topic: &str, product_key: &str, device_name: &str, payload: &Bytes) {
    let Ok(Topic::Ota { action, .. }) = Topic::parse(topic) else {
        return;
    };
    match action.as_str() {
        "inform" => ota.inform(product_key, device_name, payload),
        "progress" => ota.progress(product_key, device_name, payload),
        _ => {}
    }
}
