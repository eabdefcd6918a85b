//! The CONNECT password: sign content, HMAC, hex (spec §1.2, §1.3).
//!
//! ```text
//! content  = "clientId" + prefix + "deviceName" + dn + "productKey" + pk [ + "timestamp" + ts ]
//! password = hex(HMAC_<signmethod>(deviceSecret, content))
//! ```
//! `signmethod`, `securemode` and every other clientId parameter are **not** part of the content.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;

use crate::error::Error;

/// The HMAC algorithms the platform accepts for the CONNECT password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignMethod {
    /// `hmacmd5`: what the platform assumes when the clientId names no `signmethod`.
    HmacMd5,
    /// `hmacsha1`: the documentation's examples, the Python and Node SDKs.
    #[default]
    HmacSha1,
    /// `hmacsha256`: the C SDKs 3.x and 4.x.
    HmacSha256,
}

impl SignMethod {
    /// All methods, in the order `aliot verify` tries them.
    pub const ALL: [SignMethod; 3] = [SignMethod::HmacSha1, SignMethod::HmacSha256, SignMethod::HmacMd5];

    /// The wire name: `hmacmd5`, `hmacsha1` or `hmacsha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::HmacMd5 => "hmacmd5",
            SignMethod::HmacSha1 => "hmacsha1",
            SignMethod::HmacSha256 => "hmacsha256",
        }
    }

    /// Length of the hex password this method produces.
    pub fn hex_len(self) -> usize {
        match self {
            SignMethod::HmacMd5 => 32,
            SignMethod::HmacSha1 => 40,
            SignMethod::HmacSha256 => 64,
        }
    }

    /// Raw HMAC of `message` keyed by `key`.
    pub fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let (mac, len) = self.mac_array(key, message);
        mac[..len].to_vec()
    }

    /// Raw HMAC into a stack buffer (no allocation): the buffer and the MAC's length (16, 20 or 32).
    fn mac_array(self, key: &[u8], message: &[u8]) -> ([u8; 32], usize) {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8], out: &mut [u8; 32]) -> usize {
            // HMAC accepts keys of any length (longer keys are hashed), so this cannot fail.
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
            m.update(message);
            let tag = m.finalize().into_bytes();
            out[..tag.len()].copy_from_slice(&tag);
            tag.len()
        }
        let mut out = [0u8; 32];
        let len = match self {
            SignMethod::HmacMd5 => run::<Hmac<Md5>>(key, message, &mut out),
            SignMethod::HmacSha1 => run::<Hmac<Sha1>>(key, message, &mut out),
            SignMethod::HmacSha256 => run::<Hmac<Sha256>>(key, message, &mut out),
        };
        (out, len)
    }

    /// Hex HMAC of `message` keyed by `key`.
    pub fn hex(self, key: &[u8], message: &[u8], case: HexCase) -> String {
        let (mac, len) = self.mac_array(key, message);
        let mut buf = [0u8; 64];
        let digits = &mut buf[..2 * len];
        hex::encode_to_slice(&mac[..len], digits).expect("the buffer holds two digits per MAC byte");
        if case == HexCase::Upper {
            digits.make_ascii_uppercase();
        }
        std::str::from_utf8(digits)
            .expect("hex digits are ASCII")
            .to_owned()
    }

    /// Whether `password_hex` is the HMAC of `message` under `key`, in either hex case.
    ///
    /// The comparison of the MAC is constant-time; a password that is not hex of the right
    /// length is simply not valid.
    pub fn verify_hex(self, key: &[u8], message: &[u8], password_hex: &[u8]) -> bool {
        if password_hex.len() != self.hex_len() {
            return false;
        }
        let mut tag = [0u8; 32];
        let tag = &mut tag[..self.hex_len() / 2];
        if hex::decode_to_slice(password_hex, tag).is_err() {
            return false;
        }
        let tag: &[u8] = tag;
        match self {
            SignMethod::HmacMd5 => {
                let mut m = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("any key length");
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
            SignMethod::HmacSha1 => {
                let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("any key length");
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
            SignMethod::HmacSha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
        }
    }
}

impl fmt::Display for SignMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignMethod {
    type Err = Error;

    /// Parses `hmacsha1`, `HmacSha256`, `hmacMD5`… case-insensitively (gateway payloads use
    /// `hmacSha256`).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "hmacmd5" => Ok(SignMethod::HmacMd5),
            "hmacsha1" => Ok(SignMethod::HmacSha1),
            "hmacsha256" => Ok(SignMethod::HmacSha256),
            _ => Err(Error::UnknownSignMethod(s.to_owned())),
        }
    }
}

/// Hex digits of the password: the platform accepts either; the SDK emits lowercase unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HexCase {
    /// `b2488041…` (Python, Node, C SDK 2.x).
    #[default]
    Lower,
    /// `B2488041…` (C SDK 3.x/4.x, aliyun-iot-mqtt).
    Upper,
}

/// The sign content of spec §1.2: `clientId{prefix}deviceName{dn}productKey{pk}[timestamp{ts}]`.
///
/// `clientId` is always present (even for an empty prefix); `timestamp` only when given.
///
/// ```
/// assert_eq!(
///     aliot_protocol::sign::sign_content("12345", "device", "pk", Some("789")),
///     "clientId12345deviceNamedeviceproductKeypktimestamp789"
/// );
/// ```
pub fn sign_content(
    client_id_prefix: &str,
    device_name: &str,
    product_key: &str,
    timestamp: Option<&str>,
) -> String {
    let mut s = String::with_capacity(
        40 + client_id_prefix.len() + device_name.len() + product_key.len() + timestamp.map_or(0, str::len),
    );
    s.push_str("clientId");
    s.push_str(client_id_prefix);
    s.push_str("deviceName");
    s.push_str(device_name);
    s.push_str("productKey");
    s.push_str(product_key);
    if let Some(ts) = timestamp {
        s.push_str("timestamp");
        s.push_str(ts);
    }
    s
}

