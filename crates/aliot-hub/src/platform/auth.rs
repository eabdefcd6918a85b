//! CONNECT → verdict (spec §1, §3.1, §5.2, §12): the clientId grammar, the username,
//! securemode, signmethod and keepalive checks of `aliot_protocol::auth`, then the registry
//! lookup and the signature check, then (only for a proven signature) the device's state. The
//! CONNACK codes are listed in `engine::connack`.
//!
//! Four ways in, by the clientId's `authType` ([`AuthType`]): the deviceSecret's signature (no
//! `authType`); MQTT dynamic registration (`register`, `regnwl`), signed with the productSecret,
//! answered with credentials on `/ext/register` or `/ext/regnwl` after which the hub closes the
//! connection (spec §12 Q9); and the deviceToken login (`connwl`).
//!
//! Refusals of a registration: a wrong signature, an unknown product or (for `register`) an
//! unknown device → CONNACK 4, as any bad credential; a product that does not allow dynamic
//! registration, an activated device (the platform's 6289) or a disabled one → 5; the registry
//! failing to store it → 3. Nothing is answered before it is stored.

use aliot_protocol::auth::{
    AuthType, ConnectFields, ConnectRequest as Request, Refusal, RefusalReason, parse_connect,
};
use aliot_protocol::register::{
    REGISTER_TOPIC, REGNWL_TOPIC, Registered, RegisteredWithToken, token_client_id,
};

use super::registration::{self, UNKNOWN_SECRET as UNKNOWN_DEVICE_SECRET};
use super::tokens::{TokenKind, Tokens};
use crate::clock::now_ms;
use crate::engine::{ConnectRequest, Principal, Refused};
use crate::registry::{Enrolment, Registry};

/// What an authenticated CONNECT gets.
pub(crate) enum Verdict {
    /// A session.
    Login(Principal),
    /// A dynamic registration, stored: the answer to publish before closing.
    Registered {
        product_key: String,
        device_name: String,
        how: Enrolment,
        topic: &'static str,
        payload: Vec<u8>,
    },
}

/// The verdict on one CONNECT. Never logs: the engine logs the refusal once, with its reason.
pub(crate) async fn authenticate(
    registry: &dyn Registry,
    tokens: &Tokens,
    connect: ConnectRequest<'_>,
) -> Result<Verdict, Refused> {
    verdict(registry, tokens, connect)
        .await
        .map_err(|refusal| Refused {
            code: refusal.code.code(),
            reason: refusal.reason.to_string(),
        })
}

async fn verdict(
    registry: &dyn Registry,
    tokens: &Tokens,
    connect: ConnectRequest<'_>,
) -> Result<Verdict, Refusal> {
    let fields = ConnectFields {
        client_id: connect.client_id,
        username: connect.username,
        password: connect.password,
        keep_alive: connect.keep_alive,
    };
    let request = parse_connect(&fields)?;
    // parse_connect refuses a CONNECT without a password, so this is only a formality.
    let password = connect
        .password
        .ok_or_else(|| Refusal::new(RefusalReason::MissingPassword))?;
    let how = match request.auth {
        AuthType::Register { .. } => Enrolment::PreRegistered,
        AuthType::RegisterNoPreRegistration { .. } => Enrolment::NoPreRegistration,
        AuthType::DeviceSecret | AuthType::DeviceToken => return login(registry, request, password).await,
        AuthType::IotToken { .. } => return token_login(registry, tokens, request, password).await,
        _ => {
            return Err(Refusal::new(RefusalReason::UnsupportedAuthType(
                request.client_id.get("authType").unwrap_or_default().to_owned(),
            )));
        }
    };
    register(registry, request, password, how).await
}

/// A login with the deviceSecret's signature or with the deviceToken.
async fn login(registry: &dyn Registry, request: Request, password: &[u8]) -> Result<Verdict, Refusal> {
    // The signature is checked before anything about the device is revealed: an unknown device
    // costs the same HMAC (with a secret nobody has) and gets the same code 4 as a wrong
    // signature, and only a caller who proves the secret learns that the device is disabled.
    let (pk, dn) = (request.product_key.as_str(), request.device_name.as_str());
    let (device, token) = match request.auth {
        AuthType::DeviceToken => (
            registry.device_auth(pk, dn).await,
            registry.device_token(pk, dn).await,
        ),
        _ => (registry.device_auth(pk, dn).await, None),
    };
    let Some(device) = device else {
        let _ = request.verify(UNKNOWN_DEVICE_SECRET, password);
        return Err(Refusal::new(RefusalReason::UnknownDevice));
    };
    match request.auth {
        AuthType::DeviceToken => match token {
            Some(token) => request.verify(&token, password)?,
            // A device that registered without a token has no token login.
            None => return Err(Refusal::new(RefusalReason::SignatureMismatch)),
        },
        _ => request.verify(&device.device_secret, password)?,
    }
    if !device.enabled {
        return Err(Refusal::new(RefusalReason::DeviceDisabled));
    }
    Ok(Verdict::Login(Principal {
        auto_subscribe: request.auto_subscribe(),
        ext_rrpc: request.ext_rrpc(),
        product_key: request.product_key,
        device_name: request.device_name,
        iot_id: device.iot_id,
    }))
}

/// The login after HTTPS pre-authentication: username the iotId, password the iotToken.
async fn token_login(
    registry: &dyn Registry,
    tokens: &Tokens,
    request: Request,
    password: &[u8],
) -> Result<Verdict, Refusal> {
    let AuthType::IotToken { iot_id } = &request.auth else {
        return Err(Refusal::new(RefusalReason::SignatureMismatch));
    };
    let token = std::str::from_utf8(password).unwrap_or_default();
    let holder = tokens
        .check(TokenKind::Mqtt, token, now_ms())
        .map_err(|_| Refusal::new(RefusalReason::SignatureMismatch))?;
    if holder.iot_id != *iot_id {
        return Err(Refusal::new(RefusalReason::SignatureMismatch));
    }
    let Some(device) = registry
        .device_auth(&holder.product_key, &holder.device_name)
        .await
    else {
        return Err(Refusal::new(RefusalReason::UnknownDevice));
    };
    if !device.enabled {
        return Err(Refusal::new(RefusalReason::DeviceDisabled));
    }
    Ok(Verdict::Login(Principal {
        auto_subscribe: request.auto_subscribe(),
        ext_rrpc: request.ext_rrpc(),
        product_key: holder.product_key,
        device_name: holder.device_name,
        iot_id: device.iot_id,
    }))
}

/// MQTT dynamic registration ([`registration::enrol`]); the answer once it is stored.
async fn register(
    registry: &dyn Registry,
    request: Request,
    password: &[u8],
    how: Enrolment,
) -> Result<Verdict, Refusal> {
    let (pk, dn) = (request.product_key.as_str(), request.device_name.as_str());
    let enrolled = registration::enrol(registry, pk, dn, how, |secret| {
        request.verify(secret, password).is_ok()
    })
    .await
    .map_err(|r| Refusal::new(r.connack()))?;
    let (topic, payload) = match (how, enrolled.device_token) {
        (Enrolment::NoPreRegistration, Some(device_token)) => (
            REGNWL_TOPIC,
            RegisteredWithToken {
                client_id: token_client_id(pk, dn),
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
                device_token,
            }
            .to_json(),
        ),
        _ => (
            REGISTER_TOPIC,
            Registered {
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
                device_secret: enrolled.device.device_secret,
            }
            .to_json(),
        ),
    };
    Ok(Verdict::Registered {
        product_key: request.product_key,
        device_name: request.device_name,
        how,
        topic,
        payload,
    })
}
