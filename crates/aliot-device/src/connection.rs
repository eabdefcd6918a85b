//! What the device is told about its connection: [`Connected`] and [`Disconnected`].
//!
//! Below both the events ([`crate::event`], which re-exports these types) and the state shared
//! with the network loop (`shared`, which hands a [`Connected`] to [`crate::Device::connect`]),
//! so that neither of them depends on the other.

use std::time::Duration;

use aliot_protocol::ConnackCode;

/// A successful CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connected {
    /// The clientId this connection was signed with (it holds the timestamp; no secret).
    pub client_id: String,
    /// The timestamp (epoch ms) signed into this connection (empty for a token login, which
    /// signs nothing).
    pub timestamp: String,
    /// Whether the platform kept a session from before (clean session off).
    pub session_present: bool,
    /// How many connections this device made so far, this one included.
    pub connections: u64,
}

/// A failed attempt or a lost connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disconnected {
    /// What happened.
    pub reason: String,
    /// The CONNACK refusal, when the platform refused the CONNECT.
    pub refused: Option<ConnackCode>,
    /// Whether a connection was up (false: an attempt failed).
    pub was_connected: bool,
    /// When the next attempt happens; `None` when the device stops.
    pub retry_in: Option<Duration>,
}
