//! Aliyun's OpenAPI on the hub (issue 14), driven by our own signer (`aliot_protocol::openapi`)
//! over a plain socket: the envelope, signatures V1 and V3, replay and time checks, limits, and
//! the messaging and device actions against connected devices.

use std::net::SocketAddr;

use aliot_protocol::openapi as sig;
use aliot_testkit::{TestDevice, TestHub};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// An HTTP answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), the whole answer read.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.expect("write");
    // The server may answer (and close) before reading a refused body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let body = if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn now_utc() -> String {
    let ms = aliot_hub::clock::now_ms();
    format!("{}Z", &aliot_hub::clock::format_utc(ms)[..19])
}

fn encode_form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", sig::percent_encode(k), sig::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A client with an access key.
struct Client {
    addr: SocketAddr,
    id: String,
    secret: String,
}

impl Client {
    async fn new(hub: &TestHub) -> Client {
        let key = hub
            .service()
            .create_access_key(Some("tests".into()))
            .await
            .expect("an access key");
        let url = hub.hub().openapi_url().expect("the OpenAPI is on");
        Client {
            addr: url.trim_start_matches("http://").parse().expect("an address"),
            id: key.access_key_id,
            secret: key.access_key_secret,
        }
    }

    /// The V1 common parameters plus `params`.
    fn v1_params(
        &self,
        action: &str,
        params: &[(&str, &str)],
        nonce: &str,
        timestamp: &str,
    ) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = [
            ("Action", action),
            ("Format", "JSON"),
            ("Version", "2018-01-20"),
            ("AccessKeyId", self.id.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", timestamp),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in params {
            match all.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = (*v).to_owned(),
                None => all.push(((*k).to_owned(), (*v).to_owned())),
            }
        }
        all
    }

    /// A V1 POST with everything but `body` in the query (as the Python core does), signed with
    /// `secret`.
    async fn v1_with(
        &self,
        secret: &str,
        action: &str,
        query: &[(&str, &str)],
        body: &[(&str, &str)],
        nonce: &str,
        timestamp: &str,
    ) -> Answer {
        let mut q = self.v1_params(action, query, nonce, timestamp);
        let b: Vec<(String, String)> = body
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let all = q.iter().chain(&b).map(|(k, v)| (k.as_str(), v.as_str()));
        let sts = sig::v1_string_to_sign("POST", all);
        q.push(("Signature".into(), sig::v1_sign(secret, &sts)));
        let target = format!("/?{}", encode_form(&q));
        let body = encode_form(&b);
        exchange(
            self.addr,
            "POST",
            &target,
            &[("content-type", "application/x-www-form-urlencoded".to_owned())],
            body.as_bytes(),
        )
        .await
    }

    async fn v1(&self, action: &str, query: &[(&str, &str)], body: &[(&str, &str)]) -> Answer {
        let nonce = format!("{:x}", rand_u64());
        self.v1_with(&self.secret, action, query, body, &nonce, &now_utc())
            .await
    }

    /// A V3 POST (`ACS3-HMAC-SHA256`) as the Tea SDKs send it: `query` in the URL, `body` as a
    /// form.
    async fn v3(&self, action: &str, query: &[(&str, &str)], body: &[(&str, &str)]) -> Answer {
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let b: Vec<(String, String)> = body
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let body = encode_form(&b);
        let headers: Vec<(String, String)> = vec![
            ("host".into(), self.addr.to_string()),
            ("x-acs-action".into(), action.into()),
            ("x-acs-version".into(), "2018-01-20".into()),
            ("x-acs-date".into(), now_utc()),
            ("x-acs-signature-nonce".into(), format!("{:x}", rand_u64())),
            ("x-acs-content-sha256".into(), sig::sha256_hex(body.as_bytes())),
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
        ];
        let hash = sig::sha256_hex(body.as_bytes());
        let req = sig::V3Request {
            method: "POST",
            query: &q,
            headers: &headers,
            payload_hash: &hash,
        };
        let signature = sig::v3_sign(
            &self.secret,
            &sig::v3_string_to_sign(&sig::v3_canonical_request(&req)),
        );
        let auth = sig::Authorization {
            access_key_id: self.id.clone(),
            signed_headers: headers.iter().map(|(k, _)| k.clone()).collect(),
            signature,
        };
        let mut send: Vec<(&str, String)> = headers
            .iter()
            .filter(|(k, _)| k != "host")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        send.push(("authorization", auth.to_string()));
        exchange(
            self.addr,
            "POST",
            &format!("/?{}", encode_form(&q)),
            &send,
            body.as_bytes(),
        )
        .await
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(aliot_hub::clock::now_ms());
    h.finish()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn pub_reaches_a_connected_device_and_the_envelope_has_no_code() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("oa-pub").await;
    let mut dev = TestDevice::connect(hub.mqtt, &pk, &dn, &ds).await;
    let topic = format!("/{pk}/{dn}/user/get");
    dev.subscribe(&topic).await;
    let c = Client::new(&hub).await;
    let a = c
        .v1(
            "Pub",
            &[("ProductKey", &pk), ("TopicFullName", &topic), ("Qos", "0")],
            &[("MessageContent", &b64("hello + world"))],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["Success"], json!(true), "{v}");
    assert!(v["MessageId"].is_u64(), "{v}");
    assert!(v.get("Code").is_none(), "no Code on success: {v}");
    assert_eq!(v["RequestId"].as_str().map(str::len), Some(36));
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let (t, payload) = dev.next_publish().await;
    assert_eq!(t, topic);
    assert_eq!(&payload[..], b"hello + world");

    // System topics are refused, as business errors (HTTP 200).
    let a = c
        .v1(
            "Pub",
            &[
                ("ProductKey", &pk),
                (
                    "TopicFullName",
                    &format!("/sys/{pk}/{dn}/thing/service/property/set"),
                ),
            ],
            &[("MessageContent", &b64("{}"))],
        )
        .await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["Success"], json!(false));
    assert_eq!(v["Code"], json!("iot.messagebroker.InvalidFormattedTopicName"));
    assert!(v["ErrorMessage"].is_string());

    // Not Base64.
    let v = c
        .v1(
            "Pub",
            &[("ProductKey", &pk), ("TopicFullName", &topic)],
            &[("MessageContent", "@@@")],
        )
        .await
        .json();
    assert_eq!(
        v["Code"],
        json!("iot.messagebroker.MessageContentIsNotBase64Encode")
    );
}

