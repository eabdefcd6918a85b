//! Devices (cloud-side §1.6): QueryDeviceDetail, QueryDevice, GetDeviceStatus,
//! BatchGetDeviceState, RegisterDevice, DeleteDevice, DisableThing, EnableThing. Each goes
//! through the same service calls as the admin API; times as §8 writes them (`GmtXxx` China
//! Standard Time without milliseconds, `UtcXxx` ISO 8601 with milliseconds, `""` when unknown).

use serde_json::{Map, Value, json};

use crate::clock::{format_cst, format_utc};
use crate::openapi::action::{ActionResult, ApiError, Ctx, Reply};
use crate::registry::{Device, NodeType, Product};
use crate::service::Service;

/// The region the hub answers as.
const REGION: &str = "cn-shanghai";

/// `yyyy-MM-dd HH:mm:ss` in China Standard Time (`GmtXxx`); `""` for `None`.
pub(crate) fn gmt(ms: Option<u64>) -> String {
    ms.map(|ms| format_cst(ms).chars().take(19).collect())
        .unwrap_or_default()
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ` (`UtcXxx`); `""` for `None`.
pub(crate) fn utc(ms: Option<u64>) -> String {
    ms.map(format_utc).unwrap_or_default()
}

/// `ONLINE`, `OFFLINE`, `UNACTIVE` (never logged in) or `DISABLE`.
fn status(service: &Service, d: &Device) -> &'static str {
    if !d.enabled {
        "DISABLE"
    } else if service.is_online(&d.product_key, &d.device_name) {
        "ONLINE"
    } else if d.last_online_ms.is_none() {
        "UNACTIVE"
    } else {
        "OFFLINE"
    }
}

fn node_type(p: &Product) -> u8 {
    match p.node_type {
        NodeType::Gateway => 1,
        _ => 0,
    }
}

fn data(reply: Value) -> Reply {
    let mut r = Reply::new();
    r.insert("Data".into(), reply);
    r
}

/// `QueryDeviceDetail`. The hub keeps the last login, not the first: `GmtActive` is the last
/// login too (empty for a device never activated).
pub(crate) async fn query_device_detail(ctx: Ctx<'_>) -> ActionResult {
    let d = ctx.device().await?;
    let product = ctx.service.product(&d.product_key).await?;
    let firmware = ctx
        .service
        .ota()
        .modules(&d.product_key, &d.device_name)
        .remove("default")
        .unwrap_or_default();
    Ok(data(json!({
        "IotId": d.iot_id,
        "ProductKey": d.product_key,
        "ProductName": product.name,
        "DeviceName": d.device_name,
        "DeviceSecret": d.device_secret,
        "Nickname": "",
        "FirmwareVersion": firmware,
        "IpAddress": d.last_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "Region": REGION,
        "NodeType": node_type(&product),
        "Owner": true,
        "Status": status(ctx.service, &d),
        "GmtCreate": gmt(Some(d.created_ms)),
        "UtcCreate": utc(Some(d.created_ms)),
        "GmtActive": gmt(d.last_online_ms),
        "UtcActive": utc(d.last_online_ms),
        "GmtOnline": gmt(d.last_online_ms),
        "UtcOnline": utc(d.last_online_ms),
    })))
}

/// `QueryDevice`: a product's devices, `PageSize` 1–50 (10), `CurrentPage` from 1.
pub(crate) async fn query_device(ctx: Ctx<'_>) -> ActionResult {
    let product_key = ctx.params.required("ProductKey")?;
    let size = ctx.params.number::<usize>("PageSize")?.unwrap_or(10);
    let page = ctx.params.number::<usize>("CurrentPage")?.unwrap_or(1);
    if !(1..=50).contains(&size) || page == 0 {
        return Err(ApiError::business(
            "iot.common.InvalidPageParams",
            "PageSize must be 1 to 50 and CurrentPage at least 1.",
        ));
    }
    ctx.service.product(product_key).await?;
    let devices = ctx.service.devices(product_key).await?;
    let total = devices.len();
    let infos: Vec<Value> = devices
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|d| {
            json!({
                "DeviceId": d.iot_id,
                "IotId": d.iot_id,
                "DeviceName": d.device_name,
                "DeviceSecret": d.device_secret,
                "DeviceStatus": status(ctx.service, d),
                "DeviceType": "",
                "Nickname": "",
                "ProductKey": d.product_key,
                "GmtCreate": gmt(Some(d.created_ms)),
                "GmtModified": gmt(Some(d.created_ms)),
                "UtcCreate": utc(Some(d.created_ms)),
                "UtcModified": utc(Some(d.created_ms)),
            })
        })
        .collect();
    let mut r = data(json!({ "DeviceInfo": infos }));
    r.insert("Total".into(), json!(total));
    r.insert("PageSize".into(), json!(size));
    r.insert("PageCount".into(), json!(total.div_ceil(size)));
    r.insert("Page".into(), json!(page));
    Ok(r)
}

/// `GetDeviceStatus`: `Data.Status` and `Data.Timestamp` (ms: the last login, else now).
pub(crate) async fn get_device_status(ctx: Ctx<'_>) -> ActionResult {
    let d = ctx.device().await?;
    Ok(data(json!({
        "Status": status(ctx.service, &d),
        "Timestamp": d.last_online_ms.unwrap_or_else(crate::clock::now_ms),
    })))
}

/// `BatchGetDeviceState`: `ProductKey` with `DeviceName.N`, or `IotId.N` (at most 50).
pub(crate) async fn batch_get_device_state(ctx: Ctx<'_>) -> ActionResult {
    let iot_ids = ctx.params.list("IotId");
    let names = ctx.params.list("DeviceName");
    if iot_ids.len() + names.len() > 50 {
        return Err(ApiError::business(
            "iot.device.TooManyDevicePropertiesPerTime",
            "At most 50 devices per call.",
        ));
    }
    let mut devices = Vec::new();
    if iot_ids.is_empty() {
        let product_key = ctx.params.required("ProductKey")?;
        if names.is_empty() {
            return Err(ApiError::missing("DeviceName.1"));
        }
        for dn in names {
            devices.push(ctx.service.device(product_key, dn).await?);
        }
    } else {
        for id in iot_ids {
            let d = ctx
                .service
                .device_by_iot_id(id)
                .await?
                .ok_or_else(ApiError::no_device)?;
            devices.push(d);
        }
    }
    let list: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!({
                "DeviceId": d.iot_id,
                "IotId": d.iot_id,
                "DeviceName": d.device_name,
                "Status": status(ctx.service, d),
                "AsAddress": d.last_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "LastOnlineTime": gmt(d.last_online_ms),
                "Timestamp": d.last_online_ms.unwrap_or(0),
            })
        })
        .collect();
    let mut r = Reply::new();
    r.insert("DeviceStatusList".into(), json!({ "DeviceStatus": list }));
    Ok(r)
}

/// `RegisterDevice`: `ProductKey`, `DeviceName` (a random one when absent), `Nickname` (given
/// back, not kept).
pub(crate) async fn register_device(ctx: Ctx<'_>) -> ActionResult {
    let product_key = ctx.params.required("ProductKey")?;
    let generated;
    let device_name = match ctx.params.get("DeviceName") {
        Some(dn) => dn,
        None => {
            generated = random_name();
            &generated
        }
    };
    // The OpenAPI's rule (4 to 32 characters) on top of the hub's own.
    if !(4..=32).contains(&device_name.chars().count())
        || aliot_protocol::identity::validate_device_name(device_name).is_err()
    {
        return Err(ApiError::business(
            "iot.device.InvalidFormattedDeviceName",
            format!("The device name {device_name} is invalid (4 to 32 of A-Z a-z 0-9 _ - @ . :)."),
        ));
    }
    let d = ctx.service.create_device(product_key, device_name, None).await?;
    Ok(data(json!({
        "IotId": d.iot_id,
        "ProductKey": d.product_key,
        "DeviceName": d.device_name,
        "DeviceSecret": d.device_secret,
        "Nickname": ctx.params.get("Nickname").unwrap_or_default(),
        "DevEui": "",
        "JoinEui": "",
    })))
}

fn random_name() -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// `DeleteDevice`: the device is disconnected and forgotten.
pub(crate) async fn delete_device(ctx: Ctx<'_>) -> ActionResult {
    let d = ctx.device().await?;
    ctx.service.delete_device(&d.product_key, &d.device_name).await?;
    Ok(Map::new())
}

/// `DisableThing`: the device is disconnected and refused until enabled.
pub(crate) async fn disable_thing(ctx: Ctx<'_>) -> ActionResult {
    let d = ctx.device().await?;
    ctx.service
        .set_enabled(&d.product_key, &d.device_name, false)
        .await?;
    Ok(Map::new())
}

/// `EnableThing`.
pub(crate) async fn enable_thing(ctx: Ctx<'_>) -> ActionResult {
    let d = ctx.device().await?;
    ctx.service
        .set_enabled(&d.product_key, &d.device_name, true)
        .await?;
    Ok(Map::new())
}
