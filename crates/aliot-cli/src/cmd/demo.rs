//! `aliot demo` (not written yet).

use std::process::ExitCode;

/// Arguments of `aliot demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `aliot demo`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::usage("`aliot demo` is not available in this build yet"))
}
