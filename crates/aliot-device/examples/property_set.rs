//! Apply property sets from the platform, reading the event stream directly.
//!
//! Try it with `aliot admin device set-property ...` (or the hub's admin API).

mod common;

use aliot_device::{Device, Event, ReplyError};
use serde_json::json;

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, mut events) = Device::connect(common::options()?).await?;
    println!(
        "waiting for property sets on {}/{}",
        device.product_key(),
        device.device_name()
    );
    while let Some(event) = events.recv().await {
        if let Event::PropertySet(set) = event {
            let props = set.properties();
            println!("set {props:?} (id {})", set.id());
            let answer = if props.contains_key("Brightness") && !props["Brightness"].is_number() {
                Err(ReplyError::bad_params("Brightness must be a number"))
            } else {
                // Apply them here, then report the new state.
                Ok(json!({}))
            };
            set.reply(answer).await?;
            device.post_property(serde_json::Value::Object(props)).await?;
        }
    }
    Ok(())
}
