//! Gateway topology for the admin (cloud-side §5: `GetThingTopo`, `BatchAddThingTopo`,
//! `RemoveThingTopo`, `GetGatewayBySubDevice`, `NotifyAddThingTopo`). A change made here is
//! pushed to the gateway as `thing.topo.change` (status 0 added, 1 removed) and removed
//! sub-devices are logged out.

use bytes::Bytes;
use rmqtt_codec::v3::QoS;
use serde_json::json;

use super::{Error, Result, Service};
use crate::clock::{format_cst, format_utc};
use crate::cluster::Downlink;
use crate::events::{Event, StatusEvent, TopologyEvent};
use crate::platform::gateway;
use crate::registry::DeviceRef;
use crate::table::Reach;

/// `thing.topo.change` status: sub-devices added.
const CHANGE_ADDED: u32 = 0;
/// `thing.topo.change` status: sub-devices removed.
const CHANGE_REMOVED: u32 = 1;

impl Service {
    /// Sets a product's node type (direct device, gateway, sub-device).
    ///
    /// # Errors
    /// `ProductNotFound`, storage errors.
    pub async fn set_node_type(
        &self,
        product_key: &str,
        node_type: crate::registry::NodeType,
    ) -> Result<crate::registry::Product> {
        Ok(self.inner.registry.set_node_type(product_key, node_type).await?)
    }

    /// A gateway's sub-devices, sorted, each with whether it is logged in now.
    ///
    /// # Errors
    /// `DeviceNotFound`/`ProductNotFound`, storage errors.
    pub async fn topology(&self, product_key: &str, device_name: &str) -> Result<Vec<(DeviceRef, bool)>> {
        self.device(product_key, device_name).await?;
        let subs = self
            .inner
            .registry
            .topology((product_key.to_owned(), device_name.to_owned()))
            .await?;
        Ok(subs
            .into_iter()
            .map(|s| {
                let online = self.inner.cluster.locate(&s.0, &s.1).is_some();
                (s, online)
            })
            .collect())
    }

    /// The gateway a sub-device belongs to.
    ///
    /// # Errors
    /// As [`Service::topology`].
    pub async fn gateway_of(&self, product_key: &str, device_name: &str) -> Result<Option<DeviceRef>> {
        self.device(product_key, device_name).await?;
        Ok(self
            .inner
            .registry
            .gateway_of((product_key.to_owned(), device_name.to_owned()))
            .await?)
    }

    /// Adds sub-devices to a gateway's topology (all or none, durable before the answer) and
    /// tells the gateway (`thing.topo.change`, status 0). Returns the gateway's sub-devices.
    ///
    /// # Errors
    /// As [`Service::topology`], for the gateway and each sub-device; [`Error::Topology`] with
    /// the platform's refusal.
    pub async fn add_topology(
        &self,
        product_key: &str,
        device_name: &str,
        subs: Vec<DeviceRef>,
    ) -> Result<Vec<DeviceRef>> {
        self.change_topology(product_key, device_name, subs, CHANGE_ADDED)
            .await
    }

    /// Removes sub-devices from a gateway's topology (all or none), logs them out and tells
    /// the gateway (`thing.topo.change`, status 1). Returns the gateway's sub-devices.
    ///
    /// # Errors
    /// As [`Service::add_topology`].
    pub async fn remove_topology(
        &self,
        product_key: &str,
        device_name: &str,
        subs: Vec<DeviceRef>,
    ) -> Result<Vec<DeviceRef>> {
        self.change_topology(product_key, device_name, subs, CHANGE_REMOVED)
            .await
    }

