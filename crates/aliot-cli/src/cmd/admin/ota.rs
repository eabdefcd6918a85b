//! `aliot admin ota …`: firmware packages and upgrade jobs (cloud-side §4.2).

use std::path::PathBuf;

use aliot_admin::ota::{CancelJob, CreateJob, JobView, TaskStatus, UploadPackageQuery};
use serde_json::{Value, json as json_value};

use super::{Job, json, usage};

#[derive(Debug, clap::Subcommand)]
pub(super) enum OtaCommand {
    /// Firmware packages: upload, list, show, delete.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Upgrade jobs: create, list, show, cancel.
    #[command(subcommand)]
    Job(JobCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum PackageCommand {
    /// Upload a package: the hub stores it, computes its size, MD5 and SHA-256.
    #[command(disable_version_flag = true)]
    Upload {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: String,
        /// The file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The version devices run once upgraded (DestVersion).
        #[arg(long = "version", id = "dest_version")]
        version: String,
        /// The module (default `default`).
        #[arg(long)]
        module: Option<String>,
        /// The version a differential package applies to (SrcVersion).
        #[arg(long)]
        src_version: Option<String>,
        /// How devices verify it: `md5` (default) or `sha256`.
        #[arg(long, value_parser = ["md5", "sha256"])]
        sign_method: Option<String>,
        /// A differential package (the hub only carries the flag).
        #[arg(long)]
        diff: bool,
        /// A display name (default `{module}-{version}`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the packages (of one product).
    List {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: Option<String>,
    },
    /// Show a package with a fresh download URL.
    Show {
        /// firmwareId.
        firmware_id: String,
    },
    /// Delete a package no running job uses.
    Delete {
        /// firmwareId.
        firmware_id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum JobCommand {
    /// Create a job: the package by `--firmware-id`, or by `--product-key` and `--version`.
    #[command(disable_version_flag = true)]
    Create {
        /// firmwareId.
        #[arg(long)]
        firmware_id: Option<String>,
        /// productKey (with --version).
        #[arg(long, value_name = "PK")]
        product_key: Option<String>,
        /// The package's version (with --product-key).
        #[arg(long = "version", id = "dest_version")]
        version: Option<String>,
        /// The package's module (with --version).
        #[arg(long)]
        module: Option<String>,
        /// Dynamic: devices that later report a source version join the job.
        #[arg(long)]
        dynamic: bool,
        /// Only devices on these versions (repeat).
        #[arg(long = "src-version")]
        src_versions: Vec<String>,
        /// Only these devices (repeat).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Start at this time, epoch ms.
        #[arg(long)]
        schedule_time: Option<u64>,
        /// Minutes between a failure and the next push.
        #[arg(long)]
        retry_interval: Option<u64>,
        /// Pushes after a failure.
        #[arg(long)]
        retry_count: Option<u32>,
        /// A task not succeeded this many minutes after its push fails.
        #[arg(long)]
        timeout_minutes: Option<u64>,
        /// Pushes per minute.
        #[arg(long)]
        max_per_minute: Option<u32>,
    },
    /// List the jobs (of one product) with their counts per task state.
    List {
        /// productKey.
        #[arg(long, value_name = "PK")]
        product_key: Option<String>,
    },
    /// A job's progress: counts per task state, failures with their reasons, every task.
    Show {
        /// jobId.
        job_id: String,
    },
    /// Cancel the job and its tasks in the given states (default: queued, notified,
    /// in_progress).
    Cancel {
        /// jobId.
        job_id: String,
        /// Task states to cancel (repeat): queued, notified, in_progress.
        #[arg(long = "state")]
        states: Vec<String>,
    },
}

/// The job view with its failures set apart.
fn progress(view: JobView) -> aliot_admin::Result<Value> {
    let failures: Vec<Value> = view
        .tasks
        .iter()
        .filter(|t| t.task_status == TaskStatus::Failed)
        .map(|t| json_value!({"deviceName": t.device_name, "step": t.progress, "reason": t.task_desc}))
        .collect();
    let mut v = serde_json::to_value(&view).unwrap_or(Value::Null);
    v["failures"] = Value::Array(failures);
    Ok(v)
}

pub(super) fn job(command: OtaCommand) -> anyhow::Result<Job> {
    match command {
        OtaCommand::Package(PackageCommand::Upload {
            product_key,
            file,
            version,
            module,
            src_version,
            sign_method,
            diff,
            name,
        }) => {
            let bytes =
                std::fs::read(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let q = UploadPackageQuery {
                product_key,
                dest_version: version,
                module_name: module,
                src_version,
                firmware_name: name,
                sign_method: sign_method.map(|s| s.to_ascii_uppercase()),
                is_diff: diff.then_some(true),
            };
            json(move |c| async move { c.upload_package(&q, bytes).await })
        }
        OtaCommand::Package(PackageCommand::List { product_key }) => {
            json(move |c| async move { c.packages(product_key.as_deref()).await })
        }
        OtaCommand::Package(PackageCommand::Show { firmware_id }) => {
            json(move |c| async move { c.package(&firmware_id).await })
        }
        OtaCommand::Package(PackageCommand::Delete { firmware_id }) => {
            json(move |c| async move { c.delete_package(&firmware_id).await })
        }
        OtaCommand::Job(JobCommand::Create {
            firmware_id,
            product_key,
            version,
            module,
            dynamic,
            src_versions,
            devices,
            schedule_time,
            retry_interval,
            retry_count,
            timeout_minutes,
            max_per_minute,
        }) => {
            if firmware_id.is_none() && (product_key.is_none() || version.is_none()) {
                return Err(usage(
                    "name the package: --firmware-id, or --product-key and --version",
                ));
            }
            let create = CreateJob {
                firmware_id,
                product_key,
                dest_version: version,
                module_name: module,
                dynamic,
                src_versions,
                target_device_names: devices,
                schedule_time,
                retry_interval,
                retry_count,
                timeout_in_minutes: timeout_minutes,
                maximum_per_minute: max_per_minute,
            };
            json(move |c| async move { progress(c.create_job(&create).await?) })
        }
        OtaCommand::Job(JobCommand::List { product_key }) => {
            json(move |c| async move { c.jobs(product_key.as_deref()).await })
        }
        OtaCommand::Job(JobCommand::Show { job_id }) => {
            json(move |c| async move { progress(c.job(&job_id).await?) })
        }
        OtaCommand::Job(JobCommand::Cancel { job_id, states }) => {
            let task_status = states
                .iter()
                .map(|s| {
                    TaskStatus::parse(s)
                        .ok_or_else(|| usage(format!("--state {s}: queued, notified or in_progress")))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let cancel = CancelJob { task_status };
            json(move |c| async move { progress(c.cancel_job(&job_id, &cancel).await?) })
        }
    }
}
