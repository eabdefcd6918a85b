//! The demo's OTA step: a small package of version 1.1.0 uploaded, one job for the devices on
//! 1.0.0; a lamp that reported 1.0.0 gets the push, downloads the firmware from the signed URL,
//! verifies it, reports 1.1.0, and the job's task is SUCCEEDED.

use std::path::Path;
use std::time::{Duration, Instant};

use aliot_admin::Client;
use aliot_admin::ota::{CreateJob, TaskStatus, UploadPackageQuery};
use aliot_device::ota::Ota;
use aliot_device::{Device, DeviceOptions, Event};
use aliot_hub::RunningHub;
use aliot_protocol::{DeviceIdentity, Endpoint};
use anyhow::{Context as _, anyhow};

use super::say;

/// The upgraded lamp.
const DEVICE: &str = "lamp-03";
/// The package's size.
const PACKAGE_BYTES: usize = 64 * 1024;
/// How long each wait of the step may take.
const WAIT: Duration = Duration::from_secs(10);

/// Runs the step; the summary's detail.
pub(super) async fn step(hub: &RunningHub, data_dir: &Path, pk: &str) -> anyhow::Result<String> {
    say("[+] OTA: a firmware upgrade from push to the new version reported");
    let started = Instant::now();
    let registered = hub
        .service()
        .create_device(pk, DEVICE, None)
        .await
        .context("cannot register the OTA lamp")?;
    let identity = DeviceIdentity::new(pk, DEVICE, &registered.device_secret)?;
    let endpoint = Endpoint::custom("127.0.0.1", Some(hub.mqtt_addr().port()), false)?;
    let (device, mut events) = Device::connect(DeviceOptions::new(identity, endpoint))
        .await
        .map_err(|e| anyhow!("the OTA lamp cannot connect: {e}"))?;
    let ota = Ota::new(device.clone());
    ota.inform("1.0.0").await?;
    // Answered in order: once this is, the version report is in too.
    let pending = ota.firmware_get().await?;
    say(format!(
        "      device   -> /ota/device/inform: version 1.0.0 (pending task: {})",
        if pending.is_some() { "yes" } else { "none" }
    ));

    let admin = Client::from_data_dir(data_dir).context("the embedded hub's admin API")?;
    let firmware: Vec<u8> = (0..PACKAGE_BYTES).map(|i| (i % 251) as u8).collect();
    let query = UploadPackageQuery {
        product_key: pk.to_owned(),
        dest_version: "1.1.0".to_owned(),
        ..UploadPackageQuery::default()
    };
    let package = admin.upload_package(&query, firmware.clone()).await?;
    let job = admin
        .create_job(&CreateJob {
            firmware_id: Some(package.package.firmware_id.clone()),
            src_versions: vec!["1.0.0".to_owned()],
            ..CreateJob::default()
        })
        .await?;
    say(format!(
        "      console  uploads a {PACKAGE_BYTES}-byte package of 1.1.0, creates job {} for devices on 1.0.0",
        job.job.job_id
    ));

    let upgrade = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if let Event::OtaUpgrade(upgrade) = event {
                return Some(upgrade);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| anyhow!("no OTA push within {WAIT:?}"))?;
    say(format!(
        "      device   <- /ota/device/upgrade: version {}, {} bytes, {} {}",
        upgrade.version,
        upgrade.size,
        upgrade.sign_method.as_str(),
        upgrade.sign
    ));
    let path = data_dir.join(format!("{DEVICE}-{}.bin", upgrade.version));
    let downloaded = ota.download(&upgrade, &path).await?;
    say(format!(
        "      device   downloaded it from the signed URL, size and {} checked; progress reported",
        upgrade.sign_method.as_str()
    ));
    // "Installed": the lamp reports its new version, which is what the platform waits for.
    ota.inform(&downloaded.version).await?;
    say(format!(
        "      device   -> /ota/device/inform: version {}",
        downloaded.version
    ));
    let deadline = Instant::now() + WAIT;
    loop {
        let view = admin.job(&job.job.job_id).await?;
        if view.counts.get(&TaskStatus::Succeeded).copied().unwrap_or(0) >= 1 {
            break;
        }
        if Instant::now() > deadline {
            return Err(anyhow!("the OTA task is not SUCCEEDED: {:?}", view.counts));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ms = started.elapsed().as_millis();
    say(format!("      console  job {}: task SUCCEEDED\n", job.job.job_id));
    device.disconnect().await;
    Ok(format!(
        "1.0.0 -> {}, {} bytes verified, SUCCEEDED in {ms} ms",
        downloaded.version, downloaded.size
    ))
}
