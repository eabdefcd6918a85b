//! What can go wrong talking to the admin API ([`Error`]), and the API's own error body
//! ([`ErrorBody`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The body of every error answer: `{"code","message"}`, e.g.
/// `{"code":"device_not_found","message":"device a1/x not found"}`.
///
/// The codes and their statuses are listed in the hub's admin module docs (`invalid_argument`
/// 400, `unauthorized` 401, `device_not_found` 404, `device_exists` 409, `device_timeout` 504…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code (snake_case).
    pub code: String,
    /// What went wrong and what to fix, in words.
    pub message: String,
}

/// A source error from the HTTP stack (kept opaque: the HTTP crates are not part of this API).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An admin API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL is not an `http://` URL (HTTPS is not supported).
    #[error("{url:?} is not an http:// URL")]
    InvalidUrl {
        /// The URL given.
        url: String,
    },
    /// The token holds characters an HTTP header cannot carry.
    #[error("the admin token cannot be sent in an HTTP header (control characters?)")]
    InvalidToken,
    /// A file the hub writes into its data directory is missing or empty.
    #[error("no {file} in {} (is `aliot hub` running with this data directory?)", dir.display())]
    MissingFile {
        /// The data directory.
        dir: PathBuf,
        /// The file's name ([`crate::data_dir::URL_FILE`] or [`crate::data_dir::TOKEN_FILE`]).
        file: &'static str,
    },
    /// The hub could not be reached (connection refused, DNS, connect timeout…).
    #[error("cannot reach the hub at {url}")]
    Connect {
        /// The base URL.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The answer broke off.
    #[error("cannot read the answer of {url}")]
    Read {
        /// The request's URL.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// No (complete) answer in time.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The request's URL.
        url: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The hub answered with an error status: `HTTP 404 device_not_found: device a1/x not found`.
    #[error("HTTP {status}{}: {message}", code_part(.code.as_deref()))]
    Http {
        /// The HTTP status.
        status: u16,
        /// The hub's error code, when the body was an [`ErrorBody`].
        code: Option<String>,
        /// The hub's message, or the body's text when it was not an [`ErrorBody`].
        message: String,
    },
    /// A success answer that is not what the admin API sends.
    #[error("the answer of {url} is not what the admin API sends")]
    BadAnswer {
        /// The request's URL.
        url: String,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A server-sent event larger than the client accepts.
    #[error("an event of {url} is larger than {limit} bytes")]
    EventTooLarge {
        /// The event stream's URL.
        url: String,
        /// The limit, bytes.
        limit: usize,
    },
}

fn code_part(code: Option<&str>) -> String {
    code.map(|c| format!(" {c}")).unwrap_or_default()
}

impl Error {
    /// The HTTP status of an error answer ([`Error::Http`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The hub's error code of an error answer (`device_exists`, `device_timeout`…).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The error of an error answer: its [`ErrorBody`] when it is one, else its text.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => Self::Http {
                status,
                code: Some(b.code),
                message: b.message,
            },
            Err(_) => Self::Http {
                status,
                code: None,
                message: String::from_utf8_lossy(body).trim().to_owned(),
            },
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assert_wire;

    #[test]
    fn the_error_body_is_pinned() {
        assert_wire(
            &ErrorBody {
                code: "device_not_found".into(),
                message: "device a/b not found".into(),
            },
            r#"{"code":"device_not_found","message":"device a/b not found"}"#,
        );
    }

    #[test]
    fn error_answers_become_one_line() {
        let e = Error::from_answer(
            404,
            br#"{"code":"device_not_found","message":"device a/b not found"}"#,
        );
        assert_eq!(e.to_string(), "HTTP 404 device_not_found: device a/b not found");
        assert_eq!((e.status(), e.code()), (Some(404), Some("device_not_found")));
        let e = Error::from_answer(502, b"oops\n");
        assert_eq!(e.to_string(), "HTTP 502: oops");
        assert_eq!((e.status(), e.code()), (Some(502), None));
    }
}
