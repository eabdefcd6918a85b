//! Remote configuration (`thing.config.get`): the hub holds no product configuration yet, so
//! it answers code 6710 ("remote config not found") as the platform does for a product without
//! one.

use aliot_protocol::topic::SysPath;
use bytes::Bytes;

use super::handling::{Answer, Context, Handling, answer};

/// The platform's code when a product has no remote configuration.
const CONFIG_NOT_FOUND: u32 = 6710;

/// Answers `thing.config.get`.
pub(crate) fn get(topic: &str, path: &SysPath, payload: &Bytes, ctx: Context) -> Handling {
    answer(
        topic,
        path,
        payload,
        Answer::Error(CONFIG_NOT_FOUND, "remote config not found"),
        ctx,
    )
}
