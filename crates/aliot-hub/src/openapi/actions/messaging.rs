//! Messages to devices (cloud-side §1.6): Pub, PubBroadcast, RRpc, SetDeviceProperty,
//! InvokeThingService. Each goes through the same service calls as the admin API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::openapi::action::{ActionResult, ApiError, Ctx, Reply};
use crate::service::Error as ServiceError;

/// A message id in the platform's style: a 19-digit JSON number, unique in this process.
pub(crate) fn message_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
    (crate::clock::now_ms() << 20) | n
}

fn content(ctx: &Ctx<'_>, name: &str) -> Result<Bytes, ApiError> {
    let text = ctx.params.get(name).ok_or_else(|| {
        ApiError::business(
            "iot.messagebroker.NullMessageContent",
            format!("The message content ({name}) is empty."),
        )
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Bytes::from)
        .map_err(|_| {
            ApiError::business(
                "iot.messagebroker.MessageContentIsNotBase64Encode",
                format!("The message content ({name}) is not Base64 encoded."),
            )
        })
}

fn bad_topic(topic: &str, why: &str) -> ApiError {
    let shown: String = topic.chars().take(128).collect();
    ApiError::business(
        "iot.messagebroker.InvalidFormattedTopicName",
        format!("The topic {shown} is invalid: {why}."),
    )
}

fn qos(ctx: &Ctx<'_>) -> Result<u8, ApiError> {
    match ctx.params.number::<u8>("Qos")? {
        None | Some(0) => Ok(0),
        Some(1) => Ok(1),
        Some(q) => Err(ApiError::invalid("Qos", &q.to_string())),
    }
}

fn reply_with_message_id(id: u64) -> Reply {
    let mut reply = Reply::new();
    reply.insert("MessageId".into(), json!(id));
    reply
}

/// Publishes `payload` on `topic` to every online device of the product; how many took it.
async fn to_online_devices(
    ctx: &Ctx<'_>,
    product_key: &str,
    topic_for: impl Fn(&str) -> String,
    payload: Bytes,
    qos: u8,
) -> usize {
    let mut sent = 0;
    for device_name in ctx.service.online_devices(product_key) {
        let topic = topic_for(&device_name);
        match ctx
            .service
            .publish(product_key, &device_name, &topic, payload.clone(), qos)
            .await
        {
            Ok(_) => sent += 1,
            Err(e) => tracing::debug!(product_key, device_name, error = %e, "broadcast not delivered"),
        }
    }
    sent
}

/// `Pub`: Base64 `MessageContent` on `/${pk}/${dn}/user/…` (or another custom topic of the
/// device), or on `/broadcast/${pk}/…` to the product's online devices that subscribed it; QoS 1
/// waits in the offline queue of a clean-session-0 device. System topics (property set,
/// services: `/sys/…`) are refused, as the platform does.
pub(crate) async fn publish(ctx: Ctx<'_>) -> ActionResult {
    let product_key = ctx.params.required("ProductKey")?;
    let topic = ctx.params.required("TopicFullName")?;
    let payload = content(&ctx, "MessageContent")?;
    let qos = qos(&ctx)?;
    // MQTT 5 retained messages: devices speak MQTT 3.1.1 here, so the flag is checked and has
    // no effect.
    ctx.params.flag("Retained")?;
    ctx.service.product(product_key).await?;
    let levels: Vec<&str> = topic.split('/').collect();
    let id = message_id();
    match levels.as_slice() {
        ["", "broadcast", pk, rest @ ..] if !rest.is_empty() => {
            if *pk != product_key {
                return Err(bad_topic(topic, "not a topic of the product"));
            }
            to_online_devices(&ctx, product_key, |_| topic.to_owned(), payload, qos).await;
        }
        ["", first, ..] if matches!(*first, "sys" | "ext" | "ota" | "shadow" | "as") => {
            return Err(bad_topic(topic, "system topics cannot be published to"));
        }
        ["", pk, dn, rest @ ..] if !rest.is_empty() && !dn.is_empty() => {
            if *pk != product_key {
                return Err(bad_topic(topic, "not a topic of the product"));
            }
            let result = ctx.service.publish(pk, dn, topic, payload, qos).await;
            match result {
                Ok(_) => {}
                Err(ServiceError::InvalidArgument(why)) => return Err(bad_topic(topic, &why)),
                Err(e) => return Err(e.into()),
            }
        }
        _ => return Err(bad_topic(topic, "expected /${productKey}/${deviceName}/user/…")),
    }
    Ok(reply_with_message_id(id))
}

/// `PubBroadcast`: to the product's online devices, on `TopicFullName`
/// (`/broadcast/${pk}/…`, to those that subscribed it) or, without one, on
/// `/sys/${pk}/${dn}/broadcast/request/${MessageId}` of each.
pub(crate) async fn publish_broadcast(ctx: Ctx<'_>) -> ActionResult {
    let product_key = ctx.params.required("ProductKey")?;
    let payload = content(&ctx, "MessageContent")?;
    if payload.len() > 64 * 1024 {
        return Err(ApiError::invalid("MessageContent", "larger than 64 KB"));
    }
    ctx.service.product(product_key).await?;
    let id = message_id();
    match ctx.params.get("TopicFullName") {
        Some(topic) => {
            let prefix = format!("/broadcast/{product_key}/");
            if !topic.starts_with(&prefix) || topic.len() == prefix.len() {
                return Err(bad_topic(topic, "expected /broadcast/${productKey}/…"));
            }
            to_online_devices(&ctx, product_key, |_| topic.to_owned(), payload, 0).await;
        }
        None => {
            let topic_for = |dn: &str| format!("/sys/{product_key}/{dn}/broadcast/request/{id}");
            to_online_devices(&ctx, product_key, topic_for, payload, 0).await;
        }
    }
    Ok(reply_with_message_id(id))
}

/// `RRpc`: `RequestBase64Byte` to the device on `/sys/${pk}/${dn}/rrpc/request/${id}` (or
/// `/ext/rrpc/${id}${Topic}` with `Topic`), waiting `Timeout` ms (1000–8000) for its answer.
/// Decision (spec §1.6, §9.2): timeouts and offline devices are `Success:true` with `RrpcCode`
/// `TIMEOUT` / `OFFLINE`, as the documentation says the code is returned when the call succeeds.
pub(crate) async fn rrpc(ctx: Ctx<'_>) -> ActionResult {
    let timeout = ctx
        .params
        .number::<u64>("Timeout")?
        .ok_or_else(|| ApiError::missing("Timeout"))?;
    if !(1000..=8000).contains(&timeout) {
        return Err(ApiError::business(
            "iot.messagebroker.InvalidTimeoutValue",
            format!("The Timeout value {timeout} is invalid (1000 to 8000 ms)."),
        ));
    }
    let device = ctx.device().await?;
    let payload = content(&ctx, "RequestBase64Byte")?;
    let timeout = Duration::from_millis(timeout);
    let (pk, dn) = (&device.product_key, &device.device_name);
    let result = match ctx.params.get("Topic") {
        Some(topic) => {
            if !topic.starts_with('/') || topic.contains(['+', '#']) {
                return Err(bad_topic(
                    topic,
                    "a custom RRPC topic starts with / and has no wildcard",
                ));
            }
            ctx.service.rrpc_on(pk, dn, topic, payload, timeout).await
        }
        None => ctx.service.rrpc_with_id(pk, dn, payload, timeout).await,
    };
    let mut reply = Reply::new();
    match result {
        Ok((id, answer)) => {
            // The Alink id is a decimal string; the platform's RRpc MessageId is a number.
            let id = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
            reply.insert("MessageId".into(), id);
            reply.insert("RrpcCode".into(), json!("SUCCESS"));
            reply.insert(
                "PayloadBase64Byte".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(&answer)),
            );
        }
        Err(ServiceError::Timeout { .. }) => {
            reply.insert("MessageId".into(), json!(message_id()));
            reply.insert("RrpcCode".into(), json!("TIMEOUT"));
        }
        Err(ServiceError::DeviceOffline { .. }) => {
            reply.insert("MessageId".into(), json!(message_id()));
            reply.insert("RrpcCode".into(), json!("OFFLINE"));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(reply)
}

fn json_param(ctx: &Ctx<'_>, name: &str, code: &'static str) -> Result<Map<String, Value>, ApiError> {
    let text = ctx.params.required(name)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::business(
            code,
            format!("The parameter {name} is not a JSON object."),
        )),
    }
}

