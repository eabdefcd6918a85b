//! What a simulated device posts through: its own connection, or a gateway's for a sub-device
//! (`aliot device run --gateway`).

use aliot_device::Device;
use aliot_device::gateway::SubDevice;
use aliot_device::thing::ThingModel;
use aliot_protocol::alink::Reply;
use serde_json::Value;

/// A direct device or a sub-device logged in through the gateway.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// The device's own connection.
    Device(Device),
    /// A sub-device on the gateway's connection.
    Sub(SubDevice),
}

impl Target {
    /// Posts properties (as they are).
    pub(super) async fn post_property(&self, params: Value) -> aliot_device::Result<Reply> {
        match self {
            Target::Device(d) => d.post_property(params).await,
            Target::Sub(s) => s.post_property(params).await,
        }
    }

    /// Posts properties checked against the model first.
    pub(super) async fn post_property_checked(
        &self,
        model: &ThingModel,
        params: Value,
    ) -> aliot_device::Result<Reply> {
        match self {
            Target::Device(d) => model.post_property(d, params).await,
            Target::Sub(s) => {
                model.check_properties(&params)?;
                s.post_property(params).await
            }
        }
    }

    /// Posts an event checked against the model first.
    pub(super) async fn post_event_checked(
        &self,
        model: &ThingModel,
        event: &str,
        values: Value,
    ) -> aliot_device::Result<Reply> {
        match self {
            Target::Device(d) => model.post_event(d, event, values).await,
            Target::Sub(s) => {
                model.check_event(event, &values)?;
                s.post_event(event, values).await
            }
        }
    }
}
