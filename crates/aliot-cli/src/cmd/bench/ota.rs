//! `aliot bench --workload ota`: an upgrade wave. N devices (aliot-device SDK, registered
//! through the admin API) report version A; one package of B is uploaded and one static job
//! created for every device on A; each device downloads the pushed firmware (at most
//! `concurrency` downloads at once in this process), verifies it and reports B. Measured: the
//! time from the job's creation to every task SUCCEEDED (polled on the admin API), the download
//! throughput, the rate the pushes arrived at (against the job's per-minute maximum), failures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aliot_admin::Client;
use aliot_admin::CreateBatch;
use aliot_admin::ota::{CreateJob, TaskStatus, UploadPackageQuery};
use aliot_device::ota::{DownloadOptions, Ota};
use aliot_device::{Backoff, Device, DeviceOptions, Event};
use aliot_protocol::{DeviceIdentity, Endpoint};
use anyhow::{Context as _, anyhow};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

/// The wave's settings.
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) admin_url: String,
    pub(crate) admin_token: Option<String>,
    pub(crate) product_key: String,
    pub(crate) prefix: String,
    pub(crate) count: usize,
    pub(crate) rate: f64,
    pub(crate) concurrency: usize,
    pub(crate) package_bytes: usize,
    pub(crate) from_version: String,
    pub(crate) to_version: String,
    pub(crate) max_per_minute: Option<u32>,
    pub(crate) timeout: Duration,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

/// What one device tells the bench.
enum Report {
    Informed,
    Pushed(Instant),
    Downloaded(u64),
    Failed(String),
}

/// Runs the wave and prints the summary.
pub(crate) async fn run(s: Settings) -> anyhow::Result<String> {
    let mut admin = Client::new(&s.admin_url)?;
    if let Some(token) = &s.admin_token {
        admin = admin.with_token(token)?;
    }
    let batch = CreateBatch {
        prefix: Some(s.prefix.clone()),
        count: Some(s.count as u64),
        skip_existing: true,
        ..CreateBatch::default()
    };
    let devices = admin
        .create_devices(&s.product_key, &batch)
        .await
        .context("registering the devices")?;
    let endpoint = Endpoint::custom(&s.host, Some(s.port), false)?;
    let work = Work::create()?;
    let (tx, mut rx) = mpsc::channel::<Report>(s.count.max(1) * 4);
    let downloads = Arc::new(Semaphore::new(s.concurrency.max(1)));
    let gap = Duration::from_secs_f64(1.0 / s.rate.max(1.0));
    let mut handles = Vec::with_capacity(devices.len());
    let started = Instant::now();
    for (i, cred) in devices.iter().enumerate() {
        let identity = DeviceIdentity::new(&cred.product_key, &cred.device_name, &cred.device_secret)?;
        let options = DeviceOptions::new(identity, endpoint.clone())
            .backoff(Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                stable_after: Duration::from_secs(30),
            })
            .request_timeout(Duration::from_secs(60));
        let (device, events) = Device::spawn(options)?;
        let path = work.path().join(&cred.device_name);
        let job = DeviceJob {
            device,
            events,
            path,
            from: s.from_version.clone(),
            to: s.to_version.clone(),
            downloads: downloads.clone(),
            tx: tx.clone(),
        };
        handles.push(tokio::spawn(job.run()));
        if !s.quiet && (i + 1) % 1000 == 0 {
            crate::output::note(&format!("{} devices started", i + 1));
        }
        tokio::time::sleep(gap).await;
    }
    drop(tx);
    // Every device on version A before the job: a static job targets the devices on A now.
    let mut informed = 0usize;
    while informed < devices.len() {
        match tokio::time::timeout(s.timeout, rx.recv()).await {
            Ok(Some(Report::Informed)) => informed += 1,
            Ok(Some(Report::Failed(e))) => return Err(anyhow!("a device failed before the job: {e}")),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(anyhow!("only {informed} devices reported {}", s.from_version)),
        }
    }
    let connected_in = started.elapsed();
    if !s.quiet {
        crate::output::note(&format!(
            "{informed} devices on {} in {connected_in:.1?}",
            s.from_version
        ));
    }
    let package: Vec<u8> = (0..s.package_bytes)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let query = UploadPackageQuery {
        product_key: s.product_key.clone(),
        dest_version: s.to_version.clone(),
        ..UploadPackageQuery::default()
    };
    let uploaded = admin
        .upload_package(&query, package)
        .await
        .context("uploading the package")?;
    let wave = Instant::now();
    let job = admin
        .create_job(&CreateJob {
            firmware_id: Some(uploaded.package.firmware_id.clone()),
            src_versions: vec![s.from_version.clone()],
            maximum_per_minute: s.max_per_minute,
            ..CreateJob::default()
        })
        .await
        .context("creating the job")?;
    let job_id = job.job.job_id.clone();

    let (mut pushes, mut bytes, mut failures) = (Vec::new(), 0u64, Vec::new());
    let mut downloaded = 0usize;
    let mut last_download = wave;
    let mut all_succeeded = None;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    let deadline = tokio::time::sleep(s.timeout);
    tokio::pin!(deadline);
    let mut open = true;
    while all_succeeded.is_none() {
        tokio::select! {
            report = rx.recv(), if open => match report {
                Some(Report::Pushed(at)) => pushes.push(at),
                Some(Report::Downloaded(n)) => {
                    bytes += n;
                    downloaded += 1;
                    last_download = Instant::now();
                }
                Some(Report::Failed(e)) => failures.push(e),
                Some(Report::Informed) => {}
                None => open = false,
            },
            _ = poll.tick() => {
                let view = admin.job(&job_id).await?;
                let count = |state| view.counts.get(&state).copied().unwrap_or(0);
                let done = count(TaskStatus::Succeeded) + count(TaskStatus::Failed) + count(TaskStatus::Canceled);
                if done >= devices.len() {
                    all_succeeded = Some((wave.elapsed(), count(TaskStatus::Succeeded), count(TaskStatus::Failed)));
                }
            }
            () = &mut deadline => break,
        }
    }
    let (elapsed, succeeded, failed) = all_succeeded.unwrap_or((wave.elapsed(), 0, 0));
    for handle in &handles {
        handle.abort();
    }
    let download_secs = last_download.duration_since(wave).as_secs_f64().max(1e-9);
    let push_span = match (pushes.iter().min(), pushes.iter().max()) {
        (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
        _ => 0.0,
    };
    let push_rate_per_min = if push_span > 0.0 {
        (pushes.len().saturating_sub(1)) as f64 / push_span * 60.0
    } else {
        0.0
    };
    let most_in_a_minute = most_in_a_minute(&mut pushes);
    let summary = json!({
        "workload": "ota",
        "devices": devices.len(),
        "packageBytes": s.package_bytes,
        "connectSeconds": connected_in.as_secs_f64(),
        "timeToAllDoneSeconds": elapsed.as_secs_f64(),
        "completed": all_succeeded_is(succeeded, failed, devices.len()),
        "succeeded": succeeded,
        "failed": failed,
        "pushesReceived": pushes.len(),
        "pushRatePerMinute": push_rate_per_min,
        "maximumPerMinute": s.max_per_minute,
        "mostPushesInAMinute": most_in_a_minute,
        "pushSpanSeconds": push_span,
        "downloads": downloaded,
        "bytesDownloaded": bytes,
        "throughputMiBps": bytes as f64 / 1_048_576.0 / download_secs,
        "deviceFailures": failures.len(),
        "firstFailure": failures.first(),
    });
    Ok(if s.json {
        format!("{summary}\n")
    } else {
        format!(
            "OTA wave: {} devices, package {} bytes\n  devices on {} in   {:.1} s\n  all tasks final in  {:.2} s (SUCCEEDED {succeeded}, FAILED {failed})\n  \
             pushes received     {} over {:.1} s, at most {most_in_a_minute} in any minute{}\n  downloads           {downloaded}, {:.1} MiB at {:.1} MiB/s\n  device failures     {}{}\n",
            devices.len(),
            s.package_bytes,
            s.from_version,
            connected_in.as_secs_f64(),
            elapsed.as_secs_f64(),
            pushes.len(),
            push_span,
            s.max_per_minute
                .map_or_else(String::new, |m| format!(", job maximum {m}/min")),
            bytes as f64 / 1_048_576.0,
            bytes as f64 / 1_048_576.0 / download_secs,
            failures.len(),
            failures
                .first()
                .map_or_else(String::new, |f| format!(" (first: {f})")),
        )
    })
}

