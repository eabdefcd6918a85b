//! Device shadows and desired properties from the cloud (cloud-side §4.1):
//! `UpdateDeviceShadow`, `GetDeviceShadow`, `SetDeviceDesiredProperty`,
//! `QueryDeviceDesiredProperty`, `ClearDeviceDesiredProperty`.
//!
//! `ShadowMessage` is a JSON string both ways (the Tea models say `str`); a shadow never
//! written reads as the empty document of version 0. `Items` and `Versions` are JSON strings
//! too, and so are the `Versions` answered.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::shape::{json_type, reply, text};
use crate::clock::now_ms;
use crate::openapi::action::{ActionResult, ApiError, Ctx};
use crate::registry::ShadowDocument;
use crate::service;

fn shadow_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::business(code, message)
}

/// The platform's codes for a shadow the registry refuses (409 version, 408 caps).
fn shadow_refused(e: service::Error) -> ApiError {
    match e {
        service::Error::ShadowRefused(r) if r.code == 409 => shadow_error(
            "iot.messagebroker.InvalidVersionValueInShadowMessage",
            format!("The version in the shadow message is invalid: {}", r.message),
        ),
        service::Error::ShadowRefused(r) if r.code == 408 => {
            shadow_error("iot.messagebroker.TooManyElementInDesire", r.message)
        }
        service::Error::InvalidArgument(m) => {
            shadow_error("iot.messagebroker.InvalidVersionValueInShadowMessage", m)
        }
        other => other.into(),
    }
}

/// `UpdateDeviceShadow`: `ShadowMessage` = `{"method":"update","state":{"desired":{…}},
/// "version":N}`; `DeltaUpdate` merges into the desired state instead of replacing it.
pub(crate) async fn update(ctx: Ctx<'_>) -> ActionResult {
    let message = ctx.params.get("ShadowMessage").ok_or_else(|| {
        shadow_error(
            "iot.messagebroker.NullShadowMessage",
            "The shadow message is empty.",
        )
    })?;
    let merge = ctx.params.flag("DeltaUpdate")?.unwrap_or(false);
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(message) else {
        return Err(shadow_error(
            "iot.messagebroker.ShadowMessageIsNotJson",
            "The shadow message is not a JSON object.",
        ));
    };
    if doc.get("method").and_then(Value::as_str) != Some("update") {
        return Err(shadow_error(
            "iot.messagebroker.MethodValueIsNotUpdate",
            "The method in the shadow message is not update.",
        ));
    }
    let Some(Value::Object(desired)) = doc.get("state").and_then(|s| s.get("desired")) else {
        return Err(shadow_error(
            "iot.messagebroker.NotFoundStateInShadowMessage",
            "The shadow message has no state.desired object.",
        ));
    };
    let version = match doc.get("version") {
        None => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            shadow_error(
                "iot.messagebroker.InvalidVersionValueInShadowMessage",
                "The version in the shadow message is not an integer.",
            )
        })?,
    };
    let device = ctx.device().await?;
    ctx.service
        .update_shadow(
            &device.product_key,
            &device.device_name,
            desired.clone(),
            version,
            merge,
        )
        .await
        .map_err(shadow_refused)?;
    Ok(reply(json!({})))
}

/// `GetDeviceShadow`: the document as a JSON string.
pub(crate) async fn get(ctx: Ctx<'_>) -> ActionResult {
    let device = ctx.device().await?;
    let doc = ctx
        .service
        .shadow(&device.product_key, &device.device_name)
        .await?
        .unwrap_or_else(|| ShadowDocument {
            timestamp: now_ms() / 1000,
            ..ShadowDocument::default()
        });
    let text = serde_json::to_string(&doc)
        .map_err(|e| ApiError::business("iot.system.SystemException", e.to_string()))?;
    Ok(reply(json!({ "ShadowMessage": text })))
}

/// A JSON-string parameter holding an object.
fn object_param(ctx: &Ctx<'_>, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    match ctx.params.get(name) {
        None => Ok(None),
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(ApiError::invalid(name, raw)),
        },
    }
}

