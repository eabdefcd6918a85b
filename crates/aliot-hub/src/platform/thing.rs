//! The thing model's uplinks: property posts (remembered), event posts, batch, pack and history
//! posts, device tags (`deviceinfo`), logs and diagnostics (desired properties: `desired.rs`).
//! Each is answered on `<topic>_reply` with code 200 unless `sys.ack` is 0.
//!
//! When the product has a thing model (TSL), property and event posts are validated against it
//! as the platform does (cloud-side spec §3.3, `aliot_protocol::tsl`): the valid properties are
//! kept, and each rejected identifier is named in the reply's `data` with the platform's message
//! (`{"code":200,"data":{"Id":"tsl parse: …"},…}`) and reported as a problem event; an event the
//! model lacks gets its fault's code. Batch, pack and history posts are judged point by point the
//! same way ([`batch_post`]). Without a model any well-formed post is accepted, except items whose
//! `time` is more than 24 h ahead (6326, everywhere).
//!
//! What a post keeps goes to the device's history (every property value with its own `time`,
//! every event; `registry::History`), and the `_reply` is sent once that is durable.
//!
//! A property post is answered with code 6106 ("too many properties reported") in two cases:
//! it carries more than [`MAX_PROPERTIES_PER_POST`] properties (the platform's limit, spec §3.8),
//! or the registry refuses to keep its values because the device would go past its limits on
//! remembered properties (`registry::PropertyLimits`; the hub's own limit, answered with the
//! platform's code for the same kind of excess). Either way none of its values is kept.

use aliot_protocol::alink::{self as proto, Reply};
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::SysPath;
use aliot_protocol::tsl::{self, BatchKind, EventKind, Fault, Rejection, Tsl, Validation};
use bytes::Bytes;
use serde_json::Value;

use super::handling::{
    Answer, Context, Handling, HistoryPost, PlatformReply, PropertyPost, ReplyTo, answer, method_of,
    parse_request, send_reply,
};
use crate::registry::{self, EventRecord, PropertySample, Records};
use crate::subscription::forward::Draft;

/// The most properties one post may carry (spec §3.8: error 6106 above it).
pub(crate) const MAX_PROPERTIES_PER_POST: usize = 200;

/// `thing.event.property.post`: answered, and the values remembered and kept in the history
/// (with a thing model: the valid ones, the others named in the reply; without one: all but
/// those with a bad `time`).
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
    let now = now_of(ctx);
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
        Value::Object(_) => {
            let checked = match tsl {
                Some(t) => t.validate_property_post(&request.params, now),
                None => tsl::validate_untyped_property_post(&request.params, now),
            };
            if ctx.forward
                && let Ok(checked) = &checked
            {
                handling.forward = Some(Draft::property(request.id.as_text(), checked, ctx.recv_ms));
            }
            let (reply, kept) = judged(&request.id, method.clone(), checked, &mut handling);
            if let Some(kept) = kept.filter(|k| !k.items.is_empty()) {
                let records = Records {
                    properties: kept
                        .items
                        .iter()
                        .map(|(id, item)| sample(id, item.value.clone(), item.time, ctx))
                        .collect(),
                    ..Records::default()
                };
                handling.properties = Some(PropertyPost {
                    values: kept
                        .items
                        .into_iter()
                        .map(|(id, item)| (id, item.value))
                        .collect(),
                    reply_to: None,
                });
                handling.history = Some(HistoryPost {
                    records,
                    reply_to: None,
                });
            }
            reply
        }
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
    answer_later(&mut handling, request.id, method);
    handling
}

/// Now as the signed milliseconds the validation takes.
fn now_of(ctx: Context) -> i64 {
    i64::try_from(ctx.now_ms).unwrap_or(i64::MAX)
}

/// A kept property value: its own time, else when the hub received the post.
fn sample(identifier: &str, value: Value, time: Option<i64>, ctx: Context) -> PropertySample {
    PropertySample {
        identifier: identifier.to_owned(),
        time: time.and_then(|t| u64::try_from(t).ok()).unwrap_or(ctx.recv_ms),
        value,
    }
}

