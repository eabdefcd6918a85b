//! An OTA task as the platform announces it (spec §4.3 "OTA"): the push on
//! `/ota/device/upgrade/{pk}/{dn}` (`{"code":"1000","data":{…},"id":…,"message":"success"}`) and
//! the `data` of the `thing.ota.firmware.get` reply (the same fields, or `{}` when nothing is
//! pending). Pure and below both `event` and `ota`.

use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};

/// How a firmware's digest (`sign`) was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignMethod {
    /// `MD5` (also spelled `Md5`): the lowercase hex MD5 of the file.
    Md5,
    /// `SHA256` (also `Sha256`): the lowercase hex SHA-256 of the file.
    Sha256,
}

impl SignMethod {
    /// Parses the platform's `signMethod`, whatever its case (`MD5`, `Md5`, `SHA256`, `Sha256`).
    ///
    /// # Errors
    /// [`Error::OtaTask`] for any other method.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "md5" => Ok(SignMethod::Md5),
            "sha256" | "sha-256" => Ok(SignMethod::Sha256),
            other => Err(Error::OtaTask(format!(
                "signMethod {other:?} is neither MD5 nor SHA256"
            ))),
        }
    }

    /// The spelling the platform pushes: `MD5` or `SHA256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "MD5",
            SignMethod::Sha256 => "SHA256",
        }
    }
}

/// One firmware to install: what the platform pushed or answered to `thing.ota.firmware.get`.
///
/// `Debug` leaves the URL's query out: it is a signed, expiring download right.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Upgrade {
    /// The target version.
    pub version: String,
    /// The file's size in bytes.
    pub size: u64,
    /// Where to download it (HTTP or HTTPS, signed and expiring).
    pub url: String,
    /// How `sign` was computed.
    pub sign_method: SignMethod,
    /// The file's digest, lowercase hex.
    pub sign: String,
    /// The module (`None`: the default module).
    pub module: Option<String>,
    /// A differential package (the platform only carries the flag; the application applies it).
    pub is_diff: bool,
    /// The job's `extData`, when it has some.
    pub ext_data: Option<Value>,
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("Upgrade")
            .field("version", &self.version)
            .field("size", &self.size)
            .field("url", &format_args!("{url}?…"))
            .field("sign_method", &self.sign_method)
            .field("sign", &self.sign)
            .field("module", &self.module)
            .field("is_diff", &self.is_diff)
            .finish_non_exhaustive()
    }
}

impl Upgrade {
    /// Parses a push on `/ota/device/upgrade/{pk}/{dn}`. `code` is the string `"1000"` (a number
    /// is accepted too); `id` may be a number.
    ///
    /// # Errors
    /// [`Error::OtaTask`] for a payload that is not JSON, a code other than 1000, or unusable
    /// `data` (see [`Upgrade::from_data`]).
    pub fn from_push(payload: &[u8]) -> Result<Self> {
        let body: Value = serde_json::from_slice(payload)
            .map_err(|e| Error::OtaTask(format!("the push is not JSON: {e}")))?;
        let code = match body.get("code") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        if code != "1000" {
            return Err(Error::OtaTask(format!(
                "the push has code {code:?}, not \"1000\""
            )));
        }
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        Self::from_data(&data)?.ok_or_else(|| Error::OtaTask("the push has no data".into()))
    }

