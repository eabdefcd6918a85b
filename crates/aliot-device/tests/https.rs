//! The HTTPS auth service with the SDK against the real hub's device HTTP(S) listener, in
//! process, on loopback ports picked by the OS: dynamic registration (spec §5.1) and its
//! refusals as typed errors, pre-authentication then MQTT with `securemode=-1` (spec §5.3), the
//! renewal of a replaced iotToken, and both over TLS trusting the hub's local CA.

mod common;

use std::time::Duration;

use aliot_device::register::{Mode, RegisterOptions, register_https};
use aliot_device::{
    Device, DeviceOptions, Error, Event, Events, Login, Registration, TrustAnchors, pre_authenticate,
};
use aliot_hub::config::DeviceHttpConfig;
use aliot_protocol::{AuthCode, ConnackCode, DeviceIdentity, Endpoint};
use aliot_testkit::{TestHub, guard};
use common::fast;
use serde_json::json;

/// A hub with the device HTTP(S) listener on a free port and one product; (hub, productKey,
/// base URL of the listener).
async fn hub(tls: bool) -> (TestHub, String, String) {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.device_http = Some(DeviceHttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls,
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    // The local CA's certificate names localhost (and 127.0.0.1).
    let url = hub
        .hub()
        .device_http_url()
        .expect("the device HTTP listener")
        .replace("127.0.0.1", "localhost");
    let pk = hub.product().await;
    (hub, pk, url)
}

/// Turns the product's dynamic registration on or off; returns its productSecret.
async fn dynamic_registration(hub: &TestHub, pk: &str, on: bool) -> String {
    let (status, product) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}"),
            Some(json!({"dynamicRegistration": on})),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{product}");
    product["productSecret"]
        .as_str()
        .expect("productSecret")
        .to_owned()
}

fn mqtt(hub: &TestHub) -> Endpoint {
    Endpoint::custom("127.0.0.1", Some(hub.mqtt.port()), false).expect("endpoint")
}

fn ca(hub: &TestHub) -> std::path::PathBuf {
    hub.dir.path().join("tls").join("ca.pem")
}

fn register_options(hub: &TestHub, url: &str, pk: &str, ps: &str, dn: &str) -> RegisterOptions {
    RegisterOptions::new(mqtt(hub), pk, ps, dn, Mode::PreRegistered)
        .register_url(url)
        .timeout(Duration::from_secs(20))
}

