//! The device-facing HTTP listener over real sockets (spec §5): HTTPS dynamic registration,
//! pre-authentication then MQTT with `securemode=-1`, bootstrap, and the HTTP data channel.

use aliot_hub::config::DeviceHttpConfig;
use aliot_protocol::sign::{dynreg_sign, sign_content};
use aliot_protocol::{HexCase, SignMethod};
use aliot_testkit::{Creds, Raw, TestHub, http_post, signed};
use hyper::StatusCode;
use serde_json::{Value, json};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A hub with the device HTTP listener on a free port; (hub, its base URL).
async fn hub() -> (TestHub, String) {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.device_http = Some(DeviceHttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    let url = hub
        .hub()
        .device_http_url()
        .expect("the device HTTP listener")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (hub, url)
}

/// A product (dynamic registration on or off) with one device; (pk, productSecret, deviceSecret).
async fn product_with(hub: &TestHub, dn: &str, dynamic: bool) -> (String, String, String) {
    let (pk, ds) = {
        let (pk, dn, ds) = hub.device(dn).await;
        drop(dn);
        (pk, ds)
    };
    let (s, p) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}"),
            Some(json!({"dynamicRegistration": dynamic})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    (pk, p["productSecret"].as_str().expect("ps").to_owned(), ds)
}

async fn post_form(url: &str, form: &str) -> Value {
    let (s, text) = http_post(url, &[FORM], form.to_owned()).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn register_form(pk: &str, dn: &str, ps: &str, method: SignMethod, name: &str) -> String {
    let sign = dynreg_sign(method, ps, dn, pk, "8Ygb7ULYh53B6OA", HexCase::Upper);
    format!("productKey={pk}&deviceName={dn}&random=8Ygb7ULYh53B6OA&sign={sign}&signMethod={name}")
}

#[tokio::test]
async fn https_registration_answers_a_new_secret_with_the_platforms_codes() {
    let (hub, url) = hub().await;
    let url = format!("{url}/auth/register/device");
    let (pk, ps, old) = product_with(&hub, "lamp", true).await;
    // As the C SDK sends it: uppercase hex, SHA-256, the method in any case.
    let v = post_form(
        &url,
        &register_form(&pk, "lamp", &ps, SignMethod::HmacSha256, "HmacSha256"),
    )
    .await;
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(v["message"], "success");
    assert_eq!(
        (v["data"]["productKey"].as_str(), v["data"]["deviceName"].as_str()),
        (Some(pk.as_str()), Some("lamp"))
    );
    let secret = v["data"]["deviceSecret"].as_str().expect("secret").to_owned();
    assert_ne!(secret, old);
    assert_eq!(hub.login(&signed(&pk, "lamp", &old)).await, 4);
    assert_eq!(hub.login(&signed(&pk, "lamp", &secret)).await, 0);
    // Activated now.
    let v = post_form(
        &url,
        &register_form(&pk, "lamp", &ps, SignMethod::HmacSha1, "hmacsha1"),
    )
    .await;
    assert_eq!(v["code"], 6289, "{v}");
    // Signed with something else than the productSecret; unknown product: 6600.
    let v = post_form(
        &url,
        &register_form(&pk, "lamp", &old, SignMethod::HmacSha1, "hmacsha1"),
    )
    .await;
    assert_eq!(v["code"], 6600, "{v}");
    let v = post_form(
        &url,
        &register_form("a1Nope", "lamp", &ps, SignMethod::HmacSha1, "hmacsha1"),
    )
    .await;
    assert_eq!(v["code"], 6600, "{v}");
    // A sign method the platform does not know: 6292.
    let v = post_form(
        &url,
        &register_form(&pk, "lamp", &ps, SignMethod::HmacSha1, "hmacsha512"),
    )
    .await;
    assert_eq!(v["code"], 6292, "{v}");
    // Not registered beforehand, missing parameters, not a form: 460.
    let v = post_form(
        &url,
        &register_form(&pk, "ghost", &ps, SignMethod::HmacMd5, "hmacmd5"),
    )
    .await;
    assert_eq!(v["code"], 460, "{v}");
    let v = post_form(&url, &format!("productKey={pk}&deviceName=lamp")).await;
    assert_eq!(v["code"], 460, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("random")), "{v}");
    let (s, text) = http_post(&url, &[("content-type", "application/json")], "{}").await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("460"), "{text}");
    // Oversized: refused whole, nothing read beyond the limit.
    let big = format!("productKey={pk}&deviceName=lamp&random={}", "r".repeat(16 * 1024));
    let (s, text) = http_post(&url, &[FORM], big).await;
    assert!(
        s == StatusCode::OK && text.contains("460") || s == StatusCode::PAYLOAD_TOO_LARGE,
        "{s} {text}"
    );
    // The product does not allow it: 6288.
    let (off, off_ps, _) = product_with(&hub, "other", false).await;
    let v = post_form(
        &url,
        &register_form(&off, "other", &off_ps, SignMethod::HmacSha1, "hmacsha1"),
    )
    .await;
    assert_eq!(v["code"], 6288, "{v}");
}

