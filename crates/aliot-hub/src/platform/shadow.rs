//! The device shadow, device side (cloud-side spec §4.1, aliyun-protocol "Device shadow"): the
//! device publishes on `/shadow/update/{pk}/{dn}` and the platform answers on
//! `/shadow/get/{pk}/{dn}`:
//!
//! - `{"method":"get"}` → `{"method":"reply","payload":{"status":"success","state":{…},"metadata":{…}},"version":N,"timestamp":s}`
//!   (407 before the shadow's first write);
//! - `{"method":"update","state":{"reported":{…}},"version":N}` and
//!   `{"method":"delete","state":{"reported":{…}|"null"},"version":N}` →
//!   `{"method":"reply","payload":{"status":"success","version":N},"timestamp":s}`;
//! - errors → `{"method":"reply","payload":{"status":"error","content":{"errorcode":"403","errormessage":"…"}},"timestamp":s}`.
//!
//! Codes decided here from the message alone: 400 not a JSON object, 401 no method, 402 no
//! `state` object, 403 version missing or not an integer, 404 no `reported` (and no
//! `"desired":"null"`), 405 `reported` empty or not an object, 406 unknown method. From the
//! stored document (`registry::ShadowDocument::apply`): 407, 408, 409; the storage failing:
//! 500. A `clientToken` in the request is echoed in the reply.
//!
//! The application's desired update is pushed as `{"method":"control",…}` ([`control`]).

use aliot_protocol::topic::Topic;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::handling::{Deferred, Handling, PlatformReply};
use crate::registry::{Registry, ShadowChange, ShadowDocument};

/// The topic the platform answers and pushes shadow messages on.
pub(crate) fn get_topic(product_key: &str, device_name: &str) -> String {
    Topic::Shadow {
        action: "get".into(),
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
    }
    .to_string()
}

