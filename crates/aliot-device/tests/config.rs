//! Remote configuration with the SDK against the real hub (issue 11, cloud-side §4.3):
//! `config_get` (6710 without a file), `download_config` over HTTP and HTTPS with the size and
//! SHA-256 checked, a tampered description refused, and `thing.config.push` surfaced as an
//! event with the SDK's own `push_reply`.

mod common;

use aliot_device::config::ConfigInfo;
use aliot_device::{Device, Error, Event, Events};
use aliot_hub::config::DeviceHttpConfig;
use aliot_hub::service::ConfigPush;
use aliot_protocol::DeviceIdentity;
use aliot_testkit::events::next_uplink;
use aliot_testkit::guard;
use common::Hub;

const FILE: &[u8] = br#"{"sampling":10,"upload":"hourly"}"#;

async fn next_push(events: &mut Events) -> ConfigInfo {
    guard("the config push", async {
        loop {
            match events.recv().await {
                Some(Event::ConfigPush(info)) => return info,
                Some(_) => {}
                None => panic!("the device stopped"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn the_sdk_gets_downloads_and_verifies_the_config_and_answers_pushes() {
    let hub = Hub::start(false).await;
    let id = hub.device("cfg-sdk").await;
    let pk = id.product_key().to_owned();
    let (device, mut events) = Device::connect(hub.options(id)).await.expect("connects");

    match device.config_get().await {
        Err(Error::Alink { code: 6710, .. }) => {}
        other => panic!("expected 6710, got {other:?}"),
    }
    hub.service()
        .upload_config(&pk, FILE.to_vec())
        .await
        .expect("uploaded");
    let info = device.config_get().await.expect("the config's description");
    assert_eq!(info.config_size, FILE.len() as u64);
    assert_eq!(info.sign_method, "Sha256");
    let file = device
        .download_config(&info)
        .await
        .expect("downloaded and verified");
    assert_eq!(file, FILE);

    // A description that does not match the file is refused, whatever differs.
    let mut wrong = info.clone();
    wrong.sign = "0".repeat(64);
    assert!(
        matches!(device.download_config(&wrong).await, Err(Error::ConfigDownload(m)) if m.contains("SHA-256"))
    );
    let mut wrong = info.clone();
    wrong.config_size -= 1;
    assert!(matches!(
        device.download_config(&wrong).await,
        Err(Error::ConfigDownload(_))
    ));
    let mut wrong = info.clone();
    wrong.url = wrong.url.replace("signature=", "signature=0");
    match device.download_config(&wrong).await {
        Err(Error::ConfigDownload(m)) => assert!(m.contains("403"), "{m}"),
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut wrong = info.clone();
    wrong.config_size = 64 * 1024 + 1;
    assert!(
        matches!(device.download_config(&wrong).await, Err(Error::ConfigDownload(m)) if m.contains("64 KB"))
    );

    // A push: an event for the application, and the SDK's push_reply to the platform.
    let mut hub_events = hub.service().events();
    let pushed = hub.service().push_config(&pk).await.expect("pushed");
    assert!(
        matches!(
            pushed,
            ConfigPush::Pushed {
                online: 1,
                pushed: 1,
                ..
            }
        ),
        "{pushed:?}"
    );
    let announced = next_push(&mut events).await;
    assert_eq!(announced.config_id, info.config_id);
    let reply = next_uplink(
        &mut hub_events,
        &format!("/sys/{pk}/cfg-sdk/thing/config/push_reply"),
    )
    .await;
    assert!(reply.contains(r#""code":200"#), "{reply}");
    assert_eq!(
        device.download_config(&announced).await.expect("the pushed file"),
        FILE
    );
    device.disconnect().await;
}

#[tokio::test]
async fn the_sdk_downloads_over_https_trusting_the_hubs_local_ca() {
    let test = aliot_testkit::TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.device_http = Some(DeviceHttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: true,
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    let pk = test.product().await;
    let hub = Hub {
        test,
        product_key: pk.clone(),
    };
    let secret = hub.test.register(&pk, "cfg-tls").await;
    let id = DeviceIdentity::new(&pk, "cfg-tls", secret).expect("identity");
    let ca = hub.test.dir.path().join("tls").join("ca.pem");
    let (device, _events) = Device::connect(hub.options(id).ca_file(ca))
        .await
        .expect("connects");
    hub.service()
        .upload_config(&pk, FILE.to_vec())
        .await
        .expect("uploaded");
    let info = device.config_get().await.expect("info");
    assert!(info.url.starts_with("https://"), "{}", info.url);
    assert_eq!(device.download_config(&info).await.expect("over HTTPS"), FILE);
    device.disconnect().await;
}
