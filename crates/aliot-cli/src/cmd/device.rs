//! `aliot device` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot device`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot device`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot device` is not available in this build yet"))
}
