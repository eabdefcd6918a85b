//! Over-the-air firmware upgrades (spec §4.3 "OTA"): report the installed version
//! (`/ota/device/inform`), receive the task ([`Event::OtaUpgrade`](crate::Event::OtaUpgrade), or
//! ask for it with [`Ota::firmware_get`]), download it over HTTP(S) to a file, verify it, report
//! progress on `/ota/device/progress` (`1`..`100`, and [`FailStep`] on failure), hand the verified
//! file to the application, and report the new version once the application has installed it.
//!
//! The download streams to the file through a 64 KiB buffer whatever the firmware's size; a
//! dropped connection is resumed with `Range: bytes=N-` from what the file holds (also after a
//! restart: a partial file is picked up where it stopped). The size and digest (MD5 or SHA-256)
//! are checked before [`Ota::download`] returns: a file that is not the one announced is reported
//! as step `-3`, removed, and never handed over.
//!
//! ## Example: report the version, upgrade on push, report the new version
//!
//! ```no_run
//! use aliot_device::ota::{FailStep, Ota, VersionFile};
//! use aliot_device::{Device, Event};
//!
//! # async fn run(device: Device, mut events: aliot_device::Events) -> aliot_device::Result<()> {
//! let ota = Ota::new(device.clone());
//! let installed = VersionFile::new("/var/lib/app/firmware.version");
//! // At start: the version persisted by the last upgrade, or the one built in.
//! let version = installed.load()?.unwrap_or_else(|| "1.0.0".to_owned());
//! ota.inform(&version).await?;
//! // A task announced while the device was offline:
//! let mut pending = ota.firmware_get().await?;
//! loop {
//!     let upgrade = match pending.take() {
//!         Some(upgrade) => upgrade,
//!         None => match events.recv().await {
//!             Some(Event::OtaUpgrade(upgrade)) => upgrade,
//!             Some(_) => continue,
//!             None => break,
//!         },
//!     };
//!     // Reports 1..100, or -2 / -3 on failure (then the file is gone).
//!     let Ok(firmware) = ota.download(&upgrade, "/var/lib/app/firmware.bin").await else {
//!         continue;
//!     };
//!     match std::fs::copy(&firmware.path, "/opt/app/firmware.bin") {
//!         Ok(_) => {
//!             installed.store(&firmware.version)?;
//!             ota.inform(&firmware.version).await?; // the platform's SUCCEEDED
//!         }
//!         Err(e) => ota.fail(FailStep::Burn, &e.to_string()).await?,
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aliot_protocol::topic::{SysPath, Topic};
use bytes::Bytes;
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::fs::OpenOptions;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use crate::client::Device;
use crate::error::{Error, Result};
use crate::http::MAX_HEAD;
use crate::options::{QoS, TrustAnchors};
use crate::url::BaseUrl;

pub use crate::ota_info::{SignMethod, Upgrade};

/// The size of the buffer a download streams through.
const CHUNK: usize = 64 * 1024;

/// The negative progress steps (the platform's `AIOT_OTAERR_*`): each fails the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailStep {
    /// `-1`: the upgrade failed (any other reason).
    Upgrade,
    /// `-2`: the download failed.
    Download,
    /// `-3`: the file is not the one announced (size or digest).
    Verify,
    /// `-4`: writing (installing) the firmware failed.
    Burn,
}

impl FailStep {
    /// The step sent on `/ota/device/progress`: `-1`..`-4`.
    pub fn step(self) -> i32 {
        match self {
            FailStep::Upgrade => -1,
            FailStep::Download => -2,
            FailStep::Verify => -3,
            FailStep::Burn => -4,
        }
    }

    /// The step an SDK error stands for: `-3` for [`Error::OtaVerify`], `-2` for what stopped
    /// the download, `-1` otherwise.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::OtaVerify(_) => FailStep::Verify,
            Error::OtaDownload(_) | Error::Connect { .. } | Error::Tls(_) => FailStep::Download,
            _ => FailStep::Upgrade,
        }
    }
}

