//! NTP over MQTT (spec §12 Q8): a request on `/ext/ntp/{pk}/{dn}/request` is answered on
//! `/ext/ntp/{pk}/{dn}/response` with the device's send time and the hub's receive and send times.

use aliot_protocol::alink as proto;
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::Topic;
use bytes::Bytes;

use super::handling::{Context, Handling, PlatformReply};

/// Answers an NTP request of device (`product_key`, `device_name`).
pub(crate) fn handle(product_key: &str, device_name: &str, payload: &Bytes, ctx: Context) -> Handling {
    match proto::ntp::response(payload, ctx.recv_ms, ctx.now_ms) {
        Ok(body) => Handling {
            reply: Some(PlatformReply {
                topic: Topic::NtpResponse {
                    product_key: product_key.to_owned(),
                    device_name: device_name.to_owned(),
                }
                .to_string(),
                payload: body,
                code: code::SUCCESS,
            }),
            ..Handling::default()
        },
        Err(e) => Handling::problem(format!("unusable NTP request: {e}")),
    }
}
