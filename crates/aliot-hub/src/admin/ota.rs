//! `/api/v1/ota/…`: firmware packages and upgrade jobs (cloud-side §4.2).
//!
//! - `POST /api/v1/ota/packages?productKey=&destVersion=[&moduleName=&srcVersion=&firmwareName=&signMethod=MD5|SHA256&isDiff=true]`
//!   with the file as the raw body (streamed to disk; 413 above `[ota] max_package_bytes`);
//! - `GET /api/v1/ota/packages[?productKey=]`, `GET|DELETE /api/v1/ota/packages/{firmwareId}`;
//! - `POST /api/v1/ota/jobs` (JSON [`CreateJob`]), `GET /api/v1/ota/jobs[?productKey=]`,
//!   `GET /api/v1/ota/jobs/{jobId}` (counts per state, every task with its reason),
//!   `POST /api/v1/ota/jobs/{jobId}/cancel` (`{"taskStatus":["QUEUED",…]}`);
//! - `GET /api/v1/products/{pk}/devices/{dn}/ota`: the module versions the device reported.
//!
//! Every answer of a change is given once it is durable.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use aliot_admin::ota::{CancelJob, CreateJob, DeviceModules, JobView, PackageView, UploadPackageQuery};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::AdminState;
use super::error::ApiError;
use crate::clock::now_ms;
use crate::ota::{Job, JobKind, JobProgress, JobStatus, Ota, OtaError, Package, PackageSpec, SignMethod};

impl From<OtaError> for ApiError {
    fn from(e: OtaError) -> Self {
        match &e {
            OtaError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            OtaError::InvalidArgument(_) => ApiError::bad_request(e.to_string()),
            OtaError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
            }
            OtaError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            OtaError::Storage(_) => ApiError::internal(&e),
        }
    }
}

fn package_view(ota: &Ota, package: Package) -> PackageView {
    PackageView {
        firmware_url: ota.package_url(&package.firmware_id, now_ms()),
        package,
    }
}

fn job_view(p: JobProgress) -> JobView {
    JobView {
        job: p.job,
        counts: p.counts,
        tasks: p.tasks,
    }
}

/// `POST /api/v1/ota/packages`.
pub(super) async fn upload(
    State(state): State<AdminState>,
    query: Result<Query<UploadPackageQuery>, QueryRejection>,
    body: Body,
) -> Result<Json<PackageView>, ApiError> {
    let Query(q) = query?;
    let service = state.service();
    service.product(&q.product_key).await?;
    let sign_method = match q.sign_method.as_deref() {
        None | Some("") => SignMethod::Md5,
        Some(s) => SignMethod::parse(s)
            .ok_or_else(|| ApiError::bad_request(format!("signMethod {s:?}: MD5 or SHA256")))?,
    };
    let spec = PackageSpec {
        product_key: q.product_key,
        dest_version: q.dest_version,
        module_name: q.module_name,
        src_version: q.src_version,
        firmware_name: q.firmware_name,
        sign_method,
        is_diff: q.is_diff.unwrap_or(false),
        ext_data: None,
    };
    let ota = service.ota();
    let package = ota.upload_package(spec, body.into_data_stream()).await?;
    tracing::info!(firmware_id = %package.firmware_id, product_key = %package.product_key, version = %package.dest_version, size = package.firmware_size, "OTA package stored");
    Ok(Json(package_view(ota, package)))
}

