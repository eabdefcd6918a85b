//! The platform's answers to device uplinks (spec §4, §12, §13), as pure decisions.
//!
//! [`handle_uplink`] looks at one PUBLISH that passed the ACL and says what the platform does:
//! which reply to send on which topic, which pending admin call it answers, which property
//! values to remember, and what to report when the payload is unusable. The session executes the
//! decision; nothing here touches a socket or a lock.
//!
//! | uplink | platform's answer |
//! |---|---|
//! | property/event/batch/pack/history post, deviceinfo update/delete, log post | `<topic>_reply` code 200 (unless `sys.ack` is 0) |
//! | desired get/delete, OTA firmware get | `<topic>_reply` code 200 with empty data |
//! | remote config get | `<topic>_reply` code 6710 (no remote config on the hub) |
//! | any other `/sys/{pk}/{dn}/…` request | `<topic>_reply` code 6203 (topic parse failed) |
//! | bad JSON or missing fields | code 460 when the id can be read, else an event only |
//! | `…/thing/service/property/set_reply`, `…/rrpc/response/{id}`, `/ext/rrpc/{id}/…` | completes the waiting admin call |
//! | `/ext/ntp/{pk}/{dn}/request` | `/ext/ntp/{pk}/{dn}/response` (spec §12 Q8) |
//! | custom topics, OTA inform/progress, shadow, other replies | event only |

use aliot_protocol::alink::{self as proto, MessageId, Reply, Request};
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::{SysPath, Topic};
use bytes::Bytes;
use serde_json::{Map, Value};

/// The most properties one post may carry (spec §3.8: error 6106 above it).
pub(crate) const MAX_PROPERTIES_PER_POST: usize = 200;

/// Which admin call a device message answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallKey {
    /// `thing.service.property.set`, answered on `set_reply` by Alink id.
    PropertySet(String),
    /// A synchronous service or raw RRPC, answered by RRPC message id (on
    /// `/sys/{pk}/{dn}/rrpc/response/{id}` or on the request's own `/ext/rrpc/{id}/…` topic).
    Rrpc(String),
}

/// A platform reply to send to the device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlatformReply {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) code: u32,
}

/// What the platform does with one uplink.
#[derive(Debug, Default)]
pub(crate) struct Handling {
    /// Send this to the device (at the QoS of the uplink), if it is subscribed.
    pub(crate) reply: Option<PlatformReply>,
    /// This message answers a pending admin call.
    pub(crate) completes: Option<(CallKey, Bytes)>,
    /// Property values to remember (merged per property).
    pub(crate) properties: Option<Map<String, Value>>,
    /// Something was wrong with the message (reported as an event, never closes the connection).
    pub(crate) problem: Option<String>,
}

/// Decides what the platform does with an uplink on `topic`, received at `recv_ms`, answered at
/// `now_ms`. With `honour_sys_ack` false, requests with `sys.ack` 0 are answered too.
pub(crate) fn handle_uplink(
    topic: &str,
    payload: &Bytes,
    recv_ms: u64,
    now_ms: u64,
    honour_sys_ack: bool,
) -> Handling {
    let Ok(parsed) = Topic::parse(topic) else {
        // Inside the device's namespace (the ACL let it through) but not an Alink topic family.
        return Handling::default();
    };
    match parsed {
        Topic::Sys { path, .. } => handle_sys(topic, &path, payload, honour_sys_ack),
        Topic::NtpRequest {
            product_key,
            device_name,
        } => match proto::ntp::response(payload, recv_ms, now_ms) {
            Ok(body) => Handling {
                reply: Some(PlatformReply {
                    topic: format!("/ext/ntp/{product_key}/{device_name}/response"),
                    payload: body,
                    code: code::SUCCESS,
                }),
                ..Handling::default()
            },
            Err(e) => Handling {
                problem: Some(format!("unusable NTP request: {e}")),
                ..Handling::default()
            },
        },
        Topic::ExtRrpc { message_id, inner } => match *inner {
            // The device answers a synchronous call on the request's own topic.
            Topic::Sys { .. } | Topic::Custom { .. } => Handling {
                completes: Some((CallKey::Rrpc(message_id), payload.clone())),
                ..Handling::default()
            },
            _ => Handling::default(),
        },
        _ => Handling::default(),
    }
}

