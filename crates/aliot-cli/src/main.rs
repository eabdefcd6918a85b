//! `aliot`: sign, verify, device, hub, admin, bench and demo for the Alibaba Cloud IoT Platform.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod clock;
mod cmd;
mod output;
mod signal;

/// Connect devices to the Alibaba Cloud IoT Platform over MQTT, and develop and test them offline.
#[derive(Debug, Parser)]
#[command(name = "aliot", version, about, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: cmd::Command,
}

/// `-v` sets the level, RUST_LOG overrides it. With the hub linked in, RUST_LOG is a full
/// `EnvFilter` (span and field directives too); the device-only build reads `target=level` lists
/// (`Targets`), which need no regex engine: a tenth of that binary's size.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    #[cfg(feature = "hub")]
    {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(output::log_writer)
            .try_init();
    }
    #[cfg(not(feature = "hub"))]
    {
        use tracing_subscriber::filter::Targets;
        use tracing_subscriber::prelude::*;
        let filter = std::env::var("RUST_LOG")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| s.parse::<Targets>().ok())
            .or_else(|| default.parse::<Targets>().ok())
            .unwrap_or_default();
        let _ = tracing_subscriber::fmt()
            .with_writer(output::log_writer)
            .finish()
            .with(filter)
            .try_init();
    }
}

/// Parses the command line. Help and version go to stdout as clap prints them; any other
/// command-line error becomes one line on stderr and exit status 2.
fn parse_cli() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            output::note(&format!(
                "aliot: {} (see --help)",
                one_line(&e.render().to_string())
            ));
            Err(ExitCode::from(2))
        }
    }
}

/// The first paragraph of a clap error on one line, without the `error: ` label.
fn one_line(rendered: &str) -> String {
    let first: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let text = first.join(" ");
    text.strip_prefix("error: ").unwrap_or(&text).to_owned()
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_tracing(cli.verbose);
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            output::note(&format!("aliot: {err:#}"));
            if err.is::<cmd::UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
