//! The thing model's uplinks: property posts (remembered), event posts, batch, pack and history
//! posts, device tags (`deviceinfo`), logs and diagnostics (desired properties: `desired.rs`).
//! Each is answered on `<topic>_reply` with code 200 unless `sys.ack` is 0.
//!
//! When the product has a thing model (TSL), property and event posts are validated against it
//! as the platform does (cloud-side spec §3.3, `aliot_protocol::tsl`): the valid properties are
//! kept, and each rejected identifier is named in the reply's `data` with the platform's message
//! (`{"code":200,"data":{"Id":"tsl parse: …"},…}`) and reported as a problem event; an event the
//! model lacks gets its fault's code. Batch, pack and history posts are not validated yet.
//! Without a model any well-formed post is accepted.
//!
//! A property post is answered with code 6106 ("too many properties reported") in two cases:
//! it carries more than [`MAX_PROPERTIES_PER_POST`] properties (the platform's limit, spec §3.8),
//! or the registry refuses to keep its values because the device would go past its limits on
//! remembered properties (`registry::PropertyLimits`; the hub's own limit, answered with the
//! platform's code for the same kind of excess). Either way none of its values is kept.

use aliot_protocol::alink::{self as proto, Reply};
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::SysPath;
use aliot_protocol::tsl::{Fault, Tsl, Validation};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::handling::{
    Answer, Context, Handling, PlatformReply, PropertyPost, ReplyTo, answer, method_of, parse_request,
    send_reply,
};
use crate::registry;

/// The most properties one post may carry (spec §3.8: error 6106 above it).
pub(crate) const MAX_PROPERTIES_PER_POST: usize = 200;

/// `thing.event.property.post`: answered, and the values remembered (with a thing model: the
/// valid ones, the others named in the reply).
pub(crate) fn property_post(
    topic: &str,
    path: &SysPath,
    payload: &Bytes,
    ctx: Context,
    tsl: Option<&Tsl>,
) -> Handling {
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
                method.clone(),
                code::TOO_MANY_PROPERTIES,
                format!(
                    "too many properties: {} (at most {MAX_PROPERTIES_PER_POST})",
                    props.len()
                ),
            );
            handling.problem = Some(reply.message.clone());
            reply
        }
        Value::Object(_) => match tsl
            .map(|t| t.validate_property_post(&request.params, i64::try_from(ctx.now_ms).unwrap_or(i64::MAX)))
        {
            None => {
                handling.properties = Some(PropertyPost {
                    values: proto::property_values(&request.params),
                    reply_to: None,
                });
                Reply::success(request.id.clone(), method.clone())
            }
            Some(checked) => {
                let (reply, kept) = judged(&request.id, method.clone(), checked, &mut handling);
                if !kept.is_empty() {
                    handling.properties = Some(PropertyPost {
                        values: kept,
                        reply_to: None,
                    });
                }
                reply
            }
        },
        _ => {
            handling.problem = Some("property post without a params object".into());
            Reply::error(
                request.id.clone(),
                method.clone(),
                code::PARAM_ERROR,
                "request parameter error: params",
            )
        }
    };
    send_reply(&mut handling, topic, &request, reply, ctx);
    // Answered at all (`sys.ack`): then a refusal by the registry is answered too.
    if let (Some(post), Some(success)) = (&mut handling.properties, &handling.reply) {
        post.reply_to = Some(ReplyTo {
            topic: success.topic.clone(),
            id: request.id,
            method,
        });
    }
    handling
}

/// The reply to a post a thing model judged, and the values it keeps: success naming each
/// rejected identifier in `data` with the platform's message (the rejections also go to the
/// problem event, with their codes), or the whole message's fault.
fn judged(
    id: &proto::MessageId,
    method: Option<String>,
    checked: Result<Validation, Fault>,
    handling: &mut Handling,
) -> (Reply, Map<String, Value>) {
    match checked {
        Ok(checked) => {
            let kept = checked
                .items
                .iter()
                .map(|(id, item)| (id.clone(), item.value.clone()))
                .collect();
            let mut reply = Reply::success(id.clone(), method);
            if !checked.rejected.is_empty() {
                let rejected: Vec<String> = checked
                    .rejected
                    .iter()
                    .map(|(id, r)| format!("{id}: {} ({})", r.message, r.code))
                    .collect();
                handling.problem = Some(format!(
                    "thing model: {} rejected: {}",
                    rejected.len(),
                    rejected.join("; ")
                ));
                reply.data = Value::Object(checked.reply_data());
            }
            (reply, kept)
        }
        Err(fault) => {
            handling.problem = Some(format!("thing model: {}", fault.message));
            (
                Reply::error(id.clone(), method, fault.code, fault.message),
                Map::new(),
            )
        }
    }
}

/// `thing.event.{identifier}.post` when the product has a thing model: its outputs validated,
/// answered like a property post (rejected outputs named in `data`; an event the model lacks,
/// or params that are not an object, get the fault's code).
pub(crate) fn event_post(
    topic: &str,
    path: &SysPath,
    identifier: &str,
    payload: &Bytes,
    ctx: Context,
    tsl: &Tsl,
) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let method = request.method.clone().or_else(|| method_of(topic, path));
    let mut handling = Handling::default();
    let now = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
    let (reply, _kept) = judged(
        &request.id,
        method,
        tsl.validate_event(identifier, &request.params, now),
        &mut handling,
    );
    send_reply(&mut handling, topic, &request, reply, ctx);
    handling
}

/// The answer to a property post whose values the registry refused (`why`): code 6106 instead
/// of the success prepared by [`property_post`] (`None` when the device asked for no reply),
/// and the problem to report.
pub(crate) fn refused(reply_to: Option<ReplyTo>, why: &registry::Error) -> (Option<PlatformReply>, String) {
    let message = format!("too many properties: {why}");
    let reply = reply_to.map(|to| {
        let reply = Reply::error(to.id, to.method, code::TOO_MANY_PROPERTIES, message.clone());
        PlatformReply {
            topic: to.topic,
            payload: reply.to_vec(),
            code: reply.code,
        }
    });
    (reply, message)
}

/// Event posts, batch/pack/history posts, `deviceinfo` update/delete, logs and diagnostics:
/// answered with success.
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
        | SysPath::DeviceInfoDelete => true,
        SysPath::Other(p) => p == "thing/log/post" || p == "_thing/diag/post",
        _ => false,
    }
}
