//! The thing model's uplinks: property posts (remembered), event posts, batch, pack and history
//! posts, device tags (`deviceinfo`), logs and diagnostics, desired property get/delete. Each is
//! answered on `<topic>_reply` with code 200 unless `sys.ack` is 0; the hub validates no thing
//! model yet, so any well-formed post is accepted.

use aliot_protocol::alink::{self as proto, Reply};
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::SysPath;
use bytes::Bytes;
use serde_json::Value;

use super::handling::{Answer, Context, Handling, answer, method_of, parse_request, send_reply};

/// The most properties one post may carry (spec §3.8: error 6106 above it).
pub(crate) const MAX_PROPERTIES_PER_POST: usize = 200;

/// `thing.event.property.post`: answered, and the values remembered.
pub(crate) fn property_post(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let method = request.method.clone().or_else(|| method_of(topic, path));
    let mut handling = Handling::default();
    let reply = match &request.params {
        Value::Object(props) if props.len() > MAX_PROPERTIES_PER_POST => {
            let reply = Reply::error(
                request.id.clone(),
                method,
                code::TOO_MANY_PROPERTIES,
                format!(
                    "too many properties: {} (at most {MAX_PROPERTIES_PER_POST})",
                    props.len()
                ),
            );
            handling.problem = Some(reply.message.clone());
            reply
        }
        Value::Object(_) => {
            handling.properties = Some(proto::property_values(&request.params));
            Reply::success(request.id.clone(), method)
        }
        _ => {
            handling.problem = Some("property post without a params object".into());
            Reply::error(
                request.id.clone(),
                method,
                code::PARAM_ERROR,
                "request parameter error: params",
            )
        }
    };
    send_reply(&mut handling, topic, &request, reply, ctx);
    handling
}

/// Event posts, batch/pack/history posts, `deviceinfo` update/delete, logs, diagnostics and
/// desired property get/delete: answered with success.
pub(crate) fn accepted(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    answer(topic, path, payload, Answer::Success, ctx)
}

/// Whether `path` is an uplink of this room other than the property post.
pub(crate) fn is_accepted_post(path: &SysPath) -> bool {
    match path {
        SysPath::EventPost(_)
        | SysPath::PropertyBatchPost
        | SysPath::PropertyPackPost
        | SysPath::PropertyHistoryPost
        | SysPath::DeviceInfoUpdate
        | SysPath::DeviceInfoDelete
        | SysPath::DesiredGet
        | SysPath::DesiredDelete => true,
        SysPath::Other(p) => p == "thing/log/post" || p == "_thing/diag/post",
        _ => false,
    }
}
