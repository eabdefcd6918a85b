//! MQTT dynamic registration (spec §5.2) against a whole hub on 127.0.0.1:0: `authType=register`
//! (a pre-registered device gets a new deviceSecret on `/ext/register`), `authType=regnwl` (the
//! device is created and gets a deviceToken on `/ext/regnwl`), the `authType=connwl` login with
//! that token, and every refusal.

use aliot_protocol::register::{Registered, RegisteredWithToken, connwl_client_id};
use aliot_protocol::sign::dynreg_sign;
use aliot_protocol::{HexCase, SignMethod};
use aliot_testkit::{Creds, Raw, TestHub, connect_packet, signed};
use hyper::StatusCode;
use serde_json::{Value, json};

/// A product with dynamic registration on or off; (productKey, productSecret).
async fn product(hub: &TestHub, dynamic_registration: bool) -> (String, String) {
    let (s, p) = hub
        .call("POST", "/api/v1/products", Some(json!({"name": "lamps"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["dynamicRegistration"], false, "off for a new product: {p}");
    let pk = p["productKey"].as_str().expect("productKey").to_owned();
    let (s, p) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}"),
            Some(json!({"dynamicRegistration": dynamic_registration})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["dynamicRegistration"], dynamic_registration, "{p}");
    (pk, p["productSecret"].as_str().expect("productSecret").to_owned())
}

/// Registers `dn` beforehand; returns its deviceSecret.
async fn pre_register(hub: &TestHub, pk: &str, dn: &str) -> String {
    let (s, d) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices"),
            Some(json!({"deviceName": dn})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    d["deviceSecret"].as_str().expect("deviceSecret").to_owned()
}

/// The CONNECT fields of an MQTT registration, as the official Python SDK builds them.
fn registration(auth_type: &str, pk: &str, dn: &str, product_secret: &str, random: &str) -> Creds {
    Creds {
        client_id: format!(
            "{dn}.{pk}|random={random},authType={auth_type},securemode=2,signmethod=hmacsha256|"
        ),
        username: format!("{dn}&{pk}"),
        password: dynreg_sign(
            SignMethod::HmacSha256,
            product_secret,
            dn,
            pk,
            random,
            HexCase::Lower,
        ),
    }
}

/// Registers over MQTT (keepalive 0, as a registering device may send): CONNACK 0, one PUBLISH
/// on `topic`, then the hub closes the connection. Returns the payload.
async fn registers(hub: &TestHub, c: &Creds, topic: &str) -> Vec<u8> {
    let mut raw = Raw::open(hub.mqtt).await;
    raw.send(connect_packet(c, 0, true)).await;
    assert_eq!(u8::from(raw.connack().await.return_code), 0, "CONNACK");
    let answer = raw.publish_in().await;
    assert_eq!(&*answer.topic, topic);
    raw.closed().await;
    answer.payload.to_vec()
}

/// The CONNACK code of a refused registration; the connection is closed after it.
async fn refused(hub: &TestHub, c: &Creds) -> u8 {
    let mut raw = Raw::open(hub.mqtt).await;
    raw.send(connect_packet(c, 0, true)).await;
    let code = u8::from(raw.connack().await.return_code);
    raw.closed().await;
    code
}

#[tokio::test]
async fn a_pre_registered_device_gets_a_new_secret_and_logs_in_with_it() {
    let hub = TestHub::start().await;
    let (pk, ps) = product(&hub, true).await;
    let old = pre_register(&hub, &pk, "lamp-1").await;
    let answer = registers(
        &hub,
        &registration("register", &pk, "lamp-1", &ps, "E71Lhfe8L6HLVy5"),
        "/ext/register",
    )
    .await;
    let answer = Registered::parse(&answer).expect("the /ext/register answer");
    assert_eq!(
        (answer.product_key.as_str(), answer.device_name.as_str()),
        (pk.as_str(), "lamp-1")
    );
    assert_ne!(answer.device_secret, old, "a new secret");
    // Not activated yet: it may register again, and only the last secret is valid.
    let again = registers(
        &hub,
        &registration("register", &pk, "lamp-1", &ps, "7"),
        "/ext/register",
    )
    .await;
    let again = Registered::parse(&again).expect("answer");
    assert_ne!(again.device_secret, answer.device_secret);
    assert_eq!(hub.login(&signed(&pk, "lamp-1", &old)).await, 4);
    assert_eq!(hub.login(&signed(&pk, "lamp-1", &answer.device_secret)).await, 4);
    assert_eq!(hub.login(&signed(&pk, "lamp-1", &again.device_secret)).await, 0);
    // Activated by that login: a registration is refused until the device is reset.
    assert_eq!(
        refused(&hub, &registration("register", &pk, "lamp-1", &ps, "8")).await,
        5
    );
    assert_eq!(hub.metric("aliot_hub_dynamic_registrations_total").await, 2);
    assert_eq!(hub.metric("aliot_hub_device_tokens_issued_total").await, 0);
}

#[tokio::test]
async fn without_pre_registration_the_device_is_created_and_logs_in_with_its_token() {
    let hub = TestHub::start().await;
    let (pk, ps) = product(&hub, true).await;
    let answer = registers(
        &hub,
        &registration("regnwl", &pk, "new-9", &ps, "1234"),
        "/ext/regnwl",
    )
    .await;
    let answer = RegisteredWithToken::parse(&answer).expect("the /ext/regnwl answer");
    assert_eq!(
        (answer.product_key.as_str(), answer.device_name.as_str()),
        (pk.as_str(), "new-9")
    );
    assert!(!answer.device_token.is_empty() && !answer.client_id.contains('|'));
    let (s, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/new-9"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "the device exists: {d}");

    let token_login = |token: &str| Creds {
        client_id: connwl_client_id(&answer.client_id),
        username: format!("new-9&{pk}"),
        password: token.to_owned(),
    };
    assert_eq!(hub.login(&token_login("not-the-token")).await, 4);
    assert_eq!(
        hub.login(&token_login(&answer.device_token.to_uppercase())).await,
        4
    );
    // A device token is not a deviceSecret login, and a secret is not a token.
    let secret = d["deviceSecret"].as_str().expect("secret");
    assert_eq!(hub.login(&token_login(secret)).await, 4);
    let (mut raw, ack) = Raw::connect(hub.mqtt, &token_login(&answer.device_token), true).await;
    assert_eq!(u8::from(ack.return_code), 0);
    raw.ping().await;
    drop(raw);
    // Activated: no second registration.
    assert_eq!(
        refused(&hub, &registration("regnwl", &pk, "new-9", &ps, "5")).await,
        5
    );
    assert_eq!(hub.metric("aliot_hub_device_tokens_issued_total").await, 1);
}

#[tokio::test]
async fn registrations_and_tokens_survive_a_restart() {
    let hub = TestHub::start().await;
    let (pk, ps) = product(&hub, true).await;
    pre_register(&hub, &pk, "pre").await;
    let secret = Registered::parse(
        &registers(
            &hub,
            &registration("register", &pk, "pre", &ps, "r"),
            "/ext/register",
        )
        .await,
    )
    .expect("answer")
    .device_secret;
    let token = RegisteredWithToken::parse(
        &registers(&hub, &registration("regnwl", &pk, "nwl", &ps, "r"), "/ext/regnwl").await,
    )
    .expect("answer");
    let hub = TestHub::start_in(hub.stop().await).await;
    assert_eq!(hub.login(&signed(&pk, "pre", &secret)).await, 0);
    let c = Creds {
        client_id: connwl_client_id(&token.client_id),
        username: format!("nwl&{pk}"),
        password: token.device_token.clone(),
    };
    assert_eq!(hub.login(&c).await, 0);
    let (s, p) = hub.call("GET", &format!("/api/v1/products/{pk}"), None).await;
    assert_eq!(
        (s, &p["dynamicRegistration"]),
        (StatusCode::OK, &Value::Bool(true))
    );
}

#[tokio::test]
async fn refused_registrations_get_the_platforms_codes_and_create_nothing() {
    let hub = TestHub::start().await;
    let (pk, ps) = product(&hub, true).await;
    let (off, off_ps) = product(&hub, false).await;
    pre_register(&hub, &off, "d").await;
    // Registration not allowed for the product: 5, after the signature was proven.
    assert_eq!(
        refused(&hub, &registration("register", &off, "d", &off_ps, "r")).await,
        5
    );
    assert_eq!(
        refused(&hub, &registration("regnwl", &off, "x", &off_ps, "r")).await,
        5
    );
    // A wrong productSecret (or the deviceSecret), an unknown product: 4.
    assert_eq!(
        refused(&hub, &registration("regnwl", &pk, "x", "wrong", "r")).await,
        4
    );
    assert_eq!(
        refused(&hub, &registration("regnwl", "a1Unknown", "x", &ps, "r")).await,
        4
    );
    // `register` needs the device registered beforehand: 4.
    assert_eq!(
        refused(&hub, &registration("register", &pk, "nobody", &ps, "r")).await,
        4
    );
    // No random: 2.
    let mut c = registration("register", &pk, "x", &ps, "r");
    c.client_id = format!("x.{pk}|authType=register,securemode=2,signmethod=hmacsha256|");
    assert_eq!(refused(&hub, &c).await, 2);
    // An unknown authType: 4.
    c.client_id = format!("x.{pk}|authType=other,random=r,securemode=2|");
    assert_eq!(refused(&hub, &c).await, 4);
    // A disabled device: 5.
    pre_register(&hub, &pk, "off").await;
    let (s, _) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}/devices/off"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        refused(&hub, &registration("register", &pk, "off", &ps, "r")).await,
        5
    );
    // Nothing was created by the refusals.
    let (s, list) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|d| d["deviceName"].as_str())
        .collect();
    assert_eq!(names, ["off"]);
    // A token login for a device that has no token: 4.
    let c = Creds {
        client_id: connwl_client_id("c"),
        username: format!("off&{pk}"),
        password: "00000000000000000000000000000000".into(),
    };
    assert_eq!(hub.login(&c).await, 4);
    assert_eq!(hub.metric("aliot_hub_dynamic_registrations_total").await, 0);
}

#[tokio::test]
async fn a_product_update_checks_its_body() {
    let hub = TestHub::start().await;
    let (pk, _) = product(&hub, false).await;
    let (s, e) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}"),
            Some(json!({"dynamic": true})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = hub
        .call(
            "PATCH",
            "/api/v1/products/a1Nope",
            Some(json!({"dynamicRegistration": true})),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("product_not_found"))
    );
}

