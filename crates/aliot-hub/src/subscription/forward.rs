//! What the platform forwards, per family (cloud-side spec §2.6): the hub's facts turned into
//! the topic and body consumers receive (the bodies' shapes are in
//! `aliot_protocol::subscription`). Each function checks first that some group wants the family
//! (nothing is built otherwise) and returns the commit to wait for, if any.

use std::collections::BTreeMap;

use aliot_protocol::subscription::{
    self as proto, CheckFailed, DeviceOf, DownlinkReplyBody, EventPostBody, LifecycleBody, PropertyPostBody,
    StatusBody, TimedValue,
};
use aliot_protocol::tsl::Validation;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Family, SubscriptionError, Subscriptions};
use crate::BoxFuture;
use crate::clock::{format_cst, format_utc};

/// A commit to wait for.
pub(crate) type Commit = BoxFuture<'static, Result<(), SubscriptionError>>;

/// The product category the platform names in `deviceType` (the hub's products have none).
pub(crate) const DEVICE_TYPE: &str = "CustomCategory";

/// The offline code the platform puts in `offlineReasonCode` (connection closed).
pub(crate) const OFFLINE_REASON_CODE: u32 = 427;

/// A thing-model post as the platform decided it, waiting for the device's iotId and the
/// forwarding time (built by the platform's `thing` room while it judges the post).
#[derive(Debug, Clone)]
pub(crate) enum Draft {
    /// A property post.
    Property {
        /// The Alink id as text.
        request_id: String,
        /// Valid values with their times.
        items: BTreeMap<String, TimedValue>,
        /// Rejected values.
        check_failed: BTreeMap<String, CheckFailed>,
    },
    /// An event post.
    Event {
        /// The event's identifier.
        identifier: String,
        /// Its name in the model (the identifier without one).
        name: String,
        /// `info`, `alert`, `error`.
        kind: String,
        /// The Alink id as text.
        request_id: String,
        /// Valid outputs.
        value: Map<String, Value>,
        /// Rejected outputs.
        check_failed: BTreeMap<String, CheckFailed>,
        /// The event's time, epoch ms.
        time: i64,
    },
}

impl Draft {
    /// A property post's draft from its validation.
    pub(crate) fn property(request_id: String, checked: &Validation, received_ms: u64) -> Self {
        let at = i64::try_from(received_ms).unwrap_or(i64::MAX);
        Draft::Property {
            request_id,
            items: proto::items_of(&checked.items, at),
            check_failed: proto::check_failed_of(&checked.rejected, at),
        }
    }

    /// An event post's draft from its validation.
    pub(crate) fn event(
        identifier: &str,
        name: Option<&str>,
        kind: Option<&str>,
        request_id: String,
        checked: &Validation,
        received_ms: u64,
    ) -> Self {
        let at = i64::try_from(received_ms).unwrap_or(i64::MAX);
        Draft::Event {
            identifier: identifier.to_owned(),
            name: name.unwrap_or(identifier).to_owned(),
            kind: kind.unwrap_or("info").to_owned(),
            request_id,
            value: checked
                .items
                .iter()
                .map(|(k, i)| (k.clone(), i.value.clone()))
                .collect(),
            check_failed: proto::check_failed_of(&checked.rejected, at),
            time: checked.time.unwrap_or(at),
        }
    }
}

fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

