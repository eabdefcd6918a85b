//! `aliot_device::gateway` against the hub (issue 13): topology, sub-device sessions singly and
//! in batches, sub-device posts and property sets on the gateway's connection, the platform's
//! codes for bad requests, and sessions restored after a reconnect.

mod common;

use std::time::Duration;

use aliot_device::gateway::{Gateway, SubDevice};
use aliot_device::{Device, Error, Event, Events};
use aliot_protocol::DeviceIdentity;
use aliot_protocol::gateway::SubDeviceKey;
use aliot_testkit::events::{next_uplink, online};
use common::Hub;
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Answers every property set of a sub-device with 200, echoing nothing.
fn answer_sets(sub: SubDevice, mut events: Events) {
    tokio::spawn(async move {
        let _sub = sub;
        while let Some(event) = events.recv().await {
            if let Event::PropertySet(set) = event {
                let _ = set.reply(Ok(json!({}))).await;
            }
        }
    });
}

fn code(e: &Error) -> Option<u32> {
    match e {
        Error::Alink { code, .. } => Some(*code),
        _ => None,
    }
}

async fn gateway(hub: &Hub, name: &str) -> (Gateway, Events) {
    let id = hub.device(name).await;
    let (device, events) = Device::connect(hub.options(id)).await.expect("gateway connects");
    (Gateway::new(device).await.expect("gateway topics"), events)
}

#[tokio::test]
async fn a_sub_device_posts_and_is_set_through_its_gateway() {
    let hub = Hub::start(false).await;
    let (gw, _gw_events) = gateway(&hub, "gw1").await;
    let s1 = hub.device("s1").await;
    let pk = hub.product_key.clone();
    let mut uplinks = hub.service().events();

    gw.add_topo(std::slice::from_ref(&s1)).await.expect("topo add");
    assert_eq!(
        gw.get_topo().await.expect("topo get"),
        vec![SubDeviceKey::new(&pk, "s1")]
    );
    let (sub, mut events) = gw.login(s1).await.expect("login");
    assert!(sub.is_logged_in());
    assert_eq!(gw.logged_in(), 1);

    let reply = sub
        .post_property(json!({"Temperature": 21.5}))
        .await
        .expect("post answered");
    assert_eq!(reply.code, 200);
    let topic = format!("/sys/{pk}/s1/thing/event/property/post");
    let seen: Value = serde_json::from_str(&next_uplink(&mut uplinks, &topic).await).expect("JSON");
    assert_eq!(seen["params"], json!({"Temperature": 21.5}));

    // A property set from the platform reaches the sub-device's own event stream.
    let service = hub.service().clone();
    let set = tokio::spawn({
        let pk = pk.clone();
        async move {
            service
                .set_property(&pk, "s1", json!({"Power": 1}), CALL_TIMEOUT)
                .await
        }
    });
    let Some(Event::PropertySet(request)) = events.recv().await else {
        panic!("expected a property set on the sub-device's stream");
    };
    assert_eq!(
        request.properties(),
        json!({"Power": 1}).as_object().cloned().expect("object")
    );
    request.reply(Ok(json!({}))).await.expect("reply sent");
    let answer = set.await.expect("task").expect("answered");
    assert_eq!(answer["code"], 200, "{answer}");

    // Logged out: the handle refuses, and the hub answers 520 to a second logout.
    gw.logout(sub.key()).await.expect("logout");
    assert!(!sub.is_logged_in());
    assert!(sub.post_property(json!({"Temperature": 1})).await.is_err());
    let e = gw.logout(sub.key()).await.expect_err("no session");
    assert_eq!(code(&e), Some(520), "{e}");
}

#[tokio::test]
async fn batches_log_in_and_out_and_bad_requests_get_the_platforms_codes() {
    let hub = Hub::start(false).await;
    let (gw, _gw_events) = gateway(&hub, "gw2").await;
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(hub.device(&format!("b{i}")).await);
    }
    let stranger = hub.device("stranger").await;

    // Login without topology: 6401; adding itself: 6402; a wrong sign: 401.
    let e = gw.login(stranger.clone()).await.expect_err("no topology");
    assert_eq!(code(&e), Some(6401), "{e}");
    let me = DeviceIdentity::new(gw.device().product_key(), "gw2", "whatever").expect("identity");
    let e = gw.add_topo(&[me]).await.expect_err("itself");
    assert!(matches!(code(&e), Some(6402 | 401)), "{e}");
    let forged = DeviceIdentity::new(stranger.product_key(), "stranger", "not-the-secret").expect("identity");
    let e = gw.add_topo(&[forged]).await.expect_err("bad sign");
    assert_eq!(code(&e), Some(401), "{e}");

    gw.add_topo(&subs).await.expect("topo add");
    // A batch with one bad sign is refused whole.
    let mut bad = subs.clone();
    bad.push(DeviceIdentity::new(stranger.product_key(), "b0", "wrong").expect("identity"));
    assert!(gw.login_batch(bad).await.is_err());
    assert_eq!(gw.logged_in(), 0);
    // Oversized batches never leave the SDK.
    let many = vec![subs[0].clone(); 51];
    assert!(matches!(gw.login_batch(many).await, Err(Error::Options(_))));

    let logged = gw.login_batch(subs.clone()).await.expect("batch login");
    assert_eq!(logged.len(), 3);
    for (sub, _) in &logged {
        assert_eq!(sub.post_property(json!({"n": 1})).await.expect("post").code, 200);
    }
    let keys: Vec<SubDeviceKey> = subs.iter().map(SubDeviceKey::from).collect();
    gw.logout_batch(&keys).await.expect("batch logout");
    assert_eq!(gw.logged_in(), 0);
    gw.delete_topo(&keys[..1]).await.expect("topo delete");
    assert_eq!(gw.get_topo().await.expect("topo get").len(), 2);
}

#[tokio::test]
async fn sub_device_sessions_are_restored_after_a_reconnect() {
    let hub = Hub::start(false).await;
    let (gw, mut gw_events) = gateway(&hub, "gw3").await;
    let s = hub.device("r1").await;
    let pk = hub.product_key.clone();
    gw.add_topo(std::slice::from_ref(&s)).await.expect("topo add");
    let (sub, events) = gw.login(s).await.expect("login");
    answer_sets(sub.clone(), events);
    let mut restores = gw.restores();
    let mut lifecycle = hub.service().events();

    assert!(hub.service().disconnect(&pk, "gw3"));
    // The gateway reconnects by itself, then logs its sub-device in again.
    loop {
        match gw_events.recv().await {
            Some(Event::Connected(_)) => break,
            Some(_) => {}
            None => panic!("gateway stopped"),
        }
    }
    restores.wait_for(|n| *n >= 1).await.expect("restored");
    online(&mut lifecycle, "r1").await;
    assert_eq!(sub.post_property(json!({"n": 2})).await.expect("post").code, 200);
    let answer = hub
        .service()
        .set_property(&pk, "r1", json!({"Power": 0}), CALL_TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(answer["code"], 200, "{answer}");
}
