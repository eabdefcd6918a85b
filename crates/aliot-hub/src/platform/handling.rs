//! What the platform does with one uplink, as a value ([`Handling`]), and the reply machinery
//! every feature shares: a request is parsed, answered with `<topic>_reply` (unless `sys.ack`
//! is 0) carrying the request's id verbatim and its method, or with code 460 when the payload is
//! not a usable Alink request.

use aliot_protocol::alink::{self as proto, MessageId, Reply, Request};
use aliot_protocol::codes::alink as code;
use aliot_protocol::topic::{SysPath, reply_topic};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::registry::Records;
use crate::table::CallKey;

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
    /// This message answers a waiting call.
    pub(crate) completes: Option<(CallKey, Bytes)>,
    /// Property values to remember (merged per property), and how to answer if the registry
    /// refuses them.
    pub(crate) properties: Option<PropertyPost>,
    /// Something was wrong with the message (reported as an event, never closes the connection).
    pub(crate) problem: Option<String>,
    /// Work on what the registry keeps for the device (desired properties, shadow), carried
    /// out after this decision, in the order uplinks arrive, and answered once durable.
    pub(crate) deferred: Option<Deferred>,
    /// Rows for the device's history; the reply waits until they are durable.
    pub(crate) history: Option<HistoryPost>,
    /// What server-side subscription forwards of a thing-model post (when `Context::forward`).
    pub(crate) forward: Option<crate::subscription::forward::Draft>,
}

/// A request about the device's stored state, answered once the registry has done it.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// `thing.property.desired.get`: these identifiers.
    DesiredGet {
        /// The identifiers asked for.
        identifiers: Vec<String>,
        /// Where to answer (`None`: no reply wanted).
        reply_to: Option<ReplyTo>,
    },
    /// `thing.property.desired.delete`: identifier → expected version.
    DesiredDelete {
        /// The identifiers with their versions.
        items: std::collections::BTreeMap<String, Option<u64>>,
        /// Where to answer.
        reply_to: Option<ReplyTo>,
    },
    /// `/shadow/update/{pk}/{dn}`: `get` (no change), `update` or `delete`.
    Shadow {
        /// The change (`None`: `get`).
        change: Option<crate::registry::ShadowChange>,
        /// The request's `clientToken`, echoed.
        client_token: Option<Value>,
        /// The reply topic `/shadow/get/{pk}/{dn}`.
        reply_topic: String,
    },
}

/// The history rows of an uplink, and how to answer if they cannot be written.
#[derive(Debug)]
pub(crate) struct HistoryPost {
    /// The rows.
    pub(crate) records: Records,
    /// Where and how to answer a failed write; `None` when the device asked for no reply.
    pub(crate) reply_to: Option<ReplyTo>,
}

/// The values of a property post, to remember in the registry.
#[derive(Debug)]
pub(crate) struct PropertyPost {
    /// Identifier → value.
    pub(crate) values: Map<String, Value>,
    /// Where and how to answer if the registry refuses the values (`thing::refused`); `None`
    /// when the device asked for no reply.
    pub(crate) reply_to: Option<ReplyTo>,
}

/// What a later answer to a request needs from it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplyTo {
    /// The reply topic (`<topic>_reply`).
    pub(crate) topic: String,
    /// The request's id, echoed.
    pub(crate) id: MessageId,
    /// The request's method, or the one its topic implies.
    pub(crate) method: Option<String>,
}

impl Handling {
    /// Only a problem to report.
    pub(crate) fn problem(problem: impl Into<String>) -> Self {
        Self {
            problem: Some(problem.into()),
            ..Self::default()
        }
    }

    /// Only a waiting call to complete.
    pub(crate) fn completes(key: CallKey, payload: &Bytes) -> Self {
        Self {
            completes: Some((key, payload.clone())),
            ..Self::default()
        }
    }
}

/// When the platform answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context {
    /// When the uplink was received, epoch ms.
    pub(crate) recv_ms: u64,
    /// Now, epoch ms.
    pub(crate) now_ms: u64,
    /// Honour `sys.ack` = 0 (no reply), as the platform does.
    pub(crate) honour_sys_ack: bool,
    /// Some consumer group wants the product's device data: build the forwarded draft.
    pub(crate) forward: bool,
}

/// How a request is answered.
#[derive(Clone, Copy)]
pub(crate) enum Answer<'a> {
    /// Code 200 with empty data.
    Success,
    /// An Alink error code and message.
    Error(u32, &'a str),
}

/// The request's method, or the one the topic implies (the C SDK 4.x sends no method).
pub(crate) fn method_of(topic: &str, path: &SysPath) -> Option<String> {
    path.method().or_else(|| {
        // /sys/{pk}/{dn}/a/b/c → a.b.c
        let rest = topic.splitn(5, '/').nth(4)?;
        Some(rest.replace('/', "."))
    })
}

/// A parsed request on `topic`, or the handling of an unusable one: 460 when it has an id (its
/// own, or the empty id `""` when that id is beyond [`proto::MAX_ID_LEN`]: a reply never copies
/// what the cap refused), else an event only.
pub(crate) fn parse_request(topic: &str, path: &SysPath, payload: &Bytes) -> Result<Request, Box<Handling>> {
    Request::parse(payload).map_err(|e| {
        let problem = Some(format!("unusable Alink request: {e}"));
        Box::new(match proto::error_reply_id(payload) {
            Some(id) => {
                let reply = Reply::error(
                    id,
                    method_of(topic, path),
                    code::PARAM_ERROR,
                    format!("request parameter error: {e}"),
                );
                Handling {
                    reply: Some(PlatformReply {
                        topic: reply_topic(topic),
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
        })
    })
}

/// Puts `reply` in `handling` unless the request asked for no reply (`sys.ack` 0, when
/// honoured).
pub(crate) fn send_reply(
    handling: &mut Handling,
    topic: &str,
    request: &Request,
    reply: Reply,
    ctx: Context,
) {
    if request.wants_reply() || !ctx.honour_sys_ack {
        handling.reply = Some(PlatformReply {
            topic: reply_topic(topic),
            payload: reply.to_vec(),
            code: reply.code,
        });
    }
}

/// Answers a request on `topic` with `ans`.
pub(crate) fn answer(
    topic: &str,
    path: &SysPath,
    payload: &Bytes,
    ans: Answer<'_>,
    ctx: Context,
) -> Handling {
    let request = match parse_request(topic, path, payload) {
        Ok(r) => r,
        Err(handling) => return *handling,
    };
    let method = request.method.clone().or_else(|| method_of(topic, path));
    let reply = match ans {
        Answer::Error(c, msg) => Reply::error(request.id.clone(), method, c, msg),
        Answer::Success => Reply::success(request.id.clone(), method),
    };
    let mut handling = Handling::default();
    send_reply(&mut handling, topic, &request, reply, ctx);
    handling
}

/// A `/sys/{pk}/{dn}/…` request the hub does not serve (or a device publishing on a downlink
/// topic): an Alink error (6203), never silence. Replies nobody waits for are taken silently.
pub(crate) fn unknown(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
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
        ctx,
    )
}
