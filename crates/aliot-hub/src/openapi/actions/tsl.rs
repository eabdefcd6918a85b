//! Thing models (cloud-side §1.6, §3): `GetThingModelTsl`, `GetThingModelTslPublished`,
//! `ImportThingModelTsl`, `PublishThingModel`.
//!
//! The hub keeps one model per product, in effect as soon as it is imported (devices' posts are
//! checked against it from then on): there is no draft. So `PublishThingModel` publishes what
//! is already in effect (it only checks the product), and the published model is the model. A
//! product without a model answers the platform's empty one (`properties`, `events`, `services`
//! empty). Custom modules (`FunctionBlockId`) and `TslUrl` (an OSS file) are not offered.

use serde_json::json;

use super::shape::{not_offered, reply};
use crate::openapi::action::{ActionResult, Ctx};

/// The thing model of a product that has none.
fn empty_model(product_key: &str) -> String {
    json!({
        "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
        "profile": {"productKey": product_key},
        "properties": [],
        "events": [],
        "services": [],
    })
    .to_string()
}

/// `GetThingModelTsl` and `GetThingModelTslPublished`: `Data.TslStr`, the model as a JSON
/// string (the text imported, as it was given).
pub(crate) async fn get(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    if ctx.params.get("FunctionBlockId").is_some() {
        return Err(not_offered("FunctionBlockId (custom thing model modules)"));
    }
    ctx.service.product(pk).await?;
    let tsl_str = ctx
        .service
        .tsl(pk)
        .map_or_else(|| empty_model(pk), |t| t.json.clone());
    Ok(reply(json!({"Data": {"TslStr": tsl_str}})))
}

/// `ImportThingModelTsl`: replaces the product's model with `TslStr` (the console's export).
pub(crate) async fn import(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    if ctx.params.get("FunctionBlockId").is_some() {
        return Err(not_offered("FunctionBlockId (custom thing model modules)"));
    }
    let Some(tsl_str) = ctx.params.get("TslStr") else {
        if ctx.params.get("TslUrl").is_some() {
            return Err(not_offered("TslUrl (pass the model in TslStr)"));
        }
        return Err(crate::openapi::action::ApiError::missing("TslStr"));
    };
    ctx.service.product(pk).await?;
    ctx.service.import_tsl(pk, tsl_str.to_owned()).await?;
    Ok(reply(json!({})))
}

/// `PublishThingModel`: the model is already in effect; checks the product.
pub(crate) async fn publish(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    ctx.service.product(pk).await?;
    Ok(reply(json!({})))
}
