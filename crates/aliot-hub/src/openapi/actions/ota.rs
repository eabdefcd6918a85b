//! OTA from the cloud (cloud-side §4.2), over the hub's OTA room: `CreateOTAFirmware`,
//! `ListOTAFirmware`, `QueryOTAFirmware`, `DeleteOTAFirmware`, `CreateOTAStaticUpgradeJob`,
//! `CreateOTADynamicUpgradeJob`, `QueryOTAJob`, `ListOTAJobByFirmware`, `ListOTATaskByJob`,
//! `CancelOTAStrategyByJob`, `CancelOTATaskByJob`, `ListOTAModuleVersionsByDevice`.
//!
//! The platform's `FirmwareUrl` points to OSS. The hub has no OSS: a package is uploaded through
//! the admin API (`aliot admin ota package upload`), which gives its `firmwareId`, and `CreateOTAFirmware`
//! takes `FirmwareUrl=aliot://package/{firmwareId}` (or a download URL the hub gave for it).
//! It checks the package is of that product (and version, module, sign when given) and answers
//! its `FirmwareId`. Times are UTC strings (`2026-11-29T20:00:00.000Z`); a time never reached
//! is `""`. Grey releases, device groups and tags are not offered.

use serde_json::{Value, json};

use super::shape::{Paging, not_offered, reply};
use crate::clock::{format_utc, now_ms};
use crate::openapi::action::{ActionResult, ApiError, Ctx};
use crate::ota::{Job, JobKind, JobStatus, OtaError, Package, SignMethod, Task, TaskStatus};

/// The platform's codes for the OTA room's refusals.
fn ota_error(e: OtaError) -> ApiError {
    let message = e.to_string();
    match e {
        OtaError::NotFound(_) | OtaError::InvalidArgument(_) => {
            ApiError::business("iot.common.InvalidFormattedParameter", message)
        }
        OtaError::Conflict(_) | OtaError::TooLarge { .. } => {
            ApiError::business("iot.system.IllegalRequest", message)
        }
        OtaError::Storage(_) => ApiError::business("iot.system.SystemException", message),
    }
}

/// A UTC time string, `""` for 0 (never).
fn utc(ms: u64) -> String {
    if ms == 0 { String::new() } else { format_utc(ms) }
}

/// The firmwareId a `FirmwareUrl` names: `aliot://package/{id}` or a hub download URL
/// (`…/ota/{id}?expires=…`).
fn firmware_id_of(url: &str) -> Option<&str> {
    if let Some(id) = url.strip_prefix("aliot://package/") {
        return Some(id.trim_end_matches('/')).filter(|id| !id.is_empty());
    }
    let path = url.split('?').next()?;
    let (_, id) = path.rsplit_once("/ota/")?;
    Some(id).filter(|id| !id.is_empty() && !id.contains('/'))
}

fn firmware_info(p: &Package) -> Value {
    json!({
        "FirmwareId": p.firmware_id,
        "FirmwareName": p.firmware_name,
        "ProductKey": p.product_key,
        "DestVersion": p.dest_version,
        "SrcVersion": p.src_version.clone().unwrap_or_default(),
        "ModuleName": p.module_name,
        "FirmwareSize": p.firmware_size,
        "FirmwareSign": p.firmware_sign,
        "SignMethod": match p.sign_method { SignMethod::Md5 => "MD5", SignMethod::Sha256 => "SHA256" },
        "Type": u8::from(p.is_diff),
        // Not verified: packages need no verification job in the hub.
        "Status": -1,
        "FirmwareDesc": "",
        "UtcCreate": utc(p.utc_create),
        "UtcModified": utc(p.utc_create),
    })
}

