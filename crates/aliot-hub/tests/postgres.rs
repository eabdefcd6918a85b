//! A whole hub on the registry on PostgreSQL (`[registry] url`), on a PostgreSQL started for the
//! test by `scripts/local-infra.sh`: devices registered through the admin API log in; a
//! PostgreSQL outage makes `/healthz` answer 503 while connected devices are served; the hub
//! recovers when PostgreSQL is back.

use aliot_testkit::infra::Infra;
use aliot_testkit::wire::QoS;
use aliot_testkit::{Raw, Signing, TestHub, creds_with, guard, http};
use hyper::StatusCode;
use serde_json::json;

async fn healthz(hub: &TestHub) -> (StatusCode, String) {
    http("GET", &format!("{}/healthz", hub.base), None, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_postgres_serves_devices_through_an_outage() {
    let infra = Infra::postgres();
    let url = infra.pg().to_owned();
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.registry.url = Some(url)
    })
    .await;
    let (pk, dn, secret) = hub.device("lamp").await;
    let creds = creds_with(&Signing {
        product_key: &pk,
        device_name: &dn,
        secret: &secret,
        ..Signing::default()
    });
    let mut device = Raw::online(hub.mqtt, &creds).await;
    let reply = format!("/sys/{pk}/{dn}/thing/event/property/post_reply");
    assert_eq!(device.subscribe(1, &[(&reply, QoS::AtMostOnce)]).await.len(), 1);
    assert_eq!(healthz(&hub).await.0, StatusCode::OK);

    infra.stop_pg();
    guard("/healthz to report the outage", async {
        while healthz(&hub).await.0 != StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let (_, body) = healthz(&hub).await;
    assert!(body.contains("PostgreSQL"), "{body}");
    // The connected device is still served: its property post is answered, a ping too.
    device
        .publish(
            &format!("/sys/{pk}/{dn}/thing/event/property/post"),
            r#"{"id":"7","version":"1.0","params":{"power":1},"method":"thing.event.property.post"}"#,
            QoS::AtMostOnce,
            0,
        )
        .await;
    let answer = device.publish_in().await;
    assert_eq!(answer.topic, reply);
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).expect("JSON");
    assert_eq!(
        (answer["id"].as_str(), answer["code"].as_u64()),
        (Some("7"), Some(200)),
        "{answer}"
    );
    device.ping().await;
    // A registration cannot be stored: refused, not acknowledged.
    let (s, _) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices"),
            Some(json!({"deviceName": "later"})),
        )
        .await;
    assert!(s.is_server_error(), "{s}");

    infra.start_pg();
    guard("/healthz to recover", async {
        while healthz(&hub).await.0 != StatusCode::OK {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let (s, d) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices"),
            Some(json!({"deviceName": "later"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let later = creds_with(&Signing {
        product_key: &pk,
        device_name: "later",
        secret: d["deviceSecret"].as_str().expect("secret"),
        ..Signing::default()
    });
    assert_eq!(hub.login(&later).await, 0);
    device.ping().await;
    hub.stop().await;
}