impl Subscriptions {
    /// `/as/mqtt/status/{pk}/{dn}` (sub-devices too).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn status(
        &self,
        device: DeviceOf<'_>,
        online: bool,
        at_ms: u64,
        last_ms: u64,
        client_ip: &str,
    ) -> Option<Commit> {
        if !self.wants(device.product_key, Family::DeviceStatusChangeFlag) {
            return None;
        }
        let (time, utc_time) = (format_cst(at_ms), format_utc(at_ms));
        let (last_time, utc_last_time) = (format_cst(last_ms), format_utc(last_ms));
        let body = StatusBody {
            status: if online { "online" } else { "offline" },
            iot_id: device.iot_id,
            product_key: device.product_key,
            device_name: device.device_name,
            time: &time,
            utc_time: &utc_time,
            last_time: &last_time,
            utc_last_time: &utc_last_time,
            client_ip,
            offline_reason_code: (!online).then_some(OFFLINE_REASON_CODE),
        };
        self.forward(
            device.product_key,
            Family::DeviceStatusChangeFlag,
            proto::status_topic(device.product_key, device.device_name),
            Bytes::from(proto::to_bytes(&body)),
            1,
        )
    }

    /// A device's uplink on one of its own (custom) topics: verbatim.
    pub(crate) fn custom_uplink(
        &self,
        product_key: &str,
        topic: &str,
        payload: &Bytes,
        qos: u8,
    ) -> Option<Commit> {
        if !self.wants(product_key, Family::DeviceDataFlag) {
            return None;
        }
        self.forward(
            product_key,
            Family::DeviceDataFlag,
            topic.to_owned(),
            payload.clone(),
            qos,
        )
    }

    /// A property or event post, in the transformed format (`topic` is the device's `/sys/…`).
    pub(crate) fn thing_post(
        &self,
        device: DeviceOf<'_>,
        topic: &str,
        draft: &Draft,
        now_ms: u64,
        qos: u8,
    ) -> Option<Commit> {
        if !self.wants(device.product_key, Family::DeviceDataFlag) {
            return None;
        }
        let body = match draft {
            Draft::Property {
                request_id,
                items,
                check_failed,
            } => proto::to_bytes(&PropertyPostBody {
                device_type: DEVICE_TYPE,
                iot_id: device.iot_id,
                request_id,
                check_failed_data: check_failed,
                product_key: device.product_key,
                gmt_create: ms(now_ms),
                device_name: device.device_name,
                items,
            }),
            Draft::Event {
                identifier,
                name,
                kind,
                request_id,
                value,
                check_failed,
                time,
            } => proto::to_bytes(&EventPostBody {
                identifier,
                name,
                kind,
                iot_id: device.iot_id,
                request_id,
                product_key: device.product_key,
                device_name: device.device_name,
                gmt_create: ms(now_ms),
                value,
                check_failed_data: check_failed,
                time: *time,
                device_type: DEVICE_TYPE,
            }),
        };
        self.forward(
            device.product_key,
            Family::DeviceDataFlag,
            proto::forwarded_sys_topic(topic).to_owned(),
            Bytes::from(body),
            qos,
        )
    }

    /// A device's answer to a downlink (`…/property/set_reply`, `…/service/{id}_reply`) as
    /// `/{pk}/{dn}/thing/downlink/reply/message`, with the reply topic (spec §9 item 5: the
    /// topic live consumers accept).
    pub(crate) fn downlink_reply(
        &self,
        device: DeviceOf<'_>,
        reply_topic: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Option<Commit> {
        if !self.wants(device.product_key, Family::DeviceDataFlag) {
            return None;
        }
        let reply: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let request_id = match reply.get("id") {
            Some(Value::String(s)) => s
                .parse::<u64>()
                .map_or_else(|_| Value::String(s.clone()), Value::from),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        let body = DownlinkReplyBody {
            gmt_create: ms(now_ms),
            iot_id: device.iot_id,
            product_key: device.product_key,
            device_name: device.device_name,
            request_id,
            code: reply.get("code").cloned().unwrap_or(Value::from(200)),
            message: reply.get("message").cloned().unwrap_or(Value::from("success")),
            topic: reply_topic,
            data: reply
                .get("data")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new())),
        };
        self.forward(
            device.product_key,
            Family::DeviceDataFlag,
            format!(
                "/{}/{}/thing/downlink/reply/message",
                device.product_key, device.device_name
            ),
            Bytes::from(proto::to_bytes(&body)),
            0,
        )
    }

    /// `/{pk}/{dn}/thing/lifecycle`: `create` (with the secret), `delete`, `enable`, `disable`.
    pub(crate) fn lifecycle(
        &self,
        device: DeviceOf<'_>,
        action: &str,
        secret: Option<&str>,
        now_ms: u64,
    ) -> Option<Commit> {
        if !self.wants(device.product_key, Family::DeviceLifeCycleFlag) {
            return None;
        }
        let body = LifecycleBody {
            action,
            iot_id: device.iot_id,
            product_key: device.product_key,
            device_name: device.device_name,
            device_secret: secret,
            message_create_time: ms(now_ms),
        };
        self.forward(
            device.product_key,
            Family::DeviceLifeCycleFlag,
            format!("/{}/{}/thing/lifecycle", device.product_key, device.device_name),
            Bytes::from(proto::to_bytes(&body)),
            1,
        )
    }
}
