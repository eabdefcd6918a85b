//! The seam between the MQTT side of the hub and the device registry.
//!
//! The broker (connection, session, auth) only needs to look devices up and to record when they
//! come online; the registry (`store`) implements [`Directory`] over redb with an in-memory cache,
//! and tests can implement it over a `HashMap`.

use std::fmt;
use std::net::IpAddr;

/// What the broker needs to know about one device to authenticate it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    /// The device secret (HMAC key of the CONNECT password). Never logged.
    pub device_secret: String,
    /// A disabled device is refused with CONNACK 5.
    pub enabled: bool,
    /// The platform's id of the device (`iotId`), reported in status events.
    pub iot_id: String,
}

impl fmt::Debug for DeviceAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuth")
            .field("device_secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("iot_id", &self.iot_id)
            .finish()
    }
}

/// The device registry as the broker sees it.
///
/// Implementations must be cheap to call on the CONNECT path (tens of thousands of calls a
/// second): serve lookups from memory and do any disk work off the caller's thread.
pub trait Directory: Send + Sync + 'static {
    /// Looks a device up; `None` when the product or the device does not exist.
    fn device(&self, product_key: &str, device_name: &str) -> Option<DeviceAuth>;

    /// Records that a device connected (last online time in epoch ms, client address).
    /// Best effort and non-blocking: the broker never waits for it.
    fn device_online(&self, product_key: &str, device_name: &str, ip: IpAddr, at_ms: u64);
}