/// When the post is answered at all (`sys.ack`), a refusal by the registry or a failed history
/// write is answered too: both get where to send it.
fn answer_later(handling: &mut Handling, id: proto::MessageId, method: Option<String>) {
    let Some(success) = &handling.reply else {
        return;
    };
    let to = ReplyTo {
        topic: success.topic.clone(),
        id,
        method,
    };
    if let Some(post) = &mut handling.properties {
        post.reply_to = Some(to.clone());
    }
    if let Some(post) = &mut handling.history {
        post.reply_to = Some(to);
    }
}

/// The reply to a post a model (or the time rule) judged, and what it keeps: success naming
/// each rejected identifier in `data` with the platform's message (the rejections also go to
/// the problem event, with their codes), or the whole message's fault (nothing kept).
fn judged(
    id: &proto::MessageId,
    method: Option<String>,
    checked: Result<Validation, Fault>,
    handling: &mut Handling,
) -> (Reply, Option<Validation>) {
    match checked {
        Ok(checked) => {
            let mut reply = Reply::success(id.clone(), method);
            if !checked.rejected.is_empty() {
                note_rejected(handling, checked.rejected.iter());
                reply.data = Value::Object(checked.reply_data());
            }
            (reply, Some(checked))
        }
        Err(fault) => {
            handling.problem = Some(format!("thing model: {}", fault.message));
            (Reply::error(id.clone(), method, fault.code, fault.message), None)
        }
    }
}

/// Reports rejected identifiers as the handling's problem.
fn note_rejected<'a>(
    handling: &mut Handling,
    rejected: impl ExactSizeIterator<Item = (&'a String, &'a Rejection)>,
) {
    let n = rejected.len();
    let list: Vec<String> = rejected
        .map(|(id, r)| format!("{id}: {} ({})", r.message, r.code))
        .collect();
    handling.problem = Some(format!("thing model: {n} rejected: {}", list.join("; ")));
}

/// `thing.event.{identifier}.post`: its outputs validated when the product has a thing model,
/// answered like a property post (rejected outputs named in `data`; an event the model lacks,
/// params that are not an object or a bad `time` get the fault's code), and the event kept in
/// the history (with its valid outputs).
pub(crate) fn event_post(
    topic: &str,
    path: &SysPath,
    identifier: &str,
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
    let now = now_of(ctx);
    let checked = match tsl {
        Some(t) => t.validate_event(identifier, &request.params, now),
        None => tsl::validate_untyped_event(identifier, &request.params, now),
    };
    if ctx.forward
        && let Ok(checked) = &checked
    {
        let event = tsl.and_then(|t| t.event(identifier));
        handling.forward = Some(Draft::event(
            identifier,
            event.map(|e| e.name.as_str()),
            event_type(tsl, identifier).as_deref(),
            request.id.as_text(),
            checked,
            ctx.recv_ms,
        ));
    }
    let (reply, kept) = judged(&request.id, method.clone(), checked, &mut handling);
    if let Some(kept) = kept {
        let output = kept
            .items
            .into_iter()
            .map(|(id, item)| (id, item.value))
            .collect();
        handling.history = Some(HistoryPost {
            records: Records {
                events: vec![EventRecord {
                    time: kept
                        .time
                        .and_then(|t| u64::try_from(t).ok())
                        .unwrap_or(ctx.recv_ms),
                    identifier: identifier.to_owned(),
                    event_type: event_type(tsl, identifier),
                    value: Value::Object(output),
                }],
                ..Records::default()
            },
            reply_to: None,
        });
    }
    send_reply(&mut handling, topic, &request, reply, ctx);
    answer_later(&mut handling, request.id, method);
    handling
}

/// The model's type of an event (`info`, `alert`, `error`).
fn event_type(tsl: Option<&Tsl>, identifier: &str) -> Option<String> {
    let kind = tsl?.event(identifier)?.kind;
    Some(
        match kind {
            EventKind::Info => "info",
            EventKind::Alert => "alert",
            EventKind::Error => "error",
        }
        .to_owned(),
    )
}

