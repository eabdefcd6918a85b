//! What the hub keeps of a device's thing model: its latest property values, the history of
//! every kept value, its events and the log of calls made to it
//! (`/api/v1/products/{pk}/devices/{dn}/properties|events|calls`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, device_path};
use crate::error::Result;
use crate::wire::{query, segment};

/// The most items of one page.
pub const MAX_PAGE: usize = 1000;
/// The items of a page when the query gives no `limit`.
pub const DEFAULT_PAGE: usize = 100;

/// `GET …/devices/{dn}/properties`: one property's latest value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestProperty {
    /// The property identifier.
    pub identifier: String,
    /// Its latest value.
    pub value: Value,
    /// When it was measured (the item's own `time`, else when the hub received it), epoch ms.
    pub time: u64,
    /// The thing model's name for it, when the product has a model that defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The thing model's data type (`int`, `text`, …), when the product has a model that defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// The thing model's unit symbol (numbers), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// One kept value of a property (`GET …/properties/{identifier}/history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyPoint {
    /// Epoch ms (the item's own `time`, else when the hub received it).
    pub time: u64,
    /// The value.
    pub value: Value,
}

/// One event a device posted (`GET …/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Epoch ms (the event's own `time`, else when the hub received it).
    pub time: u64,
    /// The event identifier.
    pub identifier: String,
    /// `info`, `alert` or `error` from the thing model (absent without one).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Its outputs.
    pub value: Value,
}

/// One call made to a device through the hub (`GET …/calls`): a property set, a service call,
/// an RRPC or a publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// When the call was made, epoch ms.
    pub time: u64,
    /// `property_set`, `service`, `rrpc` or `publish`.
    pub kind: String,
    /// The service identifier (services) or the topic (publishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// What was sent (JSON params, or the payload as text).
    pub params: Value,
    /// The device's reply code, or the hub's error code (`device_timeout`, …).
    pub result: String,
    /// The device's answer (JSON, or text), when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// How long the call took, ms.
    pub duration_ms: u64,
}

/// The order of a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// The query of the history routes: `?from=&to=&limit=&cursor=&order=` (and `identifier=` for
/// events). Times are epoch ms, or RFC 3339 (`2026-11-29T17:00:00Z`) on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// From this time on (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Up to this time (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// At most this many items (1 to [`MAX_PAGE`]; [`DEFAULT_PAGE`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the previous page stopped (its `nextCursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `asc` (default) or `desc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Events only: only this event identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items, in the query's order.
    pub items: Vec<T>,
    /// Pass it as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl Client {
    /// `GET …/devices/{dn}/properties`: the latest value of each property, with its time (and
    /// the thing model's name and type).
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn device_properties(
        &self,
        product_key: &str,
        device_name: &str,
    ) -> Result<Vec<LatestProperty>> {
        self.get_json(&format!("{}/properties", device_path(product_key, device_name)))
            .await
    }

    /// `GET …/devices/{dn}/properties/{identifier}/history`: one page of a property's kept values.
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `invalid_argument` (400) for a bad query.
    pub async fn property_history(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: &str,
        q: &HistoryQuery,
    ) -> Result<Page<PropertyPoint>> {
        self.get_json(&format!(
            "{}/properties/{}/history{}",
            device_path(product_key, device_name),
            segment(identifier),
            query(q)
        ))
        .await
    }

    /// `GET …/devices/{dn}/events`: one page of the events the device posted.
    ///
    /// # Errors
    ///
    /// As [`Client::property_history`].
    pub async fn device_events(
        &self,
        product_key: &str,
        device_name: &str,
        q: &HistoryQuery,
    ) -> Result<Page<EventRecord>> {
        self.get_json(&format!(
            "{}/events{}",
            device_path(product_key, device_name),
            query(q)
        ))
        .await
    }

    /// `GET …/devices/{dn}/calls`: one page of the calls made to the device.
    ///
    /// # Errors
    ///
    /// As [`Client::property_history`].
    pub async fn device_calls(
        &self,
        product_key: &str,
        device_name: &str,
        q: &HistoryQuery,
    ) -> Result<Page<CallRecord>> {
        self.get_json(&format!(
            "{}/calls{}",
            device_path(product_key, device_name),
            query(q)
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn history_json_is_pinned() {
        let page = Page {
            items: vec![PropertyPoint {
                time: 5,
                value: json!(1),
            }],
            next_cursor: Some("5-1".into()),
        };
        assert_eq!(
            serde_json::to_string(&page).expect("JSON"),
            r#"{"items":[{"time":5,"value":1}],"nextCursor":"5-1"}"#
        );
        let latest = LatestProperty {
            identifier: "On".into(),
            value: json!(1),
            time: 7,
            name: None,
            data_type: Some("bool".into()),
            unit: None,
        };
        assert_eq!(
            serde_json::to_string(&latest).expect("JSON"),
            r#"{"identifier":"On","value":1,"time":7,"dataType":"bool"}"#
        );
        let event = EventRecord {
            time: 1,
            identifier: "Overheat".into(),
            event_type: Some("alert".into()),
            value: json!({}),
        };
        assert_eq!(
            serde_json::to_string(&event).expect("JSON"),
            r#"{"time":1,"identifier":"Overheat","type":"alert","value":{}}"#
        );
        let q = HistoryQuery {
            from: Some("1".into()),
            limit: Some(10),
            order: Some(Order::Desc),
            ..HistoryQuery::default()
        };
        assert_eq!(query(&q), "?from=1&limit=10&order=desc");
    }
}
