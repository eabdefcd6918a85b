//! `aliot verify` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot verify`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot verify` is not available in this build yet"))
}
