//! Aliyun's OpenAPI request signatures (RPC style; cloud-side spec §1.2, §1.3), pure: no IO, no
//! clock. Both halves are here: signing (a client) and verifying (a server, which on a mismatch
//! gives back its own string-to-sign for the `SignatureDoesNotMatch` message).
//!
//! **Signature V1** (HMAC-SHA1, what `aliyun-python-sdk-core` and `@alicloud/pop-core` send):
//!
//! ```text
//! CanonicalizedQueryString = join("&", sorted: percentEncode(k) + "=" + percentEncode(v))
//!                            over every parameter but "Signature" (query ∪ form body)
//! StringToSign = METHOD + "&%2F&" + percentEncode(CanonicalizedQueryString)
//! Signature    = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))
//! ```
//!
//! **Signature V3** (`ACS3-HMAC-SHA256`, what the Tea SDKs send by default):
//!
//! ```text
//! CanonicalRequest = METHOD \n "/" \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//! StringToSign     = "ACS3-HMAC-SHA256" \n hex(sha256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))
//! ```
//!
//! ```
//! use aliot_protocol::openapi;
//!
//! let params = [("Action", "Pub"), ("AccessKeyId", "testid")];
//! let sts = openapi::v1_string_to_sign("GET", params);
//! let sig = openapi::v1_sign("testsecret", &sts);
//! assert!(openapi::v1_verify("GET", params, "testsecret", &sig).is_ok());
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The V3 algorithm's name, first word of the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The parameter that carries a V1 signature (never part of what is signed).
pub const SIGNATURE_PARAM: &str = "Signature";

