//! OTA (cloud-side §4.2, aliyun-protocol §4.4): firmware packages, upgrade jobs and their
//! per-device tasks, the push on `/ota/device/upgrade/{pk}/{dn}`, the answer to
//! `thing.ota.firmware.get`, progress and version reports, and the signed package downloads.
//!
//! | rule | where |
//! |---|---|
//! | push payload (`code` "1000", numeric `id`, `data{size,version,url,md5\|sign,signMethod,module,extData}`) | `Ota::push_payload` |
//! | task QUEUED → NOTIFIED (pushed or pulled) → IN_PROGRESS (step 1..100) → SUCCEEDED (target version informed) / FAILED (negative step, timeout) | `Ota::progress`, `Ota::inform`, the driver |
//! | retries (`RetryInterval` minutes, `RetryCount`), `TimeoutInMinutes`, `MaximumPerMinute` (a sliding 60 s window) | the driver (`Ota::tick`) |
//! | dynamic jobs take devices that report a source version later | `Ota::inform` |
//!
//! The driver is one tokio task: it wakes every second, or at once when a device informs a
//! version or a job is made, and pushes the QUEUED tasks of the running jobs to the devices that
//! are online and subscribed, as many as each job's bucket allows. A device offline (or not yet
//! subscribed) keeps its task QUEUED and gets the push once it is, or pulls it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rmqtt_codec::v3::QoS;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::cluster::{Cluster, Downlink};
use crate::events::{Event, OtaEvent};
use crate::signed_url::UrlSigner;
use crate::table::{Delivered, Reach};

pub(crate) mod package;
mod store;

pub use self::package::PackageSpec;
use self::store::{Key, Store, encode};
pub use aliot_admin::ota::{
    DEFAULT_MODULE, Job, JobKind, JobStatus, ModuleVersions, Package, SignMethod, Task, TaskStatus,
};

/// Errors of the OTA room.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    /// No such package, job, product or version.
    #[error("{0}")]
    NotFound(String),
    /// A request the platform refuses.
    #[error("{0}")]
    InvalidArgument(String),
    /// The package is above the configured limit.
    #[error("the package is larger than the hub's limit of {limit} bytes")]
    TooLarge {
        /// The configured limit, bytes.
        limit: u64,
    },
    /// The package is used by a running job.
    #[error("{0}")]
    Conflict(String),
    /// Disk trouble.
    #[error("OTA storage: {0}")]
    Storage(String),
}

/// OTA settings (`[ota]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtaSettings {
    /// Largest package accepted, bytes (above: 413).
    pub max_package_bytes: u64,
    /// Downloads served at once (more: 503 with `Retry-After`).
    pub max_downloads: usize,
    /// Life of a download URL, seconds.
    pub url_ttl_secs: u64,
}

impl Default for OtaSettings {
    fn default() -> Self {
        Self {
            max_package_bytes: 1000 * 1024 * 1024,
            max_downloads: 64,
            url_ttl_secs: 24 * 3600,
        }
    }
}

/// A job's progress: tasks per state and the failures with their reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    /// The job.
    pub job: Job,
    /// Tasks per state.
    pub counts: BTreeMap<TaskStatus, usize>,
    /// Every task.
    pub tasks: Vec<Task>,
}

/// The pushes of a job in the last 60 s (`MaximumPerMinute`): a sliding window, so that no
/// 60-second window ever holds more than the maximum (a token bucket that starts full lets a
/// window hold twice as many). Holds at most `MaximumPerMinute` times, each one a push made.
#[derive(Debug, Default)]
struct Bucket {
    sent: std::collections::VecDeque<u64>,
}

#[derive(Debug, Default)]
struct State {
    packages: BTreeMap<String, Package>,
    jobs: BTreeMap<String, Job>,
    tasks: BTreeMap<String, Task>,
    /// `{pk}/{dn}` → its task ids (every job).
    by_device: HashMap<String, Vec<String>>,
    modules: HashMap<String, ModuleVersions>,
    buckets: HashMap<String, Bucket>,
}

fn device_key(pk: &str, dn: &str) -> String {
    format!("{pk}/{dn}")
}

impl State {
    fn add_task(&mut self, task: Task) {
        self.by_device
            .entry(device_key(&task.product_key, &task.device_name))
            .or_default()
            .push(task.task_id.clone());
        self.tasks.insert(task.task_id.clone(), task);
    }

