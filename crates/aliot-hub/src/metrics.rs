//! Counters of the MQTT side, rendered as Prometheus text.
//!
//! Plain relaxed atomics: each counter is updated independently and read only for display, so
//! no ordering between them is needed. Gauges that describe the device table (sessions online,
//! offline queue depth) are computed when rendering instead of being kept in step on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The hub's MQTT counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_current: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_rejected_limit: AtomicU64,
    pub(crate) connections_rejected_per_ip: AtomicU64,
    pub(crate) encode_failures: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    /// CONNACK return codes sent, by code 0..=5.
    pub(crate) connack: [AtomicU64; 6],
    pub(crate) connect_timeouts: AtomicU64,
    pub(crate) duplicate_logins: AtomicU64,
    pub(crate) keepalive_timeouts: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) acl_denied_publish: AtomicU64,
    pub(crate) acl_denied_subscribe: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) replies: AtomicU64,
    pub(crate) qos0_dropped: AtomicU64,
    pub(crate) qos1_resent: AtomicU64,
    pub(crate) slow_consumer_disconnects: AtomicU64,
    pub(crate) offline_queued: AtomicU64,
    pub(crate) offline_expired: AtomicU64,
    pub(crate) calls_answered: AtomicU64,
    pub(crate) calls_timed_out: AtomicU64,
    pub(crate) dynamic_registrations: AtomicU64,
    pub(crate) device_tokens_issued: AtomicU64,
    pub(crate) iot_tokens_issued: AtomicU64,
    pub(crate) http_tokens_issued: AtomicU64,
    pub(crate) http_uplinks: AtomicU64,
    /// OpenAPI calls by (action, code): `ok` for a success, else the platform's code. Bounded:
    /// actions the hub does not know count as `unknown`, and codes are the hub's own.
    pub(crate) openapi_calls: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
}

impl Metrics {
    /// Counts one OpenAPI call.
    pub(crate) fn openapi_call(&self, action: &str, code: &str) {
        // A std mutex: one map update, never held across an await.
        let mut calls = self
            .openapi_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = calls.get_mut(&(action.to_owned(), code.to_owned())) {
            *n += 1;
        } else {
            calls.insert((action.to_owned(), code.to_owned()), 1);
        }
    }
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

/// Gauges computed from the device table at render time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableGauges {
    pub(crate) sessions_online: u64,
    pub(crate) sessions_stored: u64,
    pub(crate) offline_queue_messages: u64,
    pub(crate) pending_calls: u64,
}

