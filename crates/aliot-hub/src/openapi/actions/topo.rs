//! Gateway topology from the cloud (cloud-side §5): `GetThingTopo`, `BatchAddThingTopo`,
//! `RemoveThingTopo`, `NotifyAddThingTopo`, `GetGatewayBySubDevice`.
//!
//! `BatchAddThingTopo` takes each sub-device's sign as the device side does (`TopoAddItem.N.
//! {ProductKey, DeviceName, ClientId, Timestamp, SignMethod, Sign}`, the sign over the
//! sub-device's secret) and checks it; the change is all or nothing, as on the device side,
//! and pushed to the gateway as `thing.topo.change`. `RemoveThingTopo` names the sub-device.

use std::str::FromStr;

use aliot_protocol::gateway::{SubSignMethod, verify_sub_sign};
use serde_json::{Value, json};

use super::shape::{Paging, reply};
use crate::clock::{format_cst, format_utc};
use crate::openapi::action::{ActionResult, ApiError, Ctx};
use crate::registry::{Device, DeviceRef, NodeType};
use crate::service;

/// The platform's codes for a refused topology change.
fn topology_error(e: service::Error) -> ApiError {
    match e {
        service::Error::Topology(r) => {
            let code = if r.code() == 6400 {
                "iot.device.TopoRelationCountExceeded"
            } else {
                "iot.common.InvalidFormattedParameter"
            };
            ApiError::business(code, format!("{r} ({})", r.code()))
        }
        other => other.into(),
    }
}

/// The gateway named by `GwIotId`, or `GwProductKey` and `GwDeviceName`.
async fn gateway(ctx: &Ctx<'_>) -> Result<Device, ApiError> {
    if let Some(iot_id) = ctx.params.get("GwIotId") {
        return ctx
            .service
            .device_by_iot_id(iot_id)
            .await?
            .ok_or_else(ApiError::no_device);
    }
    let pk = ctx.params.required("GwProductKey")?;
    let dn = ctx.params.required("GwDeviceName")?;
    Ok(ctx.service.device(pk, dn).await?)
}

/// `GetThingTopo`: the gateway's sub-devices, `PageNo` from 1, `PageSize` 1–50.
pub(crate) async fn get(ctx: Ctx<'_>) -> ActionResult {
    let gw = ctx.device().await?;
    let paging = Paging::read(ctx.params, "PageNo", "PageSize", 10, 50)?;
    let subs = ctx.service.topology(&gw.product_key, &gw.device_name).await?;
    let registry = ctx.service.registry();
    let mut rows = Vec::new();
    for ((pk, dn), _online) in paging.slice(&subs) {
        let iot_id = registry
            .device(pk, dn)
            .await?
            .map(|d| d.iot_id)
            .unwrap_or_default();
        rows.push(json!({"IotId": iot_id, "ProductKey": pk, "DeviceName": dn}));
    }
    Ok(reply(json!({"Data": {
        "Total": subs.len(),
        "PageSize": paging.size,
        "PageCount": paging.count(subs.len()),
        "CurrentPage": paging.page,
        "List": {"deviceInfo": rows},
    }})))
}

/// `BatchAddThingTopo`: adds signed sub-devices to a gateway.
pub(crate) async fn batch_add(ctx: Ctx<'_>) -> ActionResult {
    let gw = gateway(&ctx).await?;
    let items = super::shape::items(ctx.params, "TopoAddItem");
    if items.is_empty() {
        return Err(ApiError::missing("TopoAddItem"));
    }
    let mut subs: Vec<DeviceRef> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let field = |name: &str| {
            item.get(name)
                .copied()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::missing(&format!("TopoAddItem.{n}.{name}")))
        };
        let (pk, dn) = (field("ProductKey")?, field("DeviceName")?);
        let (client_id, timestamp, sign) = (field("ClientId")?, field("Timestamp")?, field("Sign")?);
        let method_text = item.get("SignMethod").copied().unwrap_or("hmacSha1");
        let method = SubSignMethod::from_str(method_text)
            .map_err(|_| ApiError::invalid(&format!("TopoAddItem.{n}.SignMethod"), method_text))?;
        let sub = ctx.service.device(pk, dn).await?;
        if !verify_sub_sign(
            method,
            &sub.device_secret,
            client_id,
            dn,
            pk,
            timestamp,
            None,
            sign,
        ) {
            return Err(ApiError::business(
                "iot.common.InvalidFormattedParameter",
                format!("The sign of TopoAddItem.{n} ({pk}/{dn}) is wrong."),
            ));
        }
        subs.push((pk.to_owned(), dn.to_owned()));
    }
    ctx.service
        .add_topology(&gw.product_key, &gw.device_name, subs)
        .await
        .map_err(topology_error)?;
    Ok(reply(json!({})))
}

