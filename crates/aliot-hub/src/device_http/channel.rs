//! The HTTP data channel (spec §5.5): `POST /auth` (JSON) answers a token for the device's
//! signature; `POST /topic/{topic}` with that token in the `password` header is one uplink,
//! handled as an MQTT uplink at QoS 0 (the device's topic rights, events, remembered
//! properties); the platform's reply has nowhere to go over HTTP and is dropped.
//!
//! Codes (the platform's): 0 success, 10000 unknown error, 10001 bad parameter, 20000 auth
//! failed, 20001 token expired, 20002 token missing, 20003 token invalid, 30001 publish failed
//! (here: a topic outside the device's).

use std::sync::atomic::{AtomicU64, Ordering};

use aliot_protocol::SignMethod;
use aliot_protocol::sign::sign_content;
use aliot_protocol::topic::{Access, device_may_access, valid_topic};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::DeviceHttpState;
use crate::clock::now_ms;
use crate::http::Peer;
use crate::platform::registration::UNKNOWN_SECRET;
use crate::platform::tokens::{TokenHolder, TokenKind, TokenRefusal};

/// The `messageId` of the next accepted uplink.
static NEXT_MESSAGE_ID: AtomicU64 = AtomicU64::new(1);

fn answer(code: u32, message: &str, info: Option<Value>) -> Response {
    let mut body = json!({"code": code, "message": message});
    if let Some(info) = info {
        body["info"] = info;
    }
    Json(body).into_response()
}

/// `POST /auth`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuthRequest {
    product_key: Option<String>,
    device_name: Option<String>,
    client_id: Option<String>,
    #[serde(alias = "signMethod")]
    signmethod: Option<String>,
    sign: Option<String>,
    /// A number or a string, as SDKs send it.
    timestamp: Option<Value>,
}

/// The token of the HTTP data channel, for the device's signature (the MQTT password's: content
/// clientId, deviceName, productKey and, when sent, timestamp).
pub(super) async fn authenticate(
    State(state): State<DeviceHttpState>,
    body: Result<Json<AuthRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(r)) = body else {
        return answer(10001, "the body is not the JSON of /auth", None);
    };
    let (Some(pk), Some(dn), Some(sign)) = (
        r.product_key.as_deref().filter(|s| !s.is_empty()),
        r.device_name.as_deref().filter(|s| !s.is_empty()),
        r.sign.as_deref().filter(|s| !s.is_empty()),
    ) else {
        return answer(10001, "productKey, deviceName and sign are required", None);
    };
    let method = match r.signmethod.as_deref() {
        None | Some("") => SignMethod::HmacMd5,
        Some(m) => match m.parse::<SignMethod>() {
            Ok(m) => m,
            Err(_) => return answer(10001, "signmethod is not hmacmd5, hmacsha1 or hmacsha256", None),
        },
    };
    let timestamp = match &r.timestamp {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return answer(10001, "timestamp is not a number", None),
    };
    let client_id = r.client_id.as_deref().unwrap_or_default();
    let content = sign_content(client_id, dn, pk, timestamp.as_deref());
    let verify = |secret: &str| method.verify_hex(secret.as_bytes(), content.as_bytes(), sign.as_bytes());
    let platform = &state.platform;
    let Some(device) = platform.registry().device_auth(pk, dn).await else {
        let _ = verify(UNKNOWN_SECRET);
        return answer(20000, "auth failed: unknown device or wrong signature", None);
    };
    if !verify(&device.device_secret) {
        return answer(20000, "auth failed: unknown device or wrong signature", None);
    }
    if !device.enabled {
        return answer(20000, "auth failed: the device is disabled", None);
    }
    let holder = TokenHolder {
        product_key: pk.to_owned(),
        device_name: dn.to_owned(),
        iot_id: device.iot_id,
    };
    let token = platform.issue_token(TokenKind::HttpChannel, holder);
    answer(0, "success", Some(json!({"token": token})))
}

/// One uplink: `POST /topic/{topic}`, the token in the `password` header, the payload as the
/// body.
pub(super) async fn publish(
    State(state): State<DeviceHttpState>,
    Extension(Peer(peer)): Extension<Peer>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    payload: Bytes,
) -> Response {
    let Some(token) = headers
        .get("password")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    else {
        return answer(
            20002,
            "token is null: send the token of /auth in the password header",
            None,
        );
    };
    let platform = &state.platform;
    let holder = match platform.tokens().check(TokenKind::HttpChannel, token, now_ms()) {
        Ok(h) => h,
        Err(TokenRefusal::Expired) => return answer(20001, "token expired: authenticate again", None),
        Err(TokenRefusal::Unknown) => return answer(20003, "token invalid: authenticate again", None),
    };
    // The device may have been disabled or deleted since (its tokens are revoked then; this
    // also covers a registry that changed underneath).
    match platform
        .registry()
        .device_auth(&holder.product_key, &holder.device_name)
        .await
    {
        Some(d) if d.enabled => {}
        _ => return answer(20003, "token invalid: the device is disabled or deleted", None),
    }
    let topic = format!("/{topic}");
    if !valid_topic(&topic)
        || !device_may_access(&holder.product_key, &holder.device_name, &topic, Access::Publish)
    {
        return answer(
            30001,
            "publish failed: the topic is not one the device may publish to",
            None,
        );
    }
    let durable = platform.http_uplink(
        &holder.product_key,
        &holder.device_name,
        peer.ip(),
        &topic,
        &payload,
    );
    // Acknowledged = durable: the answer waits for the uplink's history rows.
    if let Some(wait) = durable
        && let Err(e) = wait.await
    {
        tracing::warn!(error = %e, "history rows of an HTTP uplink not saved");
        return answer(10000, "system error: the data was not saved", None);
    }
    let id = NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed);
    answer(0, "success", Some(json!({"messageId": id})))
}
