//! CONNACK return codes (spec §3.1), Alink reply codes (spec §4.2) and the HTTPS auth service's
//! codes (spec §5.1, §5.3), with Aliyun's causes and a one-line fix hint each.

use std::fmt;

/// MQTT 3.1.1 CONNACK return codes as the platform uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnackCode {
    /// 0: accepted.
    Accepted,
    /// 1: the server does not support the requested MQTT version.
    UnacceptableProtocolVersion,
    /// 2: the clientId is not in Aliyun's format (too long, malformed parameters, bad securemode,
    /// keepalive out of range).
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: bad username or password: unknown device, wrong signature, unsupported signmethod.
    BadUsernameOrPassword,
    /// 5: not authorized: the device is disabled or deleted.
    NotAuthorized,
}

impl ConnackCode {
    /// All codes, in numeric order.
    pub const ALL: [ConnackCode; 6] = [
        ConnackCode::Accepted,
        ConnackCode::UnacceptableProtocolVersion,
        ConnackCode::IdentifierRejected,
        ConnackCode::ServerUnavailable,
        ConnackCode::BadUsernameOrPassword,
        ConnackCode::NotAuthorized,
    ];

    /// The return code byte.
    pub fn code(self) -> u8 {
        match self {
            ConnackCode::Accepted => 0,
            ConnackCode::UnacceptableProtocolVersion => 1,
            ConnackCode::IdentifierRejected => 2,
            ConnackCode::ServerUnavailable => 3,
            ConnackCode::BadUsernameOrPassword => 4,
            ConnackCode::NotAuthorized => 5,
        }
    }

    /// The code for a return code byte, `None` for values outside 0..=5.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The MQTT name of the code.
    pub fn name(self) -> &'static str {
        match self {
            ConnackCode::Accepted => "connection accepted",
            ConnackCode::UnacceptableProtocolVersion => "unacceptable protocol version",
            ConnackCode::IdentifierRejected => "identifier rejected",
            ConnackCode::ServerUnavailable => "server unavailable",
            ConnackCode::BadUsernameOrPassword => "bad user name or password",
            ConnackCode::NotAuthorized => "not authorized",
        }
    }

    /// Aliyun's stated cause (spec §3.1, D-CONNACK).
    pub fn cause(self) -> &'static str {
        match self {
            ConnackCode::Accepted => "authentication succeeded",
            ConnackCode::UnacceptableProtocolVersion => {
                "the server does not support the requested MQTT version"
            }
            ConnackCode::IdentifierRejected => {
                "the clientId is not in Aliyun's format: too long, malformed extension parameters, an unknown \
                 securemode, or a keepalive outside 30..1200 s"
            }
            ConnackCode::ServerUnavailable => "the network is fine but the MQTT service is unavailable",
            ConnackCode::BadUsernameOrPassword => {
                "username or password invalid: unknown device, signature mismatch or unsupported signmethod"
            }
            ConnackCode::NotAuthorized => "the device is not authorized: disabled or deleted",
        }
    }

    /// What to do about it, in one line.
    pub fn hint(self) -> &'static str {
        match self {
            ConnackCode::Accepted => "nothing to fix",
            ConnackCode::UnacceptableProtocolVersion => "connect with MQTT 3.1.1 (protocol level 4) or 3.1",
            ConnackCode::IdentifierRejected => {
                "build the clientId as prefix|securemode=3,signmethod=hmacsha1,timestamp=...| with a prefix of at \
                 most 64 characters and keepalive 30..1200 s"
            }
            ConnackCode::ServerUnavailable => "retry later with backoff; check the endpoint and the instance",
            ConnackCode::BadUsernameOrPassword => {
                "run `aliot verify` with your clientId, username, password and secret to see which byte is wrong"
            }
            ConnackCode::NotAuthorized => "enable the device in the console (or `aliot admin device enable`)",
        }
    }

    /// The cause of a refused dynamic registration (spec §5.2; the platform's rules as the hub
    /// applies them), which differ from a login's ([`ConnackCode::cause`]).
    pub fn registration_cause(self) -> &'static str {
        match self {
            ConnackCode::IdentifierRejected => {
                "the registration clientId is malformed: no random, or parameters the platform does not accept"
            }
            ConnackCode::ServerUnavailable => "the platform could not store the registration",
            ConnackCode::BadUsernameOrPassword => {
                "the signature does not match the productSecret, the productKey is unknown, or (authType=register) \
                 the device was not registered beforehand"
            }
            ConnackCode::NotAuthorized => {
                "dynamic registration is off for the product, the device has already logged in once (it is \
                 activated), or the device is disabled"
            }
            other => other.cause(),
        }
    }

    /// What to do about a refused dynamic registration, in one line.
    pub fn registration_hint(self) -> &'static str {
        match self {
            ConnackCode::IdentifierRejected => {
                "send dn.pk|random=...,authType=register|regnwl,securemode=2,signmethod=hmacsha256|"
            }
            ConnackCode::ServerUnavailable => "retry later",
            ConnackCode::BadUsernameOrPassword => {
                "check the productKey and productSecret; to register a device nobody created, register without \
                 pre-registration (regnwl)"
            }
            ConnackCode::NotAuthorized => {
                "turn the product's dynamic registration on (`aliot admin product update --product-key PK \
                 --dynamic-registration on`); an activated device keeps the credentials it has (reset it to register \
                 again); enable a disabled device"
            }
            other => other.hint(),
        }
    }
}

