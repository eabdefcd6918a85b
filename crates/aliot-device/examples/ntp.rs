//! Synchronise with the platform's clock (NTP over MQTT) and print the offset.

mod common;

use aliot_device::Device;

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, _events) = Device::connect(common::options()?).await?;
    let sync = device.ntp().await?;
    println!(
        "platform time {} ms, local {} ms: offset {:+} ms (round trip {:?})",
        sync.server_time_ms, sync.local_time_ms, sync.offset_ms, sync.round_trip
    );
    device.disconnect().await;
    Ok(())
}
