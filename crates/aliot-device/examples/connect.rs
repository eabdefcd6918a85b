//! Connect (TCP or TLS), print every connection event, stop on Ctrl-C.
//!
//! ```sh
//! ALIOT_PRODUCT_KEY=... ALIOT_DEVICE_NAME=... ALIOT_DEVICE_SECRET=... cargo run -p aliot-device --example connect
//! ALIOT_TLS=1 ALIOT_PORT=8883 ALIOT_CA_FILE=~/.local/share/aliot/tls/ca.pem ... --example connect
//! ```
//! A wrong secret shows the refusal: CONNACK code, Aliyun's cause and the fix.

mod common;

use aliot_device::{Device, Error, Event};

#[tokio::main]
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example prints what happens"
)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = common::options()?;
    let (device, mut events) = match Device::connect(options).await {
        Ok(connected) => connected,
        Err(Error::Refused { code }) => {
            eprintln!(
                "refused: CONNACK {code}\ncause: {}\nfix: {}",
                code.cause(),
                code.hint()
            );
            std::process::exit(1);
        }
        Err(e) => return Err(e.into()),
    };
    println!("connected as {}/{}", device.product_key(), device.device_name());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                device.disconnect().await;
                println!("disconnected");
                return Ok(());
            }
            event = events.recv() => match event {
                Some(Event::Connected(c)) => println!("connected: clientId {} (connection #{})", c.client_id, c.connections),
                Some(Event::Disconnected(d)) => println!("disconnected: {} (retry in {:?})", d.reason, d.retry_in),
                Some(Event::Stopped(reason)) => {
                    println!("stopped: {reason:?}");
                    return Ok(());
                }
                Some(other) => println!("{other:?}"),
                None => return Ok(()),
            }
        }
    }
}
