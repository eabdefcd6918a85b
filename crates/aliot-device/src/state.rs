//! What the platform keeps for the device: desired properties
//! (`thing.property.desired.get|delete`) and the device shadow (`/shadow/update/{pk}/{dn}`,
//! answered on `/shadow/get/{pk}/{dn}`, matched by the `clientToken` this SDK sends).

use std::collections::BTreeMap;

use aliot_protocol::topic::{SysPath, Topic};
use serde_json::{Map, Value, json};

use crate::client::Device;
use crate::error::{Error, Result};
use crate::event::ShadowMessage;
use crate::options::QoS;
use crate::shared::{Shared, lock};

/// One desired property as the platform answers `thing.property.desired.get`.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredValue {
    /// The desired value.
    pub value: Value,
    /// Its version (give it to [`Device::desired_delete`] to delete only this version).
    pub version: u64,
}

/// Forgets a shadow waiter when the call ends, however it ends.
struct Forget<'a> {
    shared: &'a Shared,
    token: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.correlator).forget_shadow(self.token);
    }
}

impl Device {
    /// `thing.property.desired.get`: the desired values of `identifiers` (at most 200); those
    /// without a desired value are absent from the answer.
    ///
    /// # Errors
    /// As [`Device::request`] (code 6104 above 200 identifiers).
    pub async fn desired_get(&self, identifiers: &[&str]) -> Result<BTreeMap<String, DesiredValue>> {
        let reply = self.request(SysPath::DesiredGet, json!(identifiers)).await?;
        let Value::Object(data) = reply.data else {
            return Ok(BTreeMap::new());
        };
        Ok(data
            .into_iter()
            .filter_map(|(id, v)| {
                let version = v.get("version").and_then(Value::as_u64).unwrap_or(0);
                let value = v.get("value").cloned()?;
                Some((id, DesiredValue { value, version }))
            })
            .collect())
    }

    /// `thing.property.desired.delete`: deletes each identifier's desired value, when its
    /// version is the given one (or whatever it is, for `None`).
    ///
    /// # Errors
    /// As [`Device::request`].
    pub async fn desired_delete(&self, items: &[(&str, Option<u64>)]) -> Result<()> {
        let params: Map<String, Value> = items
            .iter()
            .map(|(id, version)| {
                let spec = version.map_or_else(|| json!({}), |v| json!({ "version": v }));
                ((*id).to_owned(), spec)
            })
            .collect();
        self.request(SysPath::DesiredDelete, Value::Object(params))
            .await
            .map(drop)
    }

    /// The shadow document (`{"method":"get"}`): the reply carries `payload.state`,
    /// `payload.metadata`, `version` and `timestamp`.
    ///
    /// # Errors
    /// [`Error::Alink`] with the shadow's error code (407: no document yet), [`Error::Timeout`],
    /// and those of [`Device::publish`].
    pub async fn shadow_get(&self) -> Result<ShadowMessage> {
        self.shadow_request("get", json!({})).await
    }

    /// Reports the device's state (`{"method":"update","state":{"reported":…},"version":…}`);
    /// `version` must be above the shadow's (-1 resets it). Returns the shadow's new version.
    ///
    /// # Errors
    /// As [`Device::shadow_get`] (409 for a stale version, 408 past the caps).
    pub async fn shadow_update(&self, reported: Value, version: i64) -> Result<i64> {
        let reply = self
            .shadow_request(
                "update",
                json!({"state": {"reported": reported}, "version": version}),
            )
            .await?;
        Ok(reply.version().unwrap_or(version))
    }

    /// Deletes reported attributes (`None`: all of them) from the shadow. Returns the shadow's
    /// new version.
    ///
    /// # Errors
    /// As [`Device::shadow_update`].
    pub async fn shadow_delete(&self, attributes: Option<&[&str]>, version: i64) -> Result<i64> {
        let reported = match attributes {
            None => json!("null"),
            Some(names) => Value::Object(names.iter().map(|n| ((*n).to_owned(), json!("null"))).collect()),
        };
        let reply = self
            .shadow_request(
                "delete",
                json!({"state": {"reported": reported}, "version": version}),
            )
            .await?;
        Ok(reply.version().unwrap_or(version))
    }

    /// Sends a shadow message with a fresh `clientToken` and waits for the reply echoing it.
    async fn shadow_request(&self, method: &str, mut body: Value) -> Result<ShadowMessage> {
        let shared = self.shared();
        let token = shared.ids.next_id();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("method".into(), json!(method));
            obj.insert("clientToken".into(), json!(token));
        }
        let topic = Topic::Shadow {
            action: "update".into(),
            product_key: shared.product_key.clone(),
            device_name: shared.device_name.clone(),
        }
        .to_string();
        let rx = lock(&shared.correlator).expect_shadow(&token);
        let _forget = Forget {
            shared,
            token: &token,
        };
        let timeout = shared.request_timeout;
        let method_name = format!("shadow.{method}");
        let exchange = async {
            self.publish(&topic, body.to_string(), QoS::AtLeastOnce).await?;
            rx.await.map_err(|_| Error::Closed)
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                method: method_name.clone(),
                id: token.clone(),
                timeout,
            })??;
        let payload = reply.get("payload");
        if payload.and_then(|p| p.get("status")).and_then(Value::as_str) == Some("error") {
            let content = payload.and_then(|p| p.get("content"));
            let code = content
                .and_then(|c| c.get("errorcode"))
                .and_then(|c| c.as_str().and_then(|s| s.parse().ok()).or_else(|| c.as_u64()))
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(500);
            let message = content
                .and_then(|c| c.get("errormessage"))
                .and_then(Value::as_str)
                .unwrap_or("shadow error")
                .to_owned();
            return Err(Error::Alink {
                method: method_name,
                id: token.clone(),
                code,
                message,
            });
        }
        Ok(ShadowMessage::new(reply))
    }
}
