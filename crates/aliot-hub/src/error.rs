//! The errors of starting and running a hub ([`crate::start`], [`crate::run`]).
//!
//! Each layer has its own error: the registry's ([`crate::registry::Error`]), the application
//! service's ([`crate::service::Error`]); this one is what setting up and running the whole hub
//! can fail with, wrapping them with their sources.

use std::io;

/// What starting or running a hub can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong (configuration file, flags).
    #[error("bad configuration: {0}")]
    Config(String),

    /// A file or socket operation failed.
    #[error("{context}")]
    Io {
        /// What the hub was doing ("cannot listen on 127.0.0.1:1883 (MQTT)").
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The TLS setup failed (certificates cannot be made or read).
    #[error("TLS setup failed: {context}")]
    Tls {
        /// What failed ("cannot read /path/server.pem").
        context: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The registry cannot be opened or failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),

    /// A task of the hub ended abnormally (a panic: a bug).
    #[error("a hub task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    /// An IO failure while doing `context`.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A TLS failure with its cause.
    pub(crate) fn tls(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Tls {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// `Result` with the hub's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
