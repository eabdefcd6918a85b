//! Post an event (`thing.event.{id}.post`) with its output values and print the reply.

mod common;

use aliot_device::Device;
use serde_json::json;

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, _events) = Device::connect(common::options()?).await?;
    // Sent as {"value": {...}, "time": <now>}.
    let reply = device
        .post_event("HighTemperature", json!({"Temperature": 85.5, "Level": 2}))
        .await?;
    println!("event accepted: code {} (id {})", reply.code, reply.id);
    device.disconnect().await;
    Ok(())
}
