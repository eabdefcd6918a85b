//! The crate's one error type.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use rmqtt_codec::error::{DecodeError, EncodeError};

/// A boxed error from a dependency, kept as the source of an [`Error`].
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong: in the options, the device list, the admin API, a worker process, or an
/// MQTT connection ([`wire`](crate::wire)).
///
/// `Display` says what failed; the cause, when there is one, is the [`source`](std::error::Error::source)
/// (print the chain, e.g. with anyhow's `{:#}`). [`Error::is_usage`] tells the caller's mistakes
/// (options, device list) apart from failures of the run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options cannot run. The message names the `aliot bench` flag of the option at fault
    /// (each [`Options`](crate::Options) field has the name of its flag).
    #[error("{0}")]
    InvalidOptions(String),
    /// Registering devices, or the downlink/rrpc workloads, need the admin API and none was given.
    #[error(
        "--register and the downlink/rrpc workloads need the hub's admin API: pass --admin-url or set \
         ALIOT_ADMIN_URL"
    )]
    NoAdminApi,
    /// A line of the device list (CSV) is not `productKey,deviceName,deviceSecret`.
    #[error("{}: {reason}", path.display())]
    DeviceList {
        /// The CSV file.
        path: PathBuf,
        /// What is wrong, with its line number.
        reason: String,
    },
    /// The device list holds no device.
    #[error("{} holds no device", path.display())]
    EmptyDeviceList {
        /// The CSV file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The admin API could not be reached or answered something unexpected.
    #[error("{message}")]
    Admin {
        /// What failed (the URL, the HTTP status and the start of the answer).
        message: String,
        /// The cause, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The server's host name does not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The host name.
        host: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The server's host name resolves to no address.
    #[error("{host} has no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The TLS client cannot be set up (CA file, server name).
    #[error("{message}")]
    Tls {
        /// What failed.
        message: String,
        /// The cause, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The subscriber that measures deliveries under plain auth could not start.
    #[error("{0}")]
    Subscriber(String),
    /// The server to sample (`hub_metrics`, `server_pid`) cannot be sampled.
    #[error("{0}")]
    ServerSampling(String),
    /// A worker process could not be started, failed, or broke the worker protocol.
    #[error("{message}")]
    Worker {
        /// What failed, naming the worker.
        message: String,
        /// The cause, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A latency histogram could not be serialized or read back.
    #[error("histogram: {0}")]
    Histogram(String),
    /// Reading or writing an MQTT connection failed.
    #[error("connection I/O failed")]
    Io(#[source] io::Error),
    /// A packet could not be encoded (e.g. a QoS 1 PUBLISH without a packet id).
    #[error("cannot encode an MQTT packet")]
    Encode(#[source] EncodeError),
    /// The peer sent bytes that are not an MQTT 3.1.1 packet (or one larger than the limit).
    #[error("malformed MQTT packet")]
    Decode(#[source] DecodeError),
    /// The connection closed while a packet was expected.
    #[error("the connection closed before {expected}")]
    Closed {
        /// The packet that was expected (e.g. `CONNACK`).
        expected: &'static str,
    },
    /// Another packet arrived than the one expected.
    #[error("expected {expected}, got packet type {packet_type}")]
    UnexpectedPacket {
        /// The packet that was expected (e.g. `CONNACK`).
        expected: &'static str,
        /// The first byte of the packet that arrived, as `Packet::packet_type` gives it.
        packet_type: u8,
    },
}

impl Error {
    /// Whether the error is the caller's mistake (options, device list) rather than a failure of
    /// the run: a command line maps these to its usage exit status.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::InvalidOptions(_)
                | Error::NoAdminApi
                | Error::DeviceList { .. }
                | Error::EmptyDeviceList { .. }
        )
    }

    pub(crate) fn admin(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Admin {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn worker(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Worker {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// The error and its sources on one line, `outer: cause: root cause` (as anyhow's `{:#}`).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let _ = write!(out, ": {s}");
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_should_join_the_sources_like_anyhow() {
        let e = Error::ReadFile {
            path: "fleet.csv".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "No such file"),
        };
        assert_eq!(chain(&e), "cannot read fleet.csv: No such file");
    }

    #[test]
    fn only_option_and_device_list_errors_should_be_usage_errors() {
        assert!(Error::InvalidOptions("x".into()).is_usage());
        assert!(Error::EmptyDeviceList { path: "f".into() }.is_usage());
        assert!(!Error::Subscriber("x".into()).is_usage());
        assert!(!Error::Io(io::ErrorKind::BrokenPipe.into()).is_usage());
    }
}
