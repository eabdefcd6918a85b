//! CONNACK return codes (spec §3.1), Alink reply codes (spec §4.2), the thing model's validation
//! rules (codes 63xx, cloud-side spec §3.3) and the HTTPS auth service's codes (spec §5.1, §5.3),
//! with Aliyun's causes and a one-line fix hint each.

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
    /// Too many properties in a desired get or delete (max 200).
    pub const TOO_MANY_DESIRED: u32 = 6104;
    /// Desired property query failed.
    pub const DESIRED_QUERY_FAILED: u32 = 6661;
    /// Too many properties reported (max 200).
    pub const TOO_MANY_PROPERTIES: u32 = 6106;
    /// Topic parse failed (an uplink to a method the platform does not know).
    pub const TOPIC_PARSE_FAILED: u32 = 6203;
    /// Device disabled.
    pub const DEVICE_DISABLED: u32 = 6204;
    /// Topic illegal.
    pub const TOPIC_ILLEGAL: u32 = 6813;
    /// Payload not JSON (thing model).
    pub const NOT_JSON: u32 = 6207;

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
            6207 => ("payload is not JSON", "send a JSON object"),
            6661 => ("desired property query failed", "retry later"),
            6300 => (
                "TSL: method not in the thing model",
                "post only events and services the TSL defines",
            ),
            6301 => ("TSL: the value of an array is not an array", "send a JSON array"),
            6302 => (
                "TSL: a required service input is missing",
                "send every inputData parameter",
            ),
            6304 => (
                "TSL: parameter not in the thing model or struct",
                "use the identifiers of the TSL (`fb:Id` for a custom module)",
            ),
            6306 => (
                "TSL: not a 32-bit integer, or out of min..max",
                "send a JSON integer within the specs",
            ),
            6307 => (
                "TSL: not a 32-bit float, or out of min..max",
                "send a JSON number within the specs",
            ),
            6308 => (
                "TSL: bool is not 0 or 1",
                "send the integer 0 or 1, not true/false",
            ),
            6309 => (
                "TSL: enum value not defined",
                "send one of the enum's integer keys",
            ),
            6310 => (
                "TSL: text is not a string, or too long",
                "send a string within specs.length bytes",
            ),
            6311 => (
                "TSL: date is not a string of UTC milliseconds",
                "send e.g. \"1510292697470\"",
            ),
            6312 => (
                "TSL: struct is not an object",
                "send an object of the struct's fields",
            ),
            6313 | 6314 | 6316 | 6323 | 6329 => ("TSL: platform system error", "retry later"),
            6317 => ("TSL: a data type lacks its type or specs", "fix the thing model"),
            6318 => ("TSL: the thing model could not be parsed", "fix the thing model"),
            6320 => (
                "TSL: property not in the device's thing model",
                "use a property the TSL defines",
            ),
            6321 => ("TSL: empty identifier", "give every parameter an identifier"),
            6322 => (
                "TSL: not a double, or out of min..max",
                "send a JSON number within the specs",
            ),
            6324 => (
                "TSL: array invalid or too many elements",
                "send at most specs.size elements",
            ),
            6325 => (
                "TSL: unsupported array element type",
                "use int, float, double, text or struct items",
            ),
            6326 => (
                "TSL: bad time field",
                "send time as UTC milliseconds, at most 24 h ahead",
            ),
            6328 => ("TSL: params is not an array", "send a JSON array"),
            6710 => (
                "remote config not found",
                "upload a configuration for the product (`aliot admin product config upload`)",
            ),
            6713 => (
                "remote config is switched off for the product",
                "switch it on (`aliot admin product config enable`)",
            ),
            6813 => ("topic illegal", "publish only on the device's own topics"),
            _ => return None,
        })
    }
}

/// A rule of the thing model's validation (cloud-side spec §3.3): its Alink code (63xx) and the
/// platform's message. The one table of these rules: the `tsl` module applies them, the hub will
/// answer them. Several rules share a code (6306 is both "not an int" and "out of range").
///
/// Messages marked `[V]` in the source are the platform's captured wording; the others follow the
/// same `tsl parse: …` style (the platform's text for them was not found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TslCode {
    /// 6300: an event or service the thing model does not define.
    MethodNotExist,
    /// 6301: the TSL says array, the value is not an array.
    NotArray,
    /// 6302: a service input the TSL defines is missing.
    RequiredParamMissing,
    /// 6304: an identifier not in the thing model (or a field not in the struct).
    ParamsNotExist,
    /// 6306: not a JSON integer within 32 bits.
    NotInt,
    /// 6306: an integer outside the specs' `min..=max`.
    IntOutOfRange,
    /// 6307: not a JSON number within the 32-bit float range.
    NotFloat,
    /// 6307: a float outside the specs' `min..=max`.
    FloatOutOfRange,
    /// 6308: not the integer 0 or 1.
    NotBool,
    /// 6309: not an integer key of the enum's specs.
    NotEnum,
    /// 6310: not a string.
    NotText,
    /// 6310: a string longer than the specs' `length` (UTF-8 bytes).
    TextTooLong,
    /// 6311: not a string of decimal digits (UTC milliseconds).
    NotDate,
    /// 6312: not a JSON object.
    NotStruct,
    /// 6320: a property set that is not in the device's thing model.
    PropertyNotInTsl,
    /// 6320: a property set that is read-only (`accessMode` `r`).
    PropertyReadOnly,
    /// 6321: an empty identifier.
    EmptyIdentifier,
    /// 6322: not a JSON number (double).
    NotDouble,
    /// 6322: a double outside the specs' `min..=max`.
    DoubleOutOfRange,
    /// 6324: more elements than the array's `size`.
    ArrayTooLong,
    /// 6326: a `time` that is not UTC milliseconds or is more than 24 h ahead.
    BadTime,
    /// 6328: params that must be an array (the `get` service's identifiers) are not.
    ParamsNotArray,
}