/// `CreateOTAFirmware`: adopts a package uploaded through the admin API.
pub(crate) async fn create_firmware(ctx: Ctx<'_>) -> ActionResult {
    let p = ctx.params;
    let pk = p.required("ProductKey")?;
    let version = p.required("DestVersion")?;
    let url = p.required("FirmwareUrl")?;
    let id = firmware_id_of(url).ok_or_else(|| {
        ApiError::business(
            "iot.common.InvalidFormattedParameter",
            format!(
                "FirmwareUrl {url:?}: the hub has no OSS; upload the file with `aliot admin ota package upload` \
                 and pass aliot://package/{{firmwareId}}"
            ),
        )
    })?;
    ctx.service.product(pk).await?;
    let package = ctx.service.ota().package(id).map_err(ota_error)?;
    let module = p.get("ModuleName").unwrap_or(crate::ota::DEFAULT_MODULE);
    let mismatch = |what: &str, given: &str, has: &str| {
        ApiError::business(
            "iot.common.InvalidFormattedParameter",
            format!("package {id} has {what} {has:?}, not {given:?}"),
        )
    };
    if package.product_key != pk {
        return Err(mismatch("product", pk, &package.product_key));
    }
    if package.dest_version != version {
        return Err(mismatch("version", version, &package.dest_version));
    }
    if package.module_name != module {
        return Err(mismatch("module", module, &package.module_name));
    }
    if let Some(sign) = p.get("FirmwareSign")
        && !sign.eq_ignore_ascii_case(&package.firmware_sign)
    {
        return Err(mismatch("sign", sign, &package.firmware_sign));
    }
    if let Some(size) = p.number::<u64>("FirmwareSize")?
        && size != package.firmware_size
    {
        return Err(mismatch(
            "size",
            &size.to_string(),
            &package.firmware_size.to_string(),
        ));
    }
    Ok(reply(json!({"Data": {
        "FirmwareId": package.firmware_id,
        "UtcCreate": utc(package.utc_create),
    }})))
}

/// `ListOTAFirmware`: `ProductKey`, `DestVersion` filters; `CurrentPage`, `PageSize` ≤ 100.
pub(crate) async fn list_firmware(ctx: Ctx<'_>) -> ActionResult {
    let paging = Paging::read(ctx.params, "CurrentPage", "PageSize", 10, 100)?;
    let version = ctx.params.get("DestVersion");
    let packages: Vec<Package> = ctx
        .service
        .ota()
        .packages(ctx.params.get("ProductKey"))
        .into_iter()
        .filter(|p| version.is_none_or(|v| p.dest_version == v))
        .collect();
    let mut rows = Vec::new();
    for p in paging.slice(&packages) {
        let mut info = firmware_info(p);
        if let Ok(product) = ctx.service.product(&p.product_key).await {
            info["ProductName"] = Value::from(product.name);
        }
        rows.push(info);
    }
    Ok(reply(json!({
        "CurrentPage": paging.page,
        "PageSize": paging.size,
        "PageCount": paging.count(packages.len()),
        "Total": packages.len(),
        "FirmwareInfo": {"SimpleFirmwareInfo": rows},
    })))
}

/// `QueryOTAFirmware`: with a fresh signed download URL.
pub(crate) async fn query_firmware(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("FirmwareId")?;
    let ota = ctx.service.ota();
    let package = ota.package(id).map_err(ota_error)?;
    let mut info = firmware_info(&package);
    info["FirmwareUrl"] = Value::from(ota.package_url(id, now_ms()));
    if let Ok(product) = ctx.service.product(&package.product_key).await {
        info["ProductName"] = Value::from(product.name);
    }
    Ok(reply(json!({ "FirmwareInfo": info })))
}

/// `DeleteOTAFirmware`: refused while a running job uses it.
pub(crate) async fn delete_firmware(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("FirmwareId")?;
    ctx.service.ota().delete_package(id).await.map_err(ota_error)?;
    Ok(reply(json!({})))
}

/// Reads a number parameter into `target` when given.
fn number<T: std::str::FromStr>(ctx: &Ctx<'_>, name: &str, target: &mut T) -> Result<(), ApiError> {
    if let Some(v) = ctx.params.number::<T>(name)? {
        *target = v;
    }
    Ok(())
}

