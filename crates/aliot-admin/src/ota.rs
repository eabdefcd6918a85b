//! OTA on the admin API (`/api/v1/ota/…`): what the hub keeps: packages, jobs, tasks and the module versions devices report
//! (cloud-side §4.2). Field names are the platform's OpenAPI names (TEAPY models), camelCase,
//! so that the OpenAPI can map them one to one.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Result;
use crate::wire::{query, segment};

/// The module a device reports when it names none (aliyun-protocol §4.4).
pub const DEFAULT_MODULE: &str = "default";

/// How a package is signed (`SignMethod`): what the push names in `signMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SignMethod {
    /// `MD5` (the platform's default): the push carries `md5` and `sign`.
    #[default]
    Md5,
    /// `SHA256`: the push carries `sign` only.
    Sha256,
}

impl SignMethod {
    /// Parses `md5` / `sha256` in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Some(SignMethod::Md5),
            "sha256" => Some(SignMethod::Sha256),
            _ => None,
        }
    }

    /// The push's `signMethod`: `Md5` or `SHA256`, as the official Python SDK compares them.
    pub fn wire(self) -> &'static str {
        match self {
            SignMethod::Md5 => "Md5",
            SignMethod::Sha256 => "SHA256",
        }
    }
}

/// A firmware package (`CreateOTAFirmware`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// `FirmwareId`.
    pub firmware_id: String,
    /// `ProductKey`.
    pub product_key: String,
    /// `FirmwareName`.
    pub firmware_name: String,
    /// `DestVersion`: the version a device runs once upgraded.
    pub dest_version: String,
    /// `SrcVersion`: the version a differential package applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_version: Option<String>,
    /// `ModuleName` (`default` when none was given).
    pub module_name: String,
    /// `FirmwareSize`, bytes.
    pub firmware_size: u64,
    /// `SignMethod`.
    pub sign_method: SignMethod,
    /// `FirmwareSign`: lower-case hex digest by `sign_method`.
    pub firmware_sign: String,
    /// Lower-case hex MD5 (always computed; pushed as `md5` for MD5 packages).
    pub md5: String,
    /// `Type`: a differential package (`isDiff` 1 in the push); the hub only carries the flag.
    pub is_diff: bool,
    /// `Udi`-like free data pushed as `extData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_data: Option<serde_json::Value>,
    /// `UtcCreate`, epoch ms.
    pub utc_create: u64,
}

/// A job's state (`JobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Scheduled for later (`ScheduleTime` not reached).
    Scheduled,
    /// Pushing, or waiting for devices.
    InProgress,
    /// Every task is final (static jobs).
    Completed,
    /// Canceled by the user.
    Canceled,
}

/// A device's task state (`TaskStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Waiting to be pushed (device offline, schedule, rate limit or retry interval).
    Queued,
    /// Pushed (or pulled with `thing.ota.firmware.get`).
    Notified,
    /// The device reported progress 1..100.
    InProgress,
    /// The device reported the target version.
    Succeeded,
    /// A negative step, a timeout, or no retries left.
    Failed,
    /// Canceled by the user.
    Canceled,
}

impl TaskStatus {
    /// Whether the task is still waiting for the device (not final).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskStatus::Queued | TaskStatus::Notified | TaskStatus::InProgress
        )
    }

    /// Parses `QUEUED`, `notified`, `in_progress`, `IN-PROGRESS`…
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "QUEUED" => Some(TaskStatus::Queued),
            "NOTIFIED" => Some(TaskStatus::Notified),
            "IN_PROGRESS" | "INPROGRESS" => Some(TaskStatus::InProgress),
            "SUCCEEDED" => Some(TaskStatus::Succeeded),
            "FAILED" => Some(TaskStatus::Failed),
            "CANCELED" | "CANCELLED" => Some(TaskStatus::Canceled),
            _ => None,
        }
    }

    /// The wire name (`IN_PROGRESS`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "QUEUED",
            TaskStatus::Notified => "NOTIFIED",
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Canceled => "CANCELED",
        }
    }
}

/// Static (devices chosen at creation) or dynamic (also devices that later report a source
/// version) (`CreateOTAStaticUpgradeJob` / `CreateOTADynamicUpgradeJob`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    /// Devices chosen at creation.
    Static,
    /// Also devices that report a matching source version later.
    Dynamic,
}