fn with_token(mut body: Value, client_token: Option<&Value>) -> Vec<u8> {
    if let (Some(token), Some(obj)) = (client_token, body.as_object_mut()) {
        obj.insert("clientToken".into(), token.clone());
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An error reply with the platform's shape.
pub(crate) fn error_reply(
    topic: &str,
    code: u16,
    message: &str,
    now_s: u64,
    client_token: Option<&Value>,
) -> PlatformReply {
    let body = json!({
        "method": "reply",
        "payload": {"status": "error", "content": {"errorcode": code.to_string(), "errormessage": message}},
        "timestamp": now_s,
    });
    PlatformReply {
        topic: topic.to_owned(),
        payload: with_token(body, client_token),
        code: u32::from(code),
    }
}

/// The document as the platform sends it in a `reply` to `get` or a `control` push.
fn document_body(method: &str, doc: &ShadowDocument) -> Value {
    json!({
        "method": method,
        "payload": {"status": "success", "state": doc.state, "metadata": doc.metadata},
        "version": doc.version,
        "timestamp": doc.timestamp,
    })
}

/// The `control` message pushed to the device after the application updated desired.
pub(crate) fn control(doc: &ShadowDocument) -> Vec<u8> {
    serde_json::to_vec(&document_body("control", doc)).unwrap_or_default()
}

/// A message on `/shadow/update/{pk}/{dn}`: an immediate error reply for a message that is
/// not a usable shadow request, or the request to carry out.
pub(crate) fn update(product_key: &str, device_name: &str, payload: &Bytes, now_s: u64) -> Handling {
    let reply_topic = get_topic(product_key, device_name);
    match parse(payload) {
        Ok((change, client_token)) => Handling {
            deferred: Some(Deferred::Shadow {
                change,
                client_token,
                reply_topic,
            }),
            ..Handling::default()
        },
        Err((code, message, client_token)) => Handling {
            reply: Some(error_reply(
                &reply_topic,
                code,
                &message,
                now_s,
                client_token.as_ref(),
            )),
            problem: Some(format!("shadow error {code}: {message}")),
            ..Handling::default()
        },
    }
}

type Parsed = (Option<ShadowChange>, Option<Value>);
type Refused = (u16, String, Option<Value>);

fn is_null_text(v: &Value) -> bool {
    v.as_str() == Some("null")
}

/// The change a shadow message asks for (`None`: get) and its clientToken, or its error code.
fn parse(payload: &[u8]) -> Result<Parsed, Refused> {
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(payload) else {
        return Err((400, "bad JSON: the message is not a JSON object".into(), None));
    };
    let token = msg.get("clientToken").cloned();
    let fail = |code: u16, message: &str| Err((code, message.to_owned(), token.clone()));
    let method = match msg.get("method") {
        None => return fail(401, "method missing"),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return fail(406, "method invalid"),
    };
    if !matches!(method, "get" | "update" | "delete") {
        return fail(406, "method invalid: get, update or delete");
    }
    if method == "get" {
        return Ok((None, token));
    }
    let Some(Value::Object(state)) = msg.get("state") else {
        return fail(402, "state missing");
    };
    let version = match msg.get("version") {
        Some(v) => match v.as_i64() {
            Some(v) if v >= -1 => v,
            _ => {
                return fail(
                    403,
                    "version invalid: an integer above the shadow's version, or -1",
                );
            }
        },
        None => return fail(403, "version missing"),
    };
    let reported = state.get("reported");
    let change = if method == "update" {
        let clear_desired = state.get("desired").is_some_and(is_null_text);
        let reported = match reported {
            None if clear_desired => None,
            None => return fail(404, "reported missing"),
            Some(Value::Object(m)) if m.is_empty() => return fail(405, "reported attribute empty"),
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return fail(405, "reported must be an object"),
        };
        ShadowChange::Report {
            reported,
            clear_desired,
            version,
        }
    } else {
        let attributes = match reported {
            None => return fail(404, "reported missing"),
            Some(v) if is_null_text(v) => None,
            Some(Value::Object(m)) if m.is_empty() => return fail(405, "reported attribute empty"),
            Some(Value::Object(m)) => Some(m.keys().cloned().collect()),
            Some(_) => return fail(405, "reported must be an object or \"null\""),
        };
        ShadowChange::Delete { attributes, version }
    };
    Ok((Some(change), token))
}

/// The answer when the registry could not take the request at all (its queue is full).
pub(crate) fn busy(deferred: &Deferred, now_s: u64) -> Option<PlatformReply> {
    match deferred {
        Deferred::Shadow {
            client_token,
            reply_topic,
            ..
        } => Some(error_reply(
            reply_topic,
            500,
            "system busy, retry later",
            now_s,
            client_token.as_ref(),
        )),
        _ => None,
    }
}

/// Carries out a shadow request for device `pk`/`dn` against the registry: the reply and the
/// problem to report.
pub(crate) async fn carry_out(
    registry: &dyn Registry,
    pk: &str,
    dn: &str,
    deferred: Deferred,
    now_s: u64,
) -> (Option<PlatformReply>, Option<String>) {
    let Deferred::Shadow {
        change,
        client_token,
        reply_topic,
    } = deferred
    else {
        return (None, None);
    };
    let token = client_token.as_ref();
    let refused = |code: u16, message: String| {
        (
            Some(error_reply(&reply_topic, code, &message, now_s, token)),
            Some(format!("shadow error {code}: {message}")),
        )
    };
    match change {
        None => match registry.shadow(pk, dn).await {
            Ok(Some(doc)) => {
                let body = document_body("reply", &doc);
                let reply = PlatformReply {
                    topic: reply_topic.clone(),
                    payload: with_token(body, token),
                    code: 200,
                };
                (Some(reply), None)
            }
            Ok(None) => refused(407, "shadow document empty".into()),
            Err(e) => refused(500, format!("server error: {e}")),
        },
        Some(change) => match registry.change_shadow(pk, dn, change, now_s).await {
            Ok(Ok(doc)) => {
                let mut payload = Map::new();
                payload.insert("status".into(), json!("success"));
                payload.insert("version".into(), json!(doc.version));
                let body = json!({"method": "reply", "payload": payload, "timestamp": now_s});
                let reply = PlatformReply {
                    topic: reply_topic.clone(),
                    payload: with_token(body, token),
                    code: 200,
                };
                (Some(reply), None)
            }
            Ok(Err(refusal)) => refused(refusal.code, refusal.message),
            Err(e) => refused(500, format!("server error: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(payload: &str) -> Option<u16> {
        parse(payload.as_bytes()).err().map(|(c, _, _)| c)
    }

    proptest::proptest! {
        /// Bad input: any bytes, and any JSON built from the fields a shadow message has, get an
        /// answer (a change or a code in 400..=406), never a panic.
        #[test]
        fn any_message_is_answered_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            method in proptest::option::of(proptest::prop_oneof!["get", "update", "delete", "x"]),
            version in proptest::option::of(proptest::prelude::any::<i64>()),
            reported in proptest::option::of(proptest::collection::btree_map("[a-c]{1,2}", 0i64..3, 0..4)),
            null_desired in proptest::prelude::any::<bool>(),
        ) {
            let _ = parse(&bytes);
            let mut msg = serde_json::Map::new();
            if let Some(m) = method { msg.insert("method".into(), Value::from(m)); }
            if let Some(v) = version { msg.insert("version".into(), Value::from(v)); }
            let mut state = serde_json::Map::new();
            if let Some(r) = reported { state.insert("reported".into(), serde_json::json!(r)); }
            if null_desired { state.insert("desired".into(), Value::from("null")); }
            msg.insert("state".into(), Value::Object(state));
            let text = Value::Object(msg).to_string();
            match parse(text.as_bytes()) {
                Ok((Some(change), _)) => {
                    let _ = ShadowDocument::apply(None, change.clone(), 1);
                    let doc = ShadowDocument::default();
                    let _ = ShadowDocument::apply(Some(&doc), change, 2);
                }
                Ok((None, _)) => {}
                Err((code, _, _)) => proptest::prop_assert!((400..=406).contains(&code), "{code}"),
            }
        }
    }

    #[test]
    fn each_malformed_message_gets_its_code() {
        assert_eq!(code_of("not json"), Some(400));
        assert_eq!(code_of("[1]"), Some(400));
        assert_eq!(code_of(r#"{"state":{}}"#), Some(401));
        assert_eq!(code_of(r#"{"method":"update","version":1}"#), Some(402));
        assert_eq!(
            code_of(r#"{"method":"update","state":{"reported":{"a":1}}}"#),
            Some(403)
        );
        assert_eq!(
            code_of(r#"{"method":"update","state":{"reported":{"a":1}},"version":"x"}"#),
            Some(403)
        );
        assert_eq!(
            code_of(r#"{"method":"update","state":{},"version":1}"#),
            Some(404)
        );
        assert_eq!(
            code_of(r#"{"method":"update","state":{"reported":{}},"version":1}"#),
            Some(405)
        );
        assert_eq!(code_of(r#"{"method":"frob"}"#), Some(406));
        assert_eq!(code_of(r#"{"method":"get"}"#), None);
        assert_eq!(
            code_of(r#"{"method":"update","state":{"desired":"null"},"version":2}"#),
            None
        );
        assert_eq!(
            code_of(r#"{"method":"delete","state":{"reported":"null"},"version":2}"#),
            None
        );
    }
}
