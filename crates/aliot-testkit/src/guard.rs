//! Guards against hung tests. They bound how long a test may wait for something that should
//! happen; they are never used to wait *for* something to happen.

use std::future::Future;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for anything before it fails as hung.
pub const GUARD: Duration = Duration::from_secs(30);

/// Runs `fut`, failing the test if it takes longer than [`GUARD`].
///
/// # Panics
/// When the guard passes first, naming `what` was awaited.
pub async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits for a child process with the hang guard (a helper thread does the blocking wait).
///
/// # Panics
/// When the process does not exit within [`GUARD`] (it is killed first).
pub fn wait_guarded(child: &mut Child) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(GUARD) {
            Ok(r) => r.expect("wait for the child"),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("process {pid} did not exit within the guard");
            }
        }
    })
}

/// Runs a command to completion (stdin closed, stdout and stderr captured) with the hang guard.
///
/// # Panics
/// When the command cannot start or does not finish within [`GUARD`] (it is killed first).
pub fn run_guarded(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(GUARD) {
        Ok(r) => r.expect("the command's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("command did not finish within the guard");
        }
    }
}