/// `{"id": version}` from the `Versions` parameter.
fn versions(ctx: &Ctx<'_>) -> Result<BTreeMap<String, u64>, ApiError> {
    let Some(map) = object_param(ctx, "Versions")? else {
        return Ok(BTreeMap::new());
    };
    map.into_iter()
        .map(|(id, v)| match v.as_u64() {
            Some(n) => Ok((id, n)),
            None => Err(ApiError::invalid("Versions", &format!("{id}: {v}"))),
        })
        .collect()
}

/// `SetDeviceDesiredProperty`: `Items` (JSON object), `Versions` (JSON object: the version
/// each must have now). `Data{MessageId, Versions}`.
pub(crate) async fn set_desired(ctx: Ctx<'_>) -> ActionResult {
    let items = object_param(&ctx, "Items")?.ok_or_else(|| ApiError::missing("Items"))?;
    let versions = versions(&ctx)?;
    let device = ctx.device().await?;
    let (outcome, _pushed) = ctx
        .service
        .set_desired(&device.product_key, &device.device_name, items, versions)
        .await
        .map_err(desired_error)?;
    Ok(reply(json!({"Data": {
        "MessageId": ctx.service.new_message_id(),
        "Versions": json!(outcome.versions).to_string(),
    }})))
}

/// A version conflict is a bad `Versions` parameter (no more specific code is known); the
/// others as the service's.
fn desired_error(e: service::Error) -> ApiError {
    match e {
        service::Error::Registry(crate::registry::Error::VersionConflict { .. }) => {
            ApiError::business("iot.common.InvalidFormattedParameter", e.to_string())
        }
        other => other.into(),
    }
}

/// `QueryDeviceDesiredProperty`: `Identifier.N` (all when none).
pub(crate) async fn query_desired(ctx: Ctx<'_>) -> ActionResult {
    let wanted = ctx.params.list("Identifier");
    if wanted.len() > service::MAX_DESIRED_PER_CALL {
        return Err(ApiError::business(
            "iot.device.TooManyDevicePropertiesPerTime",
            format!(
                "At most {} properties can be queried at once.",
                service::MAX_DESIRED_PER_CALL
            ),
        ));
    }
    let device = ctx.device().await?;
    let stored = ctx
        .service
        .desired(&device.product_key, &device.device_name)
        .await?;
    let tsl = ctx.service.tsl(&device.product_key);
    let rows: Vec<Value> = stored
        .values()
        .filter(|(id, _)| wanted.is_empty() || wanted.contains(id))
        .map(|(id, v)| {
            let defined = tsl.as_ref().and_then(|t| t.model.property(id));
            let mut row = json!({
                "Identifier": id,
                "Name": defined.map_or(id, |d| d.name.as_str()),
                "Version": v.version,
                "Time": v.time.to_string(),
            });
            if let Some(value) = &v.value {
                row["Value"] = Value::from(text(value));
            }
            let data_type = defined
                .map(|d| d.data_type.type_name())
                .or_else(|| v.value.as_ref().map(json_type));
            if let Some(t) = data_type {
                row["DataType"] = Value::from(t);
            }
            row
        })
        .collect();
    Ok(reply(json!({"Data": {"List": {"DesiredPropertyInfo": rows}}})))
}

/// `ClearDeviceDesiredProperty`: `Identifies.N` (sic, the platform's name).
pub(crate) async fn clear_desired(ctx: Ctx<'_>) -> ActionResult {
    let ids: Vec<String> = ctx
        .params
        .list("Identifies")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(ApiError::missing("Identifies"));
    }
    let device = ctx.device().await?;
    let outcome = ctx
        .service
        .clear_desired(&device.product_key, &device.device_name, ids, BTreeMap::new())
        .await?;
    Ok(reply(
        json!({"Data": {"Versions": json!(outcome.versions).to_string()}}),
    ))
}
