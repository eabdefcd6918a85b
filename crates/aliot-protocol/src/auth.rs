//! The platform's CONNECT verdict (spec §1, §3.1, §12): what the hub runs for every CONNECT
//! and what `aliot verify` explains.
//!
//! Two steps, so that the registry lookup sits between them:
//! 1. [`parse_connect`] checks everything that needs no secret (clientId grammar, securemode,
//!    keepalive, username, signmethod) and names the device;
//! 2. [`ConnectRequest::verify`] checks the password against the device secret.

use std::fmt;

use crate::client_id::ClientId;
use crate::codes::ConnackCode;
use crate::error::ClientIdError;
use crate::sign::{SignMethod, dynreg_content, sign_content};

/// Keepalive range the platform accepts, in seconds.
pub const KEEPALIVE_RANGE: std::ops::RangeInclusive<u16> = 30..=1200;

/// The CONNECT fields the verdict depends on.
#[derive(Clone, Copy)]
pub struct ConnectFields<'a> {
    /// The MQTT clientId.
    pub client_id: &'a str,
    /// The MQTT username, if the CONNECT carried one.
    pub username: Option<&'a str>,
    /// The MQTT password, if the CONNECT carried one.
    pub password: Option<&'a [u8]>,
    /// The keepalive in seconds.
    pub keep_alive: u16,
}

impl fmt::Debug for ConnectFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectFields")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The protocol level is not 3 (MQTT 3.1) or 4 (MQTT 3.1.1).
    UnsupportedProtocolLevel(u8),
    /// The clientId does not follow `prefix|k=v,...|`.
    MalformedClientId(ClientIdError),
    /// `securemode` has a value outside spec §1.4.
    UnknownSecureMode(String),
    /// Keepalive outside 30..=1200 s.
    KeepAliveOutOfRange(u16),
    /// No username in the CONNECT.
    MissingUsername,
    /// The username is not `deviceName&productKey`.
    MalformedUsername(String),
    /// `signmethod` names an algorithm the platform does not support.
    UnsupportedSignMethod(String),
    /// No password in the CONNECT.
    MissingPassword,
    /// No such product or device.
    UnknownDevice,
    /// The device is disabled.
    DeviceDisabled,
    /// The password is not the HMAC of the sign content.
    SignatureMismatch,
    /// An `authType` other than `register`, `regnwl` and `connwl`.
    UnsupportedAuthType(String),
    /// Dynamic registration (`authType=register|regnwl`) without a non-empty `random`.
    MissingRandom,
    /// Dynamic registration for a product that does not allow it, or whose productSecret is
    /// not the key of the signature.
    RegistrationRefused(String),
    /// The platform could not serve the request now (its storage failed).
    ServerUnavailable(String),
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::UnsupportedProtocolLevel(l) => write!(f, "unsupported MQTT protocol level {l}"),
            RefusalReason::MalformedClientId(e) => write!(f, "malformed clientId: {e}"),
            RefusalReason::UnknownSecureMode(v) => write!(f, "unknown securemode {v:?}"),
            RefusalReason::KeepAliveOutOfRange(k) => write!(f, "keepalive {k} s is outside 30..1200 s"),
            RefusalReason::MissingUsername => f.write_str("no username (expected deviceName&productKey)"),
            RefusalReason::MalformedUsername(u) => {
                write!(f, "username {u:?} is not deviceName&productKey")
            }
            RefusalReason::UnsupportedSignMethod(m) => write!(f, "unsupported signmethod {m:?}"),
            RefusalReason::MissingPassword => f.write_str("no password"),
            RefusalReason::UnknownDevice => f.write_str("unknown device"),
            RefusalReason::DeviceDisabled => f.write_str("device disabled"),
            RefusalReason::SignatureMismatch => f.write_str("signature mismatch"),
            RefusalReason::UnsupportedAuthType(t) => write!(f, "authType {t:?} is not supported"),
            RefusalReason::MissingRandom => {
                f.write_str("dynamic registration without a random=... clientId parameter")
            }
            RefusalReason::RegistrationRefused(why) => write!(f, "dynamic registration refused: {why}"),
            RefusalReason::ServerUnavailable(why) => write!(f, "server unavailable: {why}"),
        }
    }
}