fn handle_sys(topic: &str, path: &SysPath, payload: &Bytes, ack: bool) -> Handling {
    match path {
        SysPath::PropertyPost => answer(topic, path, payload, Answer::Success, true, ack),
        SysPath::EventPost(_)
        | SysPath::PropertyBatchPost
        | SysPath::PropertyPackPost
        | SysPath::PropertyHistoryPost
        | SysPath::DeviceInfoUpdate
        | SysPath::DeviceInfoDelete => answer(topic, path, payload, Answer::Success, false, ack),
        SysPath::DesiredGet | SysPath::DesiredDelete | SysPath::OtaFirmwareGet => {
            answer(topic, path, payload, Answer::Success, false, ack)
        }
        SysPath::ConfigGet => answer(
            topic,
            path,
            payload,
            Answer::Error(6710, "remote config not found"),
            false,
            ack,
        ),
        SysPath::Other(p) if p == "thing/log/post" || p == "_thing/diag/post" => {
            answer(topic, path, payload, Answer::Success, false, ack)
        }
        SysPath::RrpcResponse(id) => Handling {
            completes: Some((CallKey::Rrpc(id.clone()), payload.clone())),
            ..Handling::default()
        },
        SysPath::Reply(inner) => match **inner {
            SysPath::PropertySet => match proto::read_id(payload) {
                Some(id) => Handling {
                    completes: Some((CallKey::PropertySet(id.as_text()), payload.clone())),
                    ..Handling::default()
                },
                None => Handling {
                    problem: Some("property set_reply without a readable id".into()),
                    ..Handling::default()
                },
            },
            // Replies to downlinks nobody waits for (service _reply, config push_reply...):
            // the platform takes them silently, and so do we (they appear as uplink events).
            _ => Handling::default(),
        },
        // Downlink topics published by the device, and unknown requests: an Alink error, never
        // silence.
        _ => {
            if topic.ends_with("_reply") {
                return Handling::default();
            }
            let method = method_of(topic, path);
            let message = format!(
                "topic parse failed: the hub does not serve {}",
                method.as_deref().unwrap_or(topic)
            );
            answer(
                topic,
                path,
                payload,
                Answer::Error(code::TOPIC_PARSE_FAILED, &message),
                false,
                ack,
            )
        }
    }
}

#[derive(Clone, Copy)]
enum Answer<'a> {
    Success,
    Error(u32, &'a str),
}

/// The request's method, or the one the topic implies (the C SDK 4.x sends no method).
fn method_of(topic: &str, path: &SysPath) -> Option<String> {
    path.method().or_else(|| {
        // /sys/{pk}/{dn}/a/b/c → a.b.c
        let rest = topic.splitn(5, '/').nth(4)?;
        Some(rest.replace('/', "."))
    })
}

fn answer(
    topic: &str,
    path: &SysPath,
    payload: &Bytes,
    ans: Answer<'_>,
    remember_properties: bool,
    honour_sys_ack: bool,
) -> Handling {
    let reply_topic = format!("{topic}_reply");
    let topic_method = method_of(topic, path);
    let request = match Request::parse(payload) {
        Ok(r) => r,
        Err(e) => {
            let problem = Some(format!("unusable Alink request: {e}"));
            return match proto::read_id(payload) {
                Some(id) => {
                    let reply = Reply::error(
                        id,
                        topic_method,
                        code::PARAM_ERROR,
                        format!("request parameter error: {e}"),
                    );
                    Handling {
                        reply: Some(PlatformReply {
                            topic: reply_topic,
                            payload: reply.to_vec(),
                            code: reply.code,
                        }),
                        problem,
                        ..Handling::default()
                    }
                }
                None => Handling {
                    problem,
                    ..Handling::default()
                },
            };
        }
    };
    let method = request.method.clone().or(topic_method);
    let mut handling = Handling::default();
    let reply = match ans {
        Answer::Error(c, msg) => Reply::error(request.id.clone(), method, c, msg),
        Answer::Success if remember_properties => match &request.params {
            Value::Object(props) if props.len() > MAX_PROPERTIES_PER_POST => Reply::error(
                request.id.clone(),
                method,
                code::TOO_MANY_PROPERTIES,
                format!(
                    "too many properties: {} (at most {MAX_PROPERTIES_PER_POST})",
                    props.len()
                ),
            ),
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
        },
        Answer::Success => Reply::success(request.id.clone(), method),
    };
    if reply.code != code::SUCCESS && handling.problem.is_none() && !matches!(ans, Answer::Error(..)) {
        handling.problem = Some(reply.message.clone());
    }
    if request.wants_reply() || !honour_sys_ack {
        handling.reply = Some(PlatformReply {
            topic: reply_topic,
            payload: reply.to_vec(),
            code: reply.code,
        });
    }
    handling
}

/// The Alink request the platform sends for a downlink call:
/// `{"id":"..","version":"1.0","params":..,"method":".."}`.
pub(crate) fn downlink_request(id: &str, method: &str, params: Value) -> Vec<u8> {
    Request::new(MessageId::new(id), method, params).to_vec()
}

