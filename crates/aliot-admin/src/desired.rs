//! `…/devices/{dn}/desired` and `…/devices/{dn}/shadow`: desired properties and the device
//! shadow (the platform's `SetDeviceDesiredProperty`, `QueryDeviceDesiredProperty`,
//! `ClearDeviceDesiredProperty`, `GetDeviceShadow`, `UpdateDeviceShadow`), and the client's
//! methods for them.

use std::collections::BTreeMap;

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::{Client, device_path};
use crate::error::Result;
use crate::wire::query;

/// `POST …/desired` body: `{"items":{id: value},"versions"?:{id: version}}`. A version is the
/// one the identifier must have now (0: never set); a mismatch refuses the whole set (409
/// `version_conflict`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetDesired {
    /// Identifier → desired value.
    pub items: Map<String, Value>,
    /// Identifier → expected current version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, u64>,
}

/// The answer to `POST …/desired`: the new versions, and whether the values were pushed to the
/// device (online) as a `thing.service.property.set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSet {
    /// Identifier → its new version.
    pub versions: BTreeMap<String, u64>,
    /// Whether the device was online and the values were sent to it.
    pub pushed: bool,
}

/// `GET …/desired` query: `?identifiers=a,b` (absent: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredQuery {
    /// Comma-separated identifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<String>,
}

/// One desired property in `GET …/desired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredItem {
    /// Identifier.
    pub identifier: String,
    /// The desired value.
    pub value: Value,
    /// Its version.
    pub version: u64,
    /// When it was set, epoch ms.
    pub time: u64,
    /// The property's name in the product's thing model, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The property's data type in the thing model (`int`, `float`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
}

/// The answer to `GET …/desired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredList {
    /// The desired properties that hold a value, by identifier.
    pub items: Vec<DesiredItem>,
}

/// `POST …/desired/clear` body: `{"identifiers":[…],"versions"?:{id: version}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClearDesired {
    /// The identifiers to clear.
    pub identifiers: Vec<String>,
    /// Identifier → the version it must have to be cleared (absent: any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, u64>,
}

/// The answer to `POST …/desired/clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredCleared {
    /// Identifier → its version after the clear.
    pub versions: BTreeMap<String, u64>,
    /// Identifiers left alone because their version differs.
    pub skipped: Vec<String>,
}

/// `PUT …/shadow` body: the platform's `ShadowMessage`
/// (`{"method":"update","state":{"desired":{…}},"version":N}`) plus `deltaUpdate`. Version 0:
/// no versioning; otherwise above the shadow's version (409 `version_conflict`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateShadow {
    /// `update`.
    pub method: String,
    /// `{"desired":{…}}`.
    pub state: Value,
    /// The version.
    pub version: i64,
    /// Merge into desired instead of replacing it.
    #[serde(default)]
    pub delta_update: bool,
}

/// The answer to `GET …/shadow` and `PUT …/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowView {
    /// The document (`{"state","metadata","timestamp","version"}`), `null` before its first write.
    pub shadow: Value,
    /// `PUT` only: whether the device was online and the `control` message was sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<bool>,
}

impl Client {
    /// `POST …/devices/{dn}/desired`: sets desired values.
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `invalid_argument` (400: the thing model refuses a value),
    /// `version_conflict` (409).
    pub async fn set_desired(
        &self,
        product_key: &str,
        device_name: &str,
        body: &SetDesired,
    ) -> Result<DesiredSet> {
        let path = format!("{}/desired", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, body, self.wait()).await
    }

    /// `GET …/devices/{dn}/desired[?identifiers=a,b]`.
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn desired(
        &self,
        product_key: &str,
        device_name: &str,
        q: &DesiredQuery,
    ) -> Result<DesiredList> {
        let path = format!("{}/desired{}", device_path(product_key, device_name), query(q));
        self.get_json(&path).await
    }

    /// `POST …/devices/{dn}/desired/clear`.
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn clear_desired(
        &self,
        product_key: &str,
        device_name: &str,
        body: &ClearDesired,
    ) -> Result<DesiredCleared> {
        let path = format!("{}/desired/clear", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, body, self.wait()).await
    }

    /// `GET …/devices/{dn}/shadow`.
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn shadow(&self, product_key: &str, device_name: &str) -> Result<ShadowView> {
        let path = format!("{}/shadow", device_path(product_key, device_name));
        self.get_json(&path).await
    }

    /// `PUT …/devices/{dn}/shadow`: updates the shadow's desired state.
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `version_conflict` (409), `shadow_refused` (400: too many
    /// attributes or too large), `invalid_argument`.
    pub async fn update_shadow(
        &self,
        product_key: &str,
        device_name: &str,
        body: &UpdateShadow,
    ) -> Result<ShadowView> {
        let path = format!("{}/shadow", device_path(product_key, device_name));
        self.send_json(Method::PUT, &path, body, self.wait()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assert_wire;

    #[test]
    fn bodies_have_the_documented_json() {
        let mut items = Map::new();
        items.insert("power".into(), Value::from(1));
        assert_wire(
            &SetDesired {
                items,
                versions: [("power".to_owned(), 2)].into(),
            },
            r#"{"items":{"power":1},"versions":{"power":2}}"#,
        );
        assert_wire(
            &UpdateShadow {
                method: "update".into(),
                state: serde_json::json!({"desired":{"color":"green"}}),
                version: 2,
                delta_update: false,
            },
            r#"{"method":"update","state":{"desired":{"color":"green"}},"version":2,"deltaUpdate":false}"#,
        );
    }
}