/// An upgrade job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// `JobId`.
    pub job_id: String,
    /// `FirmwareId`.
    pub firmware_id: String,
    /// `ProductKey`.
    pub product_key: String,
    /// Static or dynamic.
    pub job_type: JobKind,
    /// `SrcVersion.N`: only devices on these versions (empty: any).
    #[serde(default)]
    pub src_versions: Vec<String>,
    /// `TargetDeviceName.N`: only these devices (empty: the product's devices).
    #[serde(default)]
    pub target_device_names: Vec<String>,
    /// `ScheduleTime`, epoch ms (0: now).
    #[serde(default)]
    pub schedule_time: u64,
    /// `RetryInterval`, minutes between a failure and the next push (0: at once).
    #[serde(default)]
    pub retry_interval: u64,
    /// `RetryCount`: pushes after a failure.
    #[serde(default)]
    pub retry_count: u32,
    /// `TimeoutInMinutes`: a task not SUCCEEDED this long after its push fails (0: never).
    #[serde(default)]
    pub timeout_in_minutes: u64,
    /// `MaximumPerMinute`: pushes per minute for the job (0: no limit).
    #[serde(default)]
    pub maximum_per_minute: u32,
    /// `JobStatus`.
    pub job_status: JobStatus,
    /// `UtcCreate`, epoch ms.
    pub utc_create: u64,
    /// When the job completed or was canceled, epoch ms.
    #[serde(default)]
    pub utc_end: u64,
}

/// One device's upgrade in a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `TaskId`.
    pub task_id: String,
    /// `JobId`.
    pub job_id: String,
    /// `ProductKey`.
    pub product_key: String,
    /// `DeviceName`.
    pub device_name: String,
    /// `TaskStatus`.
    pub task_status: TaskStatus,
    /// `Progress`: the last step reported (1..100, or the negative step).
    #[serde(default)]
    pub progress: i32,
    /// `TaskDesc`: the failure's reason, or the device's last `desc`.
    #[serde(default)]
    pub task_desc: String,
    /// `SrcVersion`: the module version the device reported when the task was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_version: Option<String>,
    /// Pushes so far (the first and the retries).
    #[serde(default)]
    pub pushes: u32,
    /// Not pushed again before this, epoch ms (retry interval).
    #[serde(default)]
    pub not_before: u64,
    /// When it was last pushed or pulled, epoch ms.
    #[serde(default)]
    pub notified_at: u64,
    /// `UtcModified`, epoch ms.
    pub utc_modified: u64,
}

/// The module versions a device reported (`/ota/device/inform`): module → version.
pub type ModuleVersions = BTreeMap<String, String>;

/// A package with a fresh signed download URL (`GET /api/v1/ota/packages/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageView {
    /// The package.
    #[serde(flatten)]
    pub package: Package,
    /// `FirmwareUrl`: a signed, expiring download URL.
    pub firmware_url: String,
}

/// `POST /api/v1/ota/packages?…` query (the body is the file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadPackageQuery {
    /// `ProductKey`.
    pub product_key: String,
    /// `DestVersion`.
    pub dest_version: String,
    /// `ModuleName` (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    /// `SrcVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_version: Option<String>,
    /// `FirmwareName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_name: Option<String>,
    /// `SignMethod`: `MD5` (default) or `SHA256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_method: Option<String>,
    /// Differential package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_diff: Option<bool>,
}

/// `POST /api/v1/ota/jobs`: a static or dynamic job. The package is `firmwareId`, or the
/// product's package of `destVersion` (and `moduleName`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJob {
    /// `FirmwareId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_id: Option<String>,
    /// `ProductKey` (with `destVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_key: Option<String>,
    /// `DestVersion` (with `productKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_version: Option<String>,
    /// `ModuleName` (with `destVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    /// Dynamic job (default static).
    #[serde(default)]
    pub dynamic: bool,
    /// `SrcVersion.N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src_versions: Vec<String>,
    /// `TargetDeviceName.N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_device_names: Vec<String>,
    /// `ScheduleTime`, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_time: Option<u64>,
    /// `RetryInterval`, minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<u64>,
    /// `RetryCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    /// `TimeoutInMinutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_minutes: Option<u64>,
    /// `MaximumPerMinute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_per_minute: Option<u32>,
}