    /// The device's active task for `module` (of a running job), if any.
    fn active_task(&self, pk: &str, dn: &str, module: Option<&str>) -> Option<(&Task, &Job, &Package)> {
        let ids = self.by_device.get(&device_key(pk, dn))?;
        ids.iter().rev().find_map(|id| {
            let task = self.tasks.get(id)?;
            if !task.task_status.is_active() {
                return None;
            }
            let job = self.jobs.get(&task.job_id)?;
            let package = self.packages.get(&job.firmware_id)?;
            if module.is_some_and(|m| m != package.module_name) {
                return None;
            }
            Some((task, job, package))
        })
    }
}

/// The OTA records read at start (or none, in memory).
#[derive(Debug)]
pub struct Opened {
    store: Store,
    loaded: store::Loaded,
}

impl Opened {
    /// No records on disk: state in memory, package files in a private temporary directory.
    pub fn in_memory() -> Self {
        Self {
            store: Store::in_memory(),
            loaded: store::Loaded::default(),
        }
    }

    /// Opens the records in `data_dir` (`ota.redb`, `ota/packages/`): a restarted hub resumes
    /// its jobs.
    ///
    /// # Errors
    /// [`OtaError::Storage`].
    pub async fn load(data_dir: &Path) -> Result<Self, OtaError> {
        let dir = data_dir.to_owned();
        let (store, loaded) = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| OtaError::Storage(e.to_string()))??;
        Ok(Self { store, loaded })
    }
}

/// The OTA room: a cheap handle shared by the platform, the service and the download route.
#[derive(Debug)]
pub struct Ota {
    state: Arc<Mutex<State>>,
    store: Arc<Store>,
    cluster: Arc<dyn Cluster>,
    signer: Arc<UrlSigner>,
    settings: Mutex<OtaSettings>,
    wake: Notify,
    next_id: AtomicU64,
    /// Download bytes served, for `/metrics`.
    pub(crate) bytes_served: AtomicU64,
    /// Downloads refused because too many were running.
    pub(crate) downloads_refused: AtomicU64,
    /// Downloads served at once (`OtaSettings::max_downloads` permits).
    pub(crate) downloads: Arc<tokio::sync::Semaphore>,
    /// Pushes sent.
    pub(crate) pushes: AtomicU64,
    /// Server-side subscription's OTA families (set once by the broker).
    forwarder: std::sync::OnceLock<crate::subscription::families::OtaForwarder>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

impl Ota {
    /// The room over what `opened` read (call inside a tokio runtime: it starts the writer
    /// and the driver).
    pub(crate) fn new(cluster: Arc<dyn Cluster>, signer: Arc<UrlSigner>, opened: Opened) -> Arc<Self> {
        let Opened { store, loaded } = opened;
        let settings = OtaSettings::default();
        let mut state = State::default();
        for p in loaded.packages {
            state.packages.insert(p.firmware_id.clone(), p);
        }
        for j in loaded.jobs {
            state.jobs.insert(j.job_id.clone(), j);
        }
        for t in loaded.tasks {
            state.add_task(t);
        }
        for (k, m) in loaded.modules {
            state.modules.insert(k, m);
        }
        let ota = Arc::new(Self {
            state: Arc::new(Mutex::new(state)),
            store: Arc::new(store),
            cluster,
            signer,
            settings: Mutex::new(settings),
            wake: Notify::new(),
            next_id: AtomicU64::new(now_ms()),
            bytes_served: AtomicU64::new(0),
            downloads_refused: AtomicU64::new(0),
            downloads: Arc::new(tokio::sync::Semaphore::new(settings.max_downloads)),
            forwarder: std::sync::OnceLock::new(),
            pushes: AtomicU64::new(0),
        });
        let state = ota.state.clone();
        tokio::spawn(ota.store.clone().run_writer(move |key| {
            let s = lock(&state);
            match key {
                Key::Package(k) => s.packages.get(k).and_then(encode),
                Key::Job(k) => s.jobs.get(k).and_then(encode),
                Key::Task(k) => s.tasks.get(k).and_then(encode),
                Key::Modules(k) => s.modules.get(k).and_then(encode),
            }
        }));
        tokio::spawn(drive(Arc::downgrade(&ota)));
        ota
    }

