//! Answer raw RRPC (bytes in, bytes out on `/sys/{pk}/{dn}/rrpc/...`) and custom-topic RRPC
//! (`/ext/rrpc/{id}/{pk}/{dn}/user/get`).

mod common;

use aliot_device::{Device, Event, RrpcKind};

#[tokio::main]
#[allow(clippy::print_stdout, reason = "an example prints what happens")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (device, mut events) = Device::connect(common::options()?).await?;
    let custom = format!("/{}/{}/user/get", device.product_key(), device.device_name());
    device.subscribe_rrpc(&custom).await?;
    println!("answering raw RRPC and custom RRPC on {custom}");
    while let Some(event) = events.recv().await {
        if let Event::Rrpc(request) = event {
            let answer = match request.kind() {
                RrpcKind::Custom { topic } => format!("{topic} got {} bytes", request.payload().len()),
                _ => format!("raw request of {} bytes", request.payload().len()),
            };
            println!("RRPC {}: {answer}", request.message_id());
            request.reply(answer).await?;
        }
    }
    Ok(())
}
