//! The MQTT clientId grammar of spec §1.1, both ways.
//!
//! ```text
//! mqttClientId = prefix "|" [ key "=" value *( "," key "=" value ) ] [ "," ] "|"
//! ```
//! Parsing follows what real clients send: the prefix is the text before the **first** `|`, the
//! parameters are between the first and the **last** `|` (the Node SDK puts `lan=JS|Ali` in a
//! value), empty segments (a trailing comma, as the C SDK 4.x sends) are ignored and each
//! segment splits on its first `=`.

use std::fmt;
use std::str::FromStr;

use crate::error::{ClientIdError, Error};
use crate::sign::SignMethod;

/// Longest clientId prefix the platform accepts.
pub const MAX_PREFIX_LEN: usize = 64;

/// Longest whole clientId accepted, in bytes. Every SDK sends well under 256 (the C SDK 3.x
/// buffer is 200 bytes); the cap leaves room for a 64-character prefix in any script. A longer
/// clientId is refused before it is parsed, so that parsing costs the same small bound whatever
/// a peer sends.
pub const MAX_CLIENT_ID_LEN: usize = 512;

/// Most `key=value` parameters in a clientId (real ones carry at most about ten).
pub const MAX_PARAMS: usize = 32;

/// A parsed or built MQTT clientId: a free-form prefix and ordered `key=value` parameters.
///
/// ```
/// use aliot_protocol::ClientId;
/// let cid = ClientId::new("SN1928339")?
///     .with_param("securemode", "3")?
///     .with_param("signmethod", "hmacsha1")?
///     .with_param("timestamp", "1539421321846")?;
/// assert_eq!(cid.to_string(), "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|");
/// let back: ClientId = cid.to_string().parse()?;
/// assert_eq!(back, cid);
/// assert_eq!(back.timestamp(), Some("1539421321846"));
/// # Ok::<(), aliot_protocol::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId {
    prefix: String,
    params: Vec<(String, String)>,
}

impl ClientId {
    /// A clientId with this prefix and no parameters yet.
    ///
    /// # Errors
    /// The prefix is longer than 64 characters or contains `|`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        if prefix.contains('|') {
            return Err(ClientIdError::Unencodable(prefix).into());
        }
        if prefix.chars().count() > MAX_PREFIX_LEN {
            return Err(ClientIdError::PrefixTooLong(prefix.chars().count()).into());
        }
        Ok(Self {
            prefix,
            params: Vec::new(),
        })
    }

    /// Appends a parameter (kept in the caller's order); replaces the value if the key exists.
    ///
    /// # Errors
    /// The key is empty or contains `,`, `=` or `|`, or the value contains `,` or `|`; the
    /// clientId would exceed [`MAX_CLIENT_ID_LEN`] bytes or [`MAX_PARAMS`] parameters.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Result<Self, Error> {
        self.set_param(key, value)?;
        Ok(self)
    }

    /// Sets a parameter in place (see [`ClientId::with_param`]).
    ///
    /// # Errors
    /// As [`ClientId::with_param`].
    pub fn set_param(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), Error> {
        let key = key.into();
        let value = value.into();
        if key.is_empty() {
            return Err(ClientIdError::EmptyKey(format!("={value}")).into());
        }
        if key.contains([',', '=', '|']) {
            return Err(ClientIdError::Unencodable(key).into());
        }
        if value.contains([',', '|']) {
            return Err(ClientIdError::Unencodable(value).into());
        }
        let len_without = |params: &[(String, String)]| -> usize {
            self.prefix.len() + 2 + params.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>()
        };
        match self.params.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let len = len_without(&self.params) - self.params[i].1.len() + value.len();
                if len > MAX_CLIENT_ID_LEN {
                    return Err(ClientIdError::TooLong(len).into());
                }
                self.params[i].1 = value;
            }
            None => {
                let len = len_without(&self.params) + key.len() + value.len() + 2;
                if len > MAX_CLIENT_ID_LEN {
                    return Err(ClientIdError::TooLong(len).into());
                }
                if self.params.len() >= MAX_PARAMS {
                    return Err(ClientIdError::TooManyParams(self.params.len() + 1).into());
                }
                self.params.push((key, value));
            }
        }
        Ok(())
    }

    /// Parses a clientId as real clients send it, in time linear in its length (and at most
    /// [`MAX_CLIENT_ID_LEN`] bytes are looked at).
    ///
    /// # Errors
    /// [`ClientIdError`] saying what is malformed; [`ClientIdError::TooLong`] and
    /// [`ClientIdError::TooManyParams`] before anything else is looked at.
    pub fn parse(s: &str) -> Result<Self, ClientIdError> {
        if s.len() > MAX_CLIENT_ID_LEN {
            return Err(ClientIdError::TooLong(s.len()));
        }
        let first = s.find('|').ok_or(ClientIdError::MissingSeparator)?;
        let last = s.rfind('|').ok_or(ClientIdError::MissingSeparator)?;
        if first == last {
            return Err(ClientIdError::Unterminated);
        }
        let prefix = &s[..first];
        let prefix_len = prefix.chars().count();
        if prefix_len > MAX_PREFIX_LEN {
            return Err(ClientIdError::PrefixTooLong(prefix_len));
        }
        let trailing = &s[last + 1..];
        if !trailing.is_empty() {
            // Unreachable with `rfind`, kept so the grammar is complete if the rule changes.
            return Err(ClientIdError::TrailingText(trailing.to_owned()));
        }
        let body = &s[first + 1..last];
        // Counted before splitting: a clientId of many tiny parameters is refused at once.
        let segments = body.split(',').filter(|seg| !seg.is_empty()).count();
        if segments > MAX_PARAMS {
            return Err(ClientIdError::TooManyParams(segments));
        }
        let mut params: Vec<(String, String)> = Vec::with_capacity(segments);
        let mut seen = std::collections::HashSet::with_capacity(segments);
        for segment in body.split(',') {
            if segment.is_empty() {
                continue;
            }
            let (key, value) = segment
                .split_once('=')
                .ok_or_else(|| ClientIdError::MissingEquals(segment.to_owned()))?;
            if key.is_empty() {
                return Err(ClientIdError::EmptyKey(segment.to_owned()));
            }
            if !seen.insert(key) {
                return Err(ClientIdError::DuplicateKey(key.to_owned()));
            }
            params.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            params,
        })
    }

    /// The prefix (text before the first `|`), signed as `clientId{prefix}`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The parameters in their order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The value of a parameter (keys are case-sensitive, as on the platform).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `timestamp` parameter, copied verbatim into the sign content when present.
    pub fn timestamp(&self) -> Option<&str> {
        self.get("timestamp")
    }

    /// The declared `signmethod`, `None` when absent (the platform then assumes hmacmd5).
    ///
    /// # Errors
    /// [`Error::UnknownSignMethod`] for an unsupported value.
    pub fn sign_method(&self) -> Result<Option<SignMethod>, Error> {
        self.get("signmethod").map(str::parse).transpose()
    }

    /// The declared `securemode`, `None` when absent.
    ///
    /// # Errors
    /// [`Error::UnknownSecureMode`] for a value outside spec §1.4.
    pub fn secure_mode(&self) -> Result<Option<SecureMode>, Error> {
        self.get("securemode").map(str::parse).transpose()
    }

    /// `_ss=1`: the platform subscribes the device to its system topics (spec §3.6).
    pub fn auto_subscribe(&self) -> bool {
        self.get("_ss") == Some("1")
    }

    /// The `ext` bitmap (bit 0: synchronous services over `/ext/rrpc/…`); 0 when absent or not a
    /// number.
    pub fn ext(&self) -> u32 {
        self.get("ext").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)?;
        f.write_str("|")?;
        for (i, (k, v)) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        f.write_str("|")
    }
}