impl fmt::Display for ConnackCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// Alink reply codes (spec §4.2) used by aliot, as constants.
pub mod alink {
    /// Success.
    pub const SUCCESS: u32 = 200;
    /// Request error.
    pub const REQUEST_ERROR: u32 = 400;
    /// Too many requests (throttled).
    pub const TOO_MANY_REQUESTS: u32 = 429;
    /// Request parameter error (empty, bad format, too many).
    pub const PARAM_ERROR: u32 = 460;
    /// Unknown system error.
    pub const SYSTEM_ERROR: u32 = 500;
    /// Device not found.
    pub const DEVICE_NOT_FOUND: u32 = 6100;
    /// Too many properties reported (max 200).
    pub const TOO_MANY_PROPERTIES: u32 = 6106;
    /// Topic parse failed (an uplink to a method the platform does not know).
    pub const TOPIC_PARSE_FAILED: u32 = 6203;
    /// Device disabled.
    pub const DEVICE_DISABLED: u32 = 6204;
    /// Topic illegal.
    pub const TOPIC_ILLEGAL: u32 = 6813;

    /// The meaning and a fix hint for an Alink reply code; `None` for codes aliot does not know.
    pub fn describe(code: u32) -> Option<(&'static str, &'static str)> {
        Some(match code {
            200 => ("success", "nothing to fix"),
            400 => ("request error", "check the request against the Alink envelope"),
            401 => ("topo add: signature check failed", "re-sign the sub-device login"),
            429 => (
                "too many requests",
                "slow down; the platform throttles per device",
            ),
            460 => (
                "request parameter error",
                "send valid JSON with id (decimal string), version \"1.0\", params and method",
            ),
            500 => ("unknown system error", "retry later"),
            6100 => ("device not found", "check productKey and deviceName"),
            6104 => ("too many properties in desired get/delete", "ask for at most 200"),
            6106 => (
                "too many properties reported",
                "post at most 200 properties at once",
            ),
            6203 => (
                "topic parse failed",
                "use a topic and method from the Alink topic list",
            ),
            6204 => ("device disabled", "enable the device"),
            6207 => ("TSL validation failed", "check property identifiers and types"),
            6813 => ("topic illegal", "publish only on the device's own topics"),
            _ => return None,
        })
    }
}

/// The codes of the platform's HTTPS auth service (`iot-auth.{region}.aliyuncs.com`, spec §5.1
/// and §5.3): the `code` of `{"code":…,"message":…}` answered to HTTPS dynamic registration
/// (`/auth/register/device`) and pre-authentication (`/auth/devicename`), each with its meaning
/// and the fix. The one table of these codes: the hub answers them, the SDK reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthCode {
    /// 200: success.
    Success,
    /// 401: pre-authentication failed: unknown device or wrong signature.
    AuthFailed,
    /// 403: pre-authentication of a disabled device.
    DeviceDisabled,
    /// 460: a request parameter is missing or malformed (for registration also: the device was
    /// not created beforehand).
    ParamError,
    /// 500: the platform's own failure.
    SystemError,
    /// 6288: the product does not allow dynamic registration.
    RegistrationOff,
    /// 6289: the device is already activated (it has logged in): it cannot register again.
    AlreadyActivated,
    /// 6292: the `signMethod` is not one the platform knows.
    SignMethodUnsupported,
    /// 6600: the signature does not match the productSecret (or the product is unknown).
    SignatureMismatch,
    /// Any other code.
    Other(u32),
}

