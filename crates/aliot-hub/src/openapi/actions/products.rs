//! Products: `CreateProduct`, `QueryProduct`, `QueryProductList` (cloud-side §1.6).
//!
//! The hub keeps a product's key, name, secret, creation time and node type. `NodeType` 0 is a
//! device: a directly connected one, or a sub-device when `ProtocolType` is given (the console's
//! "gateway sub-device" sets the protocol it speaks to its gateway); 1 is a gateway. What the
//! hub does not keep is answered with the platform's defaults: `DataFormat` 1 (Alink JSON),
//! `AuthType` `secret`, `AliyunCommodityCode` `iothub_senior`, `NetType` 3 (Wi-Fi).

use serde_json::{Value, json};

use super::shape::{Paging, not_offered, reply};
use crate::openapi::action::{ActionResult, ApiError, Ctx};
use crate::registry::{NodeType, Product};

/// The wire number of a node type: 0 device (direct or sub-device), 1 gateway.
fn node_type_number(t: NodeType) -> u8 {
    match t {
        NodeType::Gateway => 1,
        NodeType::Direct | NodeType::Sub => 0,
    }
}

/// `CreateProduct`.
pub(crate) async fn create(ctx: Ctx<'_>) -> ActionResult {
    let p = ctx.params;
    let name = p.required("ProductName")?;
    if !(4..=30).contains(&name.chars().count()) {
        return Err(ApiError::business(
            "iot.prod.InvalidFormattedProductName",
            "The product name must be 4 to 30 characters long.",
        ));
    }
    let node_type = match p.number::<i64>("NodeType")? {
        None | Some(0) if p.get("ProtocolType").is_some() => NodeType::Sub,
        None | Some(0) => NodeType::Direct,
        Some(1) => NodeType::Gateway,
        Some(_) => {
            return Err(ApiError::business(
                "iot.prod.InvalidNodeType",
                "The node type is invalid: 0 (device) or 1 (gateway).",
            ));
        }
    };
    let data_format = p.number::<i64>("DataFormat")?.unwrap_or(1);
    if !matches!(data_format, 0 | 1) {
        return Err(ApiError::invalid("DataFormat", &data_format.to_string()));
    }
    if data_format == 0 {
        // The hub speaks Alink JSON only; custom formats need a data parsing script.
        return Err(not_offered("DataFormat 0 (custom format with a parsing script)"));
    }
    let auth_type = p.get("AuthType").unwrap_or("secret");
    if !auth_type.eq_ignore_ascii_case("secret") {
        return Err(not_offered(&format!("AuthType {auth_type}")));
    }
    if p.flag("Id2")? == Some(true) {
        return Err(not_offered("ID² authentication"));
    }
    let description = p.get("Description").unwrap_or_default();
    if description.chars().count() > 100 {
        return Err(ApiError::business(
            "iot.prod.LongProductDesc",
            "The product description exceeds 100 characters.",
        ));
    }
    // The platform's names are unique (the hub's registry allows repeats: checked here, so a
    // name made through the admin API at the same moment may slip through).
    if ctx.service.products().await?.iter().any(|p| p.name == name) {
        return Err(ApiError::business(
            "iot.prod.AlreadyExistedProductName",
            "The product name already exists.",
        ));
    }
    let mut product = ctx.service.create_product(name, None).await?;
    if node_type != NodeType::Direct {
        product = ctx.service.set_node_type(&product.product_key, node_type).await?;
    }
    let code = p.get("AliyunCommodityCode").unwrap_or("iothub_senior");
    let mut data = json!({
        "ProductKey": product.product_key,
        "ProductName": product.name,
        "ProductSecret": product.product_secret,
        "NodeType": node_type_number(product.node_type),
        "DataFormat": data_format,
        "AuthType": "secret",
        "AliyunCommodityCode": code,
        "Description": description,
        "Id2": false,
    });
    if let Some(protocol) = p.get("ProtocolType") {
        data["ProtocolType"] = Value::from(protocol);
    }
    Ok(reply(json!({"ProductKey": product.product_key, "Data": data})))
}

fn product_info(product: &Product) -> Value {
    json!({
        "ProductKey": product.product_key,
        "ProductName": product.name,
        "ProductSecret": product.product_secret,
        "NodeType": node_type_number(product.node_type),
        "DataFormat": 1,
        "AuthType": "secret",
        "AliyunCommodityCode": "iothub_senior",
        "DeviceCount": product.device_count,
        "GmtCreate": product.created_ms,
        "NetType": 3,
        "Owner": true,
        "Id2": false,
        "ProductStatus": "DEVELOPMENT_STATUS",
        "Description": "",
        "ValidateType": 1,
    })
}

/// `QueryProduct`.
pub(crate) async fn query(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    let product = ctx.service.product(pk).await?;
    let mut data = product_info(&product);
    if product.node_type == NodeType::Sub {
        data["ProtocolType"] = Value::from("customize");
    }
    Ok(reply(json!({ "Data": data })))
}

/// `QueryProductList`: `CurrentPage` (from 1), `PageSize` 1–200.
pub(crate) async fn list(ctx: Ctx<'_>) -> ActionResult {
    let paging = Paging::read(ctx.params, "CurrentPage", "PageSize", 10, 200)?;
    let products = ctx.service.products().await?;
    let wanted = ctx.params.get("AliyunCommodityCode");
    let products: Vec<&Product> = products
        .iter()
        .filter(|_| wanted.is_none_or(|c| c == "iothub_senior"))
        .collect();
    let rows: Vec<Value> = paging
        .slice(&products)
        .iter()
        .map(|p| {
            json!({
                "ProductKey": p.product_key,
                "ProductName": p.name,
                "NodeType": node_type_number(p.node_type),
                "DataFormat": 1,
                "AuthType": "secret",
                "DeviceCount": p.device_count,
                "GmtCreate": p.created_ms,
                "Description": "",
            })
        })
        .collect();
    Ok(reply(json!({"Data": {
        "CurrentPage": paging.page,
        "PageSize": paging.size,
        "PageCount": paging.count(products.len()),
        "Total": products.len(),
        "List": {"ProductInfo": rows},
    }})))
}
