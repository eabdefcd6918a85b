//! Server-side subscription on the admin API: consumer groups (`/api/v1/consumer-groups`) and
//! each product's subscribe relation (`/api/v1/products/{pk}/subscription`).

use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Result;
use crate::wire::segment;

/// A consumer group and its backlog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupView {
    /// The group's id (also its name).
    pub group_id: String,
    /// When it was created, epoch ms (0 for `DEFAULT_GROUP`).
    pub create_time: u64,
    /// Messages waiting or in flight.
    pub backlog: usize,
    /// Their bytes (topic + body).
    pub backlog_bytes: usize,
    /// Messages delivered and not yet acknowledged.
    pub in_flight: usize,
    /// Consumers attached now.
    pub consumers: usize,
    /// Messages dropped by the backlog's limits since the hub started.
    pub dropped: u64,
}

/// `POST /api/v1/consumer-groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConsumerGroup {
    /// 1–64 letters, digits, `_` or `-`.
    pub group_id: String,
}

/// A product's subscribe relation: which groups receive which message families.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRelationView {
    /// productKey.
    pub product_key: String,
    /// The consumer groups.
    pub consumer_group_ids: Vec<String>,
    /// The families: `DeviceDataFlag`, `DeviceStatusChangeFlag`, `DeviceLifeCycleFlag`,
    /// `DeviceTopoLifeCycleFlag`, `FoundDeviceListFlag`, `ThingHistoryFlag`, `OtaEventFlag`,
    /// `OtaVersionFlag`, `OtaJobFlag`.
    pub flags: Vec<String>,
}

/// `PUT /api/v1/products/{pk}/subscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetSubscribeRelation {
    /// The consumer groups (at least one, at most 10).
    pub consumer_group_ids: Vec<String>,
    /// The families (flag names, case-insensitive, `Flag` suffix optional).
    pub flags: Vec<String>,
}

fn relation_path(product_key: &str) -> String {
    format!("/api/v1/products/{}/subscription", segment(product_key))
}

fn group_path(group_id: &str) -> String {
    format!("/api/v1/consumer-groups/{}", segment(group_id))
}

impl Client {
    /// `GET /api/v1/consumer-groups`.
    ///
    /// # Errors
    /// As [`Client::products`].
    pub async fn consumer_groups(&self) -> Result<Vec<ConsumerGroupView>> {
        self.get_json("/api/v1/consumer-groups").await
    }

    /// `POST /api/v1/consumer-groups`.
    ///
    /// # Errors
    /// As [`Client::products`]; 409 `consumer_group_exists`.
    pub async fn create_consumer_group(&self, group_id: &str) -> Result<ConsumerGroupView> {
        let body = CreateConsumerGroup {
            group_id: group_id.to_owned(),
        };
        self.send_json(Method::POST, "/api/v1/consumer-groups", &body, self.timeout)
            .await
    }

    /// `DELETE /api/v1/consumer-groups/{id}`: the group, its backlog and its place in every
    /// relation.
    ///
    /// # Errors
    /// As [`Client::products`]; 404 `consumer_group_not_found`.
    pub async fn delete_consumer_group(&self, group_id: &str) -> Result<ConsumerGroupView> {
        let path = group_path(group_id);
        let answer = self.exchange(Method::DELETE, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }

    /// `GET /api/v1/products/{pk}/subscription`.
    ///
    /// # Errors
    /// As [`Client::product`]; 404 `not_found` without a relation.
    pub async fn subscribe_relation(&self, product_key: &str) -> Result<SubscribeRelationView> {
        self.get_json(&relation_path(product_key)).await
    }

    /// `PUT /api/v1/products/{pk}/subscription`.
    ///
    /// # Errors
    /// As [`Client::product`]; 400 for unknown flags, 404 for unknown groups.
    pub async fn set_subscribe_relation(
        &self,
        product_key: &str,
        relation: &SetSubscribeRelation,
    ) -> Result<SubscribeRelationView> {
        self.send_json(Method::PUT, &relation_path(product_key), relation, self.timeout)
            .await
    }

    /// `DELETE /api/v1/products/{pk}/subscription`: the product forwards nothing any more.
    ///
    /// # Errors
    /// As [`Client::subscribe_relation`].
    pub async fn delete_subscribe_relation(&self, product_key: &str) -> Result<SubscribeRelationView> {
        let path = relation_path(product_key);
        let answer = self.exchange(Method::DELETE, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }
}
