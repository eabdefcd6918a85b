//! The platform's API for desired properties (`SetDeviceDesiredProperty`,
//! `QueryDeviceDesiredProperty`, `ClearDeviceDesiredProperty`) and device shadows
//! (`GetDeviceShadow`, `UpdateDeviceShadow`), cloud-side spec §4.1.
//!
//! Every change is durable before the call returns. Then, when the device is online, the
//! change is pushed to it, best effort (QoS 0, no answer awaited): new desired values as a
//! `thing.service.property.set` carrying them, a shadow desired update as the shadow's
//! `control` message on `/shadow/get/{pk}/{dn}`. An offline device finds them with
//! `thing.property.desired.get` or a shadow `get` when it connects.

use std::collections::BTreeMap;

use bytes::Bytes;
use rmqtt_codec::v3::QoS;
use serde_json::{Map, Value};

use super::{Error, Result, Service};
use crate::clock::now_ms;
use crate::cluster::Downlink;
use crate::platform::{service as calls, shadow};
use crate::registry::{DesiredChange, DesiredOutcome, DesiredProperties, ShadowChange, ShadowDocument};
use crate::table::{Delivered, Reach};

/// The most identifiers one desired set, query or clear may name (as the device's 6104).
pub const MAX_DESIRED_PER_CALL: usize = 200;

impl Service {
    /// Pushes `payload` on `topic` to the device if it is online (QoS 0); whether it went out.
    fn push(&self, product_key: &str, device_name: &str, topic: String, payload: Vec<u8>) -> bool {
        let downlink = Downlink {
            topic,
            payload: Bytes::from(payload),
            qos: QoS::AtMostOnce,
        };
        matches!(
            self.inner
                .cluster
                .deliver(product_key, device_name, downlink, Reach::OnlineOnly)
                .map(|t| t.delivered),
            Ok(Delivered::Online)
        )
    }

    /// Sets desired values (identifier → value; `versions`: identifier → the version it must
    /// have now), durably, and pushes them to the device when it is online. With a thing model,
    /// only its writable properties with valid values are accepted. Returns the new versions
    /// and whether the values were pushed.
    ///
    /// # Errors
    /// `DeviceNotFound`; [`Error::InvalidArgument`] for no or too many items, a version for an
    /// identifier not set, or what the thing model refuses (each identifier with the
    /// platform's message and code); `VersionConflict` (nothing is changed); `Storage`.
    pub async fn set_desired(
        &self,
        product_key: &str,
        device_name: &str,
        items: Map<String, Value>,
        versions: BTreeMap<String, u64>,
    ) -> Result<(DesiredOutcome, bool)> {
        if items.is_empty() || items.len() > MAX_DESIRED_PER_CALL {
            return Err(Error::InvalidArgument(format!(
                "set 1 to {MAX_DESIRED_PER_CALL} desired properties ({} given)",
                items.len()
            )));
        }
        if let Some(id) = versions.keys().find(|id| !items.contains_key(*id)) {
            return Err(Error::InvalidArgument(format!(
                "a version is given for {id}, which is not set"
            )));
        }
        self.device(product_key, device_name).await?;
        let params = Value::Object(items);
        if let Some(tsl) = self.inner.registry.tsl(product_key) {
            let checked = tsl
                .model
                .validate_property_set(&params)
                .map_err(|f| Error::InvalidArgument(format!("thing model: {} ({})", f.message, f.code)))?;
            if !checked.rejected.is_empty() {
                let why: Vec<String> = checked
                    .rejected
                    .iter()
                    .map(|(id, r)| format!("{id}: {} ({})", r.message, r.code))
                    .collect();
                return Err(Error::InvalidArgument(format!(
                    "the thing model refuses {}",
                    why.join("; ")
                )));
            }
        }
        let Value::Object(items) = params else {
            return Err(Error::InvalidArgument("items must be an object".into()));
        };
        let change = DesiredChange::Set(
            items
                .iter()
                .map(|(id, v)| (id.clone(), (v.clone(), versions.get(id).copied())))
                .collect(),
        );
        let outcome = self
            .inner
            .registry
            .change_desired(product_key, device_name, change, now_ms())
            .await?;
        let id = self.next_message_id();
        let (topic, body, _) = calls::property_set(product_key, device_name, &id, Value::Object(items));
        let pushed = self.push(product_key, device_name, topic, body);
        Ok((outcome, pushed))
    }

    /// A device's desired properties.
    ///
    /// # Errors
    /// `DeviceNotFound`, `Storage`.
    pub async fn desired(&self, product_key: &str, device_name: &str) -> Result<DesiredProperties> {
        self.device(product_key, device_name).await?;
        Ok(self.inner.registry.desired(product_key, device_name).await?)
    }

    /// Clears desired values (identifier → the version it must have; absent: any), durably.
    /// Identifiers whose version differs are left alone and listed in the outcome.
    ///
    /// # Errors
    /// `DeviceNotFound`; [`Error::InvalidArgument`] for no or too many identifiers; `Storage`.
    pub async fn clear_desired(
        &self,
        product_key: &str,
        device_name: &str,
        identifiers: Vec<String>,
        versions: BTreeMap<String, u64>,
    ) -> Result<DesiredOutcome> {
        if identifiers.is_empty() || identifiers.len() > MAX_DESIRED_PER_CALL {
            return Err(Error::InvalidArgument(format!(
                "clear 1 to {MAX_DESIRED_PER_CALL} desired properties ({} given)",
                identifiers.len()
            )));
        }
        self.device(product_key, device_name).await?;
        let items = identifiers
            .into_iter()
            .map(|id| {
                let v = versions.get(&id).copied();
                (id, v)
            })
            .collect();
        Ok(self
            .inner
            .registry
            .change_desired(product_key, device_name, DesiredChange::Clear(items), now_ms())
            .await?)
    }

    /// A device's shadow (`None` before its first write).
    ///
    /// # Errors
    /// `DeviceNotFound`, `Storage`.
    pub async fn shadow(&self, product_key: &str, device_name: &str) -> Result<Option<ShadowDocument>> {
        self.device(product_key, device_name).await?;
        Ok(self.inner.registry.shadow(product_key, device_name).await?)
    }

    /// `UpdateDeviceShadow`: replaces (or, with `merge`, merges into) the shadow's desired
    /// state, durably, then pushes the document as `control` to the device when it is online.
    /// `version` 0 means no versioning; any other must be above the shadow's version.
    ///
    /// # Errors
    /// `DeviceNotFound`; [`Error::ShadowRefused`] (409 version conflict, 408 too many
    /// attributes or too large); `Storage`.
    pub async fn update_shadow(
        &self,
        product_key: &str,
        device_name: &str,
        desired: Map<String, Value>,
        version: i64,
        merge: bool,
    ) -> Result<(ShadowDocument, bool)> {
        if version < 0 {
            return Err(Error::InvalidArgument(format!(
                "invalid version {version}: 0 (no versioning) or above the shadow's version"
            )));
        }
        self.device(product_key, device_name).await?;
        let change = ShadowChange::Desire {
            desired,
            version,
            merge,
        };
        let doc = self
            .inner
            .registry
            .change_shadow(product_key, device_name, change, now_ms() / 1000)
            .await?
            .map_err(Error::ShadowRefused)?;
        let pushed = self.push(
            product_key,
            device_name,
            shadow::get_topic(product_key, device_name),
            shadow::control(&doc),
        );
        Ok((doc, pushed))
    }
}