/// `CreateOTAStaticUpgradeJob` (`dynamic` false) and `CreateOTADynamicUpgradeJob`.
async fn create_job(ctx: Ctx<'_>, dynamic: bool) -> ActionResult {
    let p = ctx.params;
    let firmware_id = p.required("FirmwareId")?;
    let pk = p.required("ProductKey")?;
    for unsupported in ["GroupId", "GrayPercent", "DnListFileUrl", "Tag.1.Key"] {
        if p.get(unsupported).is_some() {
            return Err(not_offered(unsupported));
        }
    }
    if p.flag("NeedConfirm")? == Some(true) {
        return Err(not_offered("NeedConfirm"));
    }
    if p.flag("NeedPush")? == Some(false) {
        return Err(not_offered("NeedPush=false"));
    }
    let targets: Vec<String> = p
        .list("TargetDeviceName")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !dynamic {
        match p.required("TargetSelection")? {
            "ALL" if targets.is_empty() => {}
            "ALL" => {
                return Err(ApiError::invalid(
                    "TargetDeviceName",
                    "not with TargetSelection ALL",
                ));
            }
            "SPECIFIC" if !targets.is_empty() => {}
            "SPECIFIC" => return Err(ApiError::missing("TargetDeviceName")),
            other => return Err(not_offered(&format!("TargetSelection {other}"))),
        }
    }
    let ota = ctx.service.ota();
    let package = ota.package(firmware_id).map_err(ota_error)?;
    if package.product_key != pk {
        return Err(ApiError::invalid("FirmwareId", firmware_id));
    }
    let mut job = Job {
        job_id: String::new(),
        firmware_id: package.firmware_id.clone(),
        product_key: package.product_key.clone(),
        job_type: if dynamic {
            JobKind::Dynamic
        } else {
            JobKind::Static
        },
        src_versions: p.list("SrcVersion").into_iter().map(str::to_owned).collect(),
        target_device_names: targets,
        schedule_time: 0,
        retry_interval: 0,
        retry_count: 0,
        timeout_in_minutes: 0,
        maximum_per_minute: 0,
        job_status: JobStatus::InProgress,
        utc_create: 0,
        utc_end: 0,
    };
    number(&ctx, "ScheduleTime", &mut job.schedule_time)?;
    number(&ctx, "RetryInterval", &mut job.retry_interval)?;
    number(&ctx, "RetryCount", &mut job.retry_count)?;
    number(&ctx, "TimeoutInMinutes", &mut job.timeout_in_minutes)?;
    number(&ctx, "MaximumPerMinute", &mut job.maximum_per_minute)?;
    let devices: Vec<String> = ctx
        .service
        .devices(&package.product_key)
        .await?
        .into_iter()
        .map(|d| d.device_name)
        .collect();
    let job = ota.create_job(job, &devices).await.map_err(ota_error)?;
    Ok(reply(json!({"Data": {
        "JobId": job.job_id,
        "UtcCreate": utc(job.utc_create),
    }})))
}

/// `CreateOTAStaticUpgradeJob`: `TargetSelection` `ALL` or `SPECIFIC` (`TargetDeviceName.N`).
pub(crate) async fn create_static_job(ctx: Ctx<'_>) -> ActionResult {
    create_job(ctx, false).await
}

/// `CreateOTADynamicUpgradeJob`: also devices that report a source version later.
pub(crate) async fn create_dynamic_job(ctx: Ctx<'_>) -> ActionResult {
    create_job(ctx, true).await
}

fn job_status(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Scheduled => "PLANNED",
        JobStatus::InProgress => "IN_PROGRESS",
        JobStatus::Completed => "COMPLETED",
        JobStatus::Canceled => "CANCELED",
    }
}

fn job_type(k: JobKind) -> &'static str {
    match k {
        JobKind::Static => "STATIC_UPGRADE",
        JobKind::Dynamic => "DYNAMIC_UPGRADE",
    }
}

fn selection(job: &Job) -> &'static str {
    if job.target_device_names.is_empty() {
        "ALL"
    } else {
        "SPECIFIC"
    }
}