impl AuthCode {
    /// The code of a number.
    pub fn from_code(code: u32) -> Self {
        match code {
            200 => AuthCode::Success,
            401 => AuthCode::AuthFailed,
            403 => AuthCode::DeviceDisabled,
            460 => AuthCode::ParamError,
            500 => AuthCode::SystemError,
            6288 => AuthCode::RegistrationOff,
            6289 => AuthCode::AlreadyActivated,
            6292 => AuthCode::SignMethodUnsupported,
            6600 => AuthCode::SignatureMismatch,
            other => AuthCode::Other(other),
        }
    }

    /// The number.
    pub fn code(self) -> u32 {
        match self {
            AuthCode::Success => 200,
            AuthCode::AuthFailed => 401,
            AuthCode::DeviceDisabled => 403,
            AuthCode::ParamError => 460,
            AuthCode::SystemError => 500,
            AuthCode::RegistrationOff => 6288,
            AuthCode::AlreadyActivated => 6289,
            AuthCode::SignMethodUnsupported => 6292,
            AuthCode::SignatureMismatch => 6600,
            AuthCode::Other(code) => code,
        }
    }

    /// What the code means.
    pub fn meaning(self) -> &'static str {
        match self {
            AuthCode::Success => "success",
            AuthCode::AuthFailed => "authentication failed: unknown device or wrong signature",
            AuthCode::DeviceDisabled => "the device is disabled",
            AuthCode::ParamError => "request parameter error",
            AuthCode::SystemError => "the platform failed",
            AuthCode::RegistrationOff => "the product does not allow dynamic registration",
            AuthCode::AlreadyActivated => "the device is already activated",
            AuthCode::SignMethodUnsupported => "the sign method is not supported",
            AuthCode::SignatureMismatch => "the signature does not match the productSecret",
            AuthCode::Other(_) => "unknown code",
        }
    }

    /// How to fix it.
    pub fn hint(self) -> &'static str {
        match self {
            AuthCode::Success => "nothing to fix",
            AuthCode::AuthFailed => "check productKey, deviceName and deviceSecret (`aliot verify`)",
            AuthCode::DeviceDisabled => "enable the device",
            AuthCode::ParamError => {
                "check productKey and deviceName; register only a device created beforehand (else register over MQTT without pre-registration)"
            }
            AuthCode::SystemError => "retry later",
            AuthCode::RegistrationOff => {
                "turn the product's dynamic registration on (`aliot admin product update --dynamic-registration on` on the hub)"
            }
            AuthCode::AlreadyActivated => {
                "log in with the deviceSecret obtained before, or reset the device to register it again"
            }
            AuthCode::SignMethodUnsupported => "sign with hmacsha256, hmacsha1 or hmacmd5",
            AuthCode::SignatureMismatch => "check the productKey and the productSecret",
            AuthCode::Other(_) => "see the platform's message",
        }
    }
}

impl fmt::Display for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_byte() {
        for c in ConnackCode::ALL {
            assert_eq!(ConnackCode::from_code(c.code()), Some(c));
            assert!(!c.cause().is_empty() && !c.hint().is_empty());
        }
        assert_eq!(ConnackCode::from_code(6), None);
        for c in ConnackCode::ALL {
            assert!(!c.registration_cause().is_empty() && !c.registration_hint().is_empty());
        }
        assert!(
            ConnackCode::NotAuthorized
                .registration_cause()
                .contains("dynamic registration is off")
        );
    }

    #[test]
    fn auth_codes_round_trip_through_their_number() {
        for n in [200, 401, 403, 460, 500, 6288, 6289, 6292, 6600, 7] {
            let c = AuthCode::from_code(n);
            assert_eq!(c.code(), n);
            assert!(!c.meaning().is_empty() && !c.hint().is_empty());
        }
        assert_eq!(AuthCode::from_code(6288), AuthCode::RegistrationOff);
        assert_eq!(AuthCode::Other(7).to_string(), "7 (unknown code)");
    }
}
