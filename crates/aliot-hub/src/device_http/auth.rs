//! `/auth/register/device`, `/auth/devicename` and `/auth/bootstrap` (spec §5.1, §5.3, §5.4):
//! form bodies, `{"code":200,"data":…,"message":"success"}` answers.
//!
//! Codes (decided where the platform documents none, spec §12): 460 for a missing or malformed
//! parameter; registration's own 6288/6289/6292/6600 (`platform::registration`); for
//! pre-authentication 401 when the device is unknown or the signature wrong (the same answer:
//! nothing is revealed) and 403 for a disabled device; 500 when the registry cannot store.

use aliot_protocol::SignMethod;
use aliot_protocol::codes::AuthCode;
use aliot_protocol::sign::{dynreg_content, sign_content};
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, State};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::DeviceHttpState;
use crate::http::Peer;
use crate::platform::registration::{self, UNKNOWN_SECRET};
use crate::platform::tokens::{TokenHolder, TokenKind};
use crate::registry::Enrolment;

/// `{"code":200,"data":…,"message":"success"}`.
fn success(data: Value) -> Response {
    Json(json!({"code": 200, "data": data, "message": "success"})).into_response()
}

/// A refusal: `{"code":…,"message":…}`.
#[derive(Debug)]
pub(super) struct Failure {
    code: u32,
    message: String,
}

fn failure(code: u32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        Json(json!({"code": self.code, "message": self.message})).into_response()
    }
}

/// A required form field: present and not empty.
fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Failure> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(failure(460, format!("parameter {name} is missing"))),
    }
}

/// The form, or the 460 that says why it is not one.
fn form<T>(body: Result<Form<T>, FormRejection>) -> Result<T, Failure> {
    body.map(|Form(f)| f)
        .map_err(|e| failure(460, format!("the body is not a valid form: {}", e.body_text())))
}

/// A `signmethod` field: absent → `default`; unknown → `unsupported`'s code.
fn sign_method(value: Option<&str>, default: SignMethod, unsupported: u32) -> Result<SignMethod, Failure> {
    match value {
        None | Some("") => Ok(default),
        Some(m) => m
            .parse()
            .map_err(|_| failure(unsupported, format!("sign method {m:?} is not supported"))),
    }
}

/// `POST /auth/register/device`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterForm {
    product_key: Option<String>,
    device_name: Option<String>,
    random: Option<String>,
    sign: Option<String>,
    #[serde(alias = "signmethod")]
    sign_method: Option<String>,
}

/// HTTPS dynamic registration of a device registered beforehand: its new deviceSecret.
pub(super) async fn register(
    State(state): State<DeviceHttpState>,
    Extension(Peer(peer)): Extension<Peer>,
    body: Result<Form<RegisterForm>, FormRejection>,
) -> Result<Response, Failure> {
    let f = form(body)?;
    let pk = required(&f.product_key, "productKey")?;
    let dn = required(&f.device_name, "deviceName")?;
    let random = required(&f.random, "random")?;
    let sign = required(&f.sign, "sign")?;
    // The SDKs send signMethod in either case; none → hmacsha256 (spec §5.1 examples).
    let method = sign_method(
        f.sign_method.as_deref(),
        SignMethod::HmacSha256,
        AuthCode::SignMethodUnsupported.code(),
    )?;
    let content = dynreg_content(dn, pk, random);
    let platform = &state.platform;
    let enrolled = registration::enrol(
        platform.registry().as_ref(),
        pk,
        dn,
        Enrolment::PreRegistered,
        |secret| method.verify_hex(secret.as_bytes(), content.as_bytes(), sign.as_bytes()),
    )
    .await;
    match enrolled {
        Ok(e) => {
            platform.registered(pk.to_owned(), dn.to_owned(), Enrolment::PreRegistered, "https");
            Ok(success(json!({
                "productKey": pk,
                "deviceName": dn,
                "deviceSecret": e.device.device_secret,
            })))
        }
        Err(refusal) => {
            let (code, message) = refusal.code();
            platform.registration_refused(pk, dn, peer.ip(), &message);
            Err(failure(code, message))
        }
    }
}

/// `POST /auth/devicename` and `POST /auth/bootstrap`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceForm {
    product_key: Option<String>,
    device_name: Option<String>,
    client_id: Option<String>,
    timestamp: Option<String>,
    #[serde(alias = "signMethod")]
    signmethod: Option<String>,
    sign: Option<String>,
}

/// HTTPS pre-authentication: the device proves its deviceSecret (the MQTT password's signature)
/// and gets an iotId, an iotToken and where to connect with them (`securemode=-1`).
pub(super) async fn pre_authenticate(
    State(state): State<DeviceHttpState>,
    body: Result<Form<DeviceForm>, FormRejection>,
) -> Result<Response, Failure> {
    let f = form(body)?;
    let pk = required(&f.product_key, "productKey")?;
    let dn = required(&f.device_name, "deviceName")?;
    let sign = required(&f.sign, "sign")?;
    let method = sign_method(f.signmethod.as_deref(), SignMethod::HmacMd5, 460)?;
    // The content of the MQTT password: clientId, deviceName, productKey, timestamp.
    let client_id = f.client_id.as_deref().unwrap_or_default();
    let timestamp = f.timestamp.as_deref().filter(|t| !t.is_empty());
    let content = sign_content(client_id, dn, pk, timestamp);
    let verify = |secret: &str| method.verify_hex(secret.as_bytes(), content.as_bytes(), sign.as_bytes());
    let platform = &state.platform;
    let refused = || {
        failure(
            AuthCode::AuthFailed.code(),
            "authentication failed: unknown device or wrong signature",
        )
    };
    let Some(device) = platform.registry().device_auth(pk, dn).await else {
        let _ = verify(UNKNOWN_SECRET);
        return Err(refused());
    };
    if !verify(&device.device_secret) {
        return Err(refused());
    }
    if !device.enabled {
        return Err(failure(AuthCode::DeviceDisabled.code(), "the device is disabled"));
    }
    let holder = TokenHolder {
        product_key: pk.to_owned(),
        device_name: dn.to_owned(),
        iot_id: device.iot_id.clone(),
    };
    let token = platform.issue_token(TokenKind::Mqtt, holder);
    Ok(success(json!({
        "iotId": device.iot_id,
        "iotToken": token,
        "resources": {"mqtt": state.mqtt},
    })))
}

/// Bootstrap: where a device (of a known product) connects.
pub(super) async fn bootstrap(
    State(state): State<DeviceHttpState>,
    body: Result<Form<DeviceForm>, FormRejection>,
) -> Result<Response, Failure> {
    let f = form(body)?;
    let pk = required(&f.product_key, "productKey")?;
    let dn = required(&f.device_name, "deviceName")?;
    if state.platform.registry().product_auth(pk).await.is_none() {
        return Err(failure(460, format!("product {pk} not found")));
    }
    tracing::debug!(product_key = pk, device_name = dn, "bootstrap answered");
    Ok(success(json!({"resources": {"mqtt": state.mqtt}})))
}
