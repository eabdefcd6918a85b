//! The remaining forwarded families (cloud-side spec §2.6), each behind its product's flag:
//!
//! | Device fact | Forwarded topic | Flag |
//! |---|---|---|
//! | `thing.event.property.batch.post` | `/{pk}/{dn}/thing/property/batch/post`, `/{pk}/{dn}/thing/event/batch/post` | `DeviceDataFlag` |
//! | `thing.event.property.history.post` | `/{pk}/{dn}/thing/event/property/history/post`, `/{pk}/{dn}/thing/event/{id}/history/post` (per identity) | `ThingHistoryFlag` |
//! | `thing.list.found` | `/{gwpk}/{gwdn}/thing/list/found` | `FoundDeviceListFlag` |
//! | topology changed (gateway, admin, sub-device deleted/enabled/disabled) | `/{gwpk}/{gwdn}/thing/topo/lifecycle` | `DeviceTopoLifeCycleFlag` |
//! | OTA task `IN_PROGRESS` | `/{pk}/{dn}/ota/progress/post` | `OtaEventFlag` |
//! | OTA task `SUCCEEDED`, `FAILED`, `CANCELED` | `/{pk}/{dn}/ota/upgrade` | `OtaEventFlag` |
//! | version report (`/ota/device/inform`) | `/{pk}/{dn}/ota/version/post` | `OtaVersionFlag` |
//!
//! The uplinks' messages are committed before the device's reply (as live posts); topology and
//! OTA messages are queued when the fact is (nothing waits). Devices the hub does not know get
//! an empty `iotId`. Batch and history bodies carry the device's values as sent (the live
//! post's thing-model check is not repeated), history entries keep their device times.

use std::sync::Arc;

use aliot_protocol::forwarded::{
    BatchPostBody, ListFoundBody, ListedDevice, OtaTaskBody, OtaVersionBody, TopoLifecycleBody,
};
use aliot_protocol::subscription::{self as proto, CheckFailed, EventPostBody, PropertyPostBody, TimedValue};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::forward::{Commit, DEVICE_TYPE};
use super::{Family, Subscriptions};
use crate::BoxFuture;
use crate::clock::now_ms;
use crate::events::Event;
use crate::registry::Registry;

fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

async fn iot_id_of(registry: &dyn Registry, pk: &str, dn: &str) -> String {
    registry
        .device_auth(pk, dn)
        .await
        .map(|a| a.iot_id)
        .unwrap_or_default()
}

/// Waits for every commit; the first failure is the result (all are awaited).
async fn all(commits: Vec<Commit>) -> Result<(), super::SubscriptionError> {
    let mut result = Ok(());
    for c in futures_util::future::join_all(commits).await {
        if result.is_ok() {
            result = c;
        }
    }
    result
}

/// Both commits (either may be absent).
pub(crate) fn join(a: Option<Commit>, b: Option<Commit>) -> Option<Commit> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::pin(async move {
            let (x, y) = futures_util::future::join(a, b).await;
            x.and(y)
        })),
        (a, b) => a.or(b),
    }
}

fn spawn_logged(what: &'static str, commit: BoxFuture<'static, Result<(), super::SubscriptionError>>) {
    tokio::spawn(async move {
        if let Err(e) = commit.await {
            tracing::warn!(error = %e, what, "forwarded message not kept");
        }
    });
}