/// `QueryOTAJob`.
pub(crate) async fn query_job(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("JobId")?;
    let ota = ctx.service.ota();
    let job = ota.job(id).map_err(ota_error)?.job;
    let dest = ota
        .package(&job.firmware_id)
        .map(|p| p.dest_version)
        .unwrap_or_default();
    Ok(reply(json!({"Data": {
        "JobId": job.job_id,
        "FirmwareId": job.firmware_id,
        "ProductKey": job.product_key,
        "DestVersion": dest,
        "JobStatus": job_status(job.job_status),
        "JobType": "UPGRADE_FIRMWARE",
        "SelectionType": if job.job_type == JobKind::Dynamic { "DYNAMIC" } else { "STATIC" },
        "TargetSelection": selection(&job),
        "DynamicMode": if job.job_type == JobKind::Dynamic { 1 } else { 0 },
        "SrcVersions": {"SrcVersion": job.src_versions},
        "RetryCount": job.retry_count,
        "RetryInterval": job.retry_interval,
        "TimeoutInMinutes": job.timeout_in_minutes,
        "MaximumPerMinute": job.maximum_per_minute,
        "NeedPush": true,
        "NeedConfirm": false,
        "MultiModuleMode": false,
        "OverwriteMode": 1,
        "DownloadProtocol": "HTTPS",
        "Name": job_type(job.job_type),
        "UtcCreate": utc(job.utc_create),
        "UtcModified": utc(job.utc_end.max(job.utc_create)),
        "UtcStartTime": utc(job.schedule_time.max(job.utc_create)),
        "UtcScheduleTime": utc(job.schedule_time),
        "UtcEndTime": utc(job.utc_end),
    }})))
}

/// `ListOTAJobByFirmware`.
pub(crate) async fn list_jobs_by_firmware(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("FirmwareId")?;
    let paging = Paging::read(ctx.params, "CurrentPage", "PageSize", 10, 100)?;
    let ota = ctx.service.ota();
    let package = ota.package(id).map_err(ota_error)?;
    let jobs: Vec<Job> = ota
        .jobs(Some(&package.product_key))
        .into_iter()
        .filter(|j| j.firmware_id == id)
        .collect();
    let rows: Vec<Value> = paging
        .slice(&jobs)
        .iter()
        .map(|j| {
            json!({
                "JobId": j.job_id,
                "FirmwareId": j.firmware_id,
                "ProductKey": j.product_key,
                "JobStatus": job_status(j.job_status),
                "JobType": "UPGRADE_FIRMWARE",
                "SelectionType": if j.job_type == JobKind::Dynamic { "DYNAMIC" } else { "STATIC" },
                "TargetSelection": selection(j),
                "UtcCreate": utc(j.utc_create),
                "UtcModified": utc(j.utc_end.max(j.utc_create)),
                "UtcStartTime": utc(j.schedule_time.max(j.utc_create)),
                "UtcEndTime": utc(j.utc_end),
            })
        })
        .collect();
    Ok(reply(json!({
        "CurrentPage": paging.page,
        "PageSize": paging.size,
        "PageCount": paging.count(jobs.len()),
        "Total": jobs.len(),
        "Data": {"SimpleOTAJobInfo": rows},
    })))
}

/// `ListOTATaskByJob`: `TaskStatus` and `DeviceNames.N` filters.
pub(crate) async fn list_tasks_by_job(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("JobId")?;
    let paging = Paging::read(ctx.params, "CurrentPage", "PageSize", 10, 100)?;
    let wanted = match ctx.params.get("TaskStatus") {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| ApiError::invalid("TaskStatus", s))?),
    };
    let names = ctx.params.list("DeviceNames");
    let ota = ctx.service.ota();
    let progress = ota.job(id).map_err(ota_error)?;
    let package = ota.package(&progress.job.firmware_id).ok();
    let tasks: Vec<&Task> = progress
        .tasks
        .iter()
        .filter(|t| wanted.is_none_or(|w| t.task_status == w))
        .filter(|t| names.is_empty() || names.contains(&t.device_name.as_str()))
        .collect();
    let product_name = ctx
        .service
        .product(&progress.job.product_key)
        .await
        .map(|p| p.name)
        .unwrap_or_default();
    let registry = ctx.service.registry();
    let mut rows = Vec::new();
    for t in paging.slice(&tasks) {
        let iot_id = registry
            .device(&t.product_key, &t.device_name)
            .await?
            .map(|d| d.iot_id)
            .unwrap_or_default();
        rows.push(json!({
            "TaskId": t.task_id,
            "JobId": t.job_id,
            "FirmwareId": progress.job.firmware_id,
            "ProductKey": t.product_key,
            "ProductName": product_name,
            "DeviceName": t.device_name,
            "IotId": iot_id,
            "SrcVersion": t.src_version.clone().unwrap_or_default(),
            "DestVersion": package.as_ref().map(|p| p.dest_version.clone()).unwrap_or_default(),
            "TaskStatus": t.task_status.as_str(),
            "Progress": t.progress.to_string(),
            "TaskDesc": t.task_desc,
            "Timeout": progress.job.timeout_in_minutes.to_string(),
            "UtcCreate": utc(progress.job.utc_create),
            "UtcModified": utc(t.utc_modified),
        }));
    }
    Ok(reply(json!({
        "CurrentPage": paging.page,
        "PageSize": paging.size,
        "PageCount": paging.count(tasks.len()),
        "Total": tasks.len(),
        "Data": {"SimpleOTATaskInfo": rows},
    })))
}

