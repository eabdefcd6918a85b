//! Raw publish/subscribe on the device's custom topics (`/{pk}/{dn}/user/...`).

mod common;

use aliot_device::{Device, Event, QoS};

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, mut events) = Device::connect(common::options()?).await?;
    let (pk, dn) = (device.product_key().to_owned(), device.device_name().to_owned());
    // Restored automatically after every reconnect.
    device
        .subscribe(&format!("/{pk}/{dn}/user/get"), QoS::AtLeastOnce)
        .await?;
    // QoS 1: returns once the platform acknowledged it.
    device
        .publish(
            &format!("/{pk}/{dn}/user/update"),
            r#"{"hello":"world"}"#,
            QoS::AtLeastOnce,
        )
        .await?;
    println!("published; waiting for messages on /{pk}/{dn}/user/get");
    while let Some(event) = events.recv().await {
        if let Event::Message(m) = event {
            println!(
                "{} (QoS {}): {}",
                m.topic,
                m.qos,
                String::from_utf8_lossy(&m.payload)
            );
        }
    }
    Ok(())
}
