//! The error type of aliot-protocol.

use thiserror::Error;

/// Everything that can go wrong in aliot-protocol: all of it is bad input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of the device identity is empty, too long or has a character the platform rejects.
    #[error("invalid {field}: {reason}")]
    InvalidIdentity {
        /// `productKey`, `deviceName`, `deviceSecret` or `productSecret`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An unknown `signmethod` value.
    #[error("unknown sign method {0:?} (expected hmacsha1, hmacsha256 or hmacmd5)")]
    UnknownSignMethod(String),
    /// An unknown `securemode` value.
    #[error("unknown securemode {0:?} (expected one of -2, -1, 0, 1, 2, 3, 4, 5, 7, 8)")]
    UnknownSecureMode(String),
    /// The MQTT clientId does not follow `prefix|key=value,...|`.
    #[error("malformed clientId: {0}")]
    ClientId(#[from] ClientIdError),
    /// The MQTT username is not `deviceName&productKey`.
    #[error("malformed username {username:?}: {reason}")]
    Username {
        /// The username as received.
        username: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A topic that is not one of the platform's topic families.
    #[error("unrecognised topic {0:?}")]
    Topic(String),
    /// A topic longer than [`crate::topic::MAX_REPLY_TOPIC_LEN`] bytes or
    /// [`crate::topic::MAX_TOPIC_LEVELS`] levels (not echoed: it may be huge).
    // The figures are the constants' (this module cannot name them: `topic` uses it); a test
    // in `topic` keeps them equal.
    #[error("topic of {len} bytes is beyond the caps (at most 262 bytes and 32 levels)")]
    TopicTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A device profile (TOML) that cannot be read.
    #[error("bad device profile: {0}")]
    Profile(String),
    /// An endpoint (region, instance id, host, port) that cannot be used.
    #[error("bad endpoint: {0}")]
    Endpoint(String),
}

/// Why a clientId could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientIdError {
    /// No `|` at all: the parameters part is missing.
    #[error("no '|': expected prefix|key=value,...|")]
    MissingSeparator,
    /// Only one `|`: the parameters part is not closed.
    #[error("only one '|': the parameter list must be closed by a final '|'")]
    Unterminated,
    /// Text after the closing `|`.
    #[error("text after the closing '|': {0:?}")]
    TrailingText(String),
    /// A parameter without `=`.
    #[error("parameter {0:?} has no '='")]
    MissingEquals(String),
    /// A parameter with an empty key.
    #[error("parameter {0:?} has an empty key")]
    EmptyKey(String),
    /// The same key twice.
    #[error("parameter {0:?} appears twice")]
    DuplicateKey(String),
    /// The prefix is longer than the platform's 64 characters.
    #[error("prefix is {0} characters long (the platform allows at most 64)")]
    PrefixTooLong(usize),
    /// The whole clientId is longer than [`crate::client_id::MAX_CLIENT_ID_LEN`] bytes.
    #[error("clientId is {0} bytes long (at most 512 are accepted)")]
    TooLong(usize),
    /// More `key=value` parameters than [`crate::client_id::MAX_PARAMS`].
    #[error("clientId has {0} parameters (at most 32 are accepted)")]
    TooManyParams(usize),
    /// A key or value contains a character that would break the grammar when built.
    #[error("{0:?} contains a ',', '|' or '=' that cannot be encoded")]
    Unencodable(String),
}

/// `Result` with aliot-protocol's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
