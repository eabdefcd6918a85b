//! The OpenAPI response envelope (cloud-side §1.5), the one place that writes it:
//!
//! - success: HTTP 200, `RequestId`, `Success:true` and the action's fields; **no `Code`**
//!   (pop-core throws on any `Code` it does not know);
//! - business error: HTTP 200, `RequestId`, `Success:false`, `Code`, `ErrorMessage`;
//! - gateway error: its HTTP status (4xx), `RequestId`, `HostId`, `Code`, `Message` (the
//!   SDKs raise on the status and read `Code`/`Message`).
//!
//! JSON unless the request asked `Format=XML` (any case): then the root is `<{Action}Response>`
//! on success and `<Error>` for a gateway error (a business error keeps the action's root).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use serde_json::{Map, Value};

use super::action::{ApiError, Reply};

/// The host the envelope names in `HostId` (the real platform's regional host).
const HOST_ID: &str = "iot.aliyuncs.com";

/// The body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    /// JSON (the default; Tea V3 sends no `Format`).
    #[default]
    Json,
    /// XML (`Format=XML`, any case).
    Xml,
}

impl Format {
    /// The format a `Format` parameter asks for.
    pub(crate) fn of(param: Option<&str>) -> Self {
        match param {
            Some(f) if f.eq_ignore_ascii_case("xml") => Format::Xml,
            _ => Format::Json,
        }
    }
}

/// A fresh request id in the platform's style: a random UUID, upper case.
pub(crate) fn request_id() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The answer to a request: `action` names the XML root (`None` before the action is known).
pub(crate) fn respond(
    format: Format,
    action: Option<&str>,
    request_id: &str,
    result: Result<Reply, ApiError>,
) -> Response {
    let mut body = Map::new();
    body.insert("RequestId".into(), Value::String(request_id.to_owned()));
    let (status, root) = match result {
        Ok(reply) => {
            body.insert("Success".into(), Value::Bool(true));
            body.extend(reply);
            (StatusCode::OK, response_root(action))
        }
        Err(ApiError {
            status: None,
            code,
            message,
        }) => {
            body.insert("Success".into(), Value::Bool(false));
            body.insert("Code".into(), Value::String(code.into_owned()));
            body.insert("ErrorMessage".into(), Value::String(message));
            (StatusCode::OK, response_root(action))
        }
        Err(ApiError {
            status: Some(status),
            code,
            message,
        }) => {
            body.insert("HostId".into(), Value::String(HOST_ID.into()));
            body.insert("Code".into(), Value::String(code.into_owned()));
            body.insert("Message".into(), Value::String(message));
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, "Error".to_owned())
        }
    };
    let (content_type, text) = match format {
        Format::Json => ("application/json;charset=utf-8", Value::Object(body).to_string()),
        Format::Xml => ("text/xml;charset=utf-8", to_xml(&root, &body)),
    };
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn response_root(action: Option<&str>) -> String {
    match action {
        Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric()) => format!("{a}Response"),
        _ => "Response".to_owned(),
    }
}

/// The body as XML: each field an element; a list repeats its field's element once per item.
fn to_xml(root: &str, body: &Map<String, Value>) -> String {
    let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>");
    out.push_str(&format!("<{root}>"));
    for (k, v) in body {
        element(&mut out, k, v);
    }
    out.push_str(&format!("</{root}>"));
    out
}

fn element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                element(out, name, item);
            }
        }
        Value::Object(fields) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in fields {
                element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, request_id());
    }

    #[test]
    fn xml_repeats_list_elements_and_escapes_text() {
        let body =
            json!({"Data": {"DeviceInfo": [{"DeviceName": "a<b"}, {"DeviceName": "c"}]}, "Success": true});
        let Value::Object(body) = body else {
            unreachable!("an object")
        };
        assert_eq!(
            to_xml("QueryDeviceResponse", &body),
            "<?xml version='1.0' encoding='UTF-8'?><QueryDeviceResponse><Data><DeviceInfo><DeviceName>a&lt;b</DeviceName></DeviceInfo><DeviceInfo><DeviceName>c</DeviceName></DeviceInfo></Data><Success>true</Success></QueryDeviceResponse>"
        );
    }

    #[test]
    fn format_is_case_insensitive() {
        assert_eq!(Format::of(Some("xml")), Format::Xml);
        assert_eq!(Format::of(Some("JSON")), Format::Json);
        assert_eq!(Format::of(None), Format::Json);
    }
}