/// `CancelOTAStrategyByJob`: ends the job (no more pushes, no more dynamic tasks); the tasks
/// already pushed go on.
pub(crate) async fn cancel_strategy(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("JobId")?;
    ctx.service
        .ota()
        .cancel_job(id, &[TaskStatus::Queued])
        .await
        .map_err(ota_error)?;
    Ok(reply(json!({})))
}

/// `CancelOTATaskByJob`: cancels the job's tasks in the states flagged
/// (`CancelQueuedTask`, `CancelNotifiedTask`, `CancelInProgressTask`; `CancelScheduledTask`
/// counts as queued, `CancelUnconfirmedTask` names a state the hub never has).
pub(crate) async fn cancel_tasks(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("JobId")?;
    let p = ctx.params;
    let mut states = Vec::new();
    let mut any = false;
    for (flag, state) in [
        ("CancelQueuedTask", Some(TaskStatus::Queued)),
        ("CancelScheduledTask", Some(TaskStatus::Queued)),
        ("CancelNotifiedTask", Some(TaskStatus::Notified)),
        ("CancelInProgressTask", Some(TaskStatus::InProgress)),
        ("CancelUnconfirmedTask", None),
    ] {
        if p.flag(flag)? == Some(true) {
            any = true;
            if let Some(s) = state
                && !states.contains(&s)
            {
                states.push(s);
            }
        }
    }
    if !any {
        return Err(ApiError::business(
            "iot.common.InvalidFormattedParameter",
            "Set at least one of CancelQueuedTask, CancelNotifiedTask, CancelInProgressTask, \
             CancelScheduledTask, CancelUnconfirmedTask.",
        ));
    }
    if !states.is_empty() {
        ctx.service
            .ota()
            .cancel_job(id, &states)
            .await
            .map_err(ota_error)?;
    }
    Ok(reply(json!({})))
}

/// `ListOTAModuleVersionsByDevice`: the module versions the device reported.
pub(crate) async fn module_versions(ctx: Ctx<'_>) -> ActionResult {
    let device = ctx.device().await?;
    let paging = Paging::read(ctx.params, "CurrentPage", "PageSize", 10, 100)?;
    let modules: Vec<(String, String)> = ctx
        .service
        .ota()
        .modules(&device.product_key, &device.device_name)
        .into_iter()
        .collect();
    let rows: Vec<Value> = paging
        .slice(&modules)
        .iter()
        .map(|(module, version)| {
            json!({
                "ProductKey": device.product_key,
                "DeviceName": device.device_name,
                "IotId": device.iot_id,
                "ModuleName": module,
                "ModuleVersion": version,
            })
        })
        .collect();
    Ok(reply(json!({
        "CurrentPage": paging.page,
        "PageSize": paging.size,
        "PageCount": paging.count(modules.len()),
        "Total": modules.len(),
        "Data": {"SimpleOTAModuleInfo": rows},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firmware_url_names_a_package_in_either_form() {
        assert_eq!(firmware_id_of("aliot://package/fw123"), Some("fw123"));
        assert_eq!(
            firmware_id_of("https://127.0.0.1:8443/ota/fw123?expires=1&signature=x"),
            Some("fw123")
        );
        assert_eq!(firmware_id_of("https://bucket.oss.aliyuncs.com/a.bin"), None);
        assert_eq!(firmware_id_of("aliot://package/"), None);
    }
}
