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
use crate::sign::{SignMethod, sign_content};

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
    /// Dynamic registration or token login (`authType=...`), which this platform does not serve.
    UnsupportedAuthType(String),
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
            | RefusalReason::KeepAliveOutOfRange(_) => ConnackCode::IdentifierRejected,
            RefusalReason::MissingUsername
            | RefusalReason::MalformedUsername(_)
            | RefusalReason::UnsupportedSignMethod(_)
            | RefusalReason::MissingPassword
            | RefusalReason::UnknownDevice
            | RefusalReason::SignatureMismatch
            | RefusalReason::UnsupportedAuthType(_) => ConnackCode::BadUsernameOrPassword,
            RefusalReason::DeviceDisabled => ConnackCode::NotAuthorized,
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
}

impl ConnectRequest {
    /// The content the password must sign.
    pub fn sign_content(&self) -> String {
        sign_content(
            self.client_id.prefix(),
            &self.device_name,
            &self.product_key,
            self.client_id.timestamp(),
        )
    }

    /// Checks the password (hex, either case) against the device secret in constant time.
    ///
    /// # Errors
    /// [`RefusalReason::SignatureMismatch`] (CONNACK 4).
    pub fn verify(&self, device_secret: &str, password: &[u8]) -> Result<(), Refusal> {
        if self
            .sign_method
            .verify_hex(device_secret.as_bytes(), self.sign_content().as_bytes(), password)
        {
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
    if !KEEPALIVE_RANGE.contains(&fields.keep_alive) {
        return refuse(RefusalReason::KeepAliveOutOfRange(fields.keep_alive));
    }
    let Some(username) = fields.username else {
        return refuse(RefusalReason::MissingUsername);
    };
    let (device_name, product_key) = match parse_username(username) {
        Ok(v) => v,
        Err(r) => return refuse(r),
    };
    if let Some(auth_type) = client_id.get("authType") {
        return refuse(RefusalReason::UnsupportedAuthType(auth_type.to_owned()));
    }
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
    fn ss_and_ext_flags_are_exposed() {
        let r = parse_connect(&fields("p|_ss=1,ext=1,signmethod=hmacsha1|", USER, b"x")).expect("parse");
        assert!(r.auto_subscribe() && r.ext_rrpc());
    }
}
