//! Batch registration (cloud-side §1.6): `BatchCheckDeviceNames`, `BatchRegisterDevice`,
//! `BatchRegisterDeviceWithApplyId`, `QueryBatchRegisterDeviceStatus`, `QueryPageByApplyId`.
//!
//! An ApplyId is a durable record in the registry ([`crate::registry::ApplyRecord`]): the names
//! and where the application stands; the devices themselves are read from the registry. The hub
//! registers at once (all or nothing, durable before the answer), so an application never
//! shows `CHECK` or `CREATE` (in progress): it is checked or created when its action answers.
//! An application with an unusable name (`CHECK_FAILED`) registers nothing.

use std::collections::HashSet;

use aliot_protocol::identity::validate_device_name;
use serde_json::{Value, json};

use super::shape::{Paging, items, reply};
use crate::clock::now_ms;
use crate::openapi::action::{ActionResult, ApiError, Ctx, Params};
use crate::registry::{ApplyRecord, ApplyStatus, InvalidName, NewDevice, random_alnum};

/// The most devices `BatchRegisterDevice` creates at once.
pub(crate) const MAX_COUNT: u64 = 10_000;

/// Length of a generated deviceName.
const GENERATED_NAME_LEN: usize = 20;

fn no_apply() -> ApiError {
    ApiError::business(
        "iot.device.DeviceApplyIsNotFound",
        "The specified apply ID does not exist.",
    )
}

/// The application named by `ApplyId` (of `ProductKey` when given).
async fn application(ctx: &Ctx<'_>) -> Result<(u64, ApplyRecord), ApiError> {
    let id_text = ctx.params.required("ApplyId")?;
    let id: u64 = id_text
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("ApplyId", id_text))?;
    let record = ctx.service.registry().apply(id).await?.ok_or_else(no_apply)?;
    if ctx
        .params
        .get("ProductKey")
        .is_some_and(|pk| pk != record.product_key)
    {
        return Err(no_apply());
    }
    Ok((id, record))
}

/// The names of `BatchCheckDeviceNames`: `DeviceName.N`, or `DeviceNameList.N.DeviceName`.
fn names(params: &Params) -> Vec<String> {
    let listed = params.list("DeviceName");
    if !listed.is_empty() {
        return listed.into_iter().map(str::to_owned).collect();
    }
    items(params, "DeviceNameList")
        .into_iter()
        .filter_map(|item| item.get("DeviceName").map(|n| (*n).to_owned()))
        .collect()
}

/// `BatchCheckDeviceNames`: checks the names (format, repeats, already registered) and keeps
/// them under a new ApplyId.
pub(crate) async fn check_names(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    ctx.service.product(pk).await?;
    let given = names(ctx.params);
    if given.is_empty() {
        return Err(ApiError::missing("DeviceName"));
    }
    if given.len() as u64 > MAX_COUNT {
        return Err(ApiError::business(
            "iot.device.DeviceCountExceeded",
            format!("At most {MAX_COUNT} device names can be checked at once."),
        ));
    }
    let existing: HashSet<String> = ctx
        .service
        .devices(pk)
        .await?
        .into_iter()
        .map(|d| d.device_name)
        .collect();
    let mut seen = HashSet::new();
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    let mut repeated = Vec::new();
    for name in given {
        let reason = if let Err(e) = validate_device_name(&name) {
            Some(e.to_string())
        } else if existing.contains(&name) {
            Some("the device name already exists".to_owned())
        } else if !seen.insert(name.clone()) {
            repeated.push(name.clone());
            Some("the device name is repeated".to_owned())
        } else {
            None
        };
        match reason {
            Some(reason) => invalid.push(InvalidName {
                device_name: name,
                reason,
            }),
            None => valid.push(name),
        }
    }
    let status = if invalid.is_empty() {
        ApplyStatus::CheckSuccess
    } else {
        ApplyStatus::CheckFailed
    };
    let record = ApplyRecord {
        product_key: pk.to_owned(),
        status,
        names: valid,
        invalid,
        created_ms: now_ms(),
    };
    let id = ctx.service.registry().put_apply(None, record.clone()).await?;
    let invalid_names: Vec<&str> = record
        .invalid
        .iter()
        .filter(|i| !repeated.contains(&i.device_name))
        .map(|i| i.device_name.as_str())
        .collect();
    Ok(reply(json!({"Data": {
        "ApplyId": id,
        "InvalidDeviceNameList": {"InvalidDeviceName": invalid_names},
        "RepeatedDeviceNameList": {"RepeatDevieNameList": repeated},
        "InvalidDetailList": {"InvalidDetailList": invalid_details(&record)},
    }})))
}