/// A `{"id":{"value","time"}}` map as `items` (entries without `value` are skipped; a missing
/// time is `at`).
fn timed_items(values: Option<&Value>, at: i64) -> std::collections::BTreeMap<String, TimedValue> {
    values
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let value = v.get("value")?.clone();
                    let time = v.get("time").and_then(Value::as_i64).unwrap_or(at);
                    Some((k.clone(), TimedValue { value, time }))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Subscriptions {
    /// The families carried by a device's uplink on `topic` (batch and history posts, found
    /// sub-devices): the commit its reply waits for, if any group wants them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn uplink_families(
        self: &Arc<Self>,
        registry: &Arc<dyn Registry>,
        iot_id: Option<&str>,
        product_key: &str,
        device_name: &str,
        topic: &str,
        payload: &Bytes,
    ) -> Option<Commit> {
        let rest = topic
            .strip_prefix("/sys/")?
            .strip_prefix(product_key)?
            .strip_prefix('/')?
            .strip_prefix(device_name)?
            .strip_prefix("/thing/")?;
        let family = match rest {
            "event/property/batch/post" => Family::DeviceDataFlag,
            "event/property/history/post" => Family::ThingHistoryFlag,
            "list/found" => Family::FoundDeviceListFlag,
            _ => return None,
        };
        // History entries may name other devices (a gateway's sub-devices): checked per entry.
        if family != Family::ThingHistoryFlag && !self.wants(product_key, family) {
            return None;
        }
        let request: Value = serde_json::from_slice(payload).ok()?;
        let request_id = match request.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "null".to_owned(),
            Some(v) => v.to_string(),
        };
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let (subs, registry) = (self.clone(), registry.clone());
        let (pk, dn) = (product_key.to_owned(), device_name.to_owned());
        let known = iot_id.map(str::to_owned);
        Some(Box::pin(async move {
            let own_iot_id = match known {
                Some(id) => id,
                None => iot_id_of(&*registry, &pk, &dn).await,
            };
            let now = now_ms();
            let commits = match family {
                Family::DeviceDataFlag => subs.batch_post(&own_iot_id, &pk, &dn, &request_id, &params, now),
                Family::ThingHistoryFlag => {
                    subs.history_post(&*registry, (&own_iot_id, &pk, &dn), &request_id, &params, now)
                        .await
                }
                _ => {
                    subs.list_found(&*registry, (&own_iot_id, &pk, &dn), &params)
                        .await
                }
            };
            all(commits).await
        }))
    }

    fn batch_post(
        &self,
        iot_id: &str,
        pk: &str,
        dn: &str,
        request_id: &str,
        params: &Value,
        now: u64,
    ) -> Vec<Commit> {
        let mut commits = Vec::new();
        for (key, kind) in [("properties", "property"), ("events", "event")] {
            let Some(payload) = params
                .get(key)
                .and_then(Value::as_object)
                .filter(|m| !m.is_empty())
            else {
                continue;
            };
            let body = BatchPostBody {
                iot_id,
                product_key: pk,
                device_name: dn,
                request_id,
                gmt_create: ms(now),
                payload,
            };
            commits.extend(self.forward(
                pk,
                Family::DeviceDataFlag,
                format!("/{pk}/{dn}/thing/{kind}/batch/post"),
                Bytes::from(proto::to_bytes(&body)),
                1,
            ));
        }
        commits
    }

    async fn history_post(
        &self,
        registry: &dyn Registry,
        poster: (&str, &str, &str),
        request_id: &str,
        params: &Value,
        now: u64,
    ) -> Vec<Commit> {
        let mut commits = Vec::new();
        let entries = params.as_array().cloned().unwrap_or_default();
        let at = ms(now);
        let no_failures = std::collections::BTreeMap::<String, CheckFailed>::new();
        for entry in entries {
            let identity = entry.get("identity");
            let field = |k: &str| identity.and_then(|i| i.get(k)).and_then(Value::as_str);
            let (pk, dn) = match (field("productKey"), field("deviceName")) {
                (Some(pk), Some(dn)) => (pk.to_owned(), dn.to_owned()),
                _ => (poster.1.to_owned(), poster.2.to_owned()),
            };
            if !self.wants(&pk, Family::ThingHistoryFlag) {
                continue;
            }
            let iot_id = if (pk.as_str(), dn.as_str()) == (poster.1, poster.2) {
                poster.0.to_owned()
            } else {
                iot_id_of(registry, &pk, &dn).await
            };
            let items = timed_items(entry.get("properties"), at);
            if !items.is_empty() {
                let body = PropertyPostBody {
                    device_type: DEVICE_TYPE,
                    iot_id: &iot_id,
                    request_id,
                    check_failed_data: &no_failures,
                    product_key: &pk,
                    gmt_create: at,
                    device_name: &dn,
                    items: &items,
                };
                commits.extend(self.forward(
                    &pk,
                    Family::ThingHistoryFlag,
                    format!("/{pk}/{dn}/thing/event/property/history/post"),
                    Bytes::from(proto::to_bytes(&body)),
                    1,
                ));
            }
            for (identifier, event) in entry
                .get("events")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let empty = Map::new();
                let value = event.get("value").and_then(Value::as_object).unwrap_or(&empty);
                let body = EventPostBody {
                    identifier,
                    name: identifier,
                    kind: "info",
                    iot_id: &iot_id,
                    request_id,
                    product_key: &pk,
                    device_name: &dn,
                    gmt_create: at,
                    value,
                    check_failed_data: &no_failures,
                    time: event.get("time").and_then(Value::as_i64).unwrap_or(at),
                    device_type: DEVICE_TYPE,
                };
                commits.extend(self.forward(
                    &pk,
                    Family::ThingHistoryFlag,
                    format!("/{pk}/{dn}/thing/event/{identifier}/history/post"),
                    Bytes::from(proto::to_bytes(&body)),
                    1,
                ));
            }
        }
        commits
    }

    async fn list_found(
        &self,
        registry: &dyn Registry,
        gw: (&str, &str, &str),
        params: &Value,
    ) -> Vec<Commit> {
        let mut devices = Vec::new();
        for d in params.as_array().into_iter().flatten() {
            let field = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (product_key, device_name) = (field("productKey"), field("deviceName"));
            if product_key.is_empty() || device_name.is_empty() {
                continue;
            }
            devices.push(ListedDevice {
                iot_id: iot_id_of(registry, &product_key, &device_name).await,
                product_key,
                device_name,
            });
        }
        let body = ListFoundBody {
            gw_iot_id: gw.0,
            gw_product_key: gw.1,
            gw_device_name: gw.2,
            devices: &devices,
        };
        self.forward(
            gw.1,
            Family::FoundDeviceListFlag,
            format!("/{}/{}/thing/list/found", gw.1, gw.2),
            Bytes::from(proto::to_bytes(&body)),
            1,
        )
        .into_iter()
        .collect()
    }

    /// Forwards the topology events among `events` (queued now; nothing waits).
    pub(crate) fn topology(&self, events: &[Event]) {
        for e in events {
            let Event::Topology(t) = e else { continue };
            if !self.wants(&t.gw_product_key, Family::DeviceTopoLifeCycleFlag) {
                continue;
            }
            let devices: Vec<ListedDevice> = t
                .devices
                .iter()
                .map(|d| ListedDevice {
                    iot_id: d.iot_id.clone(),
                    product_key: d.product_key.clone(),
                    device_name: d.device_name.clone(),
                })
                .collect();
            let body = TopoLifecycleBody {
                action: t.action,
                gw_iot_id: &t.gw_iot_id,
                gw_product_key: &t.gw_product_key,
                gw_device_name: &t.gw_device_name,
                devices: &devices,
                message_create_time: ms(t.message_create_time),
            };
            if let Some(c) = self.forward(
                &t.gw_product_key,
                Family::DeviceTopoLifeCycleFlag,
                format!("/{}/{}/thing/topo/lifecycle", t.gw_product_key, t.gw_device_name),
                Bytes::from(proto::to_bytes(&body)),
                1,
            ) {
                spawn_logged("topology lifecycle", c);
            }
        }
    }
}

