//! The admin-API side of the `downlink` and `rrpc` workloads: `concurrency` callers walk the
//! devices of this process round-robin until the hold ends, each call a synchronous round trip
//! through the hub to the device and back (property set → set_reply, service call → RRPC reply).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinSet;
use tokio::time::Instant;

use aliot_admin::Call;

use crate::error::chain;
use crate::fleet::Fleet;
use crate::settings::Workload;
use crate::stats::{Stats, now_us};

/// Calls until `until`; returns when every caller is done.
pub(crate) async fn run(fleet: Arc<Fleet>, until: Instant) {
    let Some(admin) = fleet.settings.admin.clone() else {
        return;
    };
    let client = match admin.client() {
        Ok(c) => c,
        Err(e) => {
            fleet.note_error(chain(&e));
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut callers = JoinSet::new();
    for _ in 0..fleet.settings.concurrency {
        let (fleet, client, next) = (fleet.clone(), client.clone(), next.clone());
        callers.spawn(async move {
            let n = fleet.devices.len();
            while Instant::now() < until && n > 0 {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let idx = i % n;
                let d = &fleet.devices[idx];
                let t0 = now_us();
                Stats::inc(&fleet.stats.sent);
                let answer = match fleet.settings.workload {
                    Workload::Rrpc => {
                        let call = Call {
                            params: Some(serde_json::json!({ "seq": i })),
                            timeout_ms: None,
                        };
                        client
                            .invoke_service(&d.product_key, &d.device_name, &fleet.settings.service_id, &call)
                            .await
                    }
                    _ => {
                        let call = Call {
                            params: Some(serde_json::json!({ "Seq": i })),
                            timeout_ms: None,
                        };
                        client.set_properties(&d.product_key, &d.device_name, &call).await
                    }
                };
                match answer {
                    Ok(reply) if device_code_ok(&reply) => {
                        Stats::inc(&fleet.stats.replied);
                        fleet.stats.reply.record(idx, now_us().saturating_sub(t0));
                        fleet.stats.mark_reply();
                    }
                    Ok(reply) => {
                        Stats::inc(&fleet.stats.reply_errors);
                        let text = reply.to_string();
                        fleet.note_error(format!(
                            "{}/{}: device answered {}",
                            d.product_key,
                            d.device_name,
                            &text[..text.len().min(200)]
                        ));
                    }
                    Err(e) => {
                        Stats::inc(&fleet.stats.reply_errors);
                        fleet.note_error(format!("{}/{}: {}", d.product_key, d.device_name, chain(&e)));
                    }
                }
            }
        });
    }
    while callers.join_next().await.is_some() {}
}

/// A 2xx answer whose body carries the device's Alink `code` counts only when that code is 200.
fn device_code_ok(reply: &serde_json::Value) -> bool {
    match reply.get("code") {
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(200),
        Some(serde_json::Value::String(s)) => s == "200",
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_device_code_other_than_200_should_fail_a_2xx_answer() {
        assert!(device_code_ok(
            &serde_json::json!({"id": "1", "code": 200, "data": {}})
        ));
        assert!(device_code_ok(&serde_json::json!({"reply": {"id": "1"}})));
        assert!(!device_code_ok(&serde_json::json!({"id": "1", "code": 460})));
    }
}
