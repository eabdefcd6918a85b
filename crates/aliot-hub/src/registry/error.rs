//! The registry's errors.

/// What a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name, key or secret that the platform would not accept (the message says which rule).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The registry has no such product.
    #[error("product {product_key} not found")]
    ProductNotFound {
        /// productKey.
        product_key: String,
    },

    /// The registry has no such device.
    #[error("device {product_key}/{device_name} not found")]
    DeviceNotFound {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
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

    /// The device has logged in before, so it cannot register dynamically again until it is
    /// reset (the platform's code 6289).
    #[error("device {product_key}/{device_name} is already activated (reset it to register it again)")]
    AlreadyActivated {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// The device is disabled.
    #[error("device {product_key}/{device_name} is disabled")]
    DeviceDisabled {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },

    /// A change named a version that is not the current one (desired properties, shadows);
    /// nothing was changed.
    #[error("version conflict on {what}: expected version {expected}, current version {current}")]
    VersionConflict {
        /// What was to change (`desired property power`).
        what: String,
        /// The version the caller expected.
        expected: u64,
        /// The current version.
        current: u64,
    },

    /// This registry does not implement the operation.
    #[error("this registry does not support {0}")]
    Unsupported(&'static str),

    /// The storage engine failed (open, read, write, commit).
    #[error("registry storage error while {action}")]
    Storage {
        /// What the registry was doing ("opening /path/registry.redb", "committing a device").
        action: String,
        /// The storage engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Keeping a property post would take the device past a limit of
    /// [`PropertyLimits`](super::PropertyLimits); nothing of the post was kept.
    #[error("the device would keep {would_keep} {what} (at most {limit})")]
    PropertyLimit {
        /// Which limit: `"property identifiers"` or `"bytes of property values"`.
        what: &'static str,
        /// How many the device would keep with the post.
        would_keep: usize,
        /// The limit.
        limit: usize,
    },

    /// A stored record could not be decoded.
    #[error("corrupt registry record {record}")]
    Corrupt {
        /// Which record (`products/{pk}`, `devices/{pk}/{dn}`).
        record: String,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A storage failure while doing `action`.
    pub(crate) fn storage(
        action: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            action: action.into(),
            source: Box::new(source),
        }
    }
}

/// `Result` with the registry's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
