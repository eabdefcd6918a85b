//! The driver's time rules with a chosen `now` (no waiting): schedule, timeout, retries.

use super::*;
use crate::cluster::LocalCluster;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::table::{DeviceTable, TableLimits};

fn room() -> Arc<Ota> {
    let table = Arc::new(DeviceTable::new(
        TableLimits::for_tests(),
        Arc::new(Metrics::default()),
    ));
    let cluster: Arc<dyn Cluster> = Arc::new(LocalCluster::new(table, EventBus::new(1 << 20)));
    Ota::new(cluster, Arc::new(UrlSigner::new()), Opened::in_memory())
}

async fn package(ota: &Ota) -> Package {
    ota.add_package(Package {
        firmware_id: Ota::new_firmware_id(),
        product_key: "pk".into(),
        firmware_name: "fw".into(),
        dest_version: "2".into(),
        src_version: None,
        module_name: DEFAULT_MODULE.into(),
        firmware_size: 3,
        sign_method: SignMethod::Md5,
        firmware_sign: "x".into(),
        md5: "x".into(),
        is_diff: false,
        ext_data: None,
        utc_create: 1,
    })
    .await
    .expect("a package")
}

fn job(firmware_id: &str) -> Job {
    Job {
        job_id: String::new(),
        firmware_id: firmware_id.into(),
        product_key: "pk".into(),
        job_type: JobKind::Static,
        src_versions: Vec::new(),
        target_device_names: Vec::new(),
        schedule_time: 0,
        retry_interval: 0,
        retry_count: 0,
        timeout_in_minutes: 0,
        maximum_per_minute: 0,
        job_status: JobStatus::InProgress,
        utc_create: 0,
        utc_end: 0,
    }
}

fn status(ota: &Ota, job_id: &str) -> (JobStatus, TaskStatus, String) {
    let p = ota.job(job_id).expect("the job");
    (
        p.job.job_status,
        p.tasks[0].task_status,
        p.tasks[0].task_desc.clone(),
    )
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_time() {
    let ota = room();
    let fw = package(&ota).await.firmware_id;
    let at = now_ms() + 3_600_000;
    let j = ota
        .create_job(
            Job {
                schedule_time: at,
                ..job(&fw)
            },
            &["d".into()],
        )
        .await
        .expect("a job");
    assert_eq!(j.job_status, JobStatus::Scheduled);
    assert_eq!(ota.firmware_get("pk", "d", None), json!({}));
    ota.tick(at - 1);
    assert_eq!(status(&ota, &j.job_id).0, JobStatus::Scheduled);
    ota.tick(at);
    assert_eq!(status(&ota, &j.job_id).0, JobStatus::InProgress);
    assert_eq!(ota.firmware_get("pk", "d", None)["version"], "2");
}

#[tokio::test]
async fn a_task_times_out_then_is_retried_then_fails() {
    let ota = room();
    let fw = package(&ota).await.firmware_id;
    let j = ota
        .create_job(
            Job {
                timeout_in_minutes: 1,
                retry_count: 1,
                retry_interval: 10,
                ..job(&fw)
            },
            &["d".into()],
        )
        .await
        .expect("a job");
    // Pulled: NOTIFIED now.
    assert_eq!(ota.firmware_get("pk", "d", None)["size"], 3);
    let t0 = now_ms();
    ota.tick(t0 + 59_000);
    assert_eq!(status(&ota, &j.job_id).1, TaskStatus::Notified);
    ota.tick(t0 + 61_000);
    let (_, s, desc) = status(&ota, &j.job_id);
    assert_eq!(s, TaskStatus::Queued, "retried after the interval");
    assert!(desc.contains("timed out"), "{desc}");
    // Not pulled again before the retry interval (10 minutes) is over.
    let not_before = ota.job(&j.job_id).expect("job").tasks[0].not_before;
    assert!(not_before >= t0 + 61_000 + 600_000);
    assert_eq!(
        ota.firmware_get("pk", "d", None)["size"],
        3,
        "a pull is answered all the same"
    );
    ota.tick(now_ms() + 61_000);
    let (job_status, s, desc) = status(&ota, &j.job_id);
    assert_eq!(s, TaskStatus::Failed, "no retries left: {desc}");
    assert_eq!(job_status, JobStatus::Completed, "every task is final");
}