/// How downloads behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// How many connections a download may use (the first and the resumptions). Default 5.
    pub attempts: u32,
    /// The wait before resuming after a dropped connection. Default 1 s.
    pub retry_delay: Duration,
    /// The longest wait for the connection, the answer's headers, or the next bytes of the body.
    /// Default 30 s.
    pub read_timeout: Duration,
    /// Progress is reported every this many percent (and at 100). Default 10.
    pub progress_every: u8,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            attempts: 5,
            retry_delay: Duration::from_secs(1),
            read_timeout: Duration::from_secs(30),
            progress_every: 10,
        }
    }
}

/// A downloaded and verified firmware, for the application to install.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Firmware {
    /// The file.
    pub path: PathBuf,
    /// Its version.
    pub version: String,
    /// Its module (`None`: the default module).
    pub module: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

/// The OTA client of one device and one module: a cheap handle around a [`Device`].
#[derive(Debug, Clone)]
pub struct Ota {
    device: Device,
    module: Option<String>,
    options: DownloadOptions,
}

impl Ota {
    /// The OTA client of the device's default module.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            module: None,
            options: DownloadOptions::default(),
        }
    }

    /// The same client for another module (`MCU`…; `default` is the default module).
    pub fn with_module(mut self, module: impl Into<String>) -> Self {
        let module = module.into();
        self.module = (module != "default").then_some(module);
        self
    }

    /// The same client with other download options.
    pub fn with_options(mut self, options: DownloadOptions) -> Self {
        self.options = options;
        self
    }

    /// The module this client reports for (`None`: the default module).
    pub fn module(&self) -> Option<&str> {
        self.module.as_deref()
    }

    fn topic(&self, action: &str) -> String {
        Topic::Ota {
            action: action.into(),
            product_key: self.device.product_key().to_owned(),
            device_name: self.device.device_name().to_owned(),
        }
        .to_string()
    }

    fn params(&self, mut params: Value) -> Bytes {
        if let (Some(module), Some(obj)) = (&self.module, params.as_object_mut()) {
            obj.insert("module".into(), json!(module));
        }
        let id = self.device.shared().ids.next_id();
        Bytes::from(json!({"id": id, "params": params}).to_string())
    }

    /// Reports the installed version on `/ota/device/inform/{pk}/{dn}` (QoS 1): at start, and
    /// after an upgrade is installed (the platform declares the task SUCCEEDED when the version
    /// is the target's).
    ///
    /// # Errors
    /// As [`Device::publish`].
    pub async fn inform(&self, version: &str) -> Result<()> {
        let payload = self.params(json!({ "version": version }));
        self.device
            .publish(&self.topic("inform"), payload, QoS::AtLeastOnce)
            .await
    }

    /// Reports a progress step (`1`..`100`, or negative: see [`FailStep`]) with a description,
    /// on `/ota/device/progress/{pk}/{dn}` (QoS 1; the step is sent as a quoted number).
    ///
    /// # Errors
    /// As [`Device::publish`].
    pub async fn progress(&self, step: i32, desc: &str) -> Result<()> {
        let payload = self.params(json!({ "step": step.to_string(), "desc": desc }));
        self.device
            .publish(&self.topic("progress"), payload, QoS::AtLeastOnce)
            .await
    }

    /// Reports a failure: the step's negative number and `desc` (the platform fails the task).
    ///
    /// # Errors
    /// As [`Device::publish`].
    pub async fn fail(&self, step: FailStep, desc: &str) -> Result<()> {
        self.progress(step.step(), desc).await
    }

    /// Asks for the pending task (`thing.ota.firmware.get`): `None` when there is none.
    ///
    /// # Errors
    /// As [`Device::request`]; [`Error::OtaTask`] for an answer that cannot be used.
    pub async fn firmware_get(&self) -> Result<Option<Upgrade>> {
        let params = match &self.module {
            Some(module) => json!({ "module": module }),
            None => json!({}),
        };
        let reply = self.device.request(SysPath::OtaFirmwareGet, params).await?;
        Upgrade::from_data(&reply.data)
    }

    /// Downloads the firmware `upgrade` announces to `path` (resuming a partial file already
    /// there), reports progress every [`DownloadOptions::progress_every`] percent, and checks its
    /// size and digest. On failure the step is reported ([`FailStep::of`]) with the reason; a
    /// file that fails the check is removed.
    ///
    /// # Errors
    /// [`Error::OtaVerify`] (step -3), [`Error::OtaDownload`], [`Error::Connect`] or
    /// [`Error::Tls`] (step -2), [`Error::OtaTask`] for an unusable URL (step -1).
    pub async fn download(&self, upgrade: &Upgrade, path: impl AsRef<Path>) -> Result<Firmware> {
        let path = path.as_ref();
        let every = u64::from(self.options.progress_every.clamp(1, 100));
        let mut reported = 0u64;
        let trust = self.device.shared().trust.clone();
        let outcome = fetch(upgrade, path, &trust, &self.options, |percent| {
            if percent > reported && (percent >= reported + every || percent == 100) {
                reported = percent;
                // Sent beside the download (at most 100 / `progress_every` of them): a QoS 1
                // publish waits for its PUBACK, and the bytes must not wait for it.
                let ota = self.clone();
                let step = i32::try_from(percent).unwrap_or(100).max(1);
                tokio::spawn(async move {
                    if let Err(e) = ota.progress(step, "").await {
                        tracing::debug!(error = %e, "progress not reported");
                    }
                });
            }
            std::future::ready(())
        })
        .await;
        match outcome {
            Ok(()) => Ok(Firmware {
                path: path.to_owned(),
                version: upgrade.version.clone(),
                module: upgrade.module.clone(),
                size: upgrade.size,
            }),
            Err(e) => {
                if let Err(report) = self.fail(FailStep::of(&e), &e.to_string()).await {
                    tracing::debug!(error = %report, "failure not reported");
                }
                Err(e)
            }
        }
    }
}