#[tokio::test]
async fn a_wrong_secret_gets_signature_does_not_match_with_the_server_string_to_sign() {
    let hub = TestHub::start().await;
    let c = Client::new(&hub).await;
    let a = c
        .v1_with(
            "wrong",
            "QueryDevice",
            &[("ProductKey", "a1x")],
            &[],
            "n-1",
            &now_utc(),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let v = a.json();
    assert_eq!(v["Code"], json!("SignatureDoesNotMatch"));
    let message = v["Message"].as_str().expect("a message");
    let (prefix, sts) = message.split_once(':').expect("a colon");
    assert_eq!(format!("{prefix}:"), sig::MISMATCH_MESSAGE);
    assert!(sts.starts_with("POST&%2F&AccessKeyId%3D"), "{sts}");
    assert!(v.get("Success").is_none());

    // An unknown AccessKeyId.
    let stranger = Client {
        id: "LTAInobody".into(),
        ..c
    };
    let a = stranger.v1("QueryDevice", &[("ProductKey", "a1x")], &[]).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.json()["Code"], json!("InvalidAccessKeyId.NotFound"));
}

#[tokio::test]
async fn a_replayed_nonce_and_an_old_timestamp_are_refused() {
    let hub = TestHub::start().await;
    let pk = hub.product().await;
    let c = Client::new(&hub).await;
    let now = now_utc();
    let first = c
        .v1_with(
            &c.secret,
            "QueryDevice",
            &[("ProductKey", &pk)],
            &[],
            "same",
            &now,
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = c
        .v1_with(
            &c.secret,
            "QueryDevice",
            &[("ProductKey", &pk)],
            &[],
            "same",
            &now,
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(again.json()["Code"], json!("SignatureNonceUsed"));

    let old = c
        .v1_with(
            &c.secret,
            "QueryDevice",
            &[("ProductKey", &pk)],
            &[],
            "other",
            "2020-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(old.status, 400, "{}", old.body);
    assert_eq!(old.json()["Code"], json!("InvalidTimeStamp.Expired"));
}

#[tokio::test]
async fn xml_is_answered_when_asked() {
    let hub = TestHub::start().await;
    let (pk, dn, _) = hub.device("oa-xml").await;
    let c = Client::new(&hub).await;
    let a = c
        .v1(
            "GetDeviceStatus",
            &[("ProductKey", &pk), ("DeviceName", &dn), ("Format", "xml")],
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/xml"))
    );
    assert!(a.body.contains("<GetDeviceStatusResponse>"), "{}", a.body);
    assert!(a.body.contains("<Status>UNACTIVE</Status>"), "{}", a.body);
    assert!(a.body.contains("<Success>true</Success>"), "{}", a.body);

    let a = c
        .v1_with(
            "wrong",
            "GetDeviceStatus",
            &[("Format", "XML")],
            &[],
            "x1",
            &now_utc(),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body.contains("<Error>") && a.body.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn missing_parameters_unknown_actions_and_oversized_bodies_get_the_platform_errors() {
    let hub = TestHub::start().await;
    let c = Client::new(&hub).await;
    let v = c.v1("QueryDeviceDetail", &[], &[]).await.json();
    assert_eq!(v["Success"], json!(false), "{v}");
    assert_eq!(v["Code"], json!("iot.common.InvalidFormattedParameter"));

    let a = c.v1("NoSuchAction", &[], &[]).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["Code"], json!("InvalidAction.NotFound"));

    let big = "A".repeat(aliot_hub_max_body() + 1);
    let a = exchange(
        c.addr,
        "POST",
        "/",
        &[("content-type", "application/x-www-form-urlencoded".to_owned())],
        format!("MessageContent={big}").as_bytes(),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.json()["Code"], json!("RequestTooLarge"));

    // A query string of almost 64 KiB is served (the `http` crate's URI limit is 65,534
    // bytes; longer request targets get 414).
    let long = "x".repeat(63 * 1024);
    let a = c
        .v1(
            "QueryDevice",
            &[("ProductKey", "a1none"), ("Padding", &long)],
            &[],
        )
        .await;
    assert_eq!(
        a.status,
        200,
        "{:?} {}",
        a.headers,
        &a.body[..a.body.len().min(300)]
    );
    assert_eq!(a.json()["Code"], json!("iot.prod.NotExistedProduct"));

    let longer = "x".repeat(64 * 1024);
    let a = c
        .v1(
            "QueryDevice",
            &[("ProductKey", "a1none"), ("Padding", &longer)],
            &[],
        )
        .await;
    assert_eq!(a.status, 414);

    // Unsigned.
    let a = exchange(c.addr, "GET", "/?Action=Pub", &[], b"").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["Code"], json!("MissingParameter"));
}

/// The hub's body limit (1 MiB).
fn aliot_hub_max_body() -> usize {
    1024 * 1024
}

#[tokio::test]
async fn signature_v3_is_verified() {
    let hub = TestHub::start().await;
    let (pk, dn, _) = hub.device("oa-v3.dev").await;
    let c = Client::new(&hub).await;
    let a = c
        .v3(
            "QueryDeviceDetail",
            &[("ProductKey", &pk), ("DeviceName", &dn)],
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["Data"]["DeviceName"], json!(dn), "{v}");
    assert_eq!(v["Data"]["Status"], json!("UNACTIVE"));

    let wrong = Client {
        secret: "wrong".into(),
        ..c
    };
    let a = wrong
        .v3(
            "QueryDeviceDetail",
            &[("ProductKey", &pk), ("DeviceName", &dn)],
            &[],
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let v = a.json();
    assert_eq!(v["Code"], json!("SignatureDoesNotMatch"));
    assert!(
        v["Message"]
            .as_str()
            .is_some_and(|m| m.contains(":ACS3-HMAC-SHA256\n")),
        "{v}"
    );
}

#[tokio::test]
async fn rrpc_answers_with_the_devices_bytes_or_timeout_or_offline() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("oa-rrpc").await;
    let c = Client::new(&hub).await;
    let request = b64("ping");
    let params = [
        ("ProductKey", pk.as_str()),
        ("DeviceName", dn.as_str()),
        ("Timeout", "1000"),
    ];
    let v = c
        .v1("RRpc", &params, &[("RequestBase64Byte", &request)])
        .await
        .json();
    assert_eq!(v["Success"], json!(true), "{v}");
    assert_eq!(v["RrpcCode"], json!("OFFLINE"), "{v}");

    let mut dev = TestDevice::connect(hub.mqtt, &pk, &dn, &ds).await;
    let call = {
        let (c, params, request) = (&c, params, request.clone());
        async move { c.v1("RRpc", &params, &[("RequestBase64Byte", &request)]).await }
    };
    let answer = async {
        let (topic, payload) = dev.next_publish().await;
        assert!(topic.contains("/rrpc/request/"), "{topic}");
        assert_eq!(&payload[..], b"ping");
        dev.publish(&topic.replace("/rrpc/request/", "/rrpc/response/"), "pong")
            .await;
    };
    let (a, ()) = tokio::join!(call, answer);
    let v = a.json();
    assert_eq!(v["RrpcCode"], json!("SUCCESS"), "{v}");
    assert_eq!(v["PayloadBase64Byte"], json!(b64("pong")));
    assert!(v["MessageId"].is_u64());

    // The device does not answer.
    let v = c
        .v1("RRpc", &params, &[("RequestBase64Byte", &request)])
        .await
        .json();
    assert_eq!(v["RrpcCode"], json!("TIMEOUT"), "{v}");
    let _ = dev.next_publish().await;

    let bad = [
        ("ProductKey", pk.as_str()),
        ("DeviceName", dn.as_str()),
        ("Timeout", "9000"),
    ];
    let v = c
        .v1("RRpc", &bad, &[("RequestBase64Byte", &request)])
        .await
        .json();
    assert_eq!(v["Code"], json!("iot.messagebroker.InvalidTimeoutValue"), "{v}");
}

#[tokio::test]
async fn devices_are_listed_disabled_enabled_and_deleted() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("oa-dev1").await;
    hub.register(&pk, "oa-dev2").await;
    let c = Client::new(&hub).await;
    let dev = TestDevice::connect(hub.mqtt, &pk, &dn, &ds).await;

    let v = c
        .v1("QueryDevice", &[("ProductKey", &pk), ("PageSize", "1")], &[])
        .await
        .json();
    assert_eq!(v["Total"], json!(2), "{v}");
    assert_eq!(v["PageCount"], json!(2));
    assert_eq!(v["Page"], json!(1));
    assert_eq!(v["Data"]["DeviceInfo"].as_array().map(Vec::len), Some(1));
    let v = c
        .v1("QueryDevice", &[("ProductKey", &pk), ("PageSize", "51")], &[])
        .await
        .json();
    assert_eq!(v["Code"], json!("iot.common.InvalidPageParams"), "{v}");

    let v = c
        .v1(
            "BatchGetDeviceState",
            &[
                ("ProductKey", &pk),
                ("DeviceName.1", &dn),
                ("DeviceName.2", "oa-dev2"),
            ],
            &[],
        )
        .await
        .json();
    let list = &v["DeviceStatusList"]["DeviceStatus"];
    assert_eq!(list[0]["Status"], json!("ONLINE"), "{v}");
    assert_eq!(list[1]["Status"], json!("UNACTIVE"), "{v}");
    let iot_id = list[0]["IotId"].as_str().expect("IotId").to_owned();
    let v = c
        .v1("BatchGetDeviceState", &[("IotId.1", &iot_id)], &[])
        .await
        .json();
    assert_eq!(
        v["DeviceStatusList"]["DeviceStatus"][0]["DeviceName"],
        json!(dn),
        "{v}"
    );

    let mut dev = dev;
    let v = c.v1("DisableThing", &[("IotId", &iot_id)], &[]).await.json();
    assert_eq!(v["Success"], json!(true), "{v}");
    dev.closed().await;
    let v = c.v1("GetDeviceStatus", &[("IotId", &iot_id)], &[]).await.json();
    assert_eq!(v["Data"]["Status"], json!("DISABLE"), "{v}");
    let v = c.v1("EnableThing", &[("IotId", &iot_id)], &[]).await.json();
    assert_eq!(v["Success"], json!(true), "{v}");
    let v = c.v1("GetDeviceStatus", &[("IotId", &iot_id)], &[]).await.json();
    assert_eq!(v["Data"]["Status"], json!("OFFLINE"), "{v}");

    let v = c
        .v1("DeleteDevice", &[("ProductKey", &pk), ("DeviceName", &dn)], &[])
        .await
        .json();
    assert_eq!(v["Success"], json!(true), "{v}");
    let v = c.v1("QueryDeviceDetail", &[("IotId", &iot_id)], &[]).await.json();
    assert_eq!(v["Code"], json!("iot.device.NotExistedDevice"), "{v}");
    let v = c
        .v1("RegisterDevice", &[("ProductKey", &pk), ("DeviceName", "x")], &[])
        .await
        .json();
    assert_eq!(v["Code"], json!("iot.device.InvalidFormattedDeviceName"), "{v}");
    let v = c.v1("RegisterDevice", &[("ProductKey", &pk)], &[]).await.json();
    assert_eq!(v["Data"]["DeviceName"].as_str().map(str::len), Some(20), "{v}");
}

#[tokio::test]
async fn pub_broadcast_reaches_every_online_device() {
    let hub = TestHub::start().await;
    let (pk, dn, ds) = hub.device("oa-b1").await;
    let ds2 = hub.register(&pk, "oa-b2").await;
    let c = Client::new(&hub).await;
    let mut d1 = TestDevice::connect(hub.mqtt, &pk, &dn, &ds).await;
    let mut d2 = TestDevice::connect(hub.mqtt, &pk, "oa-b2", &ds2).await;
    d1.subscribe(&format!("/sys/{pk}/{dn}/broadcast/request/+")).await;
    d2.subscribe(&format!("/sys/{pk}/oa-b2/broadcast/request/+"))
        .await;
    let v = c
        .v1(
            "PubBroadcast",
            &[("ProductKey", &pk), ("MessageContent", &b64("all"))],
            &[],
        )
        .await
        .json();
    assert_eq!(v["Success"], json!(true), "{v}");
    let id = v["MessageId"].as_u64().expect("a MessageId");
    for d in [&mut d1, &mut d2] {
        let (topic, payload) = d.next_publish().await;
        assert!(topic.ends_with(&format!("/broadcast/request/{id}")), "{topic}");
        assert_eq!(&payload[..], b"all");
    }
}

#[tokio::test]
async fn a_deleted_access_key_is_refused_and_calls_are_counted() {
    let hub = TestHub::start().await;
    let pk = hub.product().await;
    let c = Client::new(&hub).await;
    let (s, keys) = hub.call("GET", "/api/v1/access-keys", None).await;
    assert_eq!(s, hyper::StatusCode::OK);
    assert_eq!(keys[0]["accessKeyId"], json!(c.id), "{keys}");
    assert!(!keys.to_string().contains(&c.secret), "{keys}");
    assert_eq!(c.v1("QueryDevice", &[("ProductKey", &pk)], &[]).await.status, 200);

    let (s, v) = hub
        .call("DELETE", &format!("/api/v1/access-keys/{}", c.id), None)
        .await;
    assert_eq!(s, hyper::StatusCode::OK, "{v}");
    let a = c.v1("QueryDevice", &[("ProductKey", &pk)], &[]).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["Code"], json!("InvalidAccessKeyId.NotFound"));

    let (s, metrics) = aliot_testkit::http("GET", &format!("{}/metrics", hub.base), None, None).await;
    assert_eq!(s, hyper::StatusCode::OK);
    assert!(
        metrics.contains("aliot_hub_openapi_calls_total{action=\"QueryDevice\",code=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "aliot_hub_openapi_calls_total{action=\"(none)\",code=\"InvalidAccessKeyId.NotFound\"} 1"
        ),
        "{metrics}"
    );
}

/// Server-side subscription's actions: groups and a product's relation, as the admin API sees them.
#[tokio::test]
async fn consumer_groups_and_subscribe_relations_through_the_openapi() {
    let hub = TestHub::start().await;
    let pk = hub.product().await;
    let c = Client::new(&hub).await;
    let a = c
        .v1("CreateConsumerGroup", &[("GroupName", "analytics")], &[])
        .await;
    assert_eq!(a.json()["GroupId"], json!("analytics"), "{}", a.body);
    let a = c
        .v1(
            "QueryConsumerGroupList",
            &[("CurrentPage", "1"), ("PageSize", "10")],
            &[],
        )
        .await;
    let v = a.json();
    assert_eq!(v["Total"], json!(2), "{v}");
    assert_eq!(
        v["Data"]["ConsumerGroupDTO"][0]["GroupId"],
        json!("DEFAULT_GROUP"),
        "{v}"
    );
    let a = c
        .v1(
            "CreateSubscribeRelation",
            &[
                ("ProductKey", &pk),
                ("Type", "AMQP"),
                ("ConsumerGroupIds.1", "analytics"),
                ("DeviceDataFlag", "True"),
                ("DeviceStatusChangeFlag", "true"),
            ],
            &[],
        )
        .await;
    assert_eq!(a.json()["Success"], json!(true), "{}", a.body);
    let v = c
        .v1(
            "QuerySubscribeRelation",
            &[("ProductKey", &pk), ("Type", "AMQP")],
            &[],
        )
        .await
        .json();
    assert_eq!(v["ConsumerGroupIds"], json!(["analytics"]), "{v}");
    assert_eq!(
        (v["DeviceDataFlag"].clone(), v["DeviceLifeCycleFlag"].clone()),
        (json!(true), json!(false))
    );
    let (_, r) = hub
        .call("GET", &format!("/api/v1/products/{pk}/subscription"), None)
        .await;
    assert_eq!(
        r["flags"],
        json!(["DeviceDataFlag", "DeviceStatusChangeFlag"]),
        "{r}"
    );
    let a = c.v1("DeleteConsumerGroup", &[("GroupId", "nope")], &[]).await;
    assert_eq!(
        a.json()["Code"],
        json!("iot.consumergroup.NotExistedConsumerGroup"),
        "{}",
        a.body
    );
    let a = c
        .v1(
            "DeleteSubscribeRelation",
            &[("ProductKey", &pk), ("Type", "AMQP")],
            &[],
        )
        .await;
    assert_eq!(a.json()["Success"], json!(true), "{}", a.body);
    let a = c
        .v1(
            "UpdateSubscribeRelation",
            &[("ProductKey", &pk), ("ConsumerGroupIds.1", "analytics")],
            &[],
        )
        .await;
    assert_eq!(
        a.json()["Code"],
        json!("iot.subscribe.NotExistedSubscribeRelation"),
        "{}",
        a.body
    );
}
