//! The client against a scripted HTTP server on 127.0.0.1:0: what each method sends (method,
//! path, token, body), how it reads the answer, and each error.

use std::time::Duration;

use aliot_admin::{
    Call, Client, CreateBatch, CreateDevice, CreateProduct, DeviceStatus, Encoding, Error, EventFilter,
    Publish, PublishOutcome, Rrpc,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server received.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A server that answers one connection per scripted answer (`Connection: close`), in order,
/// and returns what it received.
async fn server(answers: Vec<String>) -> (String, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut seen = vec![];
        for answer in answers {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = Vec::new();
            let head_end = loop {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the client closed before a whole request");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).expect("ASCII head");
            let mut lines = head.lines();
            let mut start = lines.next().expect("request line").split(' ');
            let (method, path) = (start.next().expect("method"), start.next().expect("path"));
            let header = |name: &str| {
                head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let length: usize = header("content-length").map_or(0, |v| v.parse().expect("length"));
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "the client closed before the whole body");
                buf.extend_from_slice(&chunk[..n]);
            }
            seen.push(Seen {
                method: method.to_owned(),
                path: path.to_owned(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                body: String::from_utf8(buf[head_end..head_end + length].to_vec()).expect("UTF-8"),
            });
            socket.write_all(answer.as_bytes()).await.expect("write");
            socket.shutdown().await.expect("shutdown");
        }
        seen
    });
    (url, task)
}