    /// Applies `[ota]` settings.
    pub(crate) fn configure(&self, settings: OtaSettings) {
        let old = std::mem::replace(&mut *lock(&self.settings), settings);
        if settings.max_downloads > old.max_downloads {
            self.downloads
                .add_permits(settings.max_downloads - old.max_downloads);
        } else {
            self.downloads
                .forget_permits(old.max_downloads - settings.max_downloads);
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> OtaSettings {
        *lock(&self.settings)
    }

    fn emit(&self, build: impl FnOnce() -> OtaEvent) {
        if self.cluster.observed() {
            self.cluster.publish(Event::Ota(build()));
        }
    }

    /// Where task progress, results and version reports are forwarded to consumer groups.
    pub(crate) fn set_forwarder(&self, forwarder: crate::subscription::families::OtaForwarder) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Forwards a task's progress or end (`OtaEventFlag`). Called without the state lock.
    fn forward_task(&self, task: &Task) {
        let Some(f) = self.forwarder.get().filter(|f| f.wants_tasks(&task.product_key)) else {
            return;
        };
        let (module_name, dest_version) = {
            let s = lock(&self.state);
            s.jobs
                .get(&task.job_id)
                .and_then(|j| s.packages.get(&j.firmware_id))
                .map(|p| (p.module_name.clone(), p.dest_version.clone()))
                .unwrap_or_else(|| (DEFAULT_MODULE.to_owned(), String::new()))
        };
        f.task(crate::subscription::families::OtaTaskFact {
            product_key: task.product_key.clone(),
            device_name: task.device_name.clone(),
            module_name,
            status: task.task_status.as_str(),
            step: task.progress,
            src_version: task.src_version.clone().unwrap_or_default(),
            dest_version,
            desc: task.task_desc.clone(),
            job_id: task.job_id.clone(),
            task_id: task.task_id.clone(),
        });
    }

    fn task_event(&self, task: &Task) {
        self.forward_task(task);
        self.emit(|| OtaEvent {
            kind: "task",
            product_key: task.product_key.clone(),
            device_name: task.device_name.clone(),
            job_id: Some(task.job_id.clone()),
            task_id: Some(task.task_id.clone()),
            task_status: Some(task.task_status.as_str()),
            module: None,
            version: None,
            step: Some(task.progress),
            desc: (!task.task_desc.is_empty()).then(|| task.task_desc.clone()),
            time: now_ms(),
        });
    }

    // ----- packages -----

    /// Where the package's file is.
    pub(crate) fn package_path(&self, firmware_id: &str) -> PathBuf {
        self.store.dir.join("packages").join(format!("{firmware_id}.bin"))
    }

    /// A new temporary file path for an upload.
    pub(crate) fn temp_path(&self) -> PathBuf {
        self.store.dir.join("tmp").join(new_id("up-"))
    }

    /// Records a package whose file is already at [`Self::package_path`] (durable on return).
    ///
    /// # Errors
    /// Storage.
    pub(crate) async fn add_package(&self, package: Package) -> Result<Package, OtaError> {
        let generation = {
            let mut s = lock(&self.state);
            s.packages.insert(package.firmware_id.clone(), package.clone());
            self.store.mark([Key::Package(package.firmware_id.clone())])
        };
        self.store.durable(generation).await?;
        Ok(package)
    }

    /// A new firmwareId.
    pub(crate) fn new_firmware_id() -> String {
        new_id("fw")
    }

    /// Every package (of one product when given), oldest first.
    pub fn packages(&self, product_key: Option<&str>) -> Vec<Package> {
        let s = lock(&self.state);
        let mut out: Vec<Package> = s
            .packages
            .values()
            .filter(|p| product_key.is_none_or(|pk| p.product_key == pk))
            .cloned()
            .collect();
        out.sort_by_key(|p| p.utc_create);
        out
    }

    /// One package.
    ///
    /// # Errors
    /// [`OtaError::NotFound`].
    pub fn package(&self, firmware_id: &str) -> Result<Package, OtaError> {
        lock(&self.state)
            .packages
            .get(firmware_id)
            .cloned()
            .ok_or_else(|| OtaError::NotFound(format!("no OTA package {firmware_id}")))
    }

    /// Deletes a package no running job uses (its file too).
    ///
    /// # Errors
    /// [`OtaError::NotFound`], [`OtaError::Conflict`], storage.
    pub async fn delete_package(&self, firmware_id: &str) -> Result<Package, OtaError> {
        let (package, generation) = {
            let mut s = lock(&self.state);
            if let Some(job) = s.jobs.values().find(|j| {
                j.firmware_id == firmware_id
                    && matches!(j.job_status, JobStatus::InProgress | JobStatus::Scheduled)
            }) {
                return Err(OtaError::Conflict(format!(
                    "package {firmware_id} is used by running job {}: cancel it first",
                    job.job_id
                )));
            }
            let package = s
                .packages
                .remove(firmware_id)
                .ok_or_else(|| OtaError::NotFound(format!("no OTA package {firmware_id}")))?;
            (package, self.store.mark([Key::Package(firmware_id.to_owned())]))
        };
        self.store.durable(generation).await?;
        let _ = tokio::fs::remove_file(self.package_path(firmware_id)).await;
        Ok(package)
    }

    /// A signed download URL of the package, issued at `now_ms`.
    pub fn package_url(&self, firmware_id: &str, now_ms: u64) -> String {
        self.signer.url(
            &format!("ota/{firmware_id}"),
            self.settings().url_ttl_secs,
            now_ms,
        )
    }

    /// Checks a download URL's signature and time.
    pub(crate) fn check_url(
        &self,
        firmware_id: &str,
        expires: &str,
        signature: &str,
    ) -> Result<(), crate::signed_url::UrlRefusal> {
        self.signer
            .check(&format!("ota/{firmware_id}"), expires, signature, now_ms())
    }

    // ----- jobs -----

    /// Creates a job for `job.firmware_id` with tasks for the chosen `devices` of the product
    /// (`devices` is every device of the product; the job's targets and source versions pick
    /// among them). Durable on return.
    ///
    /// # Errors
    /// [`OtaError::NotFound`] (package), [`OtaError::InvalidArgument`] (devices not in the
    /// product, nothing to upgrade for a static job), storage.
    pub async fn create_job(&self, mut job: Job, devices: &[String]) -> Result<Job, OtaError> {
        let now = now_ms();
        let generation = {
            let mut s = lock(&self.state);
            let package = s
                .packages
                .get(&job.firmware_id)
                .cloned()
                .ok_or_else(|| OtaError::NotFound(format!("no OTA package {}", job.firmware_id)))?;
            job.product_key = package.product_key.clone();
            if let Some(unknown) = job.target_device_names.iter().find(|d| !devices.contains(d)) {
                return Err(OtaError::NotFound(format!(
                    "device {unknown} is not a device of product {}",
                    job.product_key
                )));
            }
            if let Some(src) = &package.src_version
                && job.src_versions.is_empty()
            {
                job.src_versions = vec![src.clone()];
            }
            let chosen: Vec<(String, Option<String>)> = devices
                .iter()
                .filter(|d| job.target_device_names.is_empty() || job.target_device_names.contains(d))
                .filter_map(|d| {
                    let version = s
                        .modules
                        .get(&device_key(&job.product_key, d))
                        .and_then(|m| m.get(&package.module_name).cloned());
                    let on_source = job.src_versions.is_empty()
                        || version.as_ref().is_some_and(|v| job.src_versions.contains(v));
                    let done = version.as_deref() == Some(package.dest_version.as_str());
                    (on_source && !done).then(|| (d.clone(), version))
                })
                .collect();
            if chosen.is_empty() && job.job_type == JobKind::Static {
                return Err(OtaError::InvalidArgument(format!(
                    "no device of product {} is on a source version of this job{}",
                    job.product_key,
                    if job.src_versions.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", job.src_versions.join(", "))
                    }
                )));
            }
            job.job_id = new_id("job");
            job.utc_create = now;
            job.job_status = if job.schedule_time > now {
                JobStatus::Scheduled
            } else {
                JobStatus::InProgress
            };
            let mut keys = vec![Key::Job(job.job_id.clone())];
            for (dn, version) in chosen {
                let task = self.new_task(&job, &dn, version, now);
                keys.push(Key::Task(task.task_id.clone()));
                s.add_task(task);
            }
            s.jobs.insert(job.job_id.clone(), job.clone());
            self.store.mark(keys)
        };
        self.store.durable(generation).await?;
        self.wake.notify_one();
        Ok(job)
    }

    fn new_task(&self, job: &Job, dn: &str, src_version: Option<String>, now: u64) -> Task {
        Task {
            task_id: new_id("task"),
            job_id: job.job_id.clone(),
            product_key: job.product_key.clone(),
            device_name: dn.to_owned(),
            task_status: TaskStatus::Queued,
            progress: 0,
            task_desc: String::new(),
            src_version,
            pushes: 0,
            not_before: 0,
            notified_at: 0,
            utc_modified: now,
        }
    }

    /// Every job (of one product when given), oldest first.
    pub fn jobs(&self, product_key: Option<&str>) -> Vec<Job> {
        let s = lock(&self.state);
        let mut out: Vec<Job> = s
            .jobs
            .values()
            .filter(|j| product_key.is_none_or(|pk| j.product_key == pk))
            .cloned()
            .collect();
        out.sort_by_key(|j| j.utc_create);
        out
    }

    /// A job, its tasks and their counts per state.
    ///
    /// # Errors
    /// [`OtaError::NotFound`].
    pub fn job(&self, job_id: &str) -> Result<JobProgress, OtaError> {
        let s = lock(&self.state);
        let job = s
            .jobs
            .get(job_id)
            .cloned()
            .ok_or_else(|| OtaError::NotFound(format!("no OTA job {job_id}")))?;
        let tasks: Vec<Task> = s.tasks.values().filter(|t| t.job_id == job_id).cloned().collect();
        let mut counts = BTreeMap::new();
        for t in &tasks {
            *counts.entry(t.task_status).or_insert(0) += 1;
        }
        Ok(JobProgress { job, counts, tasks })
    }

    /// Cancels the job's tasks in `states` (default: QUEUED, NOTIFIED, IN_PROGRESS) and the job
    /// itself (no more pushes, no more dynamic tasks). Durable on return.
    ///
    /// # Errors
    /// [`OtaError::NotFound`], storage.
    pub async fn cancel_job(&self, job_id: &str, states: &[TaskStatus]) -> Result<JobProgress, OtaError> {
        let states: Vec<TaskStatus> = if states.is_empty() {
            vec![TaskStatus::Queued, TaskStatus::Notified, TaskStatus::InProgress]
        } else {
            states.to_vec()
        };
        let now = now_ms();
        let (generation, changed) = {
            let mut s = lock(&self.state);
            let job = s
                .jobs
                .get_mut(job_id)
                .ok_or_else(|| OtaError::NotFound(format!("no OTA job {job_id}")))?;
            let mut keys = vec![Key::Job(job_id.to_owned())];
            if matches!(job.job_status, JobStatus::InProgress | JobStatus::Scheduled) {
                job.job_status = JobStatus::Canceled;
                job.utc_end = now;
            }
            let mut changed = Vec::new();
            for t in s.tasks.values_mut().filter(|t| t.job_id == job_id) {
                if states.contains(&t.task_status) && t.task_status.is_active() {
                    t.task_status = TaskStatus::Canceled;
                    t.task_desc = "canceled by the user".into();
                    t.utc_modified = now;
                    keys.push(Key::Task(t.task_id.clone()));
                    changed.push(t.clone());
                }
            }
            (self.store.mark(keys), changed)
        };
        self.store.durable(generation).await?;
        for t in &changed {
            self.task_event(t);
        }
        self.job(job_id)
    }

    /// The module versions a device reported.
    pub fn modules(&self, product_key: &str, device_name: &str) -> ModuleVersions {
        lock(&self.state)
            .modules
            .get(&device_key(product_key, device_name))
            .cloned()
            .unwrap_or_default()
    }

    // ----- device side -----

    fn next_push_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The push's `data` (and `thing.ota.firmware.get`'s) for `package`, with a fresh URL.
    pub(crate) fn push_data(&self, package: &Package, now_ms: u64) -> Value {
        let mut data = json!({
            "size": package.firmware_size,
            "version": package.dest_version,
            "isDiff": u8::from(package.is_diff),
            "url": self.package_url(&package.firmware_id, now_ms),
            "sign": package.firmware_sign,
            "signMethod": package.sign_method.wire(),
            "module": package.module_name,
        });
        if package.sign_method == SignMethod::Md5 {
            data["md5"] = Value::String(package.md5.clone());
        }
        if let Some(ext) = &package.ext_data {
            data["extData"] = ext.clone();
        }
        data
    }

