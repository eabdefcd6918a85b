//! The call log: every call the service makes to a device (property sets, services, raw RRPC,
//! publishes) written to the device's history (`Registry::record`) with its time, kind,
//! identifier, what was sent, the result (the device's reply code, or the error's code in the
//! admin API's words), the answer and how long it took. The call's answer waits for the row's
//! commit (group commit: one fsync shared with concurrent writes), so a call the admin saw is
//! in the log; a failed write is logged and does not fail the call.

use std::time::{Duration, Instant};

use aliot_protocol::topic::{SysPath, Topic};
use bytes::Bytes;
use serde_json::Value;

use super::{PublishOutcome, Result, Service};
use crate::clock::now_ms;
use crate::registry::{CallRecord, Records};
use crate::table::CallKey;

/// Bytes as JSON when they are JSON, else as text.
fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// What a downlink call is: its kind, identifier and params, from its key, topic and body.
fn describe(key: &CallKey, topic: &str, payload: &Bytes) -> (&'static str, Option<String>, Value) {
    let body = json_or_text(payload);
    let params = |b: &Value| b.get("params").cloned().unwrap_or(Value::Null);
    match key {
        CallKey::PropertySet(_) => ("property_set", None, params(&body)),
        CallKey::Rrpc(_) => {
            let service = match Topic::parse(topic) {
                Ok(Topic::ExtRrpc { inner, .. }) => match *inner {
                    Topic::Sys {
                        path: SysPath::Service(id),
                        ..
                    } => Some(id),
                    _ => None,
                },
                _ => body
                    .get("method")
                    .and_then(Value::as_str)
                    .and_then(|m| m.strip_prefix("thing.service."))
                    .map(str::to_owned),
            };
            match service {
                Some(id) => ("service", Some(id), params(&body)),
                None => ("rrpc", None, body),
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Service {
    /// Writes a call-log row.
    async fn log_call(&self, product_key: &str, device_name: &str, call: CallRecord) {
        let records = Records {
            calls: vec![call],
            ..Records::default()
        };
        if let Err(e) = self.registry().record(product_key, device_name, records).await {
            tracing::warn!(product_key, device_name, error = %e, "call not written to the call log");
        }
    }

    /// Sends a QoS 0 request to an online device and waits for the answer matching `key`
    /// (`call_unlogged`), and logs the call.
    pub(super) async fn call(
        &self,
        product_key: &str,
        device_name: &str,
        topic: String,
        payload: Bytes,
        key: CallKey,
        timeout: Duration,
    ) -> Result<Bytes> {
        let (time, started) = (now_ms(), Instant::now());
        let (kind, identifier, params) = describe(&key, &topic, &payload);
        let result = self
            .call_unlogged(product_key, device_name, topic, payload, key, timeout)
            .await;
        let (result_code, answer) = match &result {
            Ok(answer) => {
                let answer = json_or_text(answer);
                let code = answer
                    .get("code")
                    .map_or_else(|| "ok".to_owned(), |c| c.to_string());
                (code, Some(answer))
            }
            Err(e) => (e.code().to_owned(), None),
        };
        self.log_call(
            product_key,
            device_name,
            CallRecord {
                time,
                kind: kind.to_owned(),
                identifier,
                params,
                result: result_code,
                answer,
                duration_ms: ms(started.elapsed()),
            },
        )
        .await;
        result
    }

    /// Publishes a message to a device as the platform's `Pub` does (the rules are
    /// `publish_unlogged`'s), and logs it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::service::Error::InvalidArgument) for QoS 2, a topic outside the device's namespaces or a payload
    /// above the packet limit; `DeviceNotFound`/`ProductNotFound` from the registry;
    /// [`Error::DeviceOffline`](crate::service::Error::DeviceOffline) when the device is offline and the message cannot be queued;
    /// [`Error::QueueFull`](crate::service::Error::QueueFull) when the device's queue cannot take it.
    pub async fn publish(
        &self,
        product_key: &str,
        device_name: &str,
        topic: &str,
        payload: Bytes,
        qos: u8,
    ) -> Result<PublishOutcome> {
        let (time, started) = (now_ms(), Instant::now());
        let params = json_or_text(&payload);
        let result = self
            .publish_unlogged(product_key, device_name, topic, payload, qos)
            .await;
        let result_code = match &result {
            Ok(outcome) => serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "ok".to_owned()),
            Err(e) => e.code().to_owned(),
        };
        self.log_call(
            product_key,
            device_name,
            CallRecord {
                time,
                kind: "publish".to_owned(),
                identifier: Some(topic.to_owned()),
                params,
                result: result_code,
                answer: None,
                duration_ms: ms(started.elapsed()),
            },
        )
        .await;
        result
    }
}
