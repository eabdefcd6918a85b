//! `…/devices/{dn}/topology` and `…/devices/{dn}/gateway`: a gateway's sub-devices and a
//! sub-device's gateway (the platform's `GetThingTopo`, `BatchAddThingTopo`,
//! `RemoveThingTopo`, `GetGatewayBySubDevice`, `NotifyAddThingTopo`), and the client's
//! methods for them.

use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Client, device_path};
use crate::error::Result;

/// A product's node type (the platform's `NodeType`): its devices connect directly, are
/// gateways, or are sub-devices that log in through a gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// A directly connected device (the default).
    #[default]
    Direct,
    /// A gateway, speaking for sub-devices.
    Gateway,
    /// A sub-device, connected through a gateway.
    Sub,
}

impl NodeType {
    /// Whether this is [`NodeType::Direct`] (left out of answers).
    pub fn is_direct(&self) -> bool {
        *self == NodeType::Direct
    }

    /// `direct`, `gateway` or `sub`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Direct => "direct",
            NodeType::Gateway => "gateway",
            NodeType::Sub => "sub",
        }
    }
}

/// A device named by productKey and deviceName.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKey {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
}

/// One sub-device of a gateway's topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyItem {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// Whether it is logged in through the gateway now.
    pub online: bool,
}

/// `GET …/topology` (and the answer of a change): the gateway's sub-devices, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyView {
    /// The sub-devices.
    pub sub_devices: Vec<TopologyItem>,
}

/// `POST …/topology` (add), `POST …/topology/remove` and `POST …/topology/notify` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeTopology {
    /// The sub-devices.
    pub sub_devices: Vec<DeviceKey>,
}

/// `GET …/gateway`: the gateway a sub-device belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayView {
    /// The gateway (`null` when the device is in no topology).
    pub gateway: Option<DeviceKey>,
}

/// The answer to `POST …/topology/notify`: the id of the `thing.topo.add.notify` sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyNotified {
    /// The downlink's message id.
    pub message_id: String,
}

impl Client {
    /// `GET …/devices/{dn}/topology`: a gateway's sub-devices.
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn topology(&self, product_key: &str, device_name: &str) -> Result<TopologyView> {
        let path = format!("{}/topology", device_path(product_key, device_name));
        self.get_json(&path).await
    }

    /// `POST …/devices/{dn}/topology`: adds sub-devices to a gateway (all or none).
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `topology_refused` (409: itself, too many, another gateway's).
    pub async fn add_topology(
        &self,
        product_key: &str,
        device_name: &str,
        body: &ChangeTopology,
    ) -> Result<TopologyView> {
        let path = format!("{}/topology", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, body, self.wait()).await
    }

    /// `POST …/devices/{dn}/topology/remove`: removes sub-devices from a gateway (all or none).
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `topology_refused` (409: not in the topology).
    pub async fn remove_topology(
        &self,
        product_key: &str,
        device_name: &str,
        body: &ChangeTopology,
    ) -> Result<TopologyView> {
        let path = format!("{}/topology/remove", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, body, self.wait()).await
    }

    /// `POST …/devices/{dn}/topology/notify`: asks the gateway to add these sub-devices
    /// (`thing.topo.add.notify`).
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `device_offline` (409).
    pub async fn notify_topology(
        &self,
        product_key: &str,
        device_name: &str,
        body: &ChangeTopology,
    ) -> Result<TopologyNotified> {
        let path = format!("{}/topology/notify", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, body, self.wait()).await
    }

    /// `PATCH /api/v1/products/{pk}` `{"nodeType"}`: sets a product's node type.
    ///
    /// # Errors
    ///
    /// As [`Client::product`].
    pub async fn set_node_type(&self, product_key: &str, node_type: NodeType) -> Result<crate::ProductView> {
        let body = crate::UpdateProduct {
            node_type: Some(node_type),
            ..crate::UpdateProduct::default()
        };
        let path = format!("/api/v1/products/{}", crate::wire::segment(product_key));
        self.send_json(Method::PATCH, &path, &body, self.wait()).await
    }

    /// `GET …/devices/{dn}/gateway`: the gateway of a sub-device.
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn gateway_of(&self, product_key: &str, device_name: &str) -> Result<GatewayView> {
        let path = format!("{}/gateway", device_path(product_key, device_name));
        self.get_json(&path).await
    }
}