/// `POST /api/v1/ota/jobs/{id}/cancel`: the task states to cancel (default QUEUED, NOTIFIED,
/// IN_PROGRESS); the job is canceled too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelJob {
    /// Task states to cancel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_status: Vec<TaskStatus>,
}

/// A job with its tasks and their counts per state (`GET /api/v1/ota/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Tasks per state.
    pub counts: BTreeMap<TaskStatus, usize>,
    /// Every task (in `show`; empty in lists).
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// A device's reported module versions (`GET /api/v1/products/{pk}/devices/{dn}/ota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceModules {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// module → version.
    pub modules: ModuleVersions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    product_key: Option<&'a str>,
}

impl Client {
    /// `POST /api/v1/ota/packages?…` with the file as the body: stores a package.
    ///
    /// # Errors
    /// `product_not_found` (404), `invalid_argument` (400), `payload_too_large` (413).
    pub async fn upload_package(&self, q: &UploadPackageQuery, file: Vec<u8>) -> Result<PackageView> {
        let path = format!("/api/v1/ota/packages{}", query(q));
        let answer = self
            .exchange(Method::POST, &path, Some(Bytes::from(file)), self.wait())
            .await?;
        self.decode(&path, &answer)
    }

    /// `GET /api/v1/ota/packages[?productKey=]`.
    ///
    /// # Errors
    /// Transport and HTTP errors.
    pub async fn packages(&self, product_key: Option<&str>) -> Result<Vec<PackageView>> {
        self.get_json(&format!(
            "/api/v1/ota/packages{}",
            query(&ProductQuery { product_key })
        ))
        .await
    }

    /// `GET /api/v1/ota/packages/{id}`.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn package(&self, firmware_id: &str) -> Result<PackageView> {
        self.get_json(&format!("/api/v1/ota/packages/{}", segment(firmware_id)))
            .await
    }

    /// `DELETE /api/v1/ota/packages/{id}`.
    ///
    /// # Errors
    /// `not_found` (404), `conflict` (409) while a running job uses it.
    pub async fn delete_package(&self, firmware_id: &str) -> Result<PackageView> {
        let path = format!("/api/v1/ota/packages/{}", segment(firmware_id));
        let answer = self.exchange(Method::DELETE, &path, None, self.wait()).await?;
        self.decode(&path, &answer)
    }

    /// `POST /api/v1/ota/jobs`.
    ///
    /// # Errors
    /// `not_found` (404: package, version or device), `invalid_argument` (400).
    pub async fn create_job(&self, job: &CreateJob) -> Result<JobView> {
        self.send_json(Method::POST, "/api/v1/ota/jobs", job, self.wait())
            .await
    }

    /// `GET /api/v1/ota/jobs[?productKey=]`.
    ///
    /// # Errors
    /// Transport and HTTP errors.
    pub async fn jobs(&self, product_key: Option<&str>) -> Result<Vec<JobView>> {
        self.get_json(&format!(
            "/api/v1/ota/jobs{}",
            query(&ProductQuery { product_key })
        ))
        .await
    }

    /// `GET /api/v1/ota/jobs/{id}`.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn job(&self, job_id: &str) -> Result<JobView> {
        self.get_json(&format!("/api/v1/ota/jobs/{}", segment(job_id)))
            .await
    }

    /// `POST /api/v1/ota/jobs/{id}/cancel`.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn cancel_job(&self, job_id: &str, cancel: &CancelJob) -> Result<JobView> {
        let path = format!("/api/v1/ota/jobs/{}/cancel", segment(job_id));
        self.send_json(Method::POST, &path, cancel, self.wait()).await
    }

    /// `GET /api/v1/products/{pk}/devices/{dn}/ota`: the module versions the device reported.
    ///
    /// # Errors
    /// `device_not_found` (404).
    pub async fn device_modules(&self, product_key: &str, device_name: &str) -> Result<DeviceModules> {
        self.get_json(&format!(
            "{}/ota",
            crate::client::device_path(product_key, device_name)
        ))
        .await
    }
}