/// `thing.event.property.batch.post`, `….pack.post`, `….history.post` of the device `device`:
/// each point judged (`aliot_protocol::tsl::validate_batch`), answered like a property post
/// (rejected identifiers named in `data`, whole-message faults non-200), the valid points kept
/// in the history with their own times and the newest value of each property remembered.
pub(crate) fn batch_post(
    topic: &str,
    path: &SysPath,
    payload: &Bytes,
    ctx: Context,
    tsl: Option<&Tsl>,
    device: (&str, &str),
) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let kind = match path {
        SysPath::PropertyPackPost => BatchKind::Pack,
        SysPath::PropertyHistoryPost => BatchKind::History,
        _ => BatchKind::Batch,
    };
    let method = request.method.clone().or_else(|| method_of(topic, path));
    let mut handling = Handling::default();
    let reply = match tsl::validate_batch(tsl, kind, &request.params, device, now_of(ctx)) {
        Ok(checked) => {
            let mut reply = Reply::success(request.id.clone(), method.clone());
            if !checked.rejected.is_empty() {
                note_rejected(&mut handling, checked.rejected.iter());
                reply.data = Value::Object(checked.reply_data());
            }
            if checked.skipped > 0 {
                tracing::debug!(
                    skipped = checked.skipped,
                    "entries of other devices skipped (each handled as its sub-device's own post)"
                );
            }
            let records = Records {
                properties: checked
                    .properties
                    .into_iter()
                    .map(|p| sample(&p.identifier, p.value, p.time, ctx))
                    .collect(),
                events: checked
                    .events
                    .into_iter()
                    .map(|e| EventRecord {
                        time: e.time.and_then(|t| u64::try_from(t).ok()).unwrap_or(ctx.recv_ms),
                        event_type: event_type(tsl, &e.identifier),
                        identifier: e.identifier,
                        value: e.output,
                    })
                    .collect(),
                calls: Vec::new(),
            };
            // The newest value of each property is its latest (equal times: the later point).
            let mut newest: std::collections::BTreeMap<String, (u64, Value)> =
                std::collections::BTreeMap::new();
            for p in &records.properties {
                if newest.get(&p.identifier).is_none_or(|(t, _)| *t <= p.time) {
                    newest.insert(p.identifier.clone(), (p.time, p.value.clone()));
                }
            }
            if !newest.is_empty() {
                handling.properties = Some(PropertyPost {
                    values: newest.into_iter().map(|(k, (_, v))| (k, v)).collect(),
                    reply_to: None,
                });
            }
            if !records.is_empty() {
                handling.history = Some(HistoryPost {
                    records,
                    reply_to: None,
                });
            }
            reply
        }
        Err(fault) => {
            handling.problem = Some(format!("{}: {}", fault.code, fault.message));
            Reply::error(request.id.clone(), method.clone(), fault.code, fault.message)
        }
    };
    send_reply(&mut handling, topic, &request, reply, ctx);
    answer_later(&mut handling, request.id, method);
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

/// The answer to a post whose history rows could not be written (`why`): code 500 instead of
/// the success prepared (`None` when the device asked for no reply), and the problem to report.
/// The device may post again.
pub(crate) fn unsaved(reply_to: Option<ReplyTo>, why: &registry::Error) -> (Option<PlatformReply>, String) {
    let message = format!("system error: the post was not saved ({why})");
    let reply = reply_to.map(|to| {
        let reply = Reply::error(to.id, to.method, code::SYSTEM_ERROR, message.clone());
        PlatformReply {
            topic: to.topic,
            payload: reply.to_vec(),
            code: reply.code,
        }
    });
    (reply, message)
}

/// `deviceinfo` update/delete, logs and diagnostics: answered with success.
pub(crate) fn accepted(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    answer(topic, path, payload, Answer::Success, ctx)
}

/// Whether `path` is an uplink of this room answered with plain success.
pub(crate) fn is_accepted_post(path: &SysPath) -> bool {
    match path {
        SysPath::DeviceInfoUpdate | SysPath::DeviceInfoDelete => true,
        SysPath::Other(p) => p == "thing/log/post" || p == "_thing/diag/post",
        _ => false,
    }
}