/// `/auth/devicename` as the C SDK sends it.
fn preauth_form(pk: &str, dn: &str, secret: &str) -> String {
    let client_id = format!("{pk}.{dn}");
    let content = sign_content(&client_id, dn, pk, Some("2524608000000"));
    let sign = SignMethod::HmacSha256.hex(secret.as_bytes(), content.as_bytes(), HexCase::Upper);
    format!(
        "productKey={pk}&deviceName={dn}&signmethod=hmacsha256&sign={sign}&version=default&clientId={client_id}&timestamp=2524608000000&resources=mqtt"
    )
}

fn token_login(pk: &str, dn: &str, iot_id: &str, token: &str) -> Creds {
    Creds {
        client_id: format!(
            "{pk}.{dn}|securemode=-1,_v=sdk-c-3.0.1,timestamp=2524608000000,signmethod=hmacsha256,lan=C,gw=0,ext=0|"
        ),
        username: iot_id.to_owned(),
        password: token.to_owned(),
    }
}

#[tokio::test]
async fn pre_authentication_gives_an_iot_token_for_mqtt_with_securemode_minus_1() {
    let (hub, url) = hub().await;
    let url = format!("{url}/auth/devicename");
    let (pk, dn, secret) = hub.device("c-dev").await;
    let v = post_form(&url, &preauth_form(&pk, &dn, &secret)).await;
    assert_eq!(v["code"], 200, "{v}");
    let (iot_id, token) = (
        v["data"]["iotId"].as_str().expect("iotId").to_owned(),
        v["data"]["iotToken"].as_str().expect("iotToken").to_owned(),
    );
    assert_eq!(v["data"]["resources"]["mqtt"]["port"], hub.mqtt.port(), "{v}");
    assert_eq!(v["data"]["resources"]["mqtt"]["host"], "127.0.0.1", "{v}");
    assert_eq!(hub.login(&token_login(&pk, &dn, &iot_id, &token)).await, 0);
    // A wrong token, another iotId, the token as a signature: 4.
    assert_eq!(hub.login(&token_login(&pk, &dn, &iot_id, "x")).await, 4);
    assert_eq!(hub.login(&token_login(&pk, &dn, "other-iot-id", &token)).await, 4);
    // A new pre-authentication replaces the token.
    let v = post_form(&url, &preauth_form(&pk, &dn, &secret)).await;
    let newer = v["data"]["iotToken"].as_str().expect("token").to_owned();
    assert_eq!(hub.login(&token_login(&pk, &dn, &iot_id, &token)).await, 4);
    assert_eq!(hub.login(&token_login(&pk, &dn, &iot_id, &newer)).await, 0);
    // Wrong signature or unknown device: the same 401.
    let v = post_form(&url, &preauth_form(&pk, &dn, "wrong")).await;
    assert_eq!(v["code"], 401, "{v}");
    let v = post_form(&url, &preauth_form(&pk, "nobody", &secret)).await;
    assert_eq!(v["code"], 401, "{v}");
    // Disabled: 403, and its token opens nothing any more.
    let (s, _) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}/devices/{dn}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(hub.login(&token_login(&pk, &dn, &iot_id, &newer)).await, 4);
    let v = post_form(&url, &preauth_form(&pk, &dn, &secret)).await;
    assert_eq!(v["code"], 403, "{v}");
    assert_eq!(hub.metric("aliot_hub_iot_tokens_issued_total").await, 2);
}

#[tokio::test]
async fn bootstrap_answers_this_hubs_mqtt_endpoint() {
    let (hub, url) = hub().await;
    let (pk, dn, _) = hub.device("b").await;
    let v = post_form(
        &format!("{url}/auth/bootstrap"),
        &format!("productKey={pk}&deviceName={dn}&clientId={pk}.{dn}&resources=mqtt"),
    )
    .await;
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(v["data"]["resources"]["mqtt"]["port"], hub.mqtt.port());
    let v = post_form(&format!("{url}/auth/bootstrap"), "productKey=a1Nope&deviceName=x").await;
    assert_eq!(v["code"], 460, "{v}");
}