/// A refused CONNECT: the CONNACK code to send and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The CONNACK return code.
    pub code: ConnackCode,
    /// Why.
    pub reason: RefusalReason,
}

impl Refusal {
    /// The refusal the platform sends for this reason (spec §3.1 and §12).
    pub fn new(reason: RefusalReason) -> Self {
        let code = match &reason {
            RefusalReason::UnsupportedProtocolLevel(_) => ConnackCode::UnacceptableProtocolVersion,
            RefusalReason::MalformedClientId(_)
            | RefusalReason::UnknownSecureMode(_)
            | RefusalReason::KeepAliveOutOfRange(_)
            | RefusalReason::MissingRandom => ConnackCode::IdentifierRejected,
            RefusalReason::MissingUsername
            | RefusalReason::MalformedUsername(_)
            | RefusalReason::UnsupportedSignMethod(_)
            | RefusalReason::MissingPassword
            | RefusalReason::UnknownDevice
            | RefusalReason::SignatureMismatch
            | RefusalReason::UnsupportedAuthType(_) => ConnackCode::BadUsernameOrPassword,
            RefusalReason::DeviceDisabled | RefusalReason::RegistrationRefused(_) => {
                ConnackCode::NotAuthorized
            }
            RefusalReason::ServerUnavailable(_) => ConnackCode::ServerUnavailable,
        };
        Self { code, reason }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CONNACK {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Refusal {}

/// A CONNECT that passed every check that needs no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// productKey from the username.
    pub product_key: String,
    /// deviceName from the username.
    pub device_name: String,
    /// The parsed clientId.
    pub client_id: ClientId,
    /// The declared signmethod (hmacmd5 when none is declared).
    pub sign_method: SignMethod,
    /// How the device authenticates (the clientId's `authType`).
    pub auth: AuthType,
}

/// How a CONNECT authenticates: the clientId's `authType` (spec §1, §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthType {
    /// No `authType`: the password signs the CONNECT with the deviceSecret.
    DeviceSecret,
    /// `authType=register`: MQTT dynamic registration of a device registered beforehand; the
    /// password signs `deviceName…productKey…random…` with the productSecret, and the platform
    /// answers the deviceSecret on `/ext/register`.
    Register {
        /// The clientId's `random`.
        random: String,
    },
    /// `authType=regnwl`: MQTT dynamic registration without pre-registration (signed as
    /// `register`); the platform answers a clientId and a deviceToken on `/ext/regnwl`.
    RegisterNoPreRegistration {
        /// The clientId's `random`.
        random: String,
    },
    /// `authType=connwl`: login with the deviceToken from `/ext/regnwl`, sent verbatim as the
    /// password.
    DeviceToken,
    /// `securemode=-1`: login after HTTPS pre-authentication (spec §5.3): the username is the
    /// iotId and the password the iotToken, verbatim. [`ConnectRequest::product_key`] and
    /// [`ConnectRequest::device_name`] are empty: the token names the device.
    IotToken {
        /// The username: the iotId the pre-authentication answered.
        iot_id: String,
    },
}

impl AuthType {
    /// Dynamic registration (`register` or `regnwl`): the key is the productSecret and the
    /// platform answers with credentials, then closes the connection.
    pub fn is_registration(&self) -> bool {
        matches!(
            self,
            AuthType::Register { .. } | AuthType::RegisterNoPreRegistration { .. }
        )
    }
}

impl ConnectRequest {
    /// The content the password must sign: the CONNECT's (spec §1.2), or for dynamic
    /// registration `deviceName…productKey…random…` (spec §5.2). A deviceToken login signs
    /// nothing (empty).
    pub fn sign_content(&self) -> String {
        match &self.auth {
            AuthType::DeviceSecret => sign_content(
                self.client_id.prefix(),
                &self.device_name,
                &self.product_key,
                self.client_id.timestamp(),
            ),
            AuthType::Register { random } | AuthType::RegisterNoPreRegistration { random } => {
                dynreg_content(&self.device_name, &self.product_key, random)
            }
            AuthType::DeviceToken | AuthType::IotToken { .. } => String::new(),
        }
    }

