//! Server-side subscription (cloud-side §6): CreateConsumerGroup, QueryConsumerGroupList,
//! DeleteConsumerGroup, CreateSubscribeRelation, QuerySubscribeRelation, UpdateSubscribeRelation,
//! DeleteSubscribeRelation, over the same subscription room as the admin API.
//!
//! The hub's group id is its name: `CreateConsumerGroup` answers `GroupId` = `GroupName` (the
//! cloud generates an id). Relations are of `Type` `AMQP` only (an `MNS` relation is refused).
//! Error codes for unknown groups and relations are the hub's choice
//! (`iot.consumergroup.NotExistedConsumerGroup`, `iot.subscribe.NotExistedSubscribeRelation`).

use serde_json::{Value, json};

use crate::clock::format_cst;
use crate::openapi::action::{ActionResult, ApiError, Ctx, Reply};
use crate::subscription::{Family, Relation, SubscriptionError};

fn err(e: SubscriptionError) -> ApiError {
    match e {
        SubscriptionError::NoSuchGroup(_) => ApiError::business(
            "iot.consumergroup.NotExistedConsumerGroup",
            "The specified consumer group does not exist.",
        ),
        SubscriptionError::NoRelation(_) => ApiError::business(
            "iot.subscribe.NotExistedSubscribeRelation",
            "The subscribe relation does not exist.",
        ),
        SubscriptionError::GroupExists(_) => ApiError::business(
            "iot.consumergroup.ConsumerGroupAlreadyExisted",
            "The consumer group already exists.",
        ),
        SubscriptionError::Storage(m) => ApiError::business("iot.system.SystemError", m),
        other => ApiError::business("iot.common.InvalidFormattedParameter", other.to_string()),
    }
}

fn one(key: &str, value: Value) -> Reply {
    let mut r = Reply::new();
    r.insert(key.into(), value);
    r
}

/// `CreateConsumerGroup(GroupName)` → `GroupId`.
pub(crate) async fn create_consumer_group(ctx: Ctx<'_>) -> ActionResult {
    let name = ctx.params.required("GroupName")?;
    let group = ctx
        .service
        .subscriptions()
        .create_group(name)
        .await
        .map_err(err)?;
    Ok(one("GroupId", Value::from(group.group_id)))
}

/// `QueryConsumerGroupList(CurrentPage, PageSize, GroupName?, Fuzzy?)`.
pub(crate) async fn query_consumer_group_list(ctx: Ctx<'_>) -> ActionResult {
    let page = ctx.params.number::<usize>("CurrentPage")?.unwrap_or(1).max(1);
    let size = ctx
        .params
        .number::<usize>("PageSize")?
        .unwrap_or(10)
        .clamp(1, 1000);
    let name = ctx.params.get("GroupName");
    let fuzzy = ctx.params.flag("Fuzzy")?.unwrap_or(false);
    let groups: Vec<_> = ctx
        .service
        .subscriptions()
        .groups()
        .into_iter()
        .filter(|g| match name {
            Some(n) if fuzzy => g.group_id.contains(n),
            Some(n) => g.group_id == n,
            None => true,
        })
        .collect();
    let total = groups.len();
    let items: Vec<Value> = groups
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|g| {
            let created: String = format_cst(g.create_time).chars().take(19).collect();
            json!({"GroupId": g.group_id, "GroupName": g.group_id, "CreateTime": created})
        })
        .collect();
    let mut r = one("Data", json!({"ConsumerGroupDTO": items}));
    r.insert("CurrentPage".into(), Value::from(page));
    r.insert("PageSize".into(), Value::from(size));
    r.insert("PageCount".into(), Value::from(total.div_ceil(size)));
    r.insert("Total".into(), Value::from(total));
    Ok(r)
}

/// `DeleteConsumerGroup(GroupId)`.
pub(crate) async fn delete_consumer_group(ctx: Ctx<'_>) -> ActionResult {
    let id = ctx.params.required("GroupId")?;
    ctx.service.subscriptions().delete_group(id).await.map_err(err)?;
    Ok(Reply::new())
}

/// The relation a Create/Update request describes: `ConsumerGroupIds.N` and the flags.
fn relation_of(ctx: &Ctx<'_>) -> Result<Relation, ApiError> {
    match ctx.params.get("Type") {
        None | Some("AMQP") => {}
        Some(other) => return Err(ApiError::invalid("Type", other)),
    }
    let mut flags = Vec::new();
    for family in Family::ALL {
        if ctx.params.flag(family.name())?.unwrap_or(false) {
            flags.push(family);
        }
    }
    Ok(Relation {
        consumer_group_ids: ctx
            .params
            .list("ConsumerGroupIds")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        flags,
    })
}

async fn set_relation(ctx: Ctx<'_>, must_exist: bool) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    ctx.service.product(pk).await?;
    let subs = ctx.service.subscriptions();
    if must_exist && subs.relation(pk).is_none() {
        return Err(err(SubscriptionError::NoRelation(pk.to_owned())));
    }
    let relation = relation_of(&ctx)?;
    subs.set_relation(pk, relation).await.map_err(err)?;
    Ok(Reply::new())
}

/// `CreateSubscribeRelation(ProductKey, Type, ConsumerGroupIds.N, <Flag>…)`.
pub(crate) async fn create_subscribe_relation(ctx: Ctx<'_>) -> ActionResult {
    set_relation(ctx, false).await
}

/// `UpdateSubscribeRelation`: as Create, for a product that has one.
pub(crate) async fn update_subscribe_relation(ctx: Ctx<'_>) -> ActionResult {
    set_relation(ctx, true).await
}

/// `QuerySubscribeRelation(ProductKey, Type)`.
pub(crate) async fn query_subscribe_relation(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    let relation = ctx
        .service
        .subscriptions()
        .relation(pk)
        .ok_or_else(|| err(SubscriptionError::NoRelation(pk.to_owned())))?;
    let mut r = one("ProductKey", Value::from(pk));
    r.insert("Type".into(), Value::from("AMQP"));
    r.insert("ConsumerGroupIds".into(), json!(relation.consumer_group_ids));
    for family in Family::ALL {
        r.insert(family.name().into(), Value::from(relation.has(family)));
    }
    Ok(r)
}

/// `DeleteSubscribeRelation(ProductKey, Type)`.
pub(crate) async fn delete_subscribe_relation(ctx: Ctx<'_>) -> ActionResult {
    let pk = ctx.params.required("ProductKey")?;
    ctx.service
        .subscriptions()
        .delete_relation(pk)
        .await
        .map_err(err)?;
    Ok(Reply::new())
}