/// The most pushes received within any 60 s (the job's maximum per minute bounds it).
fn most_in_a_minute(pushes: &mut [Instant]) -> usize {
    pushes.sort();
    let (mut most, mut first) = (0, 0);
    for last in 0..pushes.len() {
        while pushes[last].duration_since(pushes[first]) >= Duration::from_secs(60) {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

fn all_succeeded_is(succeeded: usize, failed: usize, devices: usize) -> bool {
    succeeded + failed >= devices && devices > 0
}

/// A directory for the downloads in flight, removed at the end.
struct Work(PathBuf);

impl Work {
    fn create() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("aliot-bench-ota-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One device of the wave.
struct DeviceJob {
    device: Device,
    events: aliot_device::Events,
    path: PathBuf,
    from: String,
    to: String,
    downloads: Arc<Semaphore>,
    tx: mpsc::Sender<Report>,
}

impl DeviceJob {
    async fn run(mut self) {
        let options = {
            let mut o = DownloadOptions::default();
            // The hub answers 503 beyond its download limit: come back a little later.
            o.attempts = 60;
            o.retry_delay = Duration::from_millis(500);
            o.progress_every = 25;
            o
        };
        let ota = Ota::new(self.device.clone()).with_options(options);
        let report = |r| {
            let tx = self.tx.clone();
            async move {
                let _ = tx.send(r).await;
            }
        };
        if let Err(e) = self.device.wait_connected().await {
            report(Report::Failed(format!("connect: {e}"))).await;
            return;
        }
        if let Err(e) = ota.inform(&self.from).await {
            report(Report::Failed(format!("inform: {e}"))).await;
            return;
        }
        report(Report::Informed).await;
        while let Some(event) = self.events.recv().await {
            let Event::OtaUpgrade(upgrade) = event else {
                continue;
            };
            report(Report::Pushed(Instant::now())).await;
            let permit = self.downloads.clone().acquire_owned().await;
            let result = ota.download(&upgrade, &self.path).await;
            drop(permit);
            let _ = tokio::fs::remove_file(&self.path).await;
            match result {
                Ok(firmware) => {
                    report(Report::Downloaded(firmware.size)).await;
                    if upgrade.version != self.to {
                        report(Report::Failed(format!("pushed {}", upgrade.version))).await;
                    }
                    if let Err(e) = ota.inform(&firmware.version).await {
                        report(Report::Failed(format!("inform: {e}"))).await;
                    }
                }
                Err(e) => report(Report::Failed(e.to_string())).await,
            }
        }
    }
}