    /// Checks the password in constant time against `secret`, the key of this CONNECT's
    /// [`AuthType`]: the deviceSecret (hex HMAC, either case), the productSecret for dynamic
    /// registration (hex HMAC), or the token itself for `connwl` and `securemode=-1` (byte for
    /// byte).
    ///
    /// # Errors
    /// [`RefusalReason::SignatureMismatch`] (CONNACK 4).
    pub fn verify(&self, secret: &str, password: &[u8]) -> Result<(), Refusal> {
        let ok = match self.auth {
            AuthType::DeviceToken | AuthType::IotToken { .. } => {
                constant_time_eq(secret.as_bytes(), password)
            }
            _ => self
                .sign_method
                .verify_hex(secret.as_bytes(), self.sign_content().as_bytes(), password),
        };
        if ok {
            Ok(())
        } else {
            Err(Refusal::new(RefusalReason::SignatureMismatch))
        }
    }

    /// `_ss=1`: system topics are subscribed implicitly.
    pub fn auto_subscribe(&self) -> bool {
        self.client_id.auto_subscribe()
    }

    /// `ext` bit 0: synchronous services arrive on `/ext/rrpc/{id}/sys/...`.
    pub fn ext_rrpc(&self) -> bool {
        self.client_id.ext() & 1 == 1
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits a username `deviceName&productKey`.
///
/// # Errors
/// The reason, when it is not of that shape.
pub fn parse_username(username: &str) -> Result<(&str, &str), RefusalReason> {
    match username.split_once('&') {
        Some((dn, pk)) if !dn.is_empty() && !pk.is_empty() && !pk.contains('&') => Ok((dn, pk)),
        _ => Err(RefusalReason::MalformedUsername(username.to_owned())),
    }
}

/// First step of the verdict: everything that needs no secret.
///
/// # Errors
/// The [`Refusal`] to send: CONNACK 2 for the clientId, securemode and keepalive; 4 for the
/// username, signmethod and a missing password.
pub fn parse_connect(fields: &ConnectFields<'_>) -> Result<ConnectRequest, Refusal> {
    let refuse = |r| Err(Refusal::new(r));
    let client_id = match ClientId::parse(fields.client_id) {
        Ok(c) => c,
        Err(e) => return refuse(RefusalReason::MalformedClientId(e)),
    };
    if let Some(sm) = client_id.get("securemode")
        && sm.parse::<crate::client_id::SecureMode>().is_err()
    {
        return refuse(RefusalReason::UnknownSecureMode(sm.to_owned()));
    }
    let random = || match client_id.get("random") {
        Some(r) if !r.is_empty() => Ok(r.to_owned()),
        _ => Err(Refusal::new(RefusalReason::MissingRandom)),
    };
    let auth = match client_id.get("authType") {
        None => AuthType::DeviceSecret,
        Some("register") => AuthType::Register { random: random()? },
        Some("regnwl") => AuthType::RegisterNoPreRegistration { random: random()? },
        Some("connwl") => AuthType::DeviceToken,
        Some(other) => return refuse(RefusalReason::UnsupportedAuthType(other.to_owned())),
    };
    // A registering device disconnects once it has its answer: its keepalive is not checked
    // (spec §5.2).
    if !auth.is_registration() && !KEEPALIVE_RANGE.contains(&fields.keep_alive) {
        return refuse(RefusalReason::KeepAliveOutOfRange(fields.keep_alive));
    }
    let Some(username) = fields.username else {
        return refuse(RefusalReason::MissingUsername);
    };
    if auth == AuthType::DeviceSecret && client_id.get("securemode") == Some("-1") {
        if username.is_empty() {
            return refuse(RefusalReason::MalformedUsername(String::new()));
        }
        if fields.password.is_none() {
            return refuse(RefusalReason::MissingPassword);
        }
        return Ok(ConnectRequest {
            product_key: String::new(),
            device_name: String::new(),
            client_id,
            sign_method: SignMethod::HmacMd5,
            auth: AuthType::IotToken {
                iot_id: username.to_owned(),
            },
        });
    }
    let (device_name, product_key) = match parse_username(username) {
        Ok(v) => v,
        Err(r) => return refuse(r),
    };
    let sign_method = match client_id.get("signmethod") {
        None => SignMethod::HmacMd5,
        Some(m) => match m.parse() {
            Ok(m) => m,
            Err(_) => return refuse(RefusalReason::UnsupportedSignMethod(m.to_owned())),
        },
    };
    if fields.password.is_none() {
        return refuse(RefusalReason::MissingPassword);
    }
    Ok(ConnectRequest {
        product_key: product_key.to_owned(),
        device_name: device_name.to_owned(),
        client_id,
        sign_method,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(cid: &'a str, user: &'a str, pw: &'a [u8]) -> ConnectFields<'a> {
        ConnectFields {
            client_id: cid,
            username: Some(user),
            password: Some(pw),
            keep_alive: 60,
        }
    }

    const CID: &str = "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|";
    const USER: &str = "light1983432&a14Xib5kdYd";
    const SECRET: &str = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";

    #[test]
    fn the_documented_example_is_accepted_in_either_hex_case() {
        let r =
            parse_connect(&fields(CID, USER, b"b2488041f64f425016b467ee1c94959ebd592ad1")).expect("parse");
        assert_eq!(
            (r.product_key.as_str(), r.device_name.as_str()),
            ("a14Xib5kdYd", "light1983432")
        );
        assert_eq!(
            r.verify(SECRET, b"b2488041f64f425016b467ee1c94959ebd592ad1"),
            Ok(())
        );
        assert_eq!(
            r.verify(SECRET, b"B2488041F64F425016B467EE1C94959EBD592AD1"),
            Ok(())
        );
        assert_eq!(
            r.verify("other", b"b2488041f64f425016b467ee1c94959ebd592ad1")
                .map_err(|e| e.code.code()),
            Err(4)
        );
    }

    #[test]
    fn refusals_carry_the_platform_codes() {
        let code = |f: ConnectFields<'_>| parse_connect(&f).map(|_| ()).map_err(|e| e.code.code());
        assert_eq!(code(fields("nopipe", USER, b"x")), Err(2));
        assert_eq!(code(fields("p|securemode=9|", USER, b"x")), Err(2));
        assert_eq!(
            code(ConnectFields {
                keep_alive: 20,
                ..fields(CID, USER, b"x")
            }),
            Err(2)
        );
        assert_eq!(
            code(ConnectFields {
                keep_alive: 1201,
                ..fields(CID, USER, b"x")
            }),
            Err(2)
        );
        assert_eq!(code(fields(CID, "a14Xib5kdYd", b"x")), Err(4));
        assert_eq!(
            code(ConnectFields {
                username: None,
                ..fields(CID, USER, b"x")
            }),
            Err(4)
        );
        assert_eq!(
            code(ConnectFields {
                password: None,
                ..fields(CID, USER, b"x")
            }),
            Err(4)
        );
        assert_eq!(code(fields("p|signmethod=hmacsha512|", USER, b"x")), Err(4));
        assert_eq!(Refusal::new(RefusalReason::DeviceDisabled).code.code(), 5);
        assert_eq!(
            Refusal::new(RefusalReason::UnsupportedProtocolLevel(6))
                .code
                .code(),
            1
        );
    }

    #[test]
    fn missing_signmethod_means_hmacmd5() {
        let r = parse_connect(&fields("p|securemode=3|", USER, b"x")).expect("parse");
        assert_eq!(r.sign_method, SignMethod::HmacMd5);
    }

    #[test]
    fn registration_and_token_logins_are_typed() {
        let auth = |cid: &str, keep_alive: u16| {
            parse_connect(&ConnectFields {
                keep_alive,
                ..fields(cid, USER, b"x")
            })
            .map(|r| r.auth)
            .map_err(|e| (e.code.code(), e.reason))
        };
        let reg = "dn.pk|random=r1,authType=register,securemode=2,signmethod=hmacsha256|";
        // A registering device's keepalive is not checked (it leaves at once).
        assert_eq!(auth(reg, 0), Ok(AuthType::Register { random: "r1".into() }));
        assert_eq!(
            auth(
                "x|securemode=-2,authType=regnwl,random=9,signmethod=hmacsha1|",
                60
            ),
            Ok(AuthType::RegisterNoPreRegistration { random: "9".into() })
        );
        assert_eq!(
            auth("cid|authType=connwl,securemode=-2,_ss=1|", 60),
            Ok(AuthType::DeviceToken)
        );
        assert_eq!(
            auth("cid|authType=connwl,securemode=-2|", 0).map_err(|e| e.0),
            Err(2)
        );
        assert_eq!(
            auth("dn.pk|authType=register,securemode=2|", 60),
            Err((2, RefusalReason::MissingRandom))
        );
        assert_eq!(
            auth("dn.pk|authType=regnwl,random=,securemode=2|", 60),
            Err((2, RefusalReason::MissingRandom))
        );
        assert_eq!(
            auth("dn.pk|authType=other|", 60),
            Err((4, RefusalReason::UnsupportedAuthType("other".into())))
        );
        assert_eq!(auth(CID, 60), Ok(AuthType::DeviceSecret));
    }

    #[test]
    fn securemode_minus_1_logs_in_with_the_iot_token() {
        let r = parse_connect(&fields(
            "pk.dn|securemode=-1,_v=1,timestamp=2524608000000,signmethod=hmacsha256,lan=C,gw=0,ext=0|",
            "030VCbn30334364bb36997f44cMYTBAR",
            b"e96d15a4d4734a73b13040b1878009bc",
        ))
        .expect("parse");
        assert_eq!(
            r.auth,
            AuthType::IotToken {
                iot_id: "030VCbn30334364bb36997f44cMYTBAR".into()
            }
        );
        assert_eq!(
            r.verify(
                "e96d15a4d4734a73b13040b1878009bc",
                b"e96d15a4d4734a73b13040b1878009bc"
            ),
            Ok(())
        );
        assert!(
            r.verify(
                "e96d15a4d4734a73b13040b1878009bc",
                b"E96D15A4D4734A73B13040B1878009BC"
            )
            .is_err()
        );
        let missing = parse_connect(&ConnectFields {
            password: None,
            ..fields("p|securemode=-1|", "iot", b"")
        });
        assert_eq!(missing.map_err(|e| e.code.code()), Err(4));
    }

    #[test]
    fn a_device_token_is_compared_byte_for_byte() {
        let r = parse_connect(&fields("c|authType=connwl,securemode=-2|", USER, b"tok")).expect("parse");
        assert_eq!(r.sign_content(), "");
        assert_eq!(r.verify("tok", b"tok"), Ok(()));
        assert!(r.verify("tok", b"TOK").is_err());
        assert!(r.verify("tok", b"tok2").is_err());
        assert!(r.verify("", b"").is_ok());
    }

    #[test]
    fn a_registration_is_signed_with_the_product_secret_over_the_random() {
        let cid = "light1983432.a14Xib5kdYd|random=abc,authType=register,securemode=2,signmethod=hmacsha1|";
        let sign = crate::sign::dynreg_sign(
            SignMethod::HmacSha1,
            "prodsecret",
            "light1983432",
            "a14Xib5kdYd",
            "abc",
            crate::sign::HexCase::Upper,
        );
        let r = parse_connect(&fields(cid, USER, sign.as_bytes())).expect("parse");
        assert_eq!(
            r.sign_content(),
            "deviceNamelight1983432productKeya14Xib5kdYdrandomabc"
        );
        assert_eq!(r.verify("prodsecret", sign.as_bytes()), Ok(()));
        assert!(r.verify("devicesecret", sign.as_bytes()).is_err());
    }

    #[test]
    fn ss_and_ext_flags_are_exposed() {
        let r = parse_connect(&fields("p|_ss=1,ext=1,signmethod=hmacsha1|", USER, b"x")).expect("parse");
        assert!(r.auto_subscribe() && r.ext_rrpc());
    }
}
