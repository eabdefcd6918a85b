//! The SDK's desired-property and shadow calls against the real hub (issue 11).

mod common;

use aliot_device::{Device, Error, Event};
use common::Hub;
use serde_json::{Map, Value, json};

#[tokio::test]
async fn desired_get_and_delete_round_trip_with_versions() {
    let hub = Hub::start(false).await;
    let id = hub.device("desired-1").await;
    let (pk, dn) = (id.product_key().to_owned(), id.device_name().to_owned());
    let mut items = Map::new();
    items.insert("power".into(), json!(1));
    hub.service()
        .set_desired(&pk, &dn, items, Default::default())
        .await
        .expect("set while offline");
    // Without `_ss=1` the SDK's own subscriptions must cover the replies.
    for auto in [true, false] {
        let (device, _events) = Device::connect(hub.options(id.clone()).auto_subscribe(auto))
            .await
            .expect("connects");
        let got = device
            .desired_get(&["power", "ghost"])
            .await
            .expect("desired get");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((&got["power"].value, got["power"].version), (&json!(1), 1));
        device.disconnect().await;
    }
    let (device, _events) = Device::connect(hub.options(id.clone())).await.expect("connects");
    device
        .desired_delete(&[("power", Some(7))])
        .await
        .expect("a mismatched version is answered 200 and left alone");
    assert_eq!(device.desired_get(&["power"]).await.expect("get").len(), 1);
    device
        .desired_delete(&[("power", Some(1))])
        .await
        .expect("delete");
    assert!(device.desired_get(&["power"]).await.expect("get").is_empty());
    let many: Vec<String> = (0..201).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    match device.desired_get(&refs).await {
        Err(Error::Alink { code: 6104, .. }) => {}
        other => panic!("expected 6104, got {other:?}"),
    }
}

#[tokio::test]
async fn shadow_calls_wait_for_their_reply_and_control_arrives_as_an_event() {
    let hub = Hub::start(false).await;
    let id = hub.device("shadow-1").await;
    let (pk, dn) = (id.product_key().to_owned(), id.device_name().to_owned());
    let (device, mut events) = Device::connect(hub.options(id.clone()).auto_subscribe(false))
        .await
        .expect("connects");
    match device.shadow_get().await {
        Err(Error::Alink { code: 407, .. }) => {}
        other => panic!("expected 407 before the first write, got {other:?}"),
    }
    assert_eq!(
        device
            .shadow_update(json!({"color": "red", "n": 1}), 3)
            .await
            .expect("update"),
        3
    );
    match device.shadow_update(json!({"color": "blue"}), 3).await {
        Err(Error::Alink { code: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(device.shadow_delete(Some(&["n"]), 4).await.expect("delete"), 4);
    let doc = device.shadow_get().await.expect("get");
    assert_eq!(doc.version(), Some(4));
    assert_eq!(
        doc.state().map(|s| &s["reported"]),
        Some(&json!({"color": "red"}))
    );

    let mut desired = Map::new();
    desired.insert("color".into(), json!("green"));
    let (_, pushed) = hub
        .service()
        .update_shadow(&pk, &dn, desired, 0, false)
        .await
        .expect("desired update");
    assert!(pushed);
    let control = loop {
        match events.recv().await.expect("an event") {
            Event::Shadow(m) => break m,
            Event::Connected(_) => {}
            other => panic!("expected the control push, got {other:?}"),
        }
    };
    assert_eq!(control.method(), "control");
    assert_eq!(control.version(), Some(5));
    assert_eq!(control.desired(), Some(&json!({"color": "green"})));
    let _: Value = control.body;
}
