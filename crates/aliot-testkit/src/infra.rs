//! [`Infra`]: a PostgreSQL and/or a nats-server on loopback for one test, started by the
//! repository's `scripts/local-infra.sh` in a temporary directory and stopped (directory removed)
//! when dropped.
//!
//! Nothing is skipped: when the binaries are missing the start fails, naming the Debian packages
//! `.ci/run` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which services to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    /// PostgreSQL only.
    Postgres,
    /// nats-server only.
    Nats,
    /// Both.
    Both,
}

impl Services {
    fn arg(self) -> &'static str {
        match self {
            Services::Postgres => "pg",
            Services::Nats => "nats",
            Services::Both => "both",
        }
    }
}

/// Running local services; stopped when dropped.
#[derive(Debug)]
pub struct Infra {
    dir: PathBuf,
    /// `postgres://aliot@127.0.0.1:PORT/aliot` when PostgreSQL runs.
    pub pg_url: Option<String>,
    /// `nats://127.0.0.1:PORT` when nats-server runs.
    pub nats_url: Option<String>,
}

/// The repository's `scripts/local-infra.sh`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/local-infra.sh")
}

fn run(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script().display()));
    assert!(
        out.status.success(),
        "scripts/local-infra.sh {} failed ({}): {}\n(the tests need the Debian packages postgresql and \
         nats-server: .ci/run installs them)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Infra {
    /// Starts `services` (blocking: the script waits until they accept connections).
    ///
    /// # Panics
    /// When they cannot start (a missing binary: the message names `.ci/run`).
    pub fn start(services: Services) -> Infra {
        let out = run(&["start", services.arg()]);
        let mut dir = None;
        let (mut pg_url, mut nats_url) = (None, None);
        for line in out.lines() {
            match line.split_once('=') {
                Some(("ALIOT_INFRA_DIR", v)) => dir = Some(PathBuf::from(v)),
                Some(("ALIOT_PG_URL", v)) => pg_url = Some(v.to_owned()),
                Some(("ALIOT_NATS_URL", v)) => nats_url = Some(v.to_owned()),
                _ => {}
            }
        }
        let dir = dir.unwrap_or_else(|| panic!("scripts/local-infra.sh start printed no directory: {out}"));
        Infra {
            dir,
            pg_url,
            nats_url,
        }
    }

    /// PostgreSQL alone.
    pub fn postgres() -> Infra {
        Infra::start(Services::Postgres)
    }

    /// The PostgreSQL URL.
    ///
    /// # Panics
    /// When PostgreSQL was not started.
    pub fn pg(&self) -> &str {
        self.pg_url.as_deref().expect("this Infra runs no PostgreSQL")
    }

    /// Stops PostgreSQL (a fast shutdown: sessions are cut); its data stays for [`Infra::start_pg`].
    pub fn stop_pg(&self) {
        run(&["pg-stop", &self.dir.to_string_lossy()]);
    }

    /// Starts PostgreSQL again on the same port with the same data.
    pub fn start_pg(&self) {
        run(&["pg-start", &self.dir.to_string_lossy()]);
    }
}

impl Drop for Infra {
    #[allow(
        clippy::print_stderr,
        reason = "a drop cannot fail the test: say why the services may linger"
    )]
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "scripts/local-infra.sh stop {} failed: {status:?}",
                self.dir.display()
            );
        }
    }
}