/// `GET /api/v1/ota/packages`.
pub(super) async fn list_packages(
    State(state): State<AdminState>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Vec<PackageView>> {
    let ota = state.service().ota();
    let list = ota.packages(q.get("productKey").map(String::as_str));
    Json(list.into_iter().map(|p| package_view(ota, p)).collect())
}

/// `GET /api/v1/ota/packages/{id}`.
pub(super) async fn show_package(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<PackageView>, ApiError> {
    let ota = state.service().ota();
    Ok(Json(package_view(ota, ota.package(&id)?)))
}

/// `DELETE /api/v1/ota/packages/{id}`.
pub(super) async fn delete_package(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<PackageView>, ApiError> {
    let ota = state.service().ota();
    let package = ota.delete_package(&id).await?;
    Ok(Json(package_view(ota, package)))
}

/// `POST /api/v1/ota/jobs`.
pub(super) async fn create_job(
    State(state): State<AdminState>,
    body: Result<Json<CreateJob>, JsonRejection>,
) -> Result<Json<JobView>, ApiError> {
    let Json(c) = body?;
    let service = state.service();
    let ota = service.ota();
    let firmware_id = match (&c.firmware_id, &c.product_key, &c.dest_version) {
        (Some(id), _, _) => ota.package(id)?.firmware_id,
        (None, Some(pk), Some(version)) => {
            service.product(pk).await?;
            let module = c.module_name.as_deref().unwrap_or(crate::ota::DEFAULT_MODULE);
            ota.packages(Some(pk))
                .into_iter()
                .rev()
                .find(|p| &p.dest_version == version && p.module_name == module)
                .ok_or_else(|| {
                    OtaError::NotFound(format!(
                        "product {pk} has no package of version {version} for module {module}: upload it first"
                    ))
                })?
                .firmware_id
        }
        _ => {
            return Err(ApiError::bad_request(
                "name the package: firmwareId, or productKey and destVersion",
            ));
        }
    };
    let package = ota.package(&firmware_id)?;
    let devices: Vec<String> = service
        .registry()
        .devices(&package.product_key)
        .await?
        .into_iter()
        .map(|d| d.device_name)
        .collect();
    let job = Job {
        job_id: String::new(),
        firmware_id,
        product_key: package.product_key,
        job_type: if c.dynamic {
            JobKind::Dynamic
        } else {
            JobKind::Static
        },
        src_versions: c.src_versions,
        target_device_names: c.target_device_names,
        schedule_time: c.schedule_time.unwrap_or(0),
        retry_interval: c.retry_interval.unwrap_or(0),
        retry_count: c.retry_count.unwrap_or(0),
        timeout_in_minutes: c.timeout_in_minutes.unwrap_or(0),
        maximum_per_minute: c.maximum_per_minute.unwrap_or(0),
        job_status: JobStatus::InProgress,
        utc_create: 0,
        utc_end: 0,
    };
    let job = ota.create_job(job, &devices).await?;
    Ok(Json(job_view(ota.job(&job.job_id)?)))
}

/// `GET /api/v1/ota/jobs`.
pub(super) async fn list_jobs(
    State(state): State<AdminState>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Vec<JobView>> {
    let ota = state.service().ota();
    let jobs = ota.jobs(q.get("productKey").map(String::as_str));
    Json(
        jobs.into_iter()
            .filter_map(|j| ota.job(&j.job_id).ok())
            .map(|p| JobView {
                tasks: Vec::new(),
                ..job_view(p)
            })
            .collect(),
    )
}

/// `GET /api/v1/ota/jobs/{id}`.
pub(super) async fn show_job(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job_view(state.service().ota().job(&id)?)))
}

/// `POST /api/v1/ota/jobs/{id}/cancel`.
pub(super) async fn cancel_job(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Option<Json<CancelJob>>,
) -> Result<Json<JobView>, ApiError> {
    let states = body.map(|Json(c)| c.task_status).unwrap_or_default();
    Ok(Json(job_view(
        state.service().ota().cancel_job(&id, &states).await?,
    )))
}

/// `GET /api/v1/products/{pk}/devices/{dn}/ota`.
pub(super) async fn device_modules(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<DeviceModules>, ApiError> {
    let service = state.service();
    service.device(&pk, &dn).await?;
    Ok(Json(DeviceModules {
        modules: service.ota().modules(&pk, &dn),
        product_key: pk,
        device_name: dn,
    }))
}

/// Appends the OTA counters to `/metrics`.
pub(super) fn render(out: &mut String, ota: &Ota) {
    let _ = write!(
        out,
        "# HELP aliot_hub_ota_bytes_served_total OTA package bytes sent to devices.\n\
         # TYPE aliot_hub_ota_bytes_served_total counter\naliot_hub_ota_bytes_served_total {}\n\
         # HELP aliot_hub_ota_downloads_refused_total OTA downloads answered 503 (too many at once).\n\
         # TYPE aliot_hub_ota_downloads_refused_total counter\naliot_hub_ota_downloads_refused_total {}\n\
         # HELP aliot_hub_ota_pushes_total OTA upgrade pushes sent.\n\
         # TYPE aliot_hub_ota_pushes_total counter\naliot_hub_ota_pushes_total {}\n",
        ota.bytes_served.load(Relaxed),
        ota.downloads_refused.load(Relaxed),
        ota.pushes.load(Relaxed),
    );
}