/// `RemoveThingTopo`: takes the named sub-device out of its gateway's topology; `Data` says
/// whether it was in one.
pub(crate) async fn remove(ctx: Ctx<'_>) -> ActionResult {
    let sub = ctx.device().await?;
    let (pk, dn) = (&sub.product_key, &sub.device_name);
    let Some((gw_pk, gw_dn)) = ctx.service.gateway_of(pk, dn).await? else {
        return Ok(reply(json!({"Data": false})));
    };
    ctx.service
        .remove_topology(&gw_pk, &gw_dn, vec![(pk.clone(), dn.clone())])
        .await
        .map_err(topology_error)?;
    Ok(reply(json!({"Data": true})))
}

/// `NotifyAddThingTopo`: asks an online gateway to add the sub-devices of `DeviceListStr`
/// (`[{"productKey","deviceName"}]`, or with `IotId`s) with `thing.topo.add.notify`.
pub(crate) async fn notify_add(ctx: Ctx<'_>) -> ActionResult {
    let gw = gateway(&ctx).await?;
    let raw = ctx.params.required("DeviceListStr")?;
    let Ok(Value::Array(list)) = serde_json::from_str::<Value>(raw) else {
        return Err(ApiError::invalid("DeviceListStr", raw));
    };
    let mut subs: Vec<DeviceRef> = Vec::new();
    for entry in &list {
        let field = |k: &str, alt: &str| entry.get(k).or_else(|| entry.get(alt)).and_then(Value::as_str);
        let device = match (
            field("productKey", "ProductKey"),
            field("deviceName", "DeviceName"),
            field("iotId", "IotId"),
        ) {
            (Some(pk), Some(dn), _) => ctx.service.device(pk, dn).await?,
            (_, _, Some(iot_id)) => ctx
                .service
                .device_by_iot_id(iot_id)
                .await?
                .ok_or_else(ApiError::no_device)?,
            _ => return Err(ApiError::invalid("DeviceListStr", raw)),
        };
        subs.push((device.product_key, device.device_name));
    }
    if subs.is_empty() {
        return Err(ApiError::missing("DeviceListStr"));
    }
    let id = ctx
        .service
        .notify_add_topology(&gw.product_key, &gw.device_name, subs)
        .await?;
    Ok(reply(json!({"Data": {"MessageId": id}})))
}

/// `yyyy-MM-dd HH:mm:ss` (China Standard Time, no milliseconds), as device details show it.
fn gmt(ms: u64) -> String {
    let mut s = format_cst(ms);
    s.truncate(19);
    s
}

/// `GetGatewayBySubDevice`: the gateway's details (no `Data` when the device has no gateway).
pub(crate) async fn gateway_by_sub(ctx: Ctx<'_>) -> ActionResult {
    let sub = ctx.device().await?;
    let Some((pk, dn)) = ctx.service.gateway_of(&sub.product_key, &sub.device_name).await? else {
        return Ok(reply(json!({})));
    };
    let gw = ctx.service.device(&pk, &dn).await?;
    let product = ctx.service.product(&pk).await?;
    let online = ctx.service.is_online(&pk, &dn);
    let status = match (gw.enabled, online, gw.last_online_ms) {
        (false, _, _) => "DISABLE",
        (true, true, _) => "ONLINE",
        (true, false, None) => "UNACTIVE",
        (true, false, Some(_)) => "OFFLINE",
    };
    let node_type = if product.node_type == NodeType::Gateway {
        "1"
    } else {
        "0"
    };
    let (gmt_online, utc_online) = gw
        .last_online_ms
        .map_or((String::new(), String::new()), |t| (gmt(t), format_utc(t)));
    let data = json!({
        "iotId": gw.iot_id,
        "ProductKey": gw.product_key,
        "ProductName": product.name,
        "DeviceName": gw.device_name,
        "DeviceSecret": gw.device_secret,
        "NodeType": node_type,
        "Status": status,
        "IpAddress": gw.last_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "FirmwareVersion": "",
        "region": "cn-shanghai",
        "GmtCreate": gmt(gw.created_ms),
        "UtcCreate": format_utc(gw.created_ms),
        "GmtActive": gmt_online,
        "UtcActive": utc_online,
        "GmtOnline": gmt_online,
        "UtcOnline": utc_online,
    });
    Ok(reply(json!({ "Data": data })))
}