/// The next Connected event; the Disconnected events before it.
async fn next_connected(events: &mut Events) -> (aliot_device::Connected, Vec<aliot_device::Disconnected>) {
    guard("a Connected event", async {
        let mut down = Vec::new();
        loop {
            match events.recv().await.expect("the device runs") {
                Event::Connected(c) => return (c, down),
                Event::Disconnected(d) => down.push(d),
                Event::Stopped(reason) => panic!("stopped: {reason:?}"),
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn https_registration_gives_a_secret_the_device_logs_in_with() {
    let (hub, pk, url) = hub(false).await;
    let ps = dynamic_registration(&hub, &pk, true).await;
    let old = hub.register(&pk, "lamp-1").await;

    let registration = register_https(&register_options(&hub, &url, &pk, &ps, "lamp-1"))
        .await
        .expect("registered");
    let Registration::Secret(answer) = &registration else {
        panic!("a deviceSecret expected: {registration:?}")
    };
    assert_ne!(answer.device_secret, old, "a new secret");
    assert!(!format!("{registration:?}").contains(&answer.device_secret));

    let options = fast(registration.device_options(mqtt(&hub)).expect("options"));
    let (device, _events) = Device::connect(options)
        .await
        .expect("logs in with the new secret");
    let reply = device
        .post_property(json!({"LightSwitch": 1}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    device.disconnect().await;

    // Activated by that login: 6289, typed, with the meaning and the fix.
    let e = register_https(&register_options(&hub, &url, &pk, &ps, "lamp-1"))
        .await
        .expect_err("an activated device");
    assert!(
        matches!(
            &e,
            Error::RegistrationRejected {
                code: AuthCode::AlreadyActivated,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("6289"), "{e}");
}

#[tokio::test]
async fn https_registration_refusals_are_typed() {
    let (hub, pk, url) = hub(false).await;
    let ps = dynamic_registration(&hub, &pk, true).await;
    hub.register(&pk, "lamp-2").await;
    let refused = |e: Error| match e {
        Error::RegistrationRejected { code, .. } => code,
        other => panic!("a refusal expected: {other:?}"),
    };

    let wrong = register_https(&register_options(&hub, &url, &pk, "not-the-secret", "lamp-2")).await;
    assert_eq!(
        refused(wrong.expect_err("wrong productSecret")),
        AuthCode::SignatureMismatch
    );
    let ghost = register_https(&register_options(&hub, &url, &pk, &ps, "ghost")).await;
    assert_eq!(
        refused(ghost.expect_err("not created beforehand")),
        AuthCode::ParamError
    );
    let nwl = RegisterOptions::new(mqtt(&hub), &pk, &ps, "new-1", Mode::NoPreRegistration).register_url(&url);
    let e = register_https(&nwl).await.expect_err("no HTTPS regnwl");
    assert!(matches!(&e, Error::Options(m) if m.contains("MQTT")), "{e:?}");

    let ps = dynamic_registration(&hub, &pk, false).await;
    let off = register_https(&register_options(&hub, &url, &pk, &ps, "lamp-2")).await;
    let e = off.expect_err("registration off");
    assert!(e.to_string().contains("dynamic registration"), "{e}");
    assert_eq!(refused(e), AuthCode::RegistrationOff);

    // Nobody listening: a connection error, within the timeout.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let e = register_https(&register_options(
        &hub,
        &format!("http://{closed}"),
        &pk,
        &ps,
        "lamp-2",
    ))
    .await
    .expect_err("nobody there");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
}

#[tokio::test]
async fn registration_and_pre_authentication_over_tls_trust_the_hub_local_ca() {
    let (hub, pk, url) = hub(true).await;
    assert!(url.starts_with("https://localhost:"), "{url}");
    let ps = dynamic_registration(&hub, &pk, true).await;
    hub.register(&pk, "tls-1").await;

    // The built-in Aliyun roots do not trust the hub's certificate.
    let e = register_https(&register_options(&hub, &url, &pk, &ps, "tls-1"))
        .await
        .expect_err("an untrusted certificate");
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
    let registration = register_https(&register_options(&hub, &url, &pk, &ps, "tls-1").ca_file(ca(&hub)))
        .await
        .expect("registered over TLS");
    let Registration::Secret(answer) = registration else {
        panic!("a deviceSecret expected")
    };
    let identity = DeviceIdentity::new(&pk, "tls-1", &answer.device_secret).expect("identity");
    let options = fast(DeviceOptions::with_pre_auth(identity, &url, mqtt(&hub))).ca_file(ca(&hub));
    let (device, _events) = Device::connect(options)
        .await
        .expect("pre-authenticated over TLS");
    let reply = device.post_property(json!({"Power": 3})).await.expect("reply");
    assert_eq!(reply.code, 200);
    device.disconnect().await;
}

#[tokio::test]
async fn pre_authentication_logs_in_and_renews_a_replaced_token() {
    let (hub, pk, url) = hub(false).await;
    let secret = hub.register(&pk, "pre-1").await;
    let identity = DeviceIdentity::new(&pk, "pre-1", &secret).expect("identity");
    // The configured endpoint is nowhere: the device connects where the answer says.
    let nowhere = Endpoint::custom("127.0.0.1", Some(1), false).expect("endpoint");
    let options = fast(DeviceOptions::with_pre_auth(identity, &url, nowhere));
    assert!(matches!(options.login(), Login::PreAuth { .. }));
    let (device, mut events) = Device::connect(options.clone()).await.expect("pre-authenticated");
    let session = hub.service().session(&pk, "pre-1").expect("online");
    assert!(
        session.client_id.starts_with(&format!("{pk}.pre-1|")) && session.client_id.contains("securemode=-1"),
        "{}",
        session.client_id
    );
    let reply = device
        .post_property(json!({"Temperature": 20}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    assert_eq!(next_connected(&mut events).await.0.connections, 1);

    // Someone else pre-authenticates as this device: its token replaces the device's. The next
    // login with the old token is refused (4); the device pre-authenticates again and is back.
    let newer = pre_authenticate(&options)
        .await
        .expect("a second pre-authentication");
    assert!(!format!("{newer:?}").contains(&newer.iot_token));
    assert!(hub.service().disconnect(&pk, "pre-1"));
    let (again, down) = next_connected(&mut events).await;
    assert_eq!(again.connections, 2);
    assert!(
        down.iter()
            .any(|d| d.refused == Some(ConnackCode::BadUsernameOrPassword)
                && d.retry_in == Some(Duration::ZERO)),
        "{down:?}"
    );
    let reply = device
        .post_property(json!({"Temperature": 21}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    let props = hub
        .service()
        .last_properties(&pk, "pre-1")
        .await
        .expect("stored properties");
    assert_eq!(props.get("Temperature"), Some(&json!(21)));
    device.disconnect().await;
}

#[tokio::test]
async fn pre_authentication_refusals_are_typed() {
    let (hub, pk, url) = hub(false).await;
    let secret = hub.register(&pk, "pre-2").await;
    let options = |secret: &str| {
        let identity = DeviceIdentity::new(&pk, "pre-2", secret).expect("identity");
        fast(DeviceOptions::with_pre_auth(identity, &url, mqtt(&hub)))
    };
    let e = Device::connect(options("wrong-secret"))
        .await
        .expect_err("a wrong secret");
    assert!(
        matches!(
            &e,
            Error::PreAuthRefused {
                code: AuthCode::AuthFailed,
                ..
            }
        ),
        "{e:?}"
    );
    let (s, _) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}/devices/pre-2"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s.as_u16(), 200);
    let e = pre_authenticate(&options(&secret))
        .await
        .expect_err("a disabled device");
    assert!(
        matches!(
            &e,
            Error::PreAuthRefused {
                code: AuthCode::DeviceDisabled,
                ..
            }
        ),
        "{e:?}"
    );
    let e = DeviceOptions::with_pre_auth(
        DeviceIdentity::new(&pk, "pre-2", &secret).expect("identity"),
        "ftp://x",
        mqtt(&hub),
    )
    .validate()
    .expect_err("a bad URL");
    assert!(matches!(e, Error::Options(_)), "{e:?}");
    let not_preauth = fast(DeviceOptions::new(
        DeviceIdentity::new(&pk, "pre-2", &secret).expect("identity"),
        mqtt(&hub),
    ))
    .trust(TrustAnchors::Aliyun);
    assert!(matches!(
        pre_authenticate(&not_preauth).await,
        Err(Error::Options(_))
    ));
}

#[tokio::test]
async fn pre_authentication_is_renewed_after_a_hub_restart() {
    let (hub, pk, url) = hub(false).await;
    let secret = hub.register(&pk, "pre-3").await;
    let identity = DeviceIdentity::new(&pk, "pre-3", &secret).expect("identity");
    let options = fast(DeviceOptions::with_pre_auth(identity, &url, mqtt(&hub)));
    let (device, mut events) = Device::connect(options).await.expect("pre-authenticated");
    assert_eq!(next_connected(&mut events).await.0.connections, 1);

    // The restarted hub (same data, same ports) has forgotten every iotToken: the device comes
    // back only by pre-authenticating again.
    let mqtt_addr = hub.mqtt;
    let http_addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("the listener's address");
    let dir = hub.stop().await;
    let hub = TestHub::start_with(dir, |c| {
        c.mqtt.listen = mqtt_addr;
        c.device_http = Some(DeviceHttpConfig {
            listen: http_addr,
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    let (again, down) = next_connected(&mut events).await;
    assert_eq!(again.connections, 2, "{down:?}");
    let reply = device
        .post_property(json!({"Temperature": 22}))
        .await
        .expect("reply");
    assert_eq!(reply.code, 200);
    assert!(hub.service().session(&pk, "pre-3").is_some());
    device.disconnect().await;
}