fn invalid_details(record: &ApplyRecord) -> Vec<Value> {
    record
        .invalid
        .iter()
        .map(|i| json!({"DeviceName": i.device_name, "ErrorMsg": i.reason}))
        .collect()
}

/// Registers the application's names, all or nothing, and records the outcome.
async fn create(ctx: &Ctx<'_>, id: Option<u64>, mut record: ApplyRecord) -> Result<u64, ApiError> {
    let devices = record.names.iter().map(NewDevice::named).collect();
    let created = ctx
        .service
        .create_devices(&record.product_key, devices, false)
        .await;
    let registry = ctx.service.registry();
    match created {
        Ok(_) => {
            record.status = ApplyStatus::CreateSuccess;
            Ok(registry.put_apply(id, record).await?)
        }
        Err(e) => {
            if let Some(id) = id {
                record.status = ApplyStatus::CreateFailed;
                // Best effort: the answer is the registration's error either way.
                let _ = registry.put_apply(Some(id), record).await;
            }
            Err(e.into())
        }
    }
}

/// `BatchRegisterDevice`: `Count` (1–10000) devices with generated names, registered at once.
pub(crate) async fn register(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    let count_text = ctx.params.required("Count")?;
    let count: u64 = count_text
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("Count", count_text))?;
    if count == 0 || count > MAX_COUNT {
        return Err(ApiError::business(
            "iot.device.DeviceCountExceeded",
            format!("Count must be 1 to {MAX_COUNT}."),
        ));
    }
    ctx.service.product(pk).await?;
    let mut names = HashSet::new();
    while (names.len() as u64) < count {
        names.insert(random_alnum(GENERATED_NAME_LEN));
    }
    let record = ApplyRecord {
        product_key: pk.to_owned(),
        status: ApplyStatus::CheckSuccess,
        names: names.into_iter().collect(),
        invalid: Vec::new(),
        created_ms: now_ms(),
    };
    let id = create(&ctx, None, record).await?;
    Ok(reply(json!({"Data": {"ApplyId": id}})))
}

/// `BatchRegisterDeviceWithApplyId`: registers the names `BatchCheckDeviceNames` checked.
pub(crate) async fn register_with_apply_id(ctx: Ctx<'_>) -> ActionResult {
    let (id, record) = application(&ctx).await?;
    match record.status {
        ApplyStatus::CreateSuccess => {}
        ApplyStatus::CheckFailed => {
            return Err(ApiError::business(
                "iot.device.InvalidFormattedDeviceName",
                format!(
                    "The application has {} unusable device names: check them again.",
                    record.invalid.len()
                ),
            ));
        }
        ApplyStatus::CheckSuccess | ApplyStatus::CreateFailed => {
            create(&ctx, Some(id), record).await?;
        }
    }
    Ok(reply(json!({"Data": {"ApplyId": id}})))
}

/// `QueryBatchRegisterDeviceStatus`.
pub(crate) async fn status(ctx: Ctx<'_>) -> ActionResult {
    let (_, record) = application(&ctx).await?;
    let invalid: Vec<&str> = record.invalid.iter().map(|i| i.device_name.as_str()).collect();
    Ok(reply(json!({"Data": {
        "Status": record.status.as_str(),
        "ValidList": {"Name": record.names},
        "InvalidList": {"Name": invalid},
        "InvalidDetailList": {"invalidDetailList": invalid_details(&record)},
    }})))
}

/// `QueryPageByApplyId`: the registered devices of an application, `PageSize` ≤ 50.
pub(crate) async fn page(ctx: Ctx<'_>) -> ActionResult {
    let (_, record) = application(&ctx).await?;
    let paging = Paging::read(ctx.params, "CurrentPage", "PageSize", 10, 50)?;
    let names: &[String] = if record.status == ApplyStatus::CreateSuccess {
        &record.names
    } else {
        &[]
    };
    let registry = ctx.service.registry();
    let mut rows = Vec::new();
    for name in paging.slice(names) {
        // A device deleted since is left out of its page.
        if let Some(d) = registry.device(&record.product_key, name).await? {
            rows.push(json!({
                "DeviceId": d.iot_id,
                "DeviceName": d.device_name,
                "DeviceSecret": d.device_secret,
                "IotId": d.iot_id,
            }));
        }
    }
    Ok(reply(json!({
        "Page": paging.page,
        "PageSize": paging.size,
        "PageCount": paging.count(names.len()),
        "Total": names.len(),
        "ApplyDeviceList": {"ApplyDeviceInfo": rows},
    })))
}