/// `SetDeviceProperty`: `Items` (a JSON object as a string) checked against the product's thing
/// model, sent as `thing.service.property.set`. Answered once the device replied (the hub waits
/// for the `set_reply`, bounded by its call timeout), with `Data.MessageId` (the Alink id, a
/// string).
pub(crate) async fn set_device_property(ctx: Ctx<'_>) -> ActionResult {
    let items = json_param(&ctx, "Items", "iot.device.InvalidFormattedDevicePropertiesString")?;
    let device = ctx.device().await?;
    let (id, _answer) = ctx
        .service
        .set_property_with_id(
            &device.product_key,
            &device.device_name,
            Value::Object(items),
            ctx.service.call_timeout(),
        )
        .await
        .map_err(|e| match e {
            ServiceError::Timeout { .. }
            | ServiceError::NotSubscribed { .. }
            | ServiceError::BadReply { .. } => {
                ApiError::business("iot.device.SetDevicePropertyFailed", e.to_string())
            }
            e => e.into(),
        })?;
    let mut reply = Reply::new();
    reply.insert("Data".into(), json!({ "MessageId": id }));
    Ok(reply)
}

/// `InvokeThingService`: `Identifier` with `Args` (a JSON object as a string) checked against
/// the thing model, over RRPC. A synchronous service (`callType: sync`) answers
/// `Data.Result` (the device's `data`, as a JSON string) and `Data.MessageId`; an asynchronous
/// one `Data.MessageId` once the device took the call.
pub(crate) async fn invoke_thing_service(ctx: Ctx<'_>) -> ActionResult {
    let identifier = ctx.params.required("Identifier")?;
    let args = match ctx.params.get("Args") {
        None => Map::new(),
        Some(_) => json_param(&ctx, "Args", "iot.common.InvalidFormattedParameter")?,
    };
    let device = ctx.device().await?;
    let (pk, dn) = (&device.product_key, &device.device_name);
    let sync = ctx
        .service
        .tsl(pk)
        .and_then(|t| t.model.service(identifier).map(|s| s.call_type))
        == Some(aliot_protocol::tsl::CallType::Sync);
    let (id, answer) = ctx
        .service
        .invoke_service_with_id(
            pk,
            dn,
            identifier,
            Value::Object(args),
            ctx.service.call_timeout(),
        )
        .await
        .map_err(|e| match e {
            ServiceError::Timeout { .. } | ServiceError::BadReply { .. } => {
                ApiError::business("iot.device.InvokeThingServiceFailed", e.to_string())
            }
            e => e.into(),
        })?;
    let mut data = Map::new();
    data.insert("MessageId".into(), json!(id));
    if sync {
        let result = answer.get("data").cloned().unwrap_or(Value::Object(Map::new()));
        data.insert("Result".into(), json!(result.to_string()));
    }
    let mut reply = Reply::new();
    reply.insert("Data".into(), Value::Object(data));
    Ok(reply)
}