/// What the OTA room forwards (it has no registry: the iotId is looked up here). Weak
/// references: the OTA room may outlive the hub's stop a little (its tasks), and must not keep
/// the registry's database open then.
#[derive(Clone)]
pub(crate) struct OtaForwarder {
    subs: std::sync::Weak<Subscriptions>,
    registry: std::sync::Weak<dyn Registry>,
}

impl std::fmt::Debug for OtaForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtaForwarder")
    }
}

/// An OTA task's state as forwarded.
#[derive(Debug, Clone)]
pub(crate) struct OtaTaskFact {
    pub(crate) product_key: String,
    pub(crate) device_name: String,
    pub(crate) module_name: String,
    /// `IN_PROGRESS`, `SUCCEEDED`, `FAILED`, `CANCELED` (others are not forwarded).
    pub(crate) status: &'static str,
    pub(crate) step: i32,
    pub(crate) src_version: String,
    pub(crate) dest_version: String,
    pub(crate) desc: String,
    pub(crate) job_id: String,
    pub(crate) task_id: String,
}

impl OtaForwarder {
    pub(crate) fn new(subs: &Arc<Subscriptions>, registry: &Arc<dyn Registry>) -> Self {
        Self {
            subs: Arc::downgrade(subs),
            registry: Arc::downgrade(registry),
        }
    }