#[tokio::test]
async fn the_http_data_channel_takes_uplinks_like_mqtt() {
    let (hub, url) = hub().await;
    let (pk, dn, secret) = hub.device("h").await;
    let auth = |secret: &str| {
        let content = sign_content(&format!("{pk}.{dn}"), &dn, &pk, Some("1700000000000"));
        let sign = SignMethod::HmacSha1.hex(secret.as_bytes(), content.as_bytes(), HexCase::Lower);
        json!({"version":"default","clientId":format!("{pk}.{dn}"),"signmethod":"hmacsha1","sign":sign,
               "productKey":pk,"deviceName":dn,"timestamp":1700000000000u64})
        .to_string()
    };
    let json_header = ("content-type", "application/json");
    let (s, text) = http_post(&format!("{url}/auth"), &[json_header], auth("wrong")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json")["code"],
        20000,
        "{text}"
    );
    let (_, text) = http_post(&format!("{url}/auth"), &[json_header], auth(&secret)).await;
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["code"], 0, "{v}");
    let token = v["info"]["token"].as_str().expect("token").to_owned();

    let post_topic = |topic: String, token: Option<String>, body: &'static str| {
        let url = format!("{url}/topic{topic}");
        async move {
            let mut headers = vec![("content-type", "application/octet-stream")];
            let t;
            if let Some(tok) = token {
                t = tok;
                headers.push(("password", t.as_str()));
            }
            let (s, text) = http_post(&url, &headers, body).await;
            assert_eq!(s, StatusCode::OK, "{text}");
            serde_json::from_str::<Value>(&text).expect("json")
        }
    };
    let post = format!("/sys/{pk}/{dn}/thing/event/property/post");
    let body =
        r#"{"id":"1","version":"1.0","params":{"Temperature":21.5},"method":"thing.event.property.post"}"#;
    let v = post_topic(post.clone(), Some(token.clone()), body).await;
    assert_eq!(v["code"], 0, "{v}");
    assert!(v["info"]["messageId"].as_u64().is_some(), "{v}");
    // Handled as over MQTT: the property is remembered.
    let (_, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/{dn}"), None)
        .await;
    assert_eq!(d["properties"]["Temperature"], 21.5, "{d}");
    // Another device's topic: 30001; no token: 20002; a wrong one: 20003.
    let v = post_topic(
        format!("/sys/{pk}/other/thing/event/property/post"),
        Some(token.clone()),
        body,
    )
    .await;
    assert_eq!(v["code"], 30001, "{v}");
    assert_eq!(post_topic(post.clone(), None, body).await["code"], 20002);
    assert_eq!(
        post_topic(post.clone(), Some("nope".into()), body).await["code"],
        20003
    );
    // Disabled: its token is invalid.
    let (s, _) = hub
        .call(
            "PATCH",
            &format!("/api/v1/products/{pk}/devices/{dn}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(post_topic(post, Some(token), body).await["code"], 20003);
    assert_eq!(hub.metric("aliot_hub_http_uplinks_total").await, 1);
    assert_eq!(hub.metric("aliot_hub_http_tokens_issued_total").await, 1);
}

#[tokio::test]
async fn the_official_node_sdk_registers_over_https_and_connects() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.device_http = Some(DeviceHttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: true,
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    let url = hub.hub().device_http_url().expect("listener").to_owned();
    assert!(url.starts_with("https://"), "{url}");
    // The local CA's certificate names localhost.
    let url = url.replace("127.0.0.1", "localhost");
    let ca = hub.dir.path().join("tls").join("ca.pem");
    assert!(ca.exists(), "the local CA at {}", ca.display());
    let (pk, ps, _) = product_with(&hub, "node-1", true).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node_register.js");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script)
        .arg(aliot_testkit::sdk_node_package())
        .arg(format!("{url}/auth/register/device"))
        .arg(hub.mqtt.port().to_string())
        .args([pk.as_str(), "node-1", ps.as_str()])
        .env("NODE_EXTRA_CA_CERTS", &ca);
    let out = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON line");
    assert_eq!(report["register"]["code"], 200, "{report}");
    assert_eq!(report["connected"], true, "{report}");
    let (_, d) = hub
        .call("GET", &format!("/api/v1/products/{pk}/devices/node-1"), None)
        .await;
    assert_eq!(d["deviceSecret"], report["register"]["data"]["deviceSecret"]);
}

// ----- hostile bodies, as a property -----

mod hostile {
    use super::*;
    use proptest::prelude::*;

    const PATHS: [&str; 6] = [
        "/auth/register/device",
        "/auth/devicename",
        "/auth/bootstrap",
        "/auth",
        "/topic/sys/a1Pk/dev/thing/event/property/post",
        "/topic/%FF%00/x",
    ];

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            // Forms with every field, values arbitrary.
            (".{0,40}", ".{0,40}", ".{0,40}", ".{0,40}").prop_map(|(a, b, c, d)| {
                format!("productKey={a}&deviceName={b}&random={c}&sign={d}&signMethod={a}&clientId={b}&timestamp={c}")
                    .into_bytes()
            }),
            // JSON of /auth with arbitrary values.
            (".{0,40}", any::<i64>()).prop_map(|(a, n)| {
                serde_json::json!({"productKey": a, "deviceName": a, "sign": a, "signmethod": a, "timestamp": n})
                    .to_string()
                    .into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever a device sends, every endpoint answers with a status (JSON with a code for
        /// 200), and the listener keeps serving.
        #[test]
        fn every_request_gets_an_answer(path in 0..PATHS.len(), form in any::<bool>(), token in proptest::option::of(".{0,40}"), body in body()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let (hub, url) = hub().await;
                let ctype = if form { "application/x-www-form-urlencoded" } else { "application/json" };
                let mut headers = vec![("content-type", ctype)];
                if let Some(t) = token.as_deref()
                    && t.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    headers.push(("password", t));
                }
                let (status, text) = http_post(&format!("{url}{}", PATHS[path]), &headers, body).await;
                if status == StatusCode::OK {
                    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                    assert!(v["code"].is_u64(), "{v}");
                } else {
                    assert!(status.is_client_error(), "{status} {text}");
                }
                // Still serving.
                let (s, _) = http_post(&format!("{url}/auth/bootstrap"), &[FORM], "productKey=a1Nope&deviceName=x").await;
                assert_eq!(s, StatusCode::OK);
                drop(hub);
            });
        }
    }
}

#[tokio::test]
async fn the_admin_pushes_a_bootstrap_notify_to_a_device() {
    let (hub, _url) = hub().await;
    let (pk, dn, secret) = hub.device("boot").await;
    let mut raw = Raw::online(hub.mqtt, &signed(&pk, &dn, &secret)).await;
    let topic = format!("/sys/{pk}/{dn}/thing/bootstrap/notify");
    let granted = raw
        .subscribe(1, &[(topic.as_str(), rmqtt_codec::v3::QoS::AtMostOnce)])
        .await;
    assert_eq!(granted.len(), 1);
    let payload = r#"{"id":"1","version":"1.0","method":"thing.bootstrap.notify","params":{"cmd":0}}"#;
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/products/{pk}/devices/{dn}/publish"),
            Some(json!({"topic": topic, "payload": payload, "qos": 0})),
        )
        .await;
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("delivered")),
        "{v}"
    );
    let p = raw.publish_in().await;
    assert_eq!(&*p.topic, topic.as_str());
    assert_eq!(&p.payload[..], payload.as_bytes());
}

