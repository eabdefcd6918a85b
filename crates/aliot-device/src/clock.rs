//! The one clock of the SDK: epoch milliseconds (timestamps of signatures, NTP, posts).

use std::time::{SystemTime, UNIX_EPOCH};

/// Epoch milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
