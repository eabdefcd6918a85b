//! `aliot device run --firmware-version V --ota-dir DIR [--ota-exec CMD]`: the device's OTA
//! side. At start it reports its version (the one persisted in `DIR/version` by the last upgrade,
//! else `--firmware-version`) and asks for a pending task; then, for each task (pushed, or
//! pending), it downloads the firmware to `DIR/firmware-{version}.bin`, verifies it, runs the
//! hook (`sh -c CMD sh FILE VERSION`, also `ALIOT_OTA_FILE`, `ALIOT_OTA_VERSION`,
//! `ALIOT_OTA_MODULE`), persists the new version and reports it. A hook that exits non-zero fails
//! the task with step -4 and the tail of its stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aliot_device::Device;
use aliot_device::ota::{FailStep, Ota, Upgrade, VersionFile};
use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

/// Tasks waiting for the OTA loop. One upgrade runs at a time; a push arriving while this many
/// wait is dropped (and noted): the platform pushes again, or the device asks at its next start.
pub(super) const QUEUE: usize = 4;

/// The most stderr of the hook kept for the failure's description.
const STDERR_TAIL: usize = 512;

/// What the OTA loop needs.
pub(super) struct Settings {
    /// The version built into the device (reported when `DIR/version` does not exist).
    pub(super) firmware_version: String,
    /// Where firmware files and the version file go.
    pub(super) dir: PathBuf,
    /// The install hook.
    pub(super) exec: Option<String>,
    /// How long the hook may run.
    pub(super) exec_timeout: Duration,
    /// The module (`None`: default).
    pub(super) module: Option<String>,
}

/// Prints an OTA record: (text line, JSON record).
pub(super) type Report = Arc<dyn Fn(String, Value) + Send + Sync>;

/// Creates the directory, and returns the version to report at start.
///
/// # Errors
/// When the directory cannot be created or the version file cannot be read.
pub(super) fn prepare(settings: &Settings) -> anyhow::Result<String> {
    std::fs::create_dir_all(&settings.dir)
        .with_context(|| format!("cannot create --ota-dir {}", settings.dir.display()))?;
    let persisted = VersionFile::new(version_path(&settings.dir, settings.module.as_deref())).load()?;
    Ok(persisted.unwrap_or_else(|| settings.firmware_version.clone()))
}

fn version_path(dir: &Path, module: Option<&str>) -> PathBuf {
    match module {
        Some(m) => dir.join(format!("version-{m}")),
        None => dir.join("version"),
    }
}

/// Runs the OTA side until `tasks` closes.
pub(super) async fn run(
    device: Device,
    settings: Settings,
    mut version: String,
    mut tasks: mpsc::Receiver<Upgrade>,
    report: Report,
) {
    let mut ota = Ota::new(device.clone());
    if let Some(module) = &settings.module {
        ota = ota.with_module(module.clone());
    }
    // Waits for the first connection (the request timeout bounds it).
    if let Err(e) = device.wait_connected().await {
        report(
            format!("ota: not connected: {e}"),
            json!({"type": "ota_error", "error": e.to_string()}),
        );
        return;
    }
    inform(&ota, &version, &report).await;
    let pending = match ota.firmware_get().await {
        Ok(pending) => pending,
        Err(e) => {
            report(
                format!("ota: no pending task ({e})"),
                json!({"type": "ota_pending", "error": e.to_string()}),
            );
            None
        }
    };
    let mut next = pending;
    loop {
        let upgrade = match next.take() {
            Some(u) => u,
            None => match tasks.recv().await {
                Some(u) => u,
                None => return,
            },
        };
        if let Some(new) = upgrade_once(&ota, &settings, &version, &upgrade, &report).await {
            version = new;
        }
    }
}

async fn inform(ota: &Ota, version: &str, report: &Report) {
    match ota.inform(version).await {
        Ok(()) => report(
            format!("ota: reported version {version}"),
            json!({"type": "ota_version", "version": version}),
        ),
        Err(e) => report(
            format!("ota: version not reported: {e}"),
            json!({"type": "ota_error", "error": e.to_string()}),
        ),
    }
}

