//! [`HubProcess`]: an `aliot hub` child process (killed on drop) whose endpoints are read from
//! its stdout, and helpers to run the CLI.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;

use crate::guard::{GUARD, run_guarded, wait_guarded};

/// The workspace's `aliot` binary, beside the running test (cargo builds it before the tests of
/// `aliot-cli`, the crate that defines it).
///
/// # Panics
/// When the binary is not there (a test of another crate asking for it).
pub fn aliot_binary() -> PathBuf {
    let path = workspace_binary("aliot");
    assert!(
        path.is_file(),
        "{} is not built: only aliot-cli's tests can run the aliot binary",
        path.display()
    );
    path
}

/// `aliot` (see [`aliot_binary`]) with the environment a test needs: no admin settings and no
/// log filter of the developer's.
pub fn aliot() -> Command {
    aliot_command(&aliot_binary())
}

/// The `aliot` binary at `path`, with the environment a test needs: no admin settings and no
/// log filter of the developer's.
pub fn aliot_command(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_remove("ALIOT_ADMIN_URL")
        .env_remove("ALIOT_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_REGISTRY");
    cmd
}

/// A running `aliot hub` child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct HubProcess {
    /// The child.
    pub child: Child,
    /// The admin API's URL, from the banner.
    pub admin_url: String,
    /// The MQTT listener, from the banner.
    pub mqtt: SocketAddr,
    /// Every stdout line after the ones read at start.
    pub lines: mpsc::Receiver<String>,
    /// The stdout lines read at start.
    pub banner: Vec<String>,
}

impl HubProcess {
    /// The device HTTP(S) listener's URL from the banner (`--device-http`, `--device-https`).
    pub fn device_http_url(&self) -> String {
        self.banner
            .iter()
            .find_map(|l| l.trim().strip_prefix("device http:"))
            .and_then(|l| l.split_whitespace().next())
            .expect("a `device http:` line in the banner (start the hub with --device-http)")
            .to_owned()
    }

    /// Starts `aliot hub --data-dir DIR --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 EXTRA…` and reads
    /// its endpoints from stdout.
    pub fn start(data_dir: &Path, extra: &[&str]) -> HubProcess {
        let mut cmd = aliot();
        cmd.args(Self::args(data_dir, extra));
        Self::spawn(cmd)
    }

    /// The arguments [`HubProcess::start`] gives `aliot`: `hub --data-dir DIR --mqtt
    /// 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 EXTRA…`.
    pub fn args(data_dir: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["hub".into(), "--data-dir".into(), data_dir.into()];
        args.extend(
            [
                "--mqtt",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--openapi",
                "127.0.0.1:0",
            ]
            .map(Into::into),
        );
        args.extend(extra.iter().map(Into::into));
        args
    }

    /// Spawns `cmd` (an `aliot hub` command line, possibly wrapped, e.g. in a shell that sets
    /// limits first) and reads its endpoints from stdout.
    pub fn spawn(mut cmd: Command) -> HubProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn aliot hub");
        let stdout = child.stdout.take().expect("a piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut hub = HubProcess {
            child,
            admin_url: String::new(),
            mqtt: "0.0.0.0:0".parse().expect("an address"),
            lines,
            banner: vec![],
        };
        let mut mqtt = None;
        // Up to the closing line of the banner.
        while !hub.banner.last().is_some_and(|l| l.contains("stops the hub")) {
            let line = hub
                .next_line()
                .unwrap_or_else(|| panic!("the hub exited before printing its endpoints: {:?}", hub.banner));
            let t = line.trim();
            if let Some(v) = t.strip_prefix("admin:") {
                hub.admin_url = v.trim().to_owned();
            } else if let Some(v) = t.strip_prefix("mqtt:") {
                mqtt = Some(v.trim().parse().expect("an MQTT address"));
            }
            hub.banner.push(line);
        }
        hub.mqtt = mqtt.expect("the MQTT address in the banner");
        hub
    }

    /// The next stdout line, or `None` when stdout closed.
    pub fn next_line(&self) -> Option<String> {
        match self.lines.recv_timeout(GUARD) {
            Ok(l) => Some(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no output from the hub within the guard"),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        wait_guarded(&mut self.child)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// `aliot admin --data-dir DIR ARGS…`, with HOME pointing at the data directory so that no
/// default data directory of the machine is used.
pub fn admin(data_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = aliot();
    cmd.arg("admin").arg("--data-dir").arg(data_dir).args(args);
    cmd.env("HOME", data_dir).env("XDG_DATA_HOME", data_dir);
    run_guarded(cmd)
}

/// The JSON stdout of a successful command.
///
/// # Panics
/// When the command failed or its stdout is not JSON.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The path of a binary of the workspace in the same target directory as the running test
/// (for crates whose tests do not get `CARGO_BIN_EXE_*`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/{profile}/deps/test-… → target/{profile}/{name}
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in target/{profile}/deps");
    dir.join(name)
}

/// The Python of the official SDKs' virtual environment: `ALIOT_SDK_PYTHON`, or `.sdks/venv`
/// at the workspace root, which `bash .ci/sdks.sh` installs (`.ci/run` does). Fails the test
/// with that hint when it is missing.
pub fn sdk_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ALIOT_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sdks/venv/bin/python");
    assert!(
        python.exists(),
        "the official Python SDK is not installed ({} is missing): run `bash .ci/sdks.sh`",
        python.display()
    );
    python
}

/// The official Node SDK's package directory: `ALIOT_SDK_NODE_MODULES`/alibabacloud-iot-device-sdk,
/// or `.sdks/node/node_modules/…` at the workspace root, which `bash .ci/sdks.sh` installs.
/// Fails the test with that hint when it is missing.
pub fn sdk_node_package() -> PathBuf {
    let modules = std::env::var_os("ALIOT_SDK_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sdks/node/node_modules"),
        PathBuf::from,
    );
    let package = modules.join("alibabacloud-iot-device-sdk");
    assert!(
        package.exists(),
        "the official Node SDK is not installed ({} is missing): run `bash .ci/sdks.sh`",
        package.display()
    );
    package
}
