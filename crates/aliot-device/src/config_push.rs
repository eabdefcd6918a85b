//! `thing.config.push`: the platform announces a new remote configuration. The SDK answers
//! `push_reply` itself (code 200 once the announcement reads, 460 when it does not) and hands the
//! [`ConfigInfo`] to the application as [`crate::Event::ConfigPush`]; downloading it is the
//! application's choice ([`crate::Device::download_config`]).

use aliot_protocol::alink::{DeviceReply, Request, read_id};
use aliot_protocol::codes::alink as code;
use aliot_protocol::config::ConfigInfo;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::options::QoS;
use crate::shared::Shared;

/// Answers a push on `reply_topic` (best effort, from the network loop) and returns what it
/// announces; `None` when it does not read as one (then answered 460 if it has an id).
pub(crate) fn on_push(shared: &Shared, reply_topic: &str, payload: &[u8]) -> Option<ConfigInfo> {
    let request = Request::parse(payload).ok();
    let info = request
        .as_ref()
        .and_then(|r| serde_json::from_value::<ConfigInfo>(r.params.clone()).ok());
    let id = request.map(|r| r.id).or_else(|| read_id(payload))?;
    let reply = match &info {
        Some(_) => DeviceReply::success(id, Value::Object(Map::new())),
        None => DeviceReply {
            id,
            code: code::PARAM_ERROR,
            data: Value::Object(Map::new()),
            message: Some(
                "thing.config.push without configId, configSize, sign, signMethod, url and getType".into(),
            ),
        },
    };
    shared.try_publish_now(reply_topic, Bytes::from(reply.to_vec()), QoS::AtMostOnce);
    info
}
