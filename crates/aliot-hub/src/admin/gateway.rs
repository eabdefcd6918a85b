//! `…/devices/{dn}/topology` and `…/devices/{dn}/gateway`: a gateway's sub-devices and a
//! sub-device's gateway, through the service.

use aliot_admin::{ChangeTopology, DeviceKey, GatewayView, TopologyItem, TopologyNotified, TopologyView};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};

use super::AdminState;
use super::error::ApiError;
use crate::registry::DeviceRef;

fn refs(body: ChangeTopology) -> Vec<DeviceRef> {
    body.sub_devices
        .into_iter()
        .map(|d| (d.product_key, d.device_name))
        .collect()
}

async fn view(state: &AdminState, pk: &str, dn: &str) -> Result<Json<TopologyView>, ApiError> {
    let subs = state.service().topology(pk, dn).await?;
    Ok(Json(TopologyView {
        sub_devices: subs
            .into_iter()
            .map(|((product_key, device_name), online)| TopologyItem {
                product_key,
                device_name,
                online,
            })
            .collect(),
    }))
}

/// `GET …/topology`.
pub(super) async fn topology(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<TopologyView>, ApiError> {
    view(&state, &pk, &dn).await
}

/// `POST …/topology` `{"subDevices":[{productKey, deviceName}]}`: adds, all or none.
pub(super) async fn add(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<ChangeTopology>, JsonRejection>,
) -> Result<Json<TopologyView>, ApiError> {
    let Json(body) = body?;
    state.service().add_topology(&pk, &dn, refs(body)).await?;
    view(&state, &pk, &dn).await
}

/// `POST …/topology/remove` `{"subDevices":[…]}`: removes, all or none.
pub(super) async fn remove(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<ChangeTopology>, JsonRejection>,
) -> Result<Json<TopologyView>, ApiError> {
    let Json(body) = body?;
    state.service().remove_topology(&pk, &dn, refs(body)).await?;
    view(&state, &pk, &dn).await
}

/// `POST …/topology/notify` `{"subDevices":[…]}`: `thing.topo.add.notify` to the gateway.
pub(super) async fn notify(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
    body: Result<Json<ChangeTopology>, JsonRejection>,
) -> Result<Json<TopologyNotified>, ApiError> {
    let Json(body) = body?;
    let message_id = state.service().notify_add_topology(&pk, &dn, refs(body)).await?;
    Ok(Json(TopologyNotified { message_id }))
}

/// `GET …/gateway`.
pub(super) async fn gateway(
    State(state): State<AdminState>,
    Path((pk, dn)): Path<(String, String)>,
) -> Result<Json<GatewayView>, ApiError> {
    let gw = state.service().gateway_of(&pk, &dn).await?;
    Ok(Json(GatewayView {
        gateway: gw.map(|(product_key, device_name)| DeviceKey {
            product_key,
            device_name,
        }),
    }))
}
