//! `aliot bench` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot bench`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot bench` is not available in this build yet"))
}