impl TslCode {
    /// All rules.
    pub const ALL: [TslCode; 22] = [
        TslCode::MethodNotExist,
        TslCode::NotArray,
        TslCode::RequiredParamMissing,
        TslCode::ParamsNotExist,
        TslCode::NotInt,
        TslCode::IntOutOfRange,
        TslCode::NotFloat,
        TslCode::FloatOutOfRange,
        TslCode::NotBool,
        TslCode::NotEnum,
        TslCode::NotText,
        TslCode::TextTooLong,
        TslCode::NotDate,
        TslCode::NotStruct,
        TslCode::PropertyNotInTsl,
        TslCode::PropertyReadOnly,
        TslCode::EmptyIdentifier,
        TslCode::NotDouble,
        TslCode::DoubleOutOfRange,
        TslCode::ArrayTooLong,
        TslCode::BadTime,
        TslCode::ParamsNotArray,
    ];

    /// The Alink code.
    pub fn code(self) -> u32 {
        match self {
            TslCode::MethodNotExist => 6300,
            TslCode::NotArray => 6301,
            TslCode::RequiredParamMissing => 6302,
            TslCode::ParamsNotExist => 6304,
            TslCode::NotInt | TslCode::IntOutOfRange => 6306,
            TslCode::NotFloat | TslCode::FloatOutOfRange => 6307,
            TslCode::NotBool => 6308,
            TslCode::NotEnum => 6309,
            TslCode::NotText | TslCode::TextTooLong => 6310,
            TslCode::NotDate => 6311,
            TslCode::NotStruct => 6312,
            TslCode::PropertyNotInTsl | TslCode::PropertyReadOnly => 6320,
            TslCode::EmptyIdentifier => 6321,
            TslCode::NotDouble | TslCode::DoubleOutOfRange => 6322,
            TslCode::ArrayTooLong => 6324,
            TslCode::BadTime => 6326,
            TslCode::ParamsNotArray => 6328,
        }
    }

    /// The platform's message, without the ` -> identifier` it appends.
    pub fn message(self) -> &'static str {
        match self {
            TslCode::MethodNotExist => "tsl parse: method not exist",
            TslCode::NotArray => "tsl parse: data type is not array",
            TslCode::RequiredParamMissing => "tsl parse: required param is missing",
            // [V] captured
            TslCode::ParamsNotExist => "tsl parse: params not exist",
            // [V] captured
            TslCode::NotInt => "tsl parse: data type is not int",
            TslCode::IntOutOfRange => "tsl parse: int value is out of range",
            TslCode::NotFloat => "tsl parse: data type is not float",
            TslCode::FloatOutOfRange => "tsl parse: float value is out of range",
            TslCode::NotBool => "tsl parse: data type is not bool",
            TslCode::NotEnum => "tsl parse: data type is not enum",
            // [V] captured
            TslCode::NotText => "tsl parse: data type is not string",
            TslCode::TextTooLong => "tsl parse: string length is out of range",
            TslCode::NotDate => "tsl parse: data type is not date",
            TslCode::NotStruct => "tsl parse: data type is not struct",
            TslCode::PropertyNotInTsl => "tsl parse: property not exist in device tsl",
            TslCode::PropertyReadOnly => "tsl parse: property is read only",
            TslCode::EmptyIdentifier => "tsl parse: identifier is empty",
            TslCode::NotDouble => "tsl parse: data type is not double",
            TslCode::DoubleOutOfRange => "tsl parse: double value is out of range",
            TslCode::ArrayTooLong => "tsl parse: array size is out of range",
            TslCode::BadTime => "tsl parse: time is invalid",
            TslCode::ParamsNotArray => "tsl parse: params is not array",
        }
    }

    /// What to do about it, in one line.
    pub fn hint(self) -> &'static str {
        alink::describe(self.code()).map_or("check the value against the thing model", |(_, hint)| hint)
    }
}

impl fmt::Display for TslCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.message())
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
    fn every_tsl_rule_is_described() {
        for c in TslCode::ALL {
            assert!((6300..=6329).contains(&c.code()), "{c}");
            assert!(alink::describe(c.code()).is_some(), "{c}");
            assert!(c.message().starts_with("tsl parse: "));
        }
        for n in [6313, 6314, 6316, 6317, 6318, 6323, 6325, 6329] {
            assert!(alink::describe(n).is_some(), "{n}");
        }
        assert_eq!(
            TslCode::NotInt.to_string(),
            "6306 (tsl parse: data type is not int)"
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
