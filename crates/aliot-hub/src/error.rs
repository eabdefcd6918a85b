//! The hub's error type.

use std::io;
use std::time::Duration;

/// Errors returned by the hub's public API ([`crate::broker::Broker`] and friends).
///
/// Variants say what failed and carry what a caller needs to act on it (the admin API maps
/// them to HTTP statuses: not found → 404, offline → 409, timeout → 504).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry has no such device (or product).
    #[error("device {product_key}/{device_name} not found")]
    DeviceNotFound {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// The device is not connected and the message could not be queued for it.
    #[error("device {product_key}/{device_name} is offline")]
    DeviceOffline {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// The device is online but not subscribed (explicitly or through `_ss=1`) to the topic a
    /// downlink needs.
    #[error("device {product_key}/{device_name} is not subscribed to {topic}")]
    NotSubscribed {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// The downlink topic.
        topic: String,
    },

    /// The device's outbound or offline queue is full; the message was not accepted.
    #[error("the queue of device {product_key}/{device_name} is full")]
    QueueFull {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// Too many calls are waiting for this device's answers.
    #[error("too many calls are waiting for device {product_key}/{device_name}")]
    TooManyPendingCalls {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// The device did not answer in time.
    #[error("the device did not answer within {0:?}")]
    Timeout(Duration),

    /// The device answered something that is not what the call expects (e.g. not JSON).
    #[error("the device answered with an unusable reply: {0}")]
    BadReply(String),

    /// A caller passed an unusable argument (topic outside the device's namespaces, QoS 2,
    /// payload above the packet limit...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A socket operation failed (bind, accept, ...).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// The TLS handshake or the TLS setup failed.
    #[error("TLS error: {0}")]
    Tls(String),

    /// The registry has no such product.
    #[error("product {product_key} not found")]
    ProductNotFound {
        /// productKey.
        product_key: String,
    },

    /// A product with this productKey is already registered.
    #[error("product {product_key} already exists")]
    ProductExists {
        /// productKey.
        product_key: String,
    },

    /// A device with this name is already registered in the product.
    #[error("device {product_key}/{device_name} already exists")]
    DeviceExists {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// The registry's database failed (open, read, write, commit).
    #[error("registry storage error: {0}")]
    Storage(String),

    /// A setting is wrong (configuration file, flags).
    #[error("bad configuration: {0}")]
    Config(String),
}

/// `Result` with the hub's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
