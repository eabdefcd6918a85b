//! The classic "simulate a device" script, in Rust: connect, subscribe to one topic, print
//! every message with a local timestamp (`%Y-%m-%d %H:%M:%S: topic qos payload`), and run a
//! command for it (the payload on stdin), forever.
//!
//! ```sh
//! ALIOT_PRODUCT_KEY=... ALIOT_DEVICE_NAME=... ALIOT_DEVICE_SECRET=... \
//!   cargo run -p aliot-device --features exec --example simulator -- /pk/dn/user/get 'cat'
//! ```
//! Unlike the script it copies, it re-signs every reconnect, backs off, and never blocks the
//! connection while the command runs. `aliot device run --subscribe T --exec CMD` does the same
//! with more options.

mod common;

use aliot_device::{Device, Event, Exec, QoS};

#[tokio::main]
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example prints what happens"
)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let options = common::options()?.keepalive(std::time::Duration::from_secs(120));
    let (device, mut events) = Device::connect(options).await?;
    let topic = args
        .next()
        .unwrap_or_else(|| format!("/{}/{}/user/get", device.product_key(), device.device_name()));
    let exec = args.next().map(Exec::shell);
    device.subscribe(&topic, QoS::AtMostOnce).await?;
    println!("subscribed to {topic}");
    while let Some(event) = events.recv().await {
        let Event::Message(m) = event else { continue };
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        println!(
            "{now}: {} {} {}",
            m.topic,
            m.qos,
            String::from_utf8_lossy(&m.payload)
        );
        if let Some(exec) = exec.clone() {
            // on_exec: act on the message, off the network loop.
            tokio::spawn(async move {
                let outcome = exec.message(&m).await;
                print!("{}", String::from_utf8_lossy(outcome.stdout()));
                if !outcome.success() {
                    eprintln!("command failed ({}): {}", outcome.status(), outcome.stderr_tail());
                }
            });
        }
    }
    Ok(())
}
