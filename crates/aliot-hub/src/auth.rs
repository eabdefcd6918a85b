//! CONNECT → verdict (spec §1, §3.1, §12): the clientId grammar, the username, securemode,
//! signmethod and keepalive checks of `aliot_protocol::auth`, then the registry lookup and the
//! signature check.
//!
//! | CONNACK | when |
//! |---|---|
//! | 1 | protocol level other than 3 (MQTT 3.1) or 4 (MQTT 3.1.1) (decided in `session`) |
//! | 2 | malformed clientId, unknown securemode, keepalive outside 30..1200 s |
//! | 4 | bad or missing username, unknown device, unsupported signmethod, missing password, signature mismatch |
//! | 5 | device disabled |

use aliot_protocol::auth::{ConnectFields, Refusal, RefusalReason, parse_connect};

use crate::directory::Directory;

/// A device that passed authentication.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) product_key: String,
    pub(crate) device_name: String,
    pub(crate) iot_id: String,
    /// `_ss=1`: system downlinks arrive without SUBSCRIBE.
    pub(crate) auto_subscribe: bool,
    /// `ext` bit 0: synchronous services use `/ext/rrpc/{id}/sys/...`.
    pub(crate) ext_rrpc: bool,
}

/// The verdict on one CONNECT. Never logs: the caller logs the refusal once, with its reason.
pub(crate) fn authenticate(
    directory: &dyn Directory,
    client_id: &str,
    username: Option<&str>,
    password: Option<&[u8]>,
    keep_alive: u16,
) -> Result<Authenticated, Refusal> {
    let fields = ConnectFields {
        client_id,
        username,
        password,
        keep_alive,
    };
    let request = parse_connect(&fields)?;
    let Some(device) = directory.device(&request.product_key, &request.device_name) else {
        return Err(Refusal::new(RefusalReason::UnknownDevice));
    };
    if !device.enabled {
        return Err(Refusal::new(RefusalReason::DeviceDisabled));
    }
    // parse_connect refuses a CONNECT without a password, so this is only a formality.
    let password = password.ok_or_else(|| Refusal::new(RefusalReason::MissingPassword))?;
    request.verify(&device.device_secret, password)?;
    Ok(Authenticated {
        auto_subscribe: request.auto_subscribe(),
        ext_rrpc: request.ext_rrpc(),
        product_key: request.product_key,
        device_name: request.device_name,
        iot_id: device.iot_id,
    })
}
