//! Post a property every 5 seconds and print the platform's reply (`thing.event.property.post`).

mod common;

use std::time::Duration;

use aliot_device::Device;
use serde_json::json;

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, _events) = Device::connect(common::options()?).await?;
    let mut temperature = 20.0_f64;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    for _ in 0..5 {
        tick.tick().await;
        temperature += 0.5;
        // Short form; the long form {"Temperature": {"value": .., "time": ..}} works too.
        match device
            .post_property(json!({"Temperature": temperature, "LightSwitch": 1}))
            .await
        {
            Ok(reply) => println!("id {}: code {} {}", reply.id, reply.code, reply.message),
            Err(e) => println!("post failed: {e}"),
        }
    }
    device.disconnect().await;
    Ok(())
}
