//! Desired properties, device side (aliyun-protocol §4.4 "Desired properties"):
//! `thing.property.desired.get` and `thing.property.desired.delete` on
//! `/sys/{pk}/{dn}/thing/property/desired/{get|delete}`, answered on `…_reply`.
//!
//! - get: params are a list of identifiers; the reply's data is `{id: {"value","version"}}`
//!   for those with a desired value (the others are left out).
//! - delete: params are `{id: {"version"?}}`; each identifier's value is deleted when its
//!   version matches, or when no version is given (`registry::DesiredProperties::apply`).
//! - More than [`MAX_DESIRED_PER_REQUEST`] identifiers: 6104. Params of the wrong shape: 460.
//!   The registry failing: 6661 (get) or 500 (delete).
//!
//! [`get`] and [`delete`] decide; [`carry_out`] runs later, in order, against the registry.

use std::collections::BTreeMap;

use aliot_protocol::alink::Reply;
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::SysPath;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::handling::{
    Context, Deferred, Handling, PlatformReply, ReplyTo, method_of, parse_request, send_reply,
};
use crate::registry::{DesiredChange, Registry};

/// The most identifiers one desired get or delete may name (6104 above it).
pub(crate) const MAX_DESIRED_PER_REQUEST: usize = 200;

/// Parses a request and hands back either an immediate error reply or where to answer.
fn prepare(
    topic: &str,
    path: &SysPath,
    payload: &Bytes,
    ctx: Context,
    shape: impl FnOnce(&Value) -> Result<Deferred, (u32, String)>,
) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let method = request.method.clone().or_else(|| method_of(topic, path));
    let mut handling = Handling::default();
    match shape(&request.params) {
        Ok(mut deferred) => {
            // Where to answer, unless the device asked for no reply.
            let mut probe = Handling::default();
            send_reply(
                &mut probe,
                topic,
                &request,
                Reply::success(request.id.clone(), method.clone()),
                ctx,
            );
            let to = probe.reply.map(|r| ReplyTo {
                topic: r.topic,
                id: request.id.clone(),
                method,
            });
            match &mut deferred {
                Deferred::DesiredGet { reply_to, .. } | Deferred::DesiredDelete { reply_to, .. } => {
                    *reply_to = to;
                }
                Deferred::Shadow { .. } => {}
            }
            handling.deferred = Some(deferred);
        }
        Err((c, message)) => {
            handling.problem = Some(message.clone());
            send_reply(
                &mut handling,
                topic,
                &request,
                Reply::error(request.id.clone(), method, c, message),
                ctx,
            );
        }
    }
    handling
}

fn too_many(n: usize) -> (u32, String) {
    (
        code::TOO_MANY_DESIRED,
        format!("too many properties: {n} (at most {MAX_DESIRED_PER_REQUEST} in a desired get or delete)"),
    )
}

/// `thing.property.desired.get`.
pub(crate) fn get(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    prepare(topic, path, payload, ctx, |params| {
        let Some(list) = params.as_array() else {
            return Err((
                code::PARAM_ERROR,
                "request parameter error: params must be a list of identifiers".into(),
            ));
        };
        if list.len() > MAX_DESIRED_PER_REQUEST {
            return Err(too_many(list.len()));
        }
        let identifiers = list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                (
                    code::PARAM_ERROR,
                    "request parameter error: identifiers must be strings".to_owned(),
                )
            })?;
        Ok(Deferred::DesiredGet {
            identifiers,
            reply_to: None,
        })
    })
}