    /// Parses the `data` of a push or of a `thing.ota.firmware.get` reply: `None` for `{}` (no
    /// pending task). `size` may be a number or a numeric string; `signMethod` falls back to MD5
    /// when only `md5` is given; `digestsign` is ignored (absent in some pushes).
    ///
    /// # Errors
    /// [`Error::OtaTask`] when `version`, `url` or `size` is missing, or no digest is given.
    pub fn from_data(data: &Value) -> Result<Option<Self>> {
        let Some(obj) = data.as_object() else {
            return match data {
                Value::Null => Ok(None),
                _ => Err(Error::OtaTask("data is not an object".into())),
            };
        };
        if obj.is_empty() {
            return Ok(None);
        }
        let text = |key: &str| -> Option<String> {
            match obj.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        let missing = |key: &str| Error::OtaTask(format!("data has no {key}"));
        if obj.get("dProtocol").and_then(Value::as_str) == Some("mqtt") {
            return Err(Error::OtaTask(
                "MQTT-stream downloads (dProtocol mqtt) are not supported: use an HTTP(S) URL".into(),
            ));
        }
        let version = text("version").ok_or_else(|| missing("version"))?;
        let url = text("url").ok_or_else(|| missing("url"))?;
        let size = text("size")
            .ok_or_else(|| missing("size"))?
            .parse::<u64>()
            .map_err(|_| Error::OtaTask("size is not a whole number of bytes".into()))?;
        let (sign_method, sign) = match (text("signMethod"), text("sign"), text("md5")) {
            (Some(method), Some(sign), _) => (SignMethod::parse(&method)?, sign),
            (Some(method), None, Some(md5)) if SignMethod::parse(&method)? == SignMethod::Md5 => {
                (SignMethod::Md5, md5)
            }
            (None, _, Some(md5)) => (SignMethod::Md5, md5),
            _ => return Err(missing("sign")),
        };
        let is_diff = match obj.get("isDiff") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::String(s)) => s == "1" || s == "true",
            _ => false,
        };
        Ok(Some(Upgrade {
            version,
            size,
            url,
            sign_method,
            sign: sign.to_ascii_lowercase(),
            module: text("module").filter(|m| m != "default"),
            is_diff,
            ext_data: obj.get("extData").cloned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pushes_parse_as_the_platform_sends_them() {
        let push = br#"{"code":"1000","data":{"size":432945,"version":"2.0.0","isDiff":1,
            "url":"https://h/f?Expires=1&Signature=x","md5":"93230C3BDE","digestsign":"A4WOP",
            "sign":"93230c3bde","signMethod":"Md5","module":"MCU","extData":{"k":"v"}},
            "id":1626969597470,"message":"success"}"#;
        let u = Upgrade::from_push(push).expect("a push");
        assert_eq!(
            (u.version.as_str(), u.size, u.sign_method, u.sign.as_str()),
            ("2.0.0", 432945, SignMethod::Md5, "93230c3bde")
        );
        assert_eq!((u.module.as_deref(), u.is_diff), (Some("MCU"), true));
        assert!(!format!("{u:?}").contains("Signature"));
        let sha = json!({"size":"10","version":"1.1","url":"http://h/f","sign":"AB","signMethod":"SHA256"});
        let u = Upgrade::from_data(&sha).expect("ok").expect("a task");
        assert_eq!((u.size, u.sign_method, u.module), (10, SignMethod::Sha256, None));
        let md5_only = json!({"size":1,"version":"1","url":"http://h/f","md5":"ab"});
        assert_eq!(
            Upgrade::from_data(&md5_only)
                .expect("ok")
                .expect("a task")
                .sign_method,
            SignMethod::Md5
        );
        assert_eq!(Upgrade::from_data(&json!({})).expect("ok"), None);
    }

    #[test]
    fn unusable_tasks_are_errors() {
        for bad in [
            json!({"size":1,"version":"1","url":"http://h/f"}),
            json!({"size":1,"version":"1","md5":"ab"}),
            json!({"size":"x","version":"1","url":"http://h/f","md5":"ab"}),
            json!({"size":1,"version":"1","url":"http://h/f","sign":"ab","signMethod":"crc"}),
            json!({"size":1,"version":"1","dProtocol":"mqtt","streamId":1,"md5":"ab"}),
            json!([1]),
        ] {
            assert!(Upgrade::from_data(&bad).is_err(), "{bad}");
        }
        assert!(Upgrade::from_push(br#"{"code":"9201","data":{}}"#).is_err());
        assert!(Upgrade::from_push(b"nope").is_err());
    }
}
