//! Server-side subscription: `/api/v1/consumer-groups` and `/api/v1/products/{pk}/subscription`.

use aliot_admin::{ConsumerGroupView, CreateConsumerGroup, SetSubscribeRelation, SubscribeRelationView};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AdminState;
use super::error::ApiError;
use crate::subscription::{Family, Relation, SubscriptionError};

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        let message = e.to_string();
        match e {
            SubscriptionError::NoSuchGroup(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "consumer_group_not_found", message)
            }
            SubscriptionError::GroupExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "consumer_group_exists", message)
            }
            SubscriptionError::NoRelation(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            SubscriptionError::Limit(_) => ApiError::new(StatusCode::CONFLICT, "limit_exceeded", message),
            SubscriptionError::Storage(_) => ApiError::internal(&message),
            _ => ApiError::bad_request(message),
        }
    }
}

fn relation_view(product_key: String, r: Relation) -> SubscribeRelationView {
    SubscribeRelationView {
        product_key,
        consumer_group_ids: r.consumer_group_ids,
        flags: r.flags.iter().map(|f| f.name().to_owned()).collect(),
    }
}

pub(super) async fn list_groups(State(state): State<AdminState>) -> Json<Vec<ConsumerGroupView>> {
    Json(state.service().subscriptions().groups().into_iter().collect())
}

pub(super) async fn create_group(
    State(state): State<AdminState>,
    body: Result<Json<CreateConsumerGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<ConsumerGroupView>), ApiError> {
    let Json(body) = body?;
    let group = state
        .service()
        .subscriptions()
        .create_group(&body.group_id)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

pub(super) async fn show_group(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<ConsumerGroupView>, ApiError> {
    let group = state.service().subscriptions().group(&id);
    Ok(Json(group.ok_or(SubscriptionError::NoSuchGroup(id))?))
}

pub(super) async fn delete_group(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<ConsumerGroupView>, ApiError> {
    let subs = state.service().subscriptions();
    let group = subs
        .group(&id)
        .ok_or_else(|| SubscriptionError::NoSuchGroup(id.clone()))?;
    subs.delete_group(&id).await?;
    Ok(Json(group))
}

pub(super) async fn show_relation(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<SubscribeRelationView>, ApiError> {
    state.service().product(&pk).await?;
    let relation = state.service().subscriptions().relation(&pk);
    let relation = relation.ok_or_else(|| SubscriptionError::NoRelation(pk.clone()))?;
    Ok(Json(relation_view(pk, relation)))
}

pub(super) async fn set_relation(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
    body: Result<Json<SetSubscribeRelation>, JsonRejection>,
) -> Result<Json<SubscribeRelationView>, ApiError> {
    let Json(body) = body?;
    state.service().product(&pk).await?;
    let flags = body
        .flags
        .iter()
        .map(|f| {
            Family::parse(f).ok_or_else(|| {
                let known: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                ApiError::bad_request(format!("unknown flag {f:?}: one of {}", known.join(", ")))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let relation = Relation {
        consumer_group_ids: body.consumer_group_ids,
        flags,
    };
    let relation = state
        .service()
        .subscriptions()
        .set_relation(&pk, relation)
        .await?;
    Ok(Json(relation_view(pk, relation)))
}

pub(super) async fn delete_relation(
    State(state): State<AdminState>,
    Path(pk): Path<String>,
) -> Result<Json<SubscribeRelationView>, ApiError> {
    let subs = state.service().subscriptions();
    let relation = subs
        .relation(&pk)
        .ok_or_else(|| SubscriptionError::NoRelation(pk.clone()))?;
    subs.delete_relation(&pk).await?;
    Ok(Json(relation_view(pk, relation)))
}