/// One upgrade: the new version when it is installed.
async fn upgrade_once(
    ota: &Ota,
    settings: &Settings,
    current: &str,
    upgrade: &Upgrade,
    report: &Report,
) -> Option<String> {
    report(
        format!(
            "ota: upgrade {current} -> {} ({} bytes, {} {}){}",
            upgrade.version,
            upgrade.size,
            upgrade.sign_method.as_str(),
            upgrade.sign,
            if upgrade.is_diff { ", differential" } else { "" }
        ),
        json!({"type": "ota_task", "from": current, "version": upgrade.version, "size": upgrade.size,
               "signMethod": upgrade.sign_method.as_str(), "sign": upgrade.sign, "isDiff": upgrade.is_diff}),
    );
    let file = settings
        .dir
        .join(format!("firmware-{}.bin", safe_name(&upgrade.version)));
    let firmware = match ota.download(upgrade, &file).await {
        Ok(firmware) => firmware,
        Err(e) => {
            report(
                format!("ota: failed (step {}): {e}", FailStep::of(&e).step()),
                json!({"type": "ota_failed", "step": FailStep::of(&e).step(), "error": e.to_string()}),
            );
            return None;
        }
    };
    report(
        format!("ota: downloaded and verified {}", file.display()),
        json!({"type": "ota_verified", "file": file, "version": firmware.version}),
    );
    if let Some(command) = &settings.exec
        && let Err(desc) = hook(command, settings.exec_timeout, &firmware.path, upgrade).await
    {
        if let Err(e) = ota.fail(FailStep::Burn, &desc).await {
            crate::output::note(&format!("ota: failure not reported: {e}"));
        }
        report(
            format!("ota: failed (step -4): {desc}"),
            json!({"type": "ota_failed", "step": -4, "error": desc}),
        );
        return None;
    }
    let version_file = VersionFile::new(version_path(&settings.dir, settings.module.as_deref()));
    if let Err(e) = version_file.store(&firmware.version) {
        let desc = e.to_string();
        if let Err(e) = ota.fail(FailStep::Burn, &desc).await {
            crate::output::note(&format!("ota: failure not reported: {e}"));
        }
        report(
            format!("ota: failed (step -4): {desc}"),
            json!({"type": "ota_failed", "step": -4, "error": desc}),
        );
        return None;
    }
    report(
        format!("ota: installed {}", firmware.version),
        json!({"type": "ota_installed", "version": firmware.version}),
    );
    inform(ota, &firmware.version, report).await;
    Some(firmware.version)
}

/// A version as a file name part: anything but `[A-Za-z0-9._-]` becomes `_`.
fn safe_name(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the install hook; `Err` holds the description of its failure (its stderr's tail).
async fn hook(command: &str, timeout: Duration, file: &Path, upgrade: &Upgrade) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("sh")
        .arg(file)
        .arg(&upgrade.version)
        .env("ALIOT_OTA_FILE", file)
        .env("ALIOT_OTA_VERSION", &upgrade.version)
        .env("ALIOT_OTA_MODULE", upgrade.module.as_deref().unwrap_or("default"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the install hook: {e}"))?;
    let mut stderr = child.stderr.take();
    let run = async {
        let mut tail = Vec::new();
        if let Some(err) = stderr.as_mut() {
            // The whole stderr is read (so the hook never blocks on it); the last bytes are kept.
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.len() > STDERR_TAIL {
                            tail.drain(..tail.len() - STDERR_TAIL);
                        }
                    }
                }
            }
        }
        let status = child.wait().await;
        (status, tail)
    };
    let (status, tail) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("the install hook ran longer than {timeout:?}"))?;
    let status = status.map_err(|e| format!("the install hook: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&tail).trim().to_owned();
    Err(if text.is_empty() {
        format!("the install hook failed ({status})")
    } else {
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_make_safe_file_names() {
        assert_eq!(safe_name("2.0.0-rc1"), "2.0.0-rc1");
        assert_eq!(safe_name("../x y"), ".._x_y");
    }
}
