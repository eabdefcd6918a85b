//! `aliot hub` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot hub`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot hub`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot hub` is not available in this build yet"))
}