fn answer(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn json_answer(status: &str, body: Value) -> String {
    answer(status, "application/json", &body.to_string())
}

fn device_json(status: &str) -> Value {
    json!({
        "productKey": "a1P", "deviceName": "d", "deviceSecret": "s", "iotId": "i",
        "enabled": true, "status": status, "created": 1, "createdTime": "t",
        "lastOnline": null, "lastOnlineTime": null, "clientIp": null
    })
}

fn client(url: &str) -> Client {
    Client::new(url)
        .and_then(|c| c.with_token("tok"))
        .expect("client")
}

#[tokio::test]
async fn every_method_sends_its_request_and_reads_its_answer() {
    let product = json!({"productKey": "a1P", "name": "Lamps", "productSecret": "ps",
        "created": 1, "createdTime": "t", "deviceCount": 0});
    let creds = json!({"productKey": "a1P", "deviceName": "d", "deviceSecret": "s", "iotId": "i"});
    let (url, seen) = server(vec![
        json_answer("201 Created", product.clone()),
        json_answer("200 OK", json!([product.clone()])),
        json_answer("200 OK", product.clone()),
        json_answer("201 Created", creds.clone()),
        json_answer("201 Created", json!([creds.clone()])),
        answer("201 Created", "text/csv", "a1P,b0,s\n"),
        json_answer("200 OK", json!([device_json("online")])),
        answer("200 OK", "text/csv", "a1P,d,s\n"),
        json_answer("200 OK", device_json("offline")),
        json_answer("200 OK", device_json("offline")),
        json_answer(
            "200 OK",
            json!({"productKey": "a1P", "deviceName": "d", "deleted": true, "wasOnline": false}),
        ),
        json_answer("200 OK", json!({"outcome": "queued"})),
        json_answer("200 OK", json!({"code": 200, "data": {}})),
        json_answer("200 OK", json!({"code": 200, "data": {"ok": 1}})),
        json_answer("200 OK", json!({"payload": "/wA=", "encoding": "base64"})),
        json_answer("200 OK", json!({"status": "ok"})),
        answer("200 OK", "text/plain", "aliot_hub_registry_devices 1\n"),
    ])
    .await;
    let c = client(&url);

    let p = c
        .create_product(&CreateProduct {
            name: "Lamps".into(),
            product_key: None,
        })
        .await
        .expect("create product");
    assert_eq!(p.product_key, "a1P");
    assert_eq!(c.products().await.expect("products").len(), 1);
    assert_eq!(c.product("a1P").await.expect("product").name, "Lamps");
    let d = c
        .create_device(
            "a1P",
            &CreateDevice {
                device_name: "d".into(),
                device_secret: Some("s".into()),
            },
        )
        .await
        .expect("create device");
    assert_eq!(d.device_secret, "s");
    let batch = CreateBatch::prefixed("b", 1, None).skip_existing(true);
    assert_eq!(c.create_devices("a1P", &batch).await.expect("batch").len(), 1);
    assert_eq!(
        c.create_devices_csv("a1P", &batch).await.expect("csv batch"),
        "a1P,b0,s\n"
    );
    let online = c
        .devices("a1P", Some(DeviceStatus::Online))
        .await
        .expect("devices");
    assert_eq!(online[0].status, DeviceStatus::Online);
    assert_eq!(c.devices_csv("a1P", None).await.expect("csv"), "a1P,d,s\n");
    assert_eq!(c.device("a1P", "d").await.expect("device").device_name, "d");
    assert!(c.set_enabled("a1P", "d", false).await.expect("disable").enabled);
    assert!(c.delete_device("a1P", "d").await.expect("delete").deleted);
    let published = c
        .publish(
            "a1P",
            "d",
            &Publish {
                topic: "/a1P/d/user/get".into(),
                payload: "hi".into(),
                qos: 1,
                encoding: Encoding::Text,
            },
        )
        .await
        .expect("publish");
    assert_eq!(published.outcome, PublishOutcome::Queued);
    let call = Call {
        params: Some(json!({"P": 1})),
        timeout_ms: Some(100),
    };
    assert_eq!(
        c.set_properties("a1P", "d", &call).await.expect("set")["code"],
        200
    );
    assert_eq!(
        c.invoke_service("a1P", "d", "Reboot", &Call::default())
            .await
            .expect("invoke")["data"]["ok"],
        1
    );
    let rrpc = Rrpc {
        payload: "ping".into(),
        encoding: Encoding::Text,
        timeout_ms: None,
    };
    let answer = c.rrpc("a1P", "d", &rrpc).await.expect("rrpc");
    assert_eq!(answer.bytes().ok().as_deref(), Some(&[0xff, 0][..]));
    assert_eq!(c.health().await.expect("health").status, "ok");
    assert!(c.metrics().await.expect("metrics").contains("devices 1"));

    let seen = seen.await.expect("server");
    let requests: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        requests,
        [
            ("POST", "/api/v1/products"),
            ("GET", "/api/v1/products"),
            ("GET", "/api/v1/products/a1P"),
            ("POST", "/api/v1/products/a1P/devices"),
            ("POST", "/api/v1/products/a1P/devices:batch"),
            ("POST", "/api/v1/products/a1P/devices:batch?format=csv"),
            ("GET", "/api/v1/products/a1P/devices?status=online"),
            ("GET", "/api/v1/products/a1P/devices?format=csv"),
            ("GET", "/api/v1/products/a1P/devices/d"),
            ("PATCH", "/api/v1/products/a1P/devices/d"),
            ("DELETE", "/api/v1/products/a1P/devices/d"),
            ("POST", "/api/v1/products/a1P/devices/d/publish"),
            ("POST", "/api/v1/products/a1P/devices/d/properties"),
            ("POST", "/api/v1/products/a1P/devices/d/services/Reboot"),
            ("POST", "/api/v1/products/a1P/devices/d/rrpc"),
            ("GET", "/healthz"),
            ("GET", "/metrics"),
        ]
    );
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some("Bearer tok"), "{s:?}");
        let has_body = matches!(s.method.as_str(), "POST" | "PATCH");
        assert_eq!(s.content_type.is_some(), has_body, "{s:?}");
        assert_eq!(!s.body.is_empty(), has_body, "{s:?}");
    }
    let bodies: Vec<Value> = seen
        .iter()
        .filter(|s| !s.body.is_empty())
        .map(Seen::json)
        .collect();
    assert_eq!(
        bodies,
        [
            json!({"name": "Lamps"}),
            json!({"deviceName": "d", "deviceSecret": "s"}),
            json!({"prefix": "b", "count": 1, "skipExisting": true}),
            json!({"prefix": "b", "count": 1, "skipExisting": true}),
            json!({"enabled": false}),
            json!({"topic": "/a1P/d/user/get", "payload": "hi", "qos": 1, "encoding": "text"}),
            json!({"params": {"P": 1}, "timeout_ms": 100}),
            json!({}),
            json!({"payload": "ping", "encoding": "text"}),
        ]
    );
}