/// Merges reported values into the remembered ones, property by property.
pub(crate) fn merge_properties(into: &mut Map<String, Value>, reported: Map<String, Value>) {
    for (k, v) in reported {
        into.insert(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(topic: &str, payload: &str) -> Handling {
        handle_uplink(topic, &Bytes::copy_from_slice(payload.as_bytes()), 10, 20, true)
    }

    fn reply_text(h: &Handling) -> String {
        String::from_utf8(h.reply.as_ref().expect("a reply").payload.clone()).expect("utf8")
    }

    #[test]
    fn property_post_is_answered_with_the_id_echoed_byte_for_byte() {
        let node_id = r#""1|exp-topic|/sys/pk/dn/thing/event/property/post_reply""#;
        for id in [r#""123""#, "42", node_id] {
            let h = handle(
                "/sys/pk/dn/thing/event/property/post",
                &format!(
                    r#"{{"id":{id},"version":"1.0","params":{{"t":1}},"method":"thing.event.property.post"}}"#
                ),
            );
            let r = h.reply.as_ref().expect("reply");
            assert_eq!(r.topic, "/sys/pk/dn/thing/event/property/post_reply");
            assert_eq!(
                reply_text(&h),
                format!(
                    r#"{{"code":200,"data":{{}},"id":{id},"message":"success","method":"thing.event.property.post","version":"1.0"}}"#
                )
            );
            assert_eq!(
                h.properties.as_ref().and_then(|p| p.get("t")),
                Some(&serde_json::json!(1))
            );
        }
    }

    #[test]
    fn the_method_comes_from_the_topic_when_the_device_omits_it() {
        let h = handle(
            "/sys/pk/dn/thing/event/alarm/post",
            r#"{"id":"7","params":{"value":{}}}"#,
        );
        assert!(reply_text(&h).contains(r#""method":"thing.event.alarm.post""#));
    }

    #[test]
    fn sys_ack_zero_gets_no_reply_but_properties_are_remembered() {
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"1","sys":{"ack":0},"params":{"a":{"value":5,"time":1}}}"#,
        );
        assert!(h.reply.is_none());
        assert_eq!(
            h.properties.and_then(|p| p.get("a").cloned()),
            Some(serde_json::json!(5))
        );
    }

    #[test]
    fn bad_requests_get_460_when_the_id_is_readable_and_an_event_otherwise() {
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"9","params":"x","method":5}"#,
        );
        assert!(reply_text(&h).starts_with(r#"{"code":460"#));
        assert!(h.problem.is_some());
        let h = handle("/sys/pk/dn/thing/event/property/post", "not json");
        assert!(h.reply.is_none() && h.problem.is_some());
        let h = handle(
            "/sys/pk/dn/thing/event/property/post",
            r#"{"id":"9","params":[1]}"#,
        );
        assert!(reply_text(&h).starts_with(r#"{"code":460"#));
    }

    #[test]
    fn too_many_properties_get_6106() {
        let props: Map<String, Value> = (0..201).map(|i| (format!("p{i}"), Value::from(i))).collect();
        let body = serde_json::json!({"id": "3", "params": props}).to_string();
        let h = handle("/sys/pk/dn/thing/event/property/post", &body);
        assert!(reply_text(&h).starts_with(r#"{"code":6106"#));
        assert!(h.properties.is_none());
    }

    #[test]
    fn unknown_sys_methods_get_an_alink_error_never_silence() {
        let h = handle("/sys/pk/dn/thing/frobnicate/now", r#"{"id":"5","params":{}}"#);
        let r = h.reply.as_ref().expect("reply");
        assert_eq!(r.topic, "/sys/pk/dn/thing/frobnicate/now_reply");
        assert!(reply_text(&h).starts_with(r#"{"code":6203"#));
        assert!(reply_text(&h).contains(r#""method":"thing.frobnicate.now""#));
        // A device publishing on a downlink topic is an unknown request too.
        let h = handle(
            "/sys/pk/dn/thing/service/property/set",
            r#"{"id":"5","params":{}}"#,
        );
        assert!(reply_text(&h).starts_with(r#"{"code":6203"#));
    }

    #[test]
    fn replies_are_matched_to_calls_and_never_answered() {
        let h = handle(
            "/sys/pk/dn/thing/service/property/set_reply",
            r#"{"id":"77","code":200,"data":{}}"#,
        );
        assert_eq!(
            h.completes.as_ref().map(|(k, _)| k.clone()),
            Some(CallKey::PropertySet("77".into()))
        );
        assert!(h.reply.is_none());
        let h = handle("/sys/pk/dn/rrpc/response/88", "raw bytes");
        assert_eq!(h.completes.map(|(k, _)| k), Some(CallKey::Rrpc("88".into())));
        let h = handle(
            "/ext/rrpc/99/sys/pk/dn/thing/service/Reboot",
            r#"{"id":"99","code":200}"#,
        );
        assert_eq!(h.completes.map(|(k, _)| k), Some(CallKey::Rrpc("99".into())));
        let h = handle("/sys/pk/dn/thing/config/push_reply", r#"{"id":"1","code":200}"#);
        assert!(h.reply.is_none() && h.completes.is_none());
    }

    #[test]
    fn ntp_requests_are_answered_on_the_response_topic() {
        let h = handle("/ext/ntp/pk/dn/request", r#"{"deviceSendTime":"5"}"#);
        let r = h.reply.as_ref().expect("reply");
        assert_eq!(r.topic, "/ext/ntp/pk/dn/response");
        assert_eq!(
            reply_text(&h),
            r#"{"deviceSendTime":"5","serverRecvTime":"10","serverSendTime":"20"}"#
        );
        assert!(handle("/ext/ntp/pk/dn/request", "{}").problem.is_some());
    }

    #[test]
    fn custom_topics_are_only_observed() {
        let h = handle("/pk/dn/user/update", "anything");
        assert!(h.reply.is_none() && h.completes.is_none() && h.problem.is_none());
    }
}
