//! The remaining forwarded message bodies of server-side subscription (cloud-side spec §2.6):
//! batch and history posts, topology lifecycle, found sub-devices, OTA results, progress and
//! version reports. Keys in the order the spec lists them; times are the caller's inputs.
//! The live property/event/status/lifecycle bodies are in [`crate::subscription`].

use serde::Serialize;
use serde_json::{Map, Value};

/// A device named in a topology or found-list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedDevice {
    /// iotId (empty when the hub does not know the device).
    pub iot_id: String,
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
}

/// `/${pk}/${dn}/thing/topo/lifecycle` (the gateway's pk/dn).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopoLifecycleBody<'a> {
    /// `add`, `remove`, `enable` or `disable`.
    pub action: &'a str,
    /// The gateway's iotId.
    pub gw_iot_id: &'a str,
    /// The gateway's productKey.
    pub gw_product_key: &'a str,
    /// The gateway's deviceName.
    pub gw_device_name: &'a str,
    /// The sub-devices concerned.
    pub devices: &'a [ListedDevice],
    /// When, epoch ms.
    pub message_create_time: i64,
}

/// `/${pk}/${dn}/thing/list/found` (the gateway's pk/dn).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFoundBody<'a> {
    /// The gateway's iotId.
    pub gw_iot_id: &'a str,
    /// The gateway's productKey.
    pub gw_product_key: &'a str,
    /// The gateway's deviceName.
    pub gw_device_name: &'a str,
    /// The devices the gateway found.
    pub devices: &'a [ListedDevice],
}

/// `/${pk}/${dn}/thing/property/batch/post` and `/${pk}/${dn}/thing/event/batch/post`:
/// `payload` maps each identifier to its `[{"value","time"}…]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPostBody<'a> {
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// The Alink `id` as a string.
    pub request_id: &'a str,
    /// Forwarding time, epoch ms.
    pub gmt_create: i64,
    /// Identifier → values with times.
    pub payload: &'a Map<String, Value>,
}

/// `/${pk}/${dn}/ota/upgrade` (a task's end: `SUCCEEDED`, `FAILED`, `CANCELED`) and
/// `/${pk}/${dn}/ota/progress/post` (`IN_PROGRESS`, with `step`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtaTaskBody<'a> {
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// The module (`default` for the firmware).
    pub module_name: &'a str,
    /// The task's state.
    pub status: &'a str,
    /// The device's last progress (progress messages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// When, epoch ms.
    pub message_create_time: i64,
    /// The version the device had.
    pub src_version: &'a str,
    /// The version the job installs.
    pub dest_version: &'a str,
    /// Why (failures) or the device's description.
    pub desc: &'a str,
    /// The job.
    pub job_id: &'a str,
    /// The task.
    pub task_id: &'a str,
}

/// `/${pk}/${dn}/ota/version/post`: a device reported a module's version.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtaVersionBody<'a> {
    /// iotId.
    pub iot_id: &'a str,
    /// productKey.
    pub product_key: &'a str,
    /// deviceName.
    pub device_name: &'a str,
    /// The module (`default` for the firmware).
    pub module_name: &'a str,
    /// The version reported.
    pub module_version: &'a str,
    /// When, epoch ms.
    pub message_create_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_as_the_spec_lists_them() {
        let devices = [ListedDevice {
            iot_id: "i".into(),
            product_key: "p".into(),
            device_name: "d".into(),
        }];
        let topo = serde_json::to_string(&TopoLifecycleBody {
            action: "add",
            gw_iot_id: "g",
            gw_product_key: "gp",
            gw_device_name: "gd",
            devices: &devices,
            message_create_time: 5,
        })
        .expect("json");
        assert_eq!(
            topo,
            r#"{"action":"add","gwIotId":"g","gwProductKey":"gp","gwDeviceName":"gd","devices":[{"iotId":"i","productKey":"p","deviceName":"d"}],"messageCreateTime":5}"#
        );
        let version = serde_json::to_string(&OtaVersionBody {
            iot_id: "i",
            product_key: "p",
            device_name: "d",
            module_name: "default",
            module_version: "1.2",
            message_create_time: 7,
        })
        .expect("json");
        assert_eq!(
            version,
            r#"{"iotId":"i","productKey":"p","deviceName":"d","moduleName":"default","moduleVersion":"1.2","messageCreateTime":7}"#
        );
    }
}
