//! Who is calling: a request's parameters (query ∪ form body, decoded), its signature (V1 in the
//! parameters, or V3 in the `Authorization` header) checked against the access key's secret, its
//! time and its nonce (cloud-side §1.1–§1.3). The signatures themselves are
//! `aliot_protocol::openapi`'s.
//!
//! Checks, in order, each with the platform's gateway error:
//! 1. the signature's parameters are there (400 `MissingParameter`, `IncompleteSignature`);
//! 2. the AccessKeyId is known (404 `InvalidAccessKeyId.NotFound`);
//! 3. the signature matches (400 `SignatureDoesNotMatch`, the server's string-to-sign after the
//!    colon of the message);
//! 4. the time is within 15 minutes of the hub's clock (400 `InvalidTimeStamp.Expired`,
//!    `InvalidTimeStamp.Format`);
//! 5. the nonce was not used in that window with this key (400 `SignatureNonceUsed`);
//! 6. the version is 2018-01-20 (or the older 2017-04-20 of the same actions) (400
//!    `InvalidVersion`).

use aliot_protocol::openapi::{self as sig, Authorization, SignatureError, V3Request};
use axum::http::HeaderMap;

use super::action::{ApiError, Params};
use super::replay::{Nonces, WINDOW_MS};

/// The API versions answered.
pub(crate) const VERSIONS: [&str; 2] = ["2018-01-20", "2017-04-20"];

/// A request as received, before any check.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    /// `GET` or `POST`.
    pub(crate) method: &'a str,
    /// The raw query string (without `?`).
    pub(crate) query: &'a str,
    /// The headers.
    pub(crate) headers: &'a HeaderMap,
    /// The body's bytes.
    pub(crate) body: &'a [u8],
}

/// A request's parameters and how it is signed.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// Query ∪ form body, decoded (the body wins a name given twice, as the Python core signs).
    pub(crate) params: Params,
    /// The query's pairs alone (what V3 signs).
    query: Vec<(String, String)>,
    /// The V3 `Authorization` header, when the request has one.
    v3: Option<Result<Authorization, &'static str>>,
    /// The action: `Action` (V1) or `x-acs-action` (V3).
    pub(crate) action: Option<String>,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads a request's parameters (nothing is checked yet).
pub(crate) fn parse(req: &Incoming<'_>) -> Parsed {
    let query = sig::form_decode(req.query);
    let mut pairs = query.clone();
    let is_form = header(req.headers, "content-type").is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if is_form {
        pairs.extend(sig::form_decode(&String::from_utf8_lossy(req.body)));
    }
    let v3 = header(req.headers, "authorization")
        .filter(|a| a.trim_start().starts_with(sig::V3_ALGORITHM))
        .map(|a| a.parse::<Authorization>().map_err(|e| e.0));
    let params = Params::new(pairs);
    let action = match &v3 {
        Some(_) => header(req.headers, "x-acs-action").map(str::to_owned),
        None => params.get("Action").map(str::to_owned),
    };
    Parsed {
        params,
        query,
        v3,
        action,
    }
}

fn missing(name: &str) -> ApiError {
    ApiError::gateway(
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
}

fn mismatch(e: SignatureError) -> ApiError {
    ApiError::gateway(400, "SignatureDoesNotMatch", e.to_string())
}

/// Checks the request's signature, time, nonce and version; the caller's AccessKeyId.
///
/// # Errors
/// The platform's gateway errors (see the module's docs).
pub(crate) fn authenticate(
    req: &Incoming<'_>,
    parsed: &Parsed,
    secret_of: impl Fn(&str) -> Option<String>,
    nonces: &Nonces,
    now_ms: u64,
) -> Result<String, ApiError> {
    let params = &parsed.params;
    let (access_key_id, time, nonce, version) = match &parsed.v3 {
        Some(auth) => {
            let auth = auth.as_ref().map_err(|why| {
                ApiError::gateway(
                    400,
                    "IncompleteSignature",
                    format!("The request signature is incomplete: {why}."),
                )
            })?;
            let h = |name: &str| header(req.headers, name).ok_or_else(|| missing(name));
            let (time, nonce) = (h("x-acs-date")?, h("x-acs-signature-nonce")?);
            let version = h("x-acs-version")?;
            let secret = secret_of(&auth.access_key_id).ok_or_else(unknown_key)?;
            let headers: Vec<(String, String)> = auth
                .signed_headers
                .iter()
                .map(|name| {
                    let values: Vec<&str> = req
                        .headers
                        .get_all(name.as_str())
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .map(str::trim)
                        .collect();
                    (name.clone(), values.join(","))
                })
                .collect();
            let payload_hash = sig::sha256_hex(req.body);
            let request = V3Request {
                method: req.method,
                query: &parsed.query,
                headers: &headers,
                payload_hash: &payload_hash,
            };
            sig::v3_verify(&request, &secret, &auth.signature).map_err(mismatch)?;
            (auth.access_key_id.clone(), time, nonce, version)
        }
        None => {
            let signature = params
                .get(sig::SIGNATURE_PARAM)
                .ok_or_else(|| missing("Signature"))?;
            let access_key_id = params.get("AccessKeyId").ok_or_else(|| missing("AccessKeyId"))?;
            if let Some(method) = params.get("SignatureMethod")
                && method != "HMAC-SHA1"
            {
                return Err(ApiError::gateway(
                    400,
                    "InvalidParameter",
                    format!("Specified signature method {method} is not supported (HMAC-SHA1)."),
                ));
            }
            let secret = secret_of(access_key_id).ok_or_else(unknown_key)?;
            let pairs = params.all().iter().map(|(k, v)| (k.as_str(), v.as_str()));
            sig::v1_verify(req.method, pairs, &secret, signature).map_err(mismatch)?;
            let time = params.get("Timestamp").ok_or_else(|| missing("Timestamp"))?;
            let nonce = params
                .get("SignatureNonce")
                .ok_or_else(|| missing("SignatureNonce"))?;
            let version = params.get("Version").ok_or_else(|| missing("Version"))?;
            (access_key_id.to_owned(), time, nonce, version)
        }
    };
    let at = crate::clock::parse_rfc3339(time).ok_or_else(|| {
        ApiError::gateway(
            400,
            "InvalidTimeStamp.Format",
            format!("Specified time stamp or date value is not well formatted: {time}"),
        )
    })?;
    if at.abs_diff(now_ms) > WINDOW_MS {
        return Err(ApiError::gateway(
            400,
            "InvalidTimeStamp.Expired",
            format!(
                "Specified time stamp or date value is expired (more than 15 minutes from the server's time): {time}"
            ),
        ));
    }
    if !nonces.check_and_record(&access_key_id, nonce, now_ms) {
        return Err(ApiError::gateway(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    if !VERSIONS.contains(&version) {
        return Err(ApiError::gateway(
            400,
            "InvalidVersion",
            format!("Specified parameter Version is not valid: {version} (2018-01-20)."),
        ));
    }
    Ok(access_key_id)
}

fn unknown_key() -> ApiError {
    ApiError::gateway(
        404,
        "InvalidAccessKeyId.NotFound",
        "Specified access key is not found.",
    )
}
