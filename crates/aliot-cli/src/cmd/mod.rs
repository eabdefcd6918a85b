//! The subcommands: each module is `Args` (clap) + `run(args)`.

use std::fmt;
use std::process::ExitCode;

#[cfg(feature = "hub")]
pub(crate) mod admin;
#[cfg(feature = "bench")]
pub(crate) mod bench;
#[cfg(feature = "hub")]
pub(crate) mod demo;
pub(crate) mod device;
#[cfg(feature = "hub")]
pub(crate) mod hub;
pub(crate) mod sign;
pub(crate) mod verify;

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Compute the MQTT CONNECT fields (clientId, username, password) of a device.
    Sign(sign::Args),
    /// Check CONNECT fields built by hand and say exactly what is wrong with them.
    Verify(verify::Args),
    /// Run a simulated device, or connect once to publish, post or sync time.
    Device(device::Args),
    /// Run the offline Alibaba Cloud IoT platform (MQTT broker + admin API).
    #[cfg(feature = "hub")]
    Hub(hub::Args),
    /// Talk to a running hub's admin API.
    #[cfg(feature = "hub")]
    Admin(admin::Args),
    /// Load-test a platform with a fleet of signed devices.
    #[cfg(feature = "bench")]
    Bench(Box<bench::Args>),
    /// Run a narrated end-to-end demo on an embedded hub (no account needed).
    #[cfg(feature = "hub")]
    Demo(demo::Args),
}

/// Runs a subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Sign(a) => sign::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Device(a) => device::run(a),
        #[cfg(feature = "hub")]
        Command::Hub(a) => hub::run(a),
        #[cfg(feature = "hub")]
        Command::Admin(a) => admin::run(a),
        #[cfg(feature = "bench")]
        Command::Bench(a) => bench::run(*a),
        #[cfg(feature = "hub")]
        Command::Demo(a) => demo::run(a),
    }
}

/// An error in what the user asked for (bad flag value, bad profile, bad config): exit status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds an [`UsageError`] as an `anyhow::Error`.
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}
