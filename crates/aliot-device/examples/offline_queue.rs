//! QoS 1 messages published while the connection is down wait in a bounded queue and are
//! delivered after the reconnect (stop and restart `aliot hub` while this runs).

mod common;

use std::time::Duration;

use aliot_device::{Device, Error, Event, QoS};

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = common::options()?.outbox_capacity(100);
    let (device, mut events) = Device::connect(options).await?;
    let topic = format!("/{}/{}/user/update", device.product_key(), device.device_name());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Connected(c) => println!("connected, signed with timestamp {}", c.timestamp),
                Event::Disconnected(d) => println!("down: {} (next attempt in {:?})", d.reason, d.retry_in),
                _ => {}
            }
        }
    });
    for i in 0..120 {
        let device = device.clone();
        let topic = topic.clone();
        // Each message is delivered by the SDK even if nobody awaits it; here we report it.
        tokio::spawn(async move {
            match device
                .publish(&topic, format!("{{\"seq\":{i}}}"), QoS::AtLeastOnce)
                .await
            {
                Ok(()) => println!("#{i} acknowledged"),
                Err(Error::QueueFull { capacity }) => println!("#{i} not queued: {capacity} already waiting"),
                Err(e) => println!("#{i} failed: {e}"),
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{:?}", device.stats());
    Ok(())
}