    /// The push `/ota/device/upgrade/{pk}/{dn}` payload: `{"code":"1000","data":…,"id":<number>,"message":"success"}`.
    pub(crate) fn push_payload(&self, package: &Package, now_ms: u64) -> Vec<u8> {
        let body = json!({
            "code": "1000",
            "data": self.push_data(package, now_ms),
            "id": self.next_push_id(),
            "message": "success",
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// `thing.ota.firmware.get`: the device's pending task's data (`{}` when none); a QUEUED
    /// task becomes NOTIFIED.
    pub(crate) fn firmware_get(&self, pk: &str, dn: &str, module: Option<&str>) -> Value {
        let now = now_ms();
        let (data, changed) = {
            let mut s = lock(&self.state);
            let Some((task, job, package)) = s.active_task(pk, dn, module) else {
                return json!({});
            };
            if matches!(job.job_status, JobStatus::Scheduled) {
                return json!({});
            }
            let data = self.push_data(package, now);
            let task_id = task.task_id.clone();
            let mut changed = None;
            if let Some(t) = s.tasks.get_mut(&task_id)
                && t.task_status == TaskStatus::Queued
            {
                t.task_status = TaskStatus::Notified;
                t.pushes += 1;
                t.notified_at = now;
                t.utc_modified = now;
                t.task_desc = "pulled with thing.ota.firmware.get".into();
                self.store.mark([Key::Task(task_id)]);
                changed = Some(t.clone());
            }
            (data, changed)
        };
        if let Some(t) = changed {
            self.task_event(&t);
        }
        data
    }

    /// `/ota/device/progress`: step 1..100 → IN_PROGRESS, a negative step → FAILED with `desc`
    /// (retried when the job allows). A report for no task is an event.
    pub(crate) fn progress(&self, pk: &str, dn: &str, payload: &[u8]) {
        let parsed: Option<(i32, String, Option<String>)> =
            serde_json::from_slice::<Value>(payload).ok().and_then(|v| {
                let params = v.get("params")?;
                let step = match params.get("step")? {
                    Value::String(s) => s.trim().parse().ok()?,
                    Value::Number(n) => i32::try_from(n.as_i64()?).ok()?,
                    _ => return None,
                };
                let desc = params
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let module = params.get("module").and_then(Value::as_str).map(str::to_owned);
                Some((step, desc, module))
            });
        let Some((step, desc, module)) = parsed else {
            self.unmatched(pk, dn, None, None, "unreadable progress report (no params.step)");
            return;
        };
        let now = now_ms();
        let changed = {
            let mut s = lock(&self.state);
            let Some((task, job, _)) = s.active_task(pk, dn, module.as_deref()) else {
                drop(s);
                self.unmatched(
                    pk,
                    dn,
                    module,
                    None,
                    &format!("progress step {step} for no pending OTA task"),
                );
                return;
            };
            let (task_id, retries_left, interval) = (
                task.task_id.clone(),
                task.pushes <= job.retry_count,
                job.retry_interval,
            );
            let Some(t) = s.tasks.get_mut(&task_id) else {
                return;
            };
            t.progress = step;
            t.utc_modified = now;
            t.task_desc = desc.clone();
            if (1..=100).contains(&step) {
                t.task_status = TaskStatus::InProgress;
            } else if step < 0 {
                fail(t, &step_reason(step, &desc), retries_left, interval, now);
            } else {
                return;
            }
            self.store.mark([Key::Task(task_id)]);
            t.clone()
        };
        self.task_event(&changed);
        if changed.task_status == TaskStatus::Queued {
            self.wake.notify_one();
        }
    }

    /// `/ota/device/inform`: keeps the module's version; the device's task for that module
    /// succeeds when it is the target version; a dynamic job takes a device on one of its
    /// source versions.
    pub(crate) fn inform(&self, pk: &str, dn: &str, payload: &[u8]) {
        let parsed = serde_json::from_slice::<Value>(payload).ok().and_then(|v| {
            let params = v.get("params")?;
            let version = params.get("version")?.as_str()?.to_owned();
            let module = params
                .get("module")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or(DEFAULT_MODULE)
                .to_owned();
            Some((version, module))
        });
        let Some((version, module)) = parsed else {
            self.unmatched(
                pk,
                dn,
                None,
                None,
                "unreadable version report (no params.version)",
            );
            return;
        };
        let now = now_ms();
        let mut changed = Vec::new();
        let mut matched = false;
        {
            let mut s = lock(&self.state);
            let key = device_key(pk, dn);
            let mut keys = Vec::new();
            let modules = s.modules.entry(key.clone()).or_default();
            if modules.get(&module) != Some(&version) {
                modules.insert(module.clone(), version.clone());
                keys.push(Key::Modules(key));
            }
            if let Some((task, _, package)) = s.active_task(pk, dn, Some(&module)) {
                matched = true;
                if package.dest_version == version {
                    let task_id = task.task_id.clone();
                    if let Some(t) = s.tasks.get_mut(&task_id) {
                        t.task_status = TaskStatus::Succeeded;
                        t.progress = 100;
                        t.task_desc = format!("the device reports version {version}");
                        t.utc_modified = now;
                        keys.push(Key::Task(task_id));
                        changed.push(t.clone());
                    }
                }
            } else {
                // Dynamic jobs take devices reporting one of their source versions.
                let dynamic: Vec<Job> = s
                    .jobs
                    .values()
                    .filter(|j| {
                        j.job_type == JobKind::Dynamic
                            && j.product_key == pk
                            && matches!(j.job_status, JobStatus::InProgress | JobStatus::Scheduled)
                            && (j.target_device_names.is_empty()
                                || j.target_device_names.iter().any(|d| d == dn))
                            && (j.src_versions.is_empty() || j.src_versions.contains(&version))
                    })
                    .cloned()
                    .collect();
                for job in dynamic {
                    let Some(package) = s.packages.get(&job.firmware_id) else {
                        continue;
                    };
                    if package.module_name != module || package.dest_version == version {
                        continue;
                    }
                    // Once per device per job.
                    let known = s.by_device.get(&device_key(pk, dn)).is_some_and(|ids| {
                        ids.iter()
                            .any(|id| s.tasks.get(id).is_some_and(|t| t.job_id == job.job_id))
                    });
                    if known {
                        continue;
                    }
                    let task = self.new_task(&job, dn, Some(version.clone()), now);
                    keys.push(Key::Task(task.task_id.clone()));
                    changed.push(task.clone());
                    s.add_task(task);
                    matched = true;
                    break;
                }
            }
            if !keys.is_empty() {
                self.store.mark(keys);
            }
        }
        if let Some(f) = self.forwarder.get() {
            f.version(pk, dn, &module, &version, now);
        }
        self.emit(|| OtaEvent {
            kind: "inform",
            product_key: pk.to_owned(),
            device_name: dn.to_owned(),
            job_id: None,
            task_id: None,
            task_status: None,
            module: Some(module.clone()),
            version: Some(version.clone()),
            step: None,
            desc: (!matched).then(|| "no OTA job targets this device's module".to_owned()),
            time: now,
        });
        for t in &changed {
            self.task_event(t);
        }
        // The device is there and listening: its queued task may go now.
        self.wake.notify_one();
    }

    fn unmatched(&self, pk: &str, dn: &str, module: Option<String>, version: Option<String>, why: &str) {
        tracing::debug!(
            product_key = pk,
            device_name = dn,
            why,
            "OTA report matched nothing"
        );
        self.emit(|| OtaEvent {
            kind: "unmatched",
            product_key: pk.to_owned(),
            device_name: dn.to_owned(),
            job_id: None,
            task_id: None,
            task_status: None,
            module,
            version,
            step: None,
            desc: Some(why.to_owned()),
            time: now_ms(),
        });
    }

    /// Waits until every change made so far is on disk, then closes `ota.redb` (at shutdown).
    pub(crate) async fn close(&self) {
        let generation = self.store.mark([]);
        if let Err(e) = self.store.durable(generation).await {
            tracing::warn!(error = %e, "OTA records not flushed");
        }
        self.store.close();
    }

    /// Wakes the driver (a device came online).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// One round of the driver at `now`: schedules, timeouts, retries, pushes, completion.
    /// Returns the number of pushes sent.
    pub(crate) fn tick(&self, now: u64) -> usize {
        let mut pushes: Vec<(String, String, String, Vec<u8>)> = Vec::new();
        let mut events = Vec::new();
        {
            let mut s = lock(&self.state);
            let mut keys = Vec::new();
            let State {
                jobs,
                tasks,
                packages,
                buckets,
                ..
            } = &mut *s;
            for job in jobs.values_mut() {
                if job.job_status == JobStatus::Scheduled && job.schedule_time <= now {
                    job.job_status = JobStatus::InProgress;
                    keys.push(Key::Job(job.job_id.clone()));
                }
            }
            // Timeouts and retries.
            for t in tasks.values_mut() {
                let Some(job) = jobs.get(&t.job_id) else { continue };
                if job.job_status != JobStatus::InProgress {
                    continue;
                }
                let timeout_ms = job.timeout_in_minutes.saturating_mul(60_000);
                if matches!(t.task_status, TaskStatus::Notified | TaskStatus::InProgress)
                    && timeout_ms > 0
                    && now.saturating_sub(t.notified_at) >= timeout_ms
                {
                    let retries_left = t.pushes <= job.retry_count;
                    fail(t, "timed out", retries_left, job.retry_interval, now);
                    keys.push(Key::Task(t.task_id.clone()));
                    events.push(t.clone());
                }
            }
            // Pushes, per job within its bucket.
            let mut by_job: BTreeMap<String, Vec<&mut Task>> = BTreeMap::new();
            for t in tasks.values_mut() {
                if t.task_status == TaskStatus::Queued && t.not_before <= now {
                    by_job.entry(t.job_id.clone()).or_default().push(t);
                }
            }
            for (job_id, mut queued) in by_job {
                let Some(job) = jobs.get(&job_id) else { continue };
                if job.job_status != JobStatus::InProgress {
                    continue;
                }
                let Some(package) = packages.get(&job.firmware_id) else {
                    continue;
                };
                queued.sort_by(|a, b| a.device_name.cmp(&b.device_name));
                let bucket = buckets.entry(job_id.clone()).or_default();
                while bucket
                    .sent
                    .front()
                    .is_some_and(|&at| at.saturating_add(60_000) <= now)
                {
                    bucket.sent.pop_front();
                }
                let max = usize::try_from(job.maximum_per_minute).unwrap_or(usize::MAX);
                for t in queued {
                    if max > 0 && bucket.sent.len() >= max {
                        break;
                    }
                    let topic = format!("/ota/device/upgrade/{}/{}", t.product_key, t.device_name);
                    let payload = self.push_payload(package, now);
                    let delivered = self.cluster.deliver(
                        &t.product_key,
                        &t.device_name,
                        Downlink {
                            topic: topic.clone(),
                            payload: Bytes::from(payload.clone()),
                            qos: QoS::AtLeastOnce,
                        },
                        Reach::OnlineOnly,
                    );
                    if !matches!(delivered, Ok(ref taken) if taken.delivered == Delivered::Online) {
                        // Offline, not subscribed yet, or its queue is full: pushed later.
                        continue;
                    }
                    if max > 0 {
                        bucket.sent.push_back(now);
                    }
                    t.task_status = TaskStatus::Notified;
                    t.pushes += 1;
                    t.notified_at = now;
                    t.utc_modified = now;
                    t.task_desc = String::new();
                    keys.push(Key::Task(t.task_id.clone()));
                    events.push(t.clone());
                    pushes.push((t.product_key.clone(), t.device_name.clone(), topic, payload));
                }
            }
            // Static jobs complete when every task is final.
            let mut active: HashMap<&str, bool> = HashMap::new();
            for t in tasks.values() {
                let a = active.entry(t.job_id.as_str()).or_insert(false);
                *a |= t.task_status.is_active();
            }
            for job in jobs.values_mut() {
                if job.job_type == JobKind::Static
                    && job.job_status == JobStatus::InProgress
                    && !active.get(job.job_id.as_str()).copied().unwrap_or(false)
                {
                    job.job_status = JobStatus::Completed;
                    job.utc_end = now;
                    keys.push(Key::Job(job.job_id.clone()));
                }
            }
            if !keys.is_empty() {
                self.store.mark(keys);
            }
        }
        self.pushes.fetch_add(pushes.len() as u64, Ordering::Relaxed);
        for t in &events {
            self.task_event(t);
        }
        pushes.len()
    }
}

/// A failure: FAILED for good, or back to QUEUED after the retry interval when pushes remain.
fn fail(t: &mut Task, reason: &str, retries_left: bool, interval_mins: u64, now: u64) {
    t.task_desc = reason.to_owned();
    t.utc_modified = now;
    if retries_left {
        t.task_status = TaskStatus::Queued;
        t.not_before = now + interval_mins.saturating_mul(60_000);
        t.task_desc = format!("{reason}; retry {} queued", t.pushes);
    } else {
        t.task_status = TaskStatus::Failed;
    }
}

/// The documented negative steps (C SDK 4 `AIOT_OTAERR_*`).
fn step_reason(step: i32, desc: &str) -> String {
    let what = match step {
        -1 => "upgrade failed",
        -2 => "download failed",
        -3 => "verification failed",
        -4 => "burn failed",
        _ => "failed",
    };
    if desc.is_empty() {
        format!("step {step}: {what}")
    } else {
        format!("step {step}: {what}: {desc}")
    }
}

/// The driver task: a round every second, or when woken; ends with the room.
async fn drive(ota: std::sync::Weak<Ota>) {
    loop {
        let Some(o) = ota.upgrade() else { return };
        o.tick(now_ms());
        let woken = async { o.wake.notified().await };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        drop(o);
    }
}

#[cfg(test)]
mod tests;
