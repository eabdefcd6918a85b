//! `aliot admin` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot admin`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot admin`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot admin` is not available in this build yet"))
}
