//! CONNECT → verdict (spec §1, §3.1, §12): the clientId grammar, the username, securemode,
//! signmethod and keepalive checks of `aliot_protocol::auth`, then the registry lookup and the
//! signature check, then (only for a proven signature) the device's state. The CONNACK codes
//! are listed in `engine::connack`.

use aliot_protocol::auth::{ConnectFields, Refusal, RefusalReason, parse_connect};

use crate::engine::{ConnectRequest, Principal, Refused};
use crate::registry::Registry;

/// The HMAC key of the dummy check for devices that do not exist (as long as a real secret, so
/// the cost is the same).
const UNKNOWN_DEVICE_SECRET: &str = "00000000000000000000000000000000";

/// The verdict on one CONNECT. Never logs: the engine logs the refusal once, with its reason.
pub(crate) async fn authenticate(
    registry: &dyn Registry,
    connect: ConnectRequest<'_>,
) -> Result<Principal, Refused> {
    verdict(registry, connect).await.map_err(|refusal| Refused {
        code: refusal.code.code(),
        reason: refusal.reason.to_string(),
    })
}

async fn verdict(registry: &dyn Registry, connect: ConnectRequest<'_>) -> Result<Principal, Refusal> {
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
    // The signature is checked before anything about the device is revealed: an unknown device
    // costs the same HMAC (with a secret nobody has) and gets the same code 4 as a wrong
    // signature, and only a caller who proves the secret learns that the device is disabled.
    let Some(device) = registry
        .device_auth(&request.product_key, &request.device_name)
        .await
    else {
        let _ = request.verify(UNKNOWN_DEVICE_SECRET, password);
        return Err(Refusal::new(RefusalReason::UnknownDevice));
    };
    request.verify(&device.device_secret, password)?;
    if !device.enabled {
        return Err(Refusal::new(RefusalReason::DeviceDisabled));
    }
    Ok(Principal {
        auto_subscribe: request.auto_subscribe(),
        ext_rrpc: request.ext_rrpc(),
        product_key: request.product_key,
        device_name: request.device_name,
        iot_id: device.iot_id,
    })
}