/// Over HTTPS (curl trusting the hub's local CA), pre-authentication sends the device to MQTT
/// over TLS when the hub has it.
#[tokio::test]
async fn https_pre_authentication_names_the_mqtts_listener() {
    let hub = TestHub::start_with(tempfile::tempdir().expect("tempdir"), |c| {
        c.mqtts = Some(aliot_hub::config::MqttsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..aliot_hub::config::MqttsConfig::default()
        });
        c.device_http = Some(DeviceHttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: true,
            ..DeviceHttpConfig::default()
        });
    })
    .await;
    let url = hub
        .hub()
        .device_http_url()
        .expect("listener")
        .replace("127.0.0.1", "localhost");
    let mqtts = hub.hub().mqtts_addr().expect("mqtts");
    let (pk, dn, secret) = hub.device("tls-dev").await;
    let ca = hub.dir.path().join("tls").join("ca.pem");
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--cacert"]).arg(&ca).args([
        "-X",
        "POST",
        &format!("{url}/auth/devicename"),
        "--data",
        &preauth_form(&pk, &dn, &secret),
    ]);
    let out = tokio::task::spawn_blocking(move || aliot_testkit::run_guarded(cmd))
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(v["data"]["resources"]["mqtt"]["port"], mqtts.port(), "{v}");
}