impl Metrics {
    /// Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self, table: TableGauges) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        one(
            "aliot_hub_connections",
            "gauge",
            "Open MQTT connections (TCP and TLS, before and after CONNECT).",
            get(&self.connections_current),
        );
        one(
            "aliot_hub_connections_total",
            "counter",
            "Accepted TCP connections.",
            get(&self.connections_total),
        );
        one(
            "aliot_hub_connections_rejected_total",
            "counter",
            "Connections closed at accept because the connection limit was reached.",
            get(&self.connections_rejected_limit),
        );
        one(
            "aliot_hub_connections_rejected_per_ip_total",
            "counter",
            "Connections closed at accept because their address had max_pending_connects_per_ip \
             handshakes in progress.",
            get(&self.connections_rejected_per_ip),
        );
        one(
            "aliot_hub_encode_failures_total",
            "counter",
            "Packets that could not be encoded for a device (dropped, the stream kept intact).",
            get(&self.encode_failures),
        );
        one(
            "aliot_hub_accept_errors_total",
            "counter",
            "Failed accept() calls.",
            get(&self.accept_errors),
        );
        one(
            "aliot_hub_sessions_online",
            "gauge",
            "Authenticated devices online.",
            table.sessions_online,
        );
        one(
            "aliot_hub_sessions_stored",
            "gauge",
            "Offline clean-session-0 sessions kept for their devices.",
            table.sessions_stored,
        );
        one(
            "aliot_hub_offline_queue_messages",
            "gauge",
            "QoS 1 messages waiting in offline queues.",
            table.offline_queue_messages,
        );
        one(
            "aliot_hub_pending_calls",
            "gauge",
            "Admin calls waiting for a device's answer.",
            table.pending_calls,
        );
        out.push_str("# HELP aliot_hub_connack_total CONNACK packets sent, by return code.\n");
        out.push_str("# TYPE aliot_hub_connack_total counter\n");
        for (code, c) in self.connack.iter().enumerate() {
            let _ = writeln!(out, "aliot_hub_connack_total{{code=\"{code}\"}} {}", get(c));
        }
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        one(
            "aliot_hub_connect_timeouts_total",
            "counter",
            "Connections closed because no CONNECT arrived in time.",
            get(&self.connect_timeouts),
        );
        one(
            "aliot_hub_duplicate_logins_total",
            "counter",
            "Connections closed by a second login of the same device.",
            get(&self.duplicate_logins),
        );
        one(
            "aliot_hub_keepalive_timeouts_total",
            "counter",
            "Connections closed after 1.5 x keepalive of silence.",
            get(&self.keepalive_timeouts),
        );
        one(
            "aliot_hub_protocol_errors_total",
            "counter",
            "Connections closed for malformed or forbidden packets.",
            get(&self.protocol_errors),
        );
        one(
            "aliot_hub_acl_denied_publish_total",
            "counter",
            "PUBLISH outside the device's topics (connection closed).",
            get(&self.acl_denied_publish),
        );
        one(
            "aliot_hub_acl_denied_subscribe_total",
            "counter",
            "Topic filters refused with SUBACK 0x80.",
            get(&self.acl_denied_subscribe),
        );
        one(
            "aliot_hub_messages_in_total",
            "counter",
            "PUBLISH packets received.",
            get(&self.messages_in),
        );
        one(
            "aliot_hub_messages_out_total",
            "counter",
            "PUBLISH packets sent.",
            get(&self.messages_out),
        );
        one(
            "aliot_hub_bytes_in_total",
            "counter",
            "Bytes read from devices.",
            get(&self.bytes_in),
        );
        one(
            "aliot_hub_bytes_out_total",
            "counter",
            "Bytes written to devices.",
            get(&self.bytes_out),
        );
        one(
            "aliot_hub_replies_total",
            "counter",
            "Platform replies generated for uplinks.",
            get(&self.replies),
        );
        one(
            "aliot_hub_qos0_dropped_total",
            "counter",
            "QoS 0 messages dropped because a device's outbound queue was full.",
            get(&self.qos0_dropped),
        );
        one(
            "aliot_hub_qos1_resent_total",
            "counter",
            "QoS 1 messages re-sent with DUP after a reconnect.",
            get(&self.qos1_resent),
        );
        one(
            "aliot_hub_slow_consumer_disconnects_total",
            "counter",
            "Devices disconnected because their QoS 1 outbound queue was full (messages kept for \
             clean-session-0 devices).",
            get(&self.slow_consumer_disconnects),
        );
        one(
            "aliot_hub_offline_queued_total",
            "counter",
            "QoS 1 messages put in an offline queue.",
            get(&self.offline_queued),
        );
        one(
            "aliot_hub_offline_expired_total",
            "counter",
            "Offline QoS 1 messages dropped after the retention period.",
            get(&self.offline_expired),
        );
        one(
            "aliot_hub_calls_answered_total",
            "counter",
            "Admin calls answered by devices.",
            get(&self.calls_answered),
        );
        one(
            "aliot_hub_calls_timed_out_total",
            "counter",
            "Admin calls the device did not answer in time.",
            get(&self.calls_timed_out),
        );
        one(
            "aliot_hub_dynamic_registrations_total",
            "counter",
            "Devices registered dynamically (MQTT authType=register or regnwl); refusals are counted by CONNACK code.",
            get(&self.dynamic_registrations),
        );
        one(
            "aliot_hub_device_tokens_issued_total",
            "counter",
            "deviceTokens issued by registrations without pre-registration (regnwl).",
            get(&self.device_tokens_issued),
        );
        one(
            "aliot_hub_iot_tokens_issued_total",
            "counter",
            "iotTokens issued by HTTPS pre-authentication (/auth/devicename).",
            get(&self.iot_tokens_issued),
        );
        one(
            "aliot_hub_http_tokens_issued_total",
            "counter",
            "Tokens issued for the HTTP data channel (/auth).",
            get(&self.http_tokens_issued),
        );
        one(
            "aliot_hub_http_uplinks_total",
            "counter",
            "Messages accepted over the HTTP data channel (/topic/...).",
            get(&self.http_uplinks),
        );
        let calls = self
            .openapi_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP aliot_hub_openapi_calls_total OpenAPI calls by action and result code (ok for a success).\n\
             # TYPE aliot_hub_openapi_calls_total counter"
        );
        for ((action, code), n) in calls.iter() {
            let _ = writeln!(
                out,
                "aliot_hub_openapi_calls_total{{action=\"{action}\",code=\"{code}\"}} {n}"
            );
        }
        drop(calls);
        out
    }
}