impl FromStr for ClientId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(ClientId::parse(s)?)
    }
}

/// `securemode` values (spec §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecureMode {
    /// `-2`: MQTT dynamic registration on new instances, or login with a deviceToken (`connwl`).
    NoPreRegistration,
    /// `-1`: TLS guider: HTTPS pre-auth, then MQTT with iotId/iotToken.
    TlsGuider,
    /// `0`: TCP guider, plain.
    TcpGuider,
    /// `1`: TCP guider, ID² encrypted.
    TcpGuiderId2,
    /// `2`: TLS direct (also wss).
    Tls,
    /// `3`: TCP direct, plain (also ws).
    Tcp,
    /// `4`: TCP direct, ID² encrypted.
    TcpId2,
    /// `5`: TLS guider, ID² authenticated.
    TlsGuiderId2,
    /// `7`: TLS direct, ID² encrypted.
    TlsId2,
    /// `8`: iTLS (DNS, ID²).
    Itls,
}

impl SecureMode {
    /// The numeric value sent in the clientId.
    pub fn value(self) -> i8 {
        match self {
            SecureMode::NoPreRegistration => -2,
            SecureMode::TlsGuider => -1,
            SecureMode::TcpGuider => 0,
            SecureMode::TcpGuiderId2 => 1,
            SecureMode::Tls => 2,
            SecureMode::Tcp => 3,
            SecureMode::TcpId2 => 4,
            SecureMode::TlsGuiderId2 => 5,
            SecureMode::TlsId2 => 7,
            SecureMode::Itls => 8,
        }
    }
}

impl fmt::Display for SecureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}