    fn parts(&self) -> Option<(Arc<Subscriptions>, Arc<dyn Registry>)> {
        Some((self.subs.upgrade()?, self.registry.upgrade()?))
    }

    /// Whether a task fact about a device of `product_key` would go anywhere.
    pub(crate) fn wants_tasks(&self, product_key: &str) -> bool {
        self.subs
            .upgrade()
            .is_some_and(|s| s.wants(product_key, Family::OtaEventFlag))
    }

    /// A task's progress or end (queued once the iotId is known; nothing waits).
    pub(crate) fn task(&self, fact: OtaTaskFact) {
        let topic = match fact.status {
            "IN_PROGRESS" => "ota/progress/post",
            "SUCCEEDED" | "FAILED" | "CANCELED" => "ota/upgrade",
            _ => return,
        };
        if !self.wants_tasks(&fact.product_key) {
            return;
        }
        let Some((subs, registry)) = self.parts() else {
            return;
        };
        let now = now_ms();
        tokio::spawn(async move {
            let iot_id = iot_id_of(&*registry, &fact.product_key, &fact.device_name).await;
            let body = OtaTaskBody {
                iot_id: &iot_id,
                product_key: &fact.product_key,
                device_name: &fact.device_name,
                module_name: &fact.module_name,
                status: fact.status,
                step: (fact.status == "IN_PROGRESS").then(|| fact.step.to_string()),
                message_create_time: ms(now),
                src_version: &fact.src_version,
                dest_version: &fact.dest_version,
                desc: &fact.desc,
                job_id: &fact.job_id,
                task_id: &fact.task_id,
            };
            if let Some(c) = subs.forward(
                &fact.product_key,
                Family::OtaEventFlag,
                format!("/{}/{}/{topic}", fact.product_key, fact.device_name),
                Bytes::from(proto::to_bytes(&body)),
                1,
            ) && let Err(e) = c.await
            {
                tracing::warn!(error = %e, "OTA message not kept");
            }
        });
    }

    /// A device's version report.
    pub(crate) fn version(
        &self,
        product_key: &str,
        device_name: &str,
        module: &str,
        version: &str,
        at_ms: u64,
    ) {
        let Some((subs, registry)) = self.parts() else {
            return;
        };
        if !subs.wants(product_key, Family::OtaVersionFlag) {
            return;
        }
        let (pk, dn, module, version) = (
            product_key.to_owned(),
            device_name.to_owned(),
            module.to_owned(),
            version.to_owned(),
        );
        tokio::spawn(async move {
            let iot_id = iot_id_of(&*registry, &pk, &dn).await;
            let body = OtaVersionBody {
                iot_id: &iot_id,
                product_key: &pk,
                device_name: &dn,
                module_name: &module,
                module_version: &version,
                message_create_time: ms(at_ms),
            };
            if let Some(c) = subs.forward(
                &pk,
                Family::OtaVersionFlag,
                format!("/{pk}/{dn}/ota/version/post"),
                Bytes::from(proto::to_bytes(&body)),
                1,
            ) && let Err(e) = c.await
            {
                tracing::warn!(error = %e, "OTA version message not kept");
            }
        });
    }
}
