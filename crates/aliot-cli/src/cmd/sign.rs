//! `aliot sign` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot sign`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot sign` is not available in this build yet"))
}
