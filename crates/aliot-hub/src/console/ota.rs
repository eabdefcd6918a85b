//! OTA: packages (upload, from the page's script as the raw file body) and upgrade jobs
//! (create, progress per state, cancel), through [`Service::ota`](crate::service::Service::ota).

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::{Deserialize, Serialize};

use super::page::{Failure, PageResult, render};
use super::session::Session;
use super::{ConsoleState, base, time};
use crate::ota::{Job, JobKind, JobStatus, PackageSpec, SignMethod, TaskStatus};

#[derive(Serialize)]
struct PackageRow {
    firmware_id: String,
    product_key: String,
    module: String,
    version: String,
    size: u64,
}

#[derive(Serialize)]
struct JobRow {
    job_id: String,
    product_key: String,
    firmware_id: String,
    status: String,
    created: String,
    counts: Vec<(String, u64)>,
}

/// `GET /console/ota`.
pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
) -> PageResult {
    let service = state.service();
    let ota = service.ota();
    let packages: Vec<PackageRow> = ota
        .packages(None)
        .into_iter()
        .map(|p| PackageRow {
            firmware_id: p.firmware_id,
            product_key: p.product_key,
            module: p.module_name,
            version: p.dest_version,
            size: p.firmware_size,
        })
        .collect();
    let jobs: Vec<JobRow> = ota
        .jobs(None)
        .into_iter()
        .filter_map(|j| ota.job(&j.job_id).ok())
        .map(|p| JobRow {
            job_id: p.job.job_id.clone(),
            product_key: p.job.product_key.clone(),
            firmware_id: p.job.firmware_id.clone(),
            status: serde_json::to_value(p.job.job_status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            created: time(p.job.utc_create),
            counts: serde_json::to_value(&p.counts)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| m.into_iter().map(|(k, v)| (k, v.as_u64().unwrap_or(0))).collect())
                .unwrap_or_default(),
        })
        .collect();
    let products: Vec<String> = service
        .products()
        .await?
        .into_iter()
        .map(|p| p.product_key)
        .collect();
    Ok(render(
        "ota.html",
        minijinja::context! {
            packages => super::page::ser(&packages),
            jobs => super::page::ser(&jobs),
            products => super::page::ser(&products),
            ..base(&session, "ota"),
        },
    ))
}

/// The upload's query: `?productKey=&destVersion=&moduleName=`.
#[derive(Deserialize)]
pub(super) struct Upload {
    #[serde(rename = "productKey")]
    product_key: String,
    #[serde(rename = "destVersion")]
    dest_version: String,
    #[serde(rename = "moduleName", default)]
    module_name: Option<String>,
}

/// `POST /console/ota/packages?…` with the file as the body (sent by the page's script with the
/// CSRF header). Answers the package's id as text.
pub(super) async fn upload(
    State(state): State<ConsoleState>,
    query: Result<Query<Upload>, QueryRejection>,
    body: Body,
) -> PageResult {
    let Query(q) = query?;
    let service = state.service();
    service.product(&q.product_key).await?;
    let spec = PackageSpec {
        product_key: q.product_key,
        dest_version: q.dest_version,
        module_name: q.module_name.filter(|m| !m.is_empty()),
        src_version: None,
        firmware_name: None,
        sign_method: SignMethod::Md5,
        is_diff: false,
        ext_data: None,
    };
    let package = service
        .ota()
        .upload_package(spec, body.into_data_stream())
        .await?;
    Ok(package.firmware_id.into_response())
}

/// The job form.
#[derive(Deserialize)]
pub(super) struct CreateJob {
    firmware_id: String,
    #[serde(default)]
    devices: String,
}

/// `POST /console/ota/jobs`: a static job over the named devices (all of the product's when
/// none are named).
pub(super) async fn create_job(
    State(state): State<ConsoleState>,
    form: Result<Form<CreateJob>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let service = state.service();
    let ota = service.ota();
    let package = ota
        .package(form.firmware_id.trim())
        .map_err(|e| Failure::from(e).back("/console/ota"))?;
    let all: Vec<String> = service
        .devices(&package.product_key)
        .await?
        .into_iter()
        .map(|d| d.device_name)
        .collect();
    let named: Vec<String> = form
        .devices
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let job = Job {
        job_id: String::new(),
        firmware_id: package.firmware_id,
        product_key: package.product_key,
        job_type: JobKind::Static,
        src_versions: Vec::new(),
        target_device_names: if named.is_empty() { all.clone() } else { named },
        schedule_time: 0,
        retry_interval: 0,
        retry_count: 0,
        timeout_in_minutes: 0,
        maximum_per_minute: 0,
        job_status: JobStatus::InProgress,
        utc_create: 0,
        utc_end: 0,
    };
    ota.create_job(job, &all)
        .await
        .map_err(|e| Failure::from(e).back("/console/ota"))?;
    Ok(Redirect::to("/console/ota").into_response())
}

/// `POST /console/ota/jobs/{id}/cancel`: cancels the tasks not yet finished.
pub(super) async fn cancel_job(State(state): State<ConsoleState>, Path(id): Path<String>) -> PageResult {
    let states = [TaskStatus::Queued, TaskStatus::Notified, TaskStatus::InProgress];
    state
        .service()
        .ota()
        .cancel_job(&id, &states)
        .await
        .map_err(|e| Failure::from(e).back("/console/ota"))?;
    Ok(Redirect::to("/console/ota").into_response())
}