/// `thing.property.desired.delete`.
pub(crate) fn delete(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    prepare(topic, path, payload, ctx, |params| {
        let Some(object) = params.as_object() else {
            return Err((
                code::PARAM_ERROR,
                "request parameter error: params must be an object {identifier: {\"version\"?}}".into(),
            ));
        };
        if object.len() > MAX_DESIRED_PER_REQUEST {
            return Err(too_many(object.len()));
        }
        let mut items = BTreeMap::new();
        for (id, spec) in object {
            let version = match spec.get("version") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    (
                        code::PARAM_ERROR,
                        format!("request parameter error: the version of {id} is not a non-negative integer"),
                    )
                })?),
            };
            if !spec.is_object() && !spec.is_null() {
                return Err((
                    code::PARAM_ERROR,
                    format!("request parameter error: {id} must map to an object"),
                ));
            }
            items.insert(id.clone(), version);
        }
        Ok(Deferred::DesiredDelete {
            items,
            reply_to: None,
        })
    })
}

fn reply(to: Option<ReplyTo>, reply: impl FnOnce(ReplyTo) -> Reply) -> Option<PlatformReply> {
    to.map(|to| {
        let topic = to.topic.clone();
        let r = reply(to);
        PlatformReply {
            topic,
            payload: r.to_vec(),
            code: r.code,
        }
    })
}

/// The answer when the registry could not take the request at all (its queue is full).
pub(crate) fn busy(deferred: &Deferred) -> Option<PlatformReply> {
    let (to, c) = match deferred {
        Deferred::DesiredGet { reply_to, .. } => (reply_to.clone(), code::DESIRED_QUERY_FAILED),
        Deferred::DesiredDelete { reply_to, .. } => (reply_to.clone(), code::SYSTEM_ERROR),
        Deferred::Shadow { .. } => return None,
    };
    reply(to, |to| {
        Reply::error(to.id, to.method, c, "system busy, retry later")
    })
}

/// Carries out a desired get or delete for device `pk`/`dn` against the registry: the reply
/// and the problem to report.
pub(crate) async fn carry_out(
    registry: &dyn Registry,
    pk: &str,
    dn: &str,
    deferred: Deferred,
    now_ms: u64,
) -> (Option<PlatformReply>, Option<String>) {
    match deferred {
        Deferred::DesiredGet {
            identifiers,
            reply_to,
        } => match registry.desired(pk, dn).await {
            Ok(stored) => {
                let data: Map<String, Value> = identifiers
                    .iter()
                    .filter_map(|id| {
                        let v = stored.get(id)?;
                        let value = v.value.clone()?;
                        Some((
                            id.clone(),
                            serde_json::json!({"value": value, "version": v.version}),
                        ))
                    })
                    .collect();
                let out = reply(reply_to, |to| {
                    let mut r = Reply::success(to.id, to.method);
                    r.data = Value::Object(data);
                    r
                });
                (out, None)
            }
            Err(e) => {
                let message = format!("desired property query failed: {e}");
                let out = reply(reply_to, |to| {
                    Reply::error(
                        to.id,
                        to.method,
                        code::DESIRED_QUERY_FAILED,
                        "desired property query failed",
                    )
                });
                (out, Some(message))
            }
        },
        Deferred::DesiredDelete { items, reply_to } => {
            match registry
                .change_desired(pk, dn, DesiredChange::Clear(items), now_ms)
                .await
            {
                Ok(outcome) => {
                    let problem = (!outcome.skipped.is_empty()).then(|| {
                        let names: Vec<String> = outcome
                            .skipped
                            .iter()
                            .map(|(id, (asked, current))| {
                                format!("{id} (version {asked}, current {current})")
                            })
                            .collect();
                        format!("desired delete left alone: {}", names.join(", "))
                    });
                    (reply(reply_to, |to| Reply::success(to.id, to.method)), problem)
                }
                Err(e) => {
                    let message = format!("desired delete failed: {e}");
                    let out = reply(reply_to, |to| {
                        Reply::error(
                            to.id,
                            to.method,
                            code::SYSTEM_ERROR,
                            "desired property delete failed",
                        )
                    });
                    (out, Some(message))
                }
            }
        }
        Deferred::Shadow { .. } => (None, None),
    }
}
