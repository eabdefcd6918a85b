//! OTA requests of devices. The hub runs no upgrade jobs yet: `thing.ota.firmware.get` is
//! answered with success and empty data (no pending upgrade); version reports and progress on
//! `/ota/device/…` are only observed (events).

use aliot_protocol::topic::SysPath;
use bytes::Bytes;

use super::handling::{Answer, Context, Handling, answer};

/// Answers `thing.ota.firmware.get`: nothing pending.
pub(crate) fn firmware_get(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    answer(topic, path, payload, Answer::Success, ctx)
}
