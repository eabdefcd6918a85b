//! MQTT dynamic registration with the SDK against the real hub, in process, on loopback ports
//! picked by the OS: both modes, the login with what was obtained (secret, or token reused
//! verbatim across a reconnect), and the refusals as typed errors.

mod common;

use std::time::Duration;

use aliot_device::register::{Mode, RegisterOptions, register_mqtt};
use aliot_device::{Device, DeviceOptions, Error, Event, Events, Login, Registration};
use aliot_protocol::{ConnackCode, Endpoint};
use aliot_testkit::guard;
use common::{Hub, fast};
use serde_json::json;
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;

/// Turns the hub's product's dynamic registration on or off; returns its productSecret.
async fn dynamic_registration(hub: &Hub, on: bool) -> String {
    let (status, product) = hub
        .test
        .call(
            "PATCH",
            &format!("/api/v1/products/{}", hub.product_key),
            Some(json!({"dynamicRegistration": on})),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{product}");
    assert_eq!(product["dynamicRegistration"], on, "{product}");
    product["productSecret"]
        .as_str()
        .expect("productSecret")
        .to_owned()
}

fn endpoint(hub: &Hub) -> Endpoint {
    Endpoint::custom("127.0.0.1", Some(hub.test.mqtt.port()), false).expect("endpoint")
}

fn register_options(hub: &Hub, product_secret: &str, dn: &str, mode: Mode) -> RegisterOptions {
    RegisterOptions::new(endpoint(hub), &hub.product_key, product_secret, dn, mode)
        .timeout(Duration::from_secs(20))
}

/// The next Connected event (bounded by the testkit's hang guard).
async fn next_connected(events: &mut Events) -> aliot_device::Connected {
    guard("a Connected event", async {
        loop {
            match events.recv().await.expect("the device runs") {
                Event::Connected(c) => return c,
                Event::Stopped(reason) => panic!("stopped: {reason:?}"),
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_pre_registered_device_gets_a_secret_and_logs_in_with_it() {
    let hub = Hub::start(false).await;
    let product_secret = dynamic_registration(&hub, true).await;
    let old = hub.device("lamp-1").await;

    let registration = register_mqtt(&register_options(
        &hub,
        &product_secret,
        "lamp-1",
        Mode::PreRegistered,
    ))
    .await
    .expect("registered");
    let Registration::Secret(answer) = &registration else {
        panic!("a deviceSecret expected: {registration:?}")
    };
    assert_eq!(
        (answer.product_key.as_str(), answer.device_name.as_str()),
        (hub.product_key.as_str(), "lamp-1")
    );
    assert_ne!(answer.device_secret, old.device_secret(), "a new secret");

    // The old secret is no longer valid; the new one is.
    let refused = Device::connect(hub.options(old))
        .await
        .expect_err("the old secret");
    assert_eq!(refused.connack(), Some(ConnackCode::BadUsernameOrPassword));
    let options = fast(registration.device_options(endpoint(&hub)).expect("options"));
    assert!(matches!(options.login(), Login::Secret(_)));
    let (device, _events) = Device::connect(options)
        .await
        .expect("connects with the new secret");
    let reply = device
        .post_property(json!({"LightSwitch": 1}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    let props = hub
        .service()
        .last_properties(&hub.product_key, "lamp-1")
        .await
        .expect("stored properties");
    assert_eq!(props.get("LightSwitch"), Some(&json!(1)));
    device.disconnect().await;

    // Activated by that login: registering again is refused with code 5 and says why.
    let e = register_mqtt(&register_options(
        &hub,
        &product_secret,
        "lamp-1",
        Mode::PreRegistered,
    ))
    .await
    .expect_err("an activated device");
    assert_eq!(
        e,
        Error::RegistrationRefused {
            code: ConnackCode::NotAuthorized
        }
    );
    assert!(e.to_string().contains("activated"), "{e}");
}

#[tokio::test]
async fn without_pre_registration_the_device_gets_a_token_and_reconnects_with_it() {
    let hub = Hub::start(false).await;
    let product_secret = dynamic_registration(&hub, true).await;

    let registration = register_mqtt(&register_options(
        &hub,
        &product_secret,
        "new-7",
        Mode::NoPreRegistration,
    ))
    .await
    .expect("registered");
    let Registration::Token(token) = &registration else {
        panic!("a deviceToken expected: {registration:?}")
    };
    assert!(!token.device_token.is_empty());
    assert!(
        !format!("{registration:?}").contains(&token.device_token),
        "Debug redacts the token"
    );

    let options = fast(DeviceOptions::with_token(token.clone(), endpoint(&hub)));
    assert!(!format!("{options:?}").contains(&token.device_token));
    let (device, mut events) = Device::connect(options).await.expect("connects with the token");
    let session = hub.service().session(&hub.product_key, "new-7").expect("online");
    assert!(
        session.client_id.starts_with(&format!("{}|", token.client_id))
            && session.client_id.contains("authType=connwl")
            && session.client_id.contains("securemode=-2"),
        "{}",
        session.client_id
    );
    assert!(session.auto_subscribe && session.ext_rrpc, "{session:?}");
    let reply = device
        .post_property(json!({"Brightness": 40}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    assert_eq!(next_connected(&mut events).await.connections, 1);

    // The hub drops the connection: the SDK reconnects with the same token (nothing to re-sign).
    assert!(hub.service().disconnect(&hub.product_key, "new-7"));
    let again = next_connected(&mut events).await;
    assert_eq!(again.connections, 2);
    assert!(again.timestamp.is_empty(), "a token login signs no timestamp");
    let reply = device
        .post_property(json!({"Brightness": 41}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    let props = hub
        .service()
        .last_properties(&hub.product_key, "new-7")
        .await
        .expect("stored properties");
    assert_eq!(props.get("Brightness"), Some(&json!(41)));
    device.disconnect().await;

    // A wrong token is refused like a wrong secret.
    let mut wrong = token.clone();
    wrong.device_token.push('x');
    let e = Device::connect(fast(DeviceOptions::with_token(wrong, endpoint(&hub))))
        .await
        .expect_err("a wrong token");
    assert_eq!(e.connack(), Some(ConnackCode::BadUsernameOrPassword));
}

#[tokio::test]
async fn registration_over_tls_trusting_the_hub_local_ca() {
    let hub = Hub::start(true).await;
    let product_secret = dynamic_registration(&hub, true).await;
    let running = hub.test.hub();
    let addr = running.mqtts_addr().expect("TLS listener");
    let ca = running.tls_files().and_then(|f| f.ca.clone()).expect("local CA");
    let tls = Endpoint::custom("127.0.0.1", Some(addr.port()), true).expect("endpoint");
    let options = RegisterOptions::new(
        tls.clone(),
        &hub.product_key,
        &product_secret,
        "tls-1",
        Mode::NoPreRegistration,
    )
    .ca_file(&ca)
    .timeout(Duration::from_secs(20));
    let registration = register_mqtt(&options).await.expect("registered over TLS");
    let options = fast(registration.device_options(tls).expect("options")).ca_file(ca);
    let (device, _events) = Device::connect(options)
        .await
        .expect("connects over TLS with the token");
    assert_eq!(
        device.post_property(json!({"a": 1})).await.expect("reply").code,
        200
    );
    device.disconnect().await;
}

#[tokio::test]
async fn refusals_are_typed_errors_with_the_registration_cause() {
    let hub = Hub::start(false).await;
    let product_secret = dynamic_registration(&hub, false).await;

    // The product's switch is off: 5.
    let e = register_mqtt(&register_options(
        &hub,
        &product_secret,
        "d1",
        Mode::NoPreRegistration,
    ))
    .await
    .expect_err("switch off");
    assert_eq!(
        e,
        Error::RegistrationRefused {
            code: ConnackCode::NotAuthorized
        }
    );
    assert!(e.to_string().contains("dynamic registration is off"), "{e}");
    assert!(e.to_string().contains("--dynamic-registration on"), "{e}");

    // A wrong productSecret: 4, whatever the switch.
    let product_secret = dynamic_registration(&hub, true).await;
    let wrong = format!("{product_secret}x");
    let e = register_mqtt(&register_options(&hub, &wrong, "d1", Mode::NoPreRegistration))
        .await
        .expect_err("wrong product secret");
    assert_eq!(e.connack(), Some(ConnackCode::BadUsernameOrPassword));
    assert!(e.to_string().contains("productSecret"), "{e}");

    // `register` of a device nobody created: 4.
    let e = register_mqtt(&register_options(
        &hub,
        &product_secret,
        "nobody",
        Mode::PreRegistered,
    ))
    .await
    .expect_err("not pre-registered");
    assert_eq!(
        e,
        Error::RegistrationRefused {
            code: ConnackCode::BadUsernameOrPassword
        }
    );

    // An unknown product: 4.
    let options = RegisterOptions::new(
        endpoint(&hub),
        "a1Unknown",
        &product_secret,
        "d1",
        Mode::PreRegistered,
    )
    .timeout(Duration::from_secs(20));
    let e = register_mqtt(&options).await.expect_err("unknown product");
    assert_eq!(e.connack(), Some(ConnackCode::BadUsernameOrPassword));

    // Invalid input never reaches the network.
    let options = RegisterOptions::new(endpoint(&hub), "a b", &product_secret, "d1", Mode::PreRegistered);
    assert!(matches!(register_mqtt(&options).await, Err(Error::Protocol(_))));
}

/// A server that accepts the CONNECT (CONNACK 0) and then never answers.
#[tokio::test]
async fn a_platform_that_never_answers_gives_a_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let mut buf = [0u8; 512];
        let n = socket.read(&mut buf).await.expect("the CONNECT");
        assert!(n > 0 && buf[0] == 0x10, "a CONNECT packet");
        socket
            .write_all(&[0x20, 0x02, 0x00, 0x00])
            .await
            .expect("CONNACK");
        // Keep the connection open, silent, until the test is done.
        let _ = hold_rx.await;
    });
    let endpoint = Endpoint::custom("127.0.0.1", Some(port), false).expect("endpoint");
    let options = RegisterOptions::new(endpoint, "pk", "ps", "dn", Mode::PreRegistered)
        .timeout(Duration::from_millis(300));
    let e = register_mqtt(&options).await.expect_err("no answer");
    assert_eq!(
        e,
        Error::RegistrationTimeout {
            topic: "/ext/register".into(),
            timeout: Duration::from_millis(300)
        }
    );
    let _ = hold_tx.send(());
    server.await.expect("the server saw the CONNECT");
}