#[tokio::test]
async fn without_a_token_no_authorization_is_sent() {
    let (url, seen) = server(vec![json_answer("200 OK", json!({"status": "ok"}))]).await;
    let c = Client::new(&url).expect("client");
    c.health().await.expect("health");
    assert_eq!(seen.await.expect("server")[0].authorization, None);
}

#[tokio::test]
async fn an_error_answer_carries_the_status_code_and_message() {
    let (url, _seen) = server(vec![
        json_answer(
            "404 Not Found",
            json!({"code": "device_not_found", "message": "device a1P/x not found"}),
        ),
        answer("502 Bad Gateway", "text/plain", "oops\n"),
    ])
    .await;
    let c = client(&url);
    let e = c.device("a1P", "x").await.expect_err("404");
    assert_eq!(e.to_string(), "HTTP 404 device_not_found: device a1P/x not found");
    assert_eq!((e.status(), e.code()), (Some(404), Some("device_not_found")));
    let e = c.products().await.expect_err("502");
    assert_eq!(e.to_string(), "HTTP 502: oops");
}

#[tokio::test]
async fn an_answer_that_does_not_parse_is_a_bad_answer_with_its_serde_source() {
    let (url, _seen) = server(vec![answer("200 OK", "application/json", "{\"nope\":1}")]).await;
    let e = client(&url).products().await.expect_err("not a list");
    assert!(matches!(e, Error::BadAnswer { .. }), "{e:?}");
    assert!(e.to_string().contains("/api/v1/products"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

#[tokio::test]
async fn a_hub_that_is_not_there_is_a_connect_error_naming_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let e = client(&url).products().await.expect_err("refused");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("cannot reach the hub at {url}"));
    assert!(std::error::Error::source(&e).is_some());
}

#[tokio::test]
async fn a_silent_hub_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let _silent = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        // Hold the connection open without answering.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(socket);
    });
    let c = client(&url).with_timeout(Duration::from_millis(200));
    let e = c.products().await.expect_err("silent");
    assert!(
        matches!(e, Error::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{e:?}"
    );
}

#[tokio::test]
async fn events_are_read_one_at_a_time_until_the_hub_ends_the_stream() {
    let stream = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                  data: {\"type\":\"status\",\"deviceName\":\"d\"}\n\n:\n\n\
                  data: {\"type\":\"lagged\",\"skipped\":2}\n\n";
    let (url, seen) = server(vec![stream.to_owned()]).await;
    let filter = EventFilter {
        device_name: Some("d".into()),
        types: Some("status,lagged".into()),
        ..EventFilter::default()
    };
    let mut events = client(&url).events(&filter).await.expect("open");
    let first = events.next().await.expect("read").expect("an event");
    assert_eq!(first.data(), r#"{"type":"status","deviceName":"d"}"#);
    let second = events.next().await.expect("read").expect("an event");
    assert_eq!(second.json().expect("JSON")["skipped"], 2);
    assert!(events.next().await.expect("read").is_none());
    let seen = seen.await.expect("server");
    assert_eq!(seen[0].path, "/api/v1/events?deviceName=d&type=status,lagged");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok"));
}

#[tokio::test]
async fn an_event_stream_refused_is_an_error_answer() {
    let (url, _seen) = server(vec![json_answer(
        "401 Unauthorized",
        json!({"code": "unauthorized", "message": "missing or wrong bearer token"}),
    )])
    .await;
    let e = client(&url)
        .events(&EventFilter::default())
        .await
        .expect_err("401");
    assert_eq!(e.code(), Some("unauthorized"));
}
