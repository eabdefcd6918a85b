//! Answer service calls with the convenience handlers: the same closure serves asynchronous
//! calls (`/thing/service/{id}`) and synchronous ones over RRPC (both topic styles).
//!
//! Try it with `aliot admin device call ... Reboot '{"delay":1}'`.

mod common;

use aliot_device::{Device, Handlers, ReplyError};
use serde_json::{Value, json};

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, events) = Device::connect(common::options()?).await?;
    println!(
        "serving Reboot and Add on {}/{}",
        device.product_key(),
        device.device_name()
    );
    Handlers::new()
        .on_service("Reboot", |params| async move {
            let delay = params.get("delay").and_then(Value::as_u64).unwrap_or(0);
            // A slow handler only delays its own answer: keepalive goes on.
            tokio::time::sleep(std::time::Duration::from_secs(delay)).await;
            Ok(json!({"rebooted": true}))
        })
        .on_service("Add", |params| async move {
            let a = params
                .get("a")
                .and_then(Value::as_f64)
                .ok_or_else(|| ReplyError::bad_params("a is missing"))?;
            let b = params
                .get("b")
                .and_then(Value::as_f64)
                .ok_or_else(|| ReplyError::bad_params("b is missing"))?;
            Ok(json!({"sum": a + b}))
        })
        .on_any_service(
            |name, _params| async move { Err(ReplyError::new(460, format!("no service {name}"))) },
        )
        .run(events)
        .await;
    Ok(())
}