/// The version the application installed, persisted in a file so that a restart reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFile {
    path: PathBuf,
}

impl VersionFile {
    /// The version file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The persisted version, `None` when the file does not exist yet.
    ///
    /// # Errors
    /// [`Error::OtaDownload`] when the file cannot be read.
    pub fn load(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|v| !v.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::OtaDownload(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Persists `version` (written to a temporary file, synced, then renamed over the old one).
    ///
    /// # Errors
    /// [`Error::OtaDownload`] when the file cannot be written.
    pub fn store(&self, version: &str) -> Result<()> {
        let fail = |e: std::io::Error| Error::OtaDownload(format!("{}: {e}", self.path.display()));
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut file = std::fs::File::create(&tmp).map_err(fail)?;
            std::io::Write::write_all(&mut file, format!("{version}\n").as_bytes()).map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

/// A running digest.
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(method: SignMethod) -> Self {
        match method {
            SignMethod::Md5 => Hasher::Md5(Md5::new()),
            SignMethod::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Splits a download URL into its base and its query (sent as it is).
fn split_url(url: &str) -> Result<(BaseUrl, &str)> {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    if query.chars().any(|c| c.is_whitespace() || c.is_control()) || query.contains('#') {
        return Err(Error::OtaTask("the URL is not usable".into()));
    }
    let base = BaseUrl::parse(base).map_err(|e| Error::OtaTask(format!("the URL is not usable: {e}")))?;
    Ok((base, query))
}

/// Downloads the firmware `upgrade` announces to `path` and checks it, without reporting anything:
/// what [`Ota::download`] uses, for applications that report themselves. `progress` is called
/// with the percentage received after every chunk written.
///
/// A partial file already at `path` is resumed (`Range`); a connection that drops before the end
/// is resumed the same way, up to [`DownloadOptions::attempts`] connections in all. A server that
/// ignores `Range` (answers 200) restarts the file. A file that fails the check is removed.
///
/// # Errors
/// [`Error::OtaVerify`] for a file larger than announced or with another digest;
/// [`Error::OtaDownload`] for an answer other than 200/206 (an expired URL gets 403), a file
/// that cannot be written, or a connection that kept dropping; [`Error::OtaTask`] for an
/// unusable URL.
pub async fn fetch<F, Fut>(
    upgrade: &Upgrade,
    path: &Path,
    trust: &TrustAnchors,
    options: &DownloadOptions,
    mut progress: F,
) -> Result<()>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let (base, query) = split_url(&upgrade.url)?;
    let total = upgrade.size;
    let io = |e: std::io::Error| Error::OtaDownload(format!("{}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .await
        .map_err(io)?;
    let mut have = file.metadata().await.map_err(io)?.len();
    if have > total {
        file.set_len(0).await.map_err(io)?;
        have = 0;
    }
    // Digest what a previous run left, streamed through the same bounded buffer.
    let mut hasher = Hasher::new(upgrade.sign_method);
    let mut buf = vec![0u8; CHUNK];
    let mut left = have;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let n = file.read(&mut buf[..want]).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(have)).await.map_err(io)?;

    let mut attempts = 0u32;
    let mut last_error = String::new();
    while have < total {
        if attempts >= options.attempts.max(1) {
            return Err(Error::OtaDownload(format!(
                "gave up after {attempts} connections at {have} of {total} bytes: {last_error}"
            )));
        }
        if attempts > 0 {
            tokio::time::sleep(options.retry_delay).await;
            tracing::debug!(have, total, "resuming the firmware download");
        }
        attempts += 1;
        let body = match open(&base, query, have, trust, options.read_timeout, &mut buf).await {
            Ok(Answer::Body(body)) => body,
            Ok(Answer::Complete) => break,
            Ok(Answer::Refused(reason)) => return Err(Error::OtaDownload(reason)),
            Err(reason) => {
                last_error = reason;
                continue;
            }
        };
        if body.start == 0 && have > 0 {
            // The server sends the whole file again: start over.
            file.set_len(0).await.map_err(io)?;
            file.seek(SeekFrom::Start(0)).await.map_err(io)?;
            hasher = Hasher::new(upgrade.sign_method);
            have = 0;
        }
        let Body {
            mut stream,
            mut filled,
            length,
            ..
        } = body;
        let end = length.map(|n| have + n);
        if end.is_some_and(|end| end > total) {
            file.set_len(0).await.map_err(io)?;
            drop(file);
            let _ = tokio::fs::remove_file(path).await;
            return Err(Error::OtaVerify(format!(
                "the server sends more than the announced {total} bytes"
            )));
        }
        loop {
            if filled > 0 {
                if have + filled as u64 > total {
                    drop(file);
                    let _ = tokio::fs::remove_file(path).await;
                    return Err(Error::OtaVerify(format!(
                        "the file is larger than the announced {total} bytes"
                    )));
                }
                file.write_all(&buf[..filled]).await.map_err(io)?;
                hasher.update(&buf[..filled]);
                have += filled as u64;
                progress(have.saturating_mul(100) / total.max(1)).await;
            }
            if have == total || end == Some(have) {
                break;
            }
            match tokio::time::timeout(options.read_timeout, stream.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    last_error = format!("the connection closed at {have} of {total} bytes");
                    break;
                }
                Ok(Ok(n)) => filled = n,
                Ok(Err(e)) => {
                    last_error = format!("the connection failed at {have} of {total} bytes: {e}");
                    break;
                }
                Err(_) => {
                    last_error = format!(
                        "no data for {:?} at {have} of {total} bytes",
                        options.read_timeout
                    );
                    break;
                }
            }
        }
        // Whatever was written is kept for the next connection (and for a restart).
        file.flush().await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    let digest = hasher.hex();
    if digest != upgrade.sign {
        let _ = tokio::fs::remove_file(path).await;
        return Err(Error::OtaVerify(format!(
            "{} is {digest}, the platform announced {}",
            upgrade.sign_method.as_str(),
            upgrade.sign
        )));
    }
    Ok(())
}

/// A body being received.
struct Body {
    stream: Box<dyn crate::http::Stream>,
    /// Where in the file it starts.
    start: u64,
    /// How many body bytes already sit at the start of the buffer.
    filled: usize,
    /// The body's length, when announced.
    length: Option<u64>,
}

/// What a request gave.
enum Answer {
    /// The body follows.
    Body(Body),
    /// 416 for a range starting at the file's end: the file is complete.
    Complete,
    /// An answer that will not change by asking again (403 expired, 404…).
    Refused(String),
}

/// Sends `GET` with `Range: bytes={from}-` (when `from` > 0) and reads the answer's head; the
/// body bytes read with it are moved to the start of `buf`. `Err` is worth another attempt.
async fn open(
    base: &BaseUrl,
    query: &str,
    from: u64,
    trust: &TrustAnchors,
    timeout: Duration,
    buf: &mut [u8],
) -> std::result::Result<Answer, String> {
    let range = if from > 0 {
        format!("Range: bytes={from}-\r\n")
    } else {
        String::new()
    };
    let request = format!(
        "GET {}{query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: aliot/{}\r\n{range}Connection: close\r\n\r\n",
        base.path,
        base.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    let head = async {
        let mut stream = crate::http::connect(base, trust)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut got = 0usize;
        loop {
            if let Some(end) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok((stream, got, end));
            }
            if got >= MAX_HEAD {
                return Err(format!("the answer's headers are larger than {MAX_HEAD} bytes"));
            }
            let n = stream.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the connection closed before the answer's headers".into());
            }
            got += n;
        }
    };
    let (stream, got, end) = tokio::time::timeout(timeout, head)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1.x answer: {status_line:?}"))?;
    let mut length = None;
    let mut content_range = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("content-range") {
            content_range = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let start = match status {
        200 => 0,
        206 => {
            let first = content_range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("a 206 answer with Content-Range {content_range:?}"))?;
            if first != from {
                return Err(format!(
                    "asked for bytes from {from}, the server sent from {first}"
                ));
            }
            first
        }
        416 => return Ok(Answer::Complete),
        500..=599 => return Err(format!("the URL answered HTTP {status}")),
        _ => {
            let body = String::from_utf8_lossy(&buf[end + 4..got]).into_owned();
            return Ok(Answer::Refused(format!(
                "the URL answered HTTP {status}: {}",
                body.trim()
            )));
        }
    };
    if chunked {
        return Ok(Answer::Refused(
            "the server sends the firmware chunked: only Content-Length bodies are supported".into(),
        ));
    }
    let filled = got - (end + 4);
    buf.copy_within(end + 4..got, 0);
    Ok(Answer::Body(Body {
        stream,
        start,
        filled,
        length,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lowercase_hex() {
        let mut h = Hasher::new(SignMethod::Md5);
        h.update(b"abc");
        assert_eq!(h.hex(), "900150983cd24fb0d6963f7d28e17f72");
        let mut h = Hasher::new(SignMethod::Sha256);
        h.update(b"abc");
        assert_eq!(
            h.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fail_steps_are_the_platforms() {
        assert_eq!(
            [
                FailStep::Upgrade,
                FailStep::Download,
                FailStep::Verify,
                FailStep::Burn
            ]
            .map(FailStep::step),
            [-1, -2, -3, -4]
        );
        assert_eq!(FailStep::of(&Error::OtaVerify(String::new())), FailStep::Verify);
        assert_eq!(
            FailStep::of(&Error::OtaDownload(String::new())),
            FailStep::Download
        );
    }
}