/// The official Python SDK registers over MQTT (`auth_type`, the productSecret, host and port
/// only) and logs in with what it got; returns its JSON report.
fn linkkit(mode: &str, hub: &TestHub, pk: &str, dn: &str, ps: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/linkkit_dynreg.py");
    let mut cmd = std::process::Command::new(aliot_testkit::sdk_python());
    cmd.arg(script)
        .args([mode, &hub.mqtt.port().to_string(), pk, dn, ps]);
    let out = aliot_testkit::run_guarded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script's JSON line")
}

#[tokio::test]
async fn the_official_python_sdk_registers_in_both_modes_and_logs_in() {
    let hub = TestHub::start().await;
    let (pk, ps) = product(&hub, true).await;
    pre_register(&hub, &pk, "py-pre").await;
    let (hub, pk2, ps2) = (std::sync::Arc::new(hub), pk.clone(), ps.clone());
    let h = hub.clone();
    let report = tokio::task::spawn_blocking(move || linkkit("register", &h, &pk2, "py-pre", &ps2))
        .await
        .expect("the SDK run");
    assert_eq!(report["register_rc"], 0, "{report}");
    assert_eq!(report["connect_rc"], 0, "{report}");
    let secret = report["credentials"]["device_secret"].as_str().expect("a secret");
    let (_, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/py-pre"), None)
        .await;
    assert_eq!(d["deviceSecret"], secret);

    let h = hub.clone();
    let report = tokio::task::spawn_blocking(move || linkkit("regnwl", &h, &pk, "py-nwl", &ps))
        .await
        .expect("the SDK run");
    assert_eq!(report["register_rc"], 0, "{report}");
    assert_eq!(report["connect_rc"], 0, "the connwl login: {report}");
    assert!(
        report["credentials"]["client_id"]
            .as_str()
            .is_some_and(|c| c.contains("authType=connwl")),
        "{report}"
    );
}

#[tokio::test]
async fn a_reset_makes_an_activated_device_registrable_again() {
    let hub = TestHub::start().await;
    let (pk, ps) = product(&hub, true).await;
    let token = RegisteredWithToken::parse(
        &registers(&hub, &registration("regnwl", &pk, "r1", &ps, "a"), "/ext/regnwl").await,
    )
    .expect("answer");
    let path = format!("/api/v1/products/{pk}/devices/r1");
    let (_, d) = hub.call("GET", &path, None).await;
    assert_eq!(
        (&d["activated"], &d["dynamicRegistration"]),
        (&json!(false), &json!("regnwl")),
        "{d}"
    );
    assert_eq!(d["deviceToken"], token.device_token.as_str());
    let c = Creds {
        client_id: connwl_client_id(&token.client_id),
        username: format!("r1&{pk}"),
        password: token.device_token.clone(),
    };
    assert_eq!(hub.login(&c).await, 0);
    let (_, d) = hub.call("GET", &path, None).await;
    assert_eq!(d["activated"], true, "{d}");
    assert_eq!(
        refused(&hub, &registration("regnwl", &pk, "r1", &ps, "b")).await,
        5
    );
    let (s, d) = hub.call("POST", &format!("{path}/reset"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["activated"], false, "{d}");
    assert!(d.get("deviceToken").is_none(), "the token is gone: {d}");
    assert_eq!(hub.login(&c).await, 4);
    let again = RegisteredWithToken::parse(
        &registers(&hub, &registration("regnwl", &pk, "r1", &ps, "c"), "/ext/regnwl").await,
    )
    .expect("answer");
    assert_ne!(again.device_token, token.device_token);
    let (s, e) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices/nobody/reset"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("device_not_found"))
    );
}

/// A storm of registrations of the same devices from one source: every attempt gets an answer,
/// nothing is created twice or half-way, and exactly the last secret stored works.
#[tokio::test]
async fn a_registration_storm_from_one_source_leaves_one_consistent_device() {
    let hub = std::sync::Arc::new(TestHub::start().await);
    let (pk, ps) = product(&hub, true).await;
    pre_register(&hub, &pk, "stormy").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (hub, pk, ps) = (hub.clone(), pk.clone(), ps.clone());
        tasks.spawn(async move {
            let (auth, dn, topic) = if i % 2 == 0 {
                ("register", "stormy", "/ext/register")
            } else {
                ("regnwl", "fresh", "/ext/regnwl")
            };
            let c = registration(auth, &pk, dn, &ps, &format!("r{i}"));
            let mut raw = Raw::open(hub.mqtt).await;
            raw.send(connect_packet(&c, 0, true)).await;
            let code = u8::from(raw.connack().await.return_code);
            let answer = if code == 0 {
                let p = raw.publish_in().await;
                assert_eq!(&*p.topic, topic);
                Some(p.payload.to_vec())
            } else {
                None
            };
            (i, code, answer)
        });
    }
    let mut secrets = Vec::new();
    let mut tokens = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, code, answer) = r.expect("a registration task");
        assert_eq!(code, 0, "attempt {i}: an unactivated device may register again");
        let answer = answer.expect("an answer");
        if i % 2 == 0 {
            secrets.push(Registered::parse(&answer).expect("answer").device_secret);
        } else {
            tokens.push(RegisteredWithToken::parse(&answer).expect("answer").device_token);
        }
    }
    assert_eq!((secrets.len(), tokens.len()), (50, 50));
    // One device each, whatever the interleaving.
    let (_, list) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices"), None)
        .await;
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["deviceName"].as_str())
        .collect();
    assert_eq!(names, ["fresh", "stormy"]);
    // The stored secret is one of the answers, and only it logs in.
    let (_, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/stormy"), None)
        .await;
    let stored = d["deviceSecret"].as_str().expect("secret").to_owned();
    assert!(secrets.contains(&stored));
    let (_, f) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/fresh"), None)
        .await;
    let token = f["deviceToken"].as_str().expect("token").to_owned();
    assert!(tokens.contains(&token));
    let other = secrets.iter().find(|s| **s != stored).expect("another secret");
    assert_eq!(hub.login(&signed(&pk, "stormy", other)).await, 4);
    assert_eq!(hub.login(&signed(&pk, "stormy", &stored)).await, 0);
}