impl FromStr for SecureMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "-2" => SecureMode::NoPreRegistration,
            "-1" => SecureMode::TlsGuider,
            "0" => SecureMode::TcpGuider,
            "1" => SecureMode::TcpGuiderId2,
            "2" => SecureMode::Tls,
            "3" => SecureMode::Tcp,
            "4" => SecureMode::TcpId2,
            "5" => SecureMode::TlsGuiderId2,
            "7" => SecureMode::TlsId2,
            "8" => SecureMode::Itls,
            _ => return Err(Error::UnknownSecureMode(s.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_long_client_ids_and_too_many_parameters_are_refused_before_parsing() {
        let long = format!("p|{}|", "k=v,".repeat(200));
        assert_eq!(ClientId::parse(&long), Err(ClientIdError::TooLong(long.len())));
        let many = format!(
            "p|{}|",
            (0..40).map(|i| format!("{i}=")).collect::<Vec<_>>().join(",")
        );
        assert!(many.len() <= MAX_CLIENT_ID_LEN);
        assert_eq!(ClientId::parse(&many), Err(ClientIdError::TooManyParams(40)));
        let fine = format!(
            "p|{}|",
            (0..32).map(|i| format!("{i}=")).collect::<Vec<_>>().join(",")
        );
        assert_eq!(ClientId::parse(&fine).map(|c| c.params().len()), Ok(32));
        // The builder refuses what the parser would.
        let mut built = ClientId::new("p").expect("prefix");
        for i in 0..32 {
            built.set_param(format!("{i}"), "").expect("room");
        }
        assert!(built.set_param("one-more", "").is_err());
        assert!(
            ClientId::new("p")
                .expect("prefix")
                .with_param("k", "v".repeat(600))
                .is_err()
        );
        // The worst input a CONNECT can carry (65,535 bytes of tiny keys) is one length check.
        let worst = format!("p|{}|", "a=,".repeat(21_844));
        assert_eq!(ClientId::parse(&worst), Err(ClientIdError::TooLong(worst.len())));
    }

    #[test]
    fn trailing_comma_is_tolerated() {
        let c =
            ClientId::parse("pk.dn|timestamp=2524608000000,_ss=1,securemode=2,signmethod=hmacsha256,ext=3,|")
                .expect("C SDK 4.x clientId");
        assert_eq!(c.prefix(), "pk.dn");
        assert_eq!(c.ext(), 3);
        assert!(c.auto_subscribe());
        assert_eq!(c.params().len(), 5);
    }

    #[test]
    fn a_pipe_inside_a_value_stays_in_the_value() {
        let c = ClientId::parse("pk&dn|securemode=3,signmethod=hmacsha1,lan=JS|Ali,_v=1.2.8|")
            .expect("node mini");
        assert_eq!(c.prefix(), "pk&dn");
        assert_eq!(c.get("lan"), Some("JS|Ali"));
        assert_eq!(c.get("_v"), Some("1.2.8"));
    }

    #[test]
    fn empty_prefix_and_keys_in_any_order_parse() {
        let c =
            ClientId::parse("|timestamp=1,_ss=1,signmethod=hmacsha256,securemode=2|").expect("empty prefix");
        assert_eq!(c.prefix(), "");
        assert_eq!(c.sign_method(), Ok(Some(SignMethod::HmacSha256)));
        assert_eq!(c.secure_mode(), Ok(Some(SecureMode::Tls)));
    }

    #[test]
    fn dynreg_prefixes_parse() {
        let c = ClientId::parse(
            "dn.pk|random=E71Lhfe8L6HLVy5,authType=register,securemode=2,signmethod=hmacsha256|",
        )
        .expect("dynreg");
        assert_eq!(c.prefix(), "dn.pk");
        assert_eq!(c.get("authType"), Some("register"));
    }

    #[test]
    fn malformed_client_ids_say_what_is_wrong() {
        assert_eq!(ClientId::parse("pk.dn"), Err(ClientIdError::MissingSeparator));
        assert_eq!(
            ClientId::parse("pk.dn|securemode=3"),
            Err(ClientIdError::Unterminated)
        );
        assert_eq!(
            ClientId::parse("pk|securemode|"),
            Err(ClientIdError::MissingEquals("securemode".into()))
        );
        assert_eq!(
            ClientId::parse("pk|=3|"),
            Err(ClientIdError::EmptyKey("=3".into()))
        );
        assert_eq!(
            ClientId::parse("pk|a=1,a=2|"),
            Err(ClientIdError::DuplicateKey("a".into()))
        );
        let long = format!("{}|a=1|", "x".repeat(65));
        assert_eq!(ClientId::parse(&long), Err(ClientIdError::PrefixTooLong(65)));
    }

    #[test]
    fn unknown_securemode_and_signmethod_are_errors() {
        let c = ClientId::parse("p|securemode=9,signmethod=hmacsha512|").expect("grammar is fine");
        assert!(c.secure_mode().is_err());
        assert!(c.sign_method().is_err());
    }

    #[test]
    fn building_rejects_unencodable_text() {
        assert!(ClientId::new("a|b").is_err());
        assert!(ClientId::new("p").expect("ok").with_param("k", "a,b").is_err());
        assert!(ClientId::new("p").expect("ok").with_param("", "v").is_err());
    }
}
