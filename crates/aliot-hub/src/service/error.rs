//! The application service's errors.

use std::time::Duration;

use crate::registry;

/// What a platform call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry refused or failed (unknown product or device, already exists, storage).
    #[error(transparent)]
    Registry(#[from] registry::Error),

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

    /// The message was accepted for a clean-session-0 device but could not be saved (the
    /// storage failed): it is delivered while the hub runs, but would not survive a restart.
    #[error("the message for device {product_key}/{device_name} was accepted but could not be saved to disk")]
    NotSaved {
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
    #[error("device {product_key}/{device_name} did not answer the {call} within {after:?}")]
    Timeout {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// Which call (`property set (id 12)`, `RRPC call (id 13)`).
        call: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// The device answered something that is not what the call expects (not JSON).
    #[error("device {product_key}/{device_name} answered with an unusable reply: {preview}")]
    BadReply {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// The start of the answer.
        preview: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },

    /// The call's params break the product's thing model (cloud-side spec §3.3): the platform
    /// refuses such a call before sending it.
    #[error("the thing model refuses {identifier}: code {code}: {message}")]
    ThingModel {
        /// The platform's code (63xx; 460 for params that are not an object, 6106 for too many).
        code: u32,
        /// The identifier at fault (a property, a service input, or the service).
        identifier: String,
        /// The platform's message (`tsl parse: data type is not int -> Brightness`).
        message: String,
    },
    /// The shadow refused a desired update (the platform's shadow code: 409 version conflict,
    /// 408 too many attributes or too large); nothing was changed.
    #[error(transparent)]
    ShadowRefused(registry::ShadowRefusal),

    /// A caller passed an unusable argument (topic outside the device's namespaces, QoS 2,
    /// payload above the packet limit...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The platform refuses a topology change (its code: 6402, 6400, 6619, 6401, 460 for a node
    /// type that does not allow it); nothing was changed.
    #[error("topology refused (code {code}): {0}", code = .0.code())]
    Topology(registry::TopoRefusal),
}

impl Error {
    /// The short code the admin API answers this error with (`{"code": …}`), also what the call
    /// log records as a failed call's result. A registry error is `registry` here; the admin API
    /// answers it with the registry's own codes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Registry(_) => "registry",
            Error::DeviceOffline { .. } => "device_offline",
            Error::NotSubscribed { .. } => "not_subscribed",
            Error::QueueFull { .. } => "queue_full",
            Error::NotSaved { .. } => "storage_failed",
            Error::TooManyPendingCalls { .. } => "too_many_pending_calls",
            Error::Timeout { .. } => "device_timeout",
            Error::BadReply { .. } => "bad_reply",
            Error::InvalidArgument(_) => "invalid_argument",
            // The platform's code leads the message: `the thing model refuses Brightness: code 6306: …`.
            Error::ThingModel { .. } => "thing_model",
            Error::ShadowRefused(r) if r.code == 409 => "version_conflict",
            Error::ShadowRefused(_) => "shadow_refused",
            Error::Topology(_) => "topology_refused",
        }
    }
}

/// `Result` with the service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