/// RFC 3986 percent-encoding over UTF-8, as the platform signs: `A-Z a-z 0-9 - _ . ~` stay,
/// everything else becomes `%XY` (upper-case hex); a space is `%20`, never `+`.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body) into
/// pairs: `+` is a space, `%XY` a byte; a malformed escape is kept as it is, bytes that are not
/// UTF-8 are replaced (U+FFFD). Empty pieces (`a=1&&b=2`) are skipped; a name without `=` has an
/// empty value.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) =>
            {
                out.push(h << 4 | l);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Hex SHA-256 of `bytes` (lower case): the V3 body hash (`x-acs-content-sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature differs from the server's; carries the server's string-to-sign (the
    /// platform puts it after a colon in its message, and the Python core reads it from there).
    #[error(
        "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
    )]
    Mismatch {
        /// What the server signed.
        string_to_sign: String,
    },
}

/// The message the platform gives with `SignatureDoesNotMatch`, prefix of the server's
/// string-to-sign (after the colon).
pub const MISMATCH_MESSAGE: &str =
    "Specified signature is not matched with our calculation. server string to sign is:";

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

// ----- V1 -----

/// The V1 canonicalized query string of `params` (every pair but `Signature`), sorted by name.
pub fn v1_canonical_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, _)| *k != SIGNATURE_PARAM)
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The V1 string-to-sign of a request with this HTTP `method` (as received: `GET`, `POST`) and
/// these decoded parameters (query ∪ form body; `Signature` is left out).
pub fn v1_string_to_sign<'a>(method: &str, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    format!("{method}&%2F&{}", percent_encode(&v1_canonical_query(params)))
}

/// The V1 signature: Base64 of HMAC-SHA1 keyed by `secret + "&"`.
pub fn v1_sign(secret: &str, string_to_sign: &str) -> String {
    let key = format!("{secret}&");
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a V1 signature in constant time.
///
/// # Errors
/// [`SignatureError::Mismatch`] with the server's string-to-sign.
pub fn v1_verify<'a>(
    method: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    secret: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    let string_to_sign = v1_string_to_sign(method, params);
    let expected = v1_sign(secret, &string_to_sign);
    if equal(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch { string_to_sign })
    }
}

// ----- V3 -----

/// A V3 request as signed: method, decoded query, the signed headers (names lower case, values
/// as received) and the body's hex SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct V3Request<'a> {
    /// `GET`, `POST`.
    pub method: &'a str,
    /// The query's decoded pairs (not the form body: V3 signs the body by its hash).
    pub query: &'a [(String, String)],
    /// The signed headers, names lower case, in any order.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body (`x-acs-content-sha256`, or [`sha256_hex`] of the bytes).
    pub payload_hash: &'a str,
}

/// The V3 canonical request.
pub fn v3_canonical_request(req: &V3Request<'_>) -> String {
    let mut query: Vec<&(String, String)> = req.query.iter().collect();
    query.sort_unstable();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    headers.sort_unstable();
    let mut canonical_headers = String::new();
    for (k, v) in &headers {
        canonical_headers.push_str(k);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    format!(
        "{}\n/\n{query}\n{canonical_headers}\n{}\n{}",
        req.method,
        signed.join(";"),
        req.payload_hash
    )
}

/// The V3 string-to-sign of a canonical request.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!("{V3_ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The V3 signature: hex HMAC-SHA256 keyed by the secret (no `&`).
pub fn v3_sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a V3 signature (hex, either case) in constant time.
///
/// # Errors
/// [`SignatureError::Mismatch`] with the server's string-to-sign.
pub fn v3_verify(req: &V3Request<'_>, secret: &str, signature: &str) -> Result<(), SignatureError> {
    let string_to_sign = v3_string_to_sign(&v3_canonical_request(req));
    let expected = v3_sign(secret, &string_to_sign);
    if equal(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch { string_to_sign })
    }
}

/// The V3 `Authorization` header:
/// `ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<a;b>,Signature=<hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The AccessKeyId.
    pub access_key_id: String,
    /// The signed header names, lower case, as listed.
    pub signed_headers: Vec<String>,
    /// The hex signature.
    pub signature: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("access_key_id", &self.access_key_id)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// Why an `Authorization` header is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Authorization header: {0}")]
pub struct AuthorizationError(pub &'static str);

impl FromStr for Authorization {
    type Err = AuthorizationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .trim()
            .strip_prefix(V3_ALGORITHM)
            .ok_or(AuthorizationError("not ACS3-HMAC-SHA256"))?;
        let (mut ak, mut signed, mut sig) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(AuthorizationError("a part without '='"))?;
            match k.trim() {
                "Credential" => ak = Some(v.trim().to_owned()),
                "SignedHeaders" => {
                    signed = Some(
                        v.split(';')
                            .map(|h| h.trim().to_ascii_lowercase())
                            .filter(|h| !h.is_empty())
                            .collect(),
                    );
                }
                "Signature" => sig = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        Ok(Authorization {
            access_key_id: ak
                .filter(|a: &String| !a.is_empty())
                .ok_or(AuthorizationError("no Credential"))?,
            signed_headers: signed.ok_or(AuthorizationError("no SignedHeaders"))?,
            signature: sig
                .filter(|s: &String| !s.is_empty())
                .ok_or(AuthorizationError("no Signature"))?,
        })
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{V3_ALGORITHM} Credential={},SignedHeaders={},Signature={}",
            self.access_key_id,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: [(&str, &str); 15] = [
        ("MessageContent", "aGVsbG93b3JsZA="),
        ("Action", "Pub"),
        ("Timestamp", "2017-10-02T09:39:41Z"),
        ("SignatureVersion", "1.0"),
        ("ServiceCode", "iot"),
        ("Format", "XML"),
        ("Qos", "0"),
        ("SignatureNonce", "0715a395-aedf-4a41-bab7-746b43d38d88"),
        ("Version", "2017-04-20"),
        ("AccessKeyId", "testid"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("RegionId", "cn-shanghai"),
        ("ProductKey", "12345abcdeZ"),
        ("TopicFullName", "/productKey/testdevice/get"),
        ("Signature", "ignored"),
    ];

    #[test]
    fn the_official_v1_vector_signs_and_verifies() {
        let sts = v1_string_to_sign("GET", VECTOR);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DPub%26Format%3DXML%26MessageContent%3DaGVsbG93b3JsZA%253D%26ProductKey%3D12345abcdeZ%26Qos%3D0%26RegionId%3Dcn-shanghai%26ServiceCode%3Diot%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0715a395-aedf-4a41-bab7-746b43d38d88%26SignatureVersion%3D1.0%26Timestamp%3D2017-10-02T09%253A39%253A41Z%26TopicFullName%3D%252FproductKey%252Ftestdevice%252Fget%26Version%3D2017-04-20"
        );
        assert_eq!(v1_sign("testsecret", &sts), "Y9eWn4nF8QPh3c4zAFkM/k/u7eA=");
        assert!(v1_verify("GET", VECTOR, "testsecret", "Y9eWn4nF8QPh3c4zAFkM/k/u7eA=").is_ok());
    }

    #[test]
    fn a_wrong_v1_signature_gives_the_server_string_to_sign_after_a_colon() {
        let err = v1_verify("POST", VECTOR, "testsecret", "Y9eWn4nF8QPh3c4zAFkM/k/u7eA=")
            .expect_err("the method is signed");
        let SignatureError::Mismatch { string_to_sign } = &err;
        assert!(string_to_sign.starts_with("POST&%2F&AccessKeyId%3Dtestid"));
        let text = err.to_string();
        assert_eq!(
            text.split_once(':').map(|(_, s)| s),
            Some(string_to_sign.as_str())
        );
    }

    #[test]
    fn percent_encoding_follows_rfc_3986() {
        assert_eq!(percent_encode("a b*c~d/e+f=ü"), "a%20b%2Ac~d%2Fe%2Bf%3D%C3%BC");
    }

    #[test]
    fn form_decoding_reads_plus_as_space_and_escapes_as_bytes() {
        assert_eq!(
            form_decode("a=1+2&b=%2F%C3%BC&&c&d=%zz%4"),
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "/ü".into()),
                ("c".into(), String::new()),
                ("d".into(), "%zz%4".into()),
            ]
        );
    }

    type Pairs = Vec<(String, String)>;

    fn v3_vector() -> (Pairs, Pairs) {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        (
            vec![s("ProductKey", "a1pk"), s("DeviceName", "dev 1")],
            vec![
                s("host", "iot.cn-shanghai.aliyuncs.com"),
                s("x-acs-action", "QueryDeviceDetail"),
                s("x-acs-version", "2018-01-20"),
                s("x-acs-date", "2024-01-01T00:00:00Z"),
                s("x-acs-signature-nonce", "nonce-1"),
                s("x-acs-content-sha256", &sha256_hex(b"")),
            ],
        )
    }

    #[test]
    fn the_v3_vector_signs_and_verifies() {
        let (query, headers) = v3_vector();
        let hash = sha256_hex(b"");
        let req = V3Request {
            method: "POST",
            query: &query,
            headers: &headers,
            payload_hash: &hash,
        };
        let cr = v3_canonical_request(&req);
        assert!(cr.contains("\nDeviceName=dev%201&ProductKey=a1pk\n"), "{cr}");
        let sts = v3_string_to_sign(&cr);
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n4eded240efae99035218ae791842bad814a4ee555df25450e0c0dabff1a8b6c9"
        );
        let sig = v3_sign("testsecret", &sts);
        assert_eq!(
            sig,
            "c193cd2eb0b67a4e76d45c066e63078638cdcd189367bc925d267d50705dde1b"
        );
        assert!(v3_verify(&req, "testsecret", &sig.to_ascii_uppercase()).is_ok());
        assert!(v3_verify(&req, "other", &sig).is_err());
    }

    #[test]
    fn authorization_headers_parse_and_print() {
        let text = "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-date,Signature=abc";
        let auth: Authorization = text.parse().expect("well formed");
        assert_eq!(auth.access_key_id, "testid");
        assert_eq!(auth.signed_headers, ["host", "x-acs-date"]);
        assert_eq!(auth.to_string(), text);
        assert!(!format!("{auth:?}").contains("abc"));
        assert!("Bearer x".parse::<Authorization>().is_err());
        assert!(
            "ACS3-HMAC-SHA256 SignedHeaders=host,Signature=a"
                .parse::<Authorization>()
                .is_err()
        );
    }
}