/// The content signed for dynamic registration (HTTPS and MQTT, spec §5):
/// `deviceName{dn}productKey{pk}random{random}`, keyed by the productSecret.
pub fn dynreg_content(device_name: &str, product_key: &str, random: &str) -> String {
    format!("deviceName{device_name}productKey{product_key}random{random}")
}

/// The dynamic registration `sign` (spec §5.1/§5.2): hex HMAC of [`dynreg_content`] keyed by
/// the productSecret.
pub fn dynreg_sign(
    method: SignMethod,
    product_secret: &str,
    device_name: &str,
    product_key: &str,
    random: &str,
    case: HexCase,
) -> String {
    method.hex(
        product_secret.as_bytes(),
        dynreg_content(device_name, product_key, random).as_bytes(),
        case,
    )
}

/// The form body of HTTPS dynamic registration (spec §5.1, `POST /auth/register/device`):
/// `productKey=..&deviceName=..&random=..&sign=..&signMethod=..`, each value
/// `application/x-www-form-urlencoded`.
///
/// ```
/// use aliot_protocol::sign::{dynreg_http_body, dynreg_sign, HexCase, SignMethod};
/// let sign = dynreg_sign(SignMethod::HmacSha1, "ps", "dev01", "pk", "r1", HexCase::Lower);
/// let body = dynreg_http_body("pk", "dev01", "r1", SignMethod::HmacSha1, &sign);
/// assert_eq!(body, format!("productKey=pk&deviceName=dev01&random=r1&sign={sign}&signMethod=hmacsha1"));
/// ```
pub fn dynreg_http_body(
    product_key: &str,
    device_name: &str,
    random: &str,
    method: SignMethod,
    sign: &str,
) -> String {
    let mut body = String::new();
    for (i, (k, v)) in [
        ("productKey", product_key),
        ("deviceName", device_name),
        ("random", random),
        ("sign", sign),
        ("signMethod", method.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            body.push('&');
        }
        body.push_str(k);
        body.push('=');
        form_encode_into(&mut body, v);
    }
    body
}

/// `application/x-www-form-urlencoded` encoding of one value (WHATWG URL standard).
pub(crate) fn form_encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

/// TLS-PSK credentials of the C SDK 4.x (spec §2.2).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPsk {
    /// `devicename|hmacsha256|{pk}&{dn}|{timestamp}`.
    pub identity: String,
    /// Uppercase hex HMAC-SHA256(deviceSecret, `id{pk}&{dn}timestamp{ts}`).
    pub key: String,
}

impl fmt::Debug for TlsPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPsk")
            .field("identity", &self.identity)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The TLS-PSK identity and key for a device (spec §2.2); `timestamp` is `2524608000000` in the
/// C SDK.
pub fn tls_psk(product_key: &str, device_name: &str, device_secret: &str, timestamp: &str) -> TlsPsk {
    let identity = format!("devicename|hmacsha256|{product_key}&{device_name}|{timestamp}");
    let content = format!("id{product_key}&{device_name}timestamp{timestamp}");
    let key = SignMethod::HmacSha256.hex(device_secret.as_bytes(), content.as_bytes(), HexCase::Upper);
    TlsPsk { identity, key }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_method_parses_case_insensitively() {
        assert_eq!("HmacSha256".parse::<SignMethod>(), Ok(SignMethod::HmacSha256));
        assert_eq!("HMACMD5".parse::<SignMethod>(), Ok(SignMethod::HmacMd5));
        assert!("sha1".parse::<SignMethod>().is_err());
    }

    #[test]
    fn verify_accepts_both_cases_and_rejects_other_lengths() {
        let lower = SignMethod::HmacSha1.hex(b"k", b"m", HexCase::Lower);
        let upper = SignMethod::HmacSha1.hex(b"k", b"m", HexCase::Upper);
        assert!(SignMethod::HmacSha1.verify_hex(b"k", b"m", lower.as_bytes()));
        assert!(SignMethod::HmacSha1.verify_hex(b"k", b"m", upper.as_bytes()));
        assert!(!SignMethod::HmacSha1.verify_hex(b"k", b"m", &lower.as_bytes()[..38]));
        assert!(!SignMethod::HmacSha256.verify_hex(b"k", b"m", lower.as_bytes()));
        assert!(!SignMethod::HmacSha1.verify_hex(b"k", b"m", b"zz"));
    }

    #[test]
    fn dynreg_http_body_form_encodes_values() {
        let body = dynreg_http_body("pk", "light-01_x@home.1:2", "a b", SignMethod::HmacSha256, "AB");
        assert_eq!(
            body,
            "productKey=pk&deviceName=light-01_x%40home.1%3A2&random=a+b&sign=AB&signMethod=hmacsha256"
        );
    }

    #[test]
    fn tls_psk_matches_the_c_sdk_derivation() {
        let psk = tls_psk(
            "a13FN5TplKq",
            "mqtt_basic_demo",
            "jA0K15GobTDa5wgOtJPzdtcZPc4X7NYQ",
            "2524608000000",
        );
        assert_eq!(
            psk.identity,
            "devicename|hmacsha256|a13FN5TplKq&mqtt_basic_demo|2524608000000"
        );
        assert_eq!(
            psk.key,
            "3A27B38E1BAB95462F8EA659C15EE26319286EB1CB7B372451EE82A30A9E7FDF"
        );
    }
}