    async fn change_topology(
        &self,
        product_key: &str,
        device_name: &str,
        subs: Vec<DeviceRef>,
        status: u32,
    ) -> Result<Vec<DeviceRef>> {
        if subs.is_empty() {
            return Err(Error::InvalidArgument("name at least one sub-device".into()));
        }
        self.device(product_key, device_name).await?;
        for (pk, dn) in &subs {
            self.device(pk, dn).await?;
        }
        let gw = (product_key.to_owned(), device_name.to_owned());
        let registry = &self.inner.registry;
        if status == CHANGE_ADDED
            && let Some(refusal) = crate::registry::node_type_refusal(&**registry, &gw, &subs).await
        {
            return Err(Error::Topology(refusal));
        }
        let changed = if status == CHANGE_ADDED {
            registry.add_topology(gw, subs.clone()).await?
        } else {
            registry.remove_topology(gw, subs.clone()).await?
        };
        let now = changed.map_err(Error::Topology)?;
        if self.inner.cluster.observed()
            || self
                .inner
                .subscriptions
                .wants(product_key, crate::subscription::Family::DeviceTopoLifeCycleFlag)
        {
            let action = if status == CHANGE_ADDED { "add" } else { "remove" };
            let gw = (product_key.to_owned(), device_name.to_owned());
            let events = TopologyEvent::of(
                &*self.inner.registry,
                action,
                "admin",
                &gw,
                &subs,
                crate::clock::now_ms(),
            )
            .await;
            self.publish_all(events);
        }
        if status == CHANGE_REMOVED {
            for (pk, dn) in &subs {
                self.logout_sub(pk, dn, "topology removed").await;
            }
        }
        let params = json!({"status": status, "subList": gateway::refs_json(&subs)});
        self.to_gateway(
            product_key,
            device_name,
            "thing/topo/change",
            "thing.topo.change",
            params,
        );
        Ok(now)
    }

    /// Asks a gateway to add these sub-devices: `thing.topo.add.notify` on
    /// `/sys/{pk}/{dn}/thing/topo/add/notify`. Returns the message id.
    ///
    /// # Errors
    /// As [`Service::topology`]; [`Error::DeviceOffline`] when the gateway is offline.
    pub async fn notify_add_topology(
        &self,
        product_key: &str,
        device_name: &str,
        subs: Vec<DeviceRef>,
    ) -> Result<String> {
        self.device(product_key, device_name).await?;
        let params = gateway::refs_json(&subs);
        self.to_gateway(
            product_key,
            device_name,
            "thing/topo/add/notify",
            "thing.topo.add.notify",
            params,
        )
        .ok_or_else(|| Error::DeviceOffline {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
        })
    }

    /// Logs a sub-device out of its gateway's connection, if it is logged in, and reports it
    /// offline.
    pub(super) async fn logout_sub(&self, product_key: &str, device_name: &str, reason: &str) {
        let cluster = &self.inner.cluster;
        if !cluster.logout_sub(product_key, device_name) || !cluster.observed() {
            return;
        }
        let iot_id = self
            .inner
            .registry
            .device_auth(product_key, device_name)
            .await
            .map(|a| a.iot_id)
            .unwrap_or_default();
        let at = crate::clock::now_ms();
        cluster.publish(Event::Status(StatusEvent {
            status: "offline",
            iot_id,
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            time: format_cst(at),
            utc_time: format_utc(at),
            last_time: format_cst(at),
            utc_last_time: format_utc(at),
            client_ip: String::new(),
            reason: Some(reason.to_owned()),
        }));
    }

    /// Sends a platform request to a gateway if it is online; its message id.
    fn to_gateway(
        &self,
        product_key: &str,
        device_name: &str,
        path: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Option<String> {
        let id = self.next_message_id();
        let n: u64 = id.parse().unwrap_or_default();
        let downlink = Downlink {
            topic: format!("/sys/{product_key}/{device_name}/{path}"),
            payload: Bytes::from(gateway::downlink(n, method, params)),
            qos: QoS::AtMostOnce,
        };
        self.inner
            .cluster
            .deliver(product_key, device_name, downlink, Reach::OnlineOnly)
            .ok()
            .map(|_| id)
    }
}
