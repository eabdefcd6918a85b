//! `aliot`: sign, verify, device, hub, admin, bench and demo for the Alibaba Cloud IoT Platform.

use std::process::ExitCode;

use clap::Parser;

mod cmd;

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

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            #[allow(clippy::print_stderr, reason = "the binary reports its error on stderr")]
            {
                eprintln!("aliot: {err:#}");
            }
            if err.is::<cmd::UsageError>() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}
