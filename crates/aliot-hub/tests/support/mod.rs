//! Helpers for the admin and registry tests: a full hub through `aliot_hub::start` on
//! 127.0.0.1:0, an HTTP client, the admin router without a socket, and a signed rumqttc device.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aliot_hub::admin::{AdminState, AdminToken, router};
use aliot_hub::store::Store;
use aliot_hub::{Broker, BrokerConfig, Config, RunningHub};
use aliot_protocol::{DeviceIdentity, SignOptions, sign};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, Incoming, MqttOptions, PublishOptions, QoS};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// Guard against a hung test; never used to wait for something to happen.
pub const GUARD: Duration = Duration::from_secs(20);

/// The admin token of every test hub.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// Runs `fut` with the hang guard.
pub async fn guard<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A hub started in-process on loopback ports chosen by the system.
pub struct TestHub {
    pub hub: Option<RunningHub>,
    pub dir: TempDir,
    pub base: String,
    pub mqtt: SocketAddr,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_in(tempfile::tempdir().expect("tempdir")).await
    }

    pub async fn start_in(dir: TempDir) -> TestHub {
        let mut config = Config {
            data_dir: Some(dir.path().to_owned()),
            ..Config::default()
        };
        config.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.token = Some(TOKEN.into());
        let hub = aliot_hub::start(config, std::future::pending())
            .await
            .expect("hub starts");
        let base = hub.admin_url().to_owned();
        let mqtt = hub.mqtt_addr();
        TestHub {
            hub: Some(hub),
            dir,
            base,
            mqtt,
        }
    }

    pub fn hub(&self) -> &RunningHub {
        self.hub.as_ref().expect("running")
    }

    /// Stops the hub and returns its data directory (for a restart).
    pub async fn stop(mut self) -> TempDir {
        if let Some(hub) = self.hub.take() {
            guard("hub stop", hub.stop()).await.expect("clean stop");
        }
        self.dir
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        http_json(method, &format!("{}{path}", self.base), Some(TOKEN), body).await
    }

    /// Creates a product and a device; returns (productKey, deviceName, deviceSecret).
    pub async fn device(&self, dn: &str) -> (String, String, String) {
        let (s, p) = self
            .call(
                "POST",
                "/api/v1/products",
                Some(serde_json::json!({"name": "test"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let pk = p["productKey"].as_str().expect("productKey").to_owned();
        let (s, d) = self
            .call(
                "POST",
                &format!("/api/v1/products/{pk}/devices"),
                Some(serde_json::json!({"deviceName": dn})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        (
            pk,
            dn.to_owned(),
            d["deviceSecret"].as_str().expect("secret").to_owned(),
        )
    }
}

/// One HTTP request; the answer as (status, text).
pub async fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let resp = guard("HTTP answer", client.request(req))
        .await
        .expect("HTTP request");
    let status = resp.status();
    let bytes = guard("HTTP body", resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8 body"))
}

/// One JSON request; the answer as (status, JSON or `null` for an empty body).
pub async fn http_json(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, text) = http(method, url, token, body.map(|b| b.to_string())).await;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, value)
}

/// The admin router over a registry and a broker that serves nothing (no socket).
pub struct Offline {
    pub dir: TempDir,
    pub store: Store,
    pub broker: Broker,
    pub app: axum::Router,
}

impl Offline {
    pub async fn new() -> Offline {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("store");
        let broker = Broker::new(BrokerConfig::default(), Arc::new(store.clone()));
        let state = AdminState::new(
            store.clone(),
            broker.clone(),
            AdminToken::new(TOKEN).expect("token"),
        );
        Offline {
            dir,
            store,
            broker,
            app: router(state),
        }
    }

    /// One request through the router; (status, body text, content type).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut req = axum::http::Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(axum::body::Body::from(body.unwrap_or_default().to_owned()))
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8(bytes.to_vec()).expect("utf-8"), ctype)
    }

    pub async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text, _) = self.send(method, path, Some(TOKEN), body.as_deref()).await;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, v)
    }
}

/// What a test device saw.
#[derive(Debug)]
pub enum DevEvent {
    Publish {
        topic: String,
        payload: Bytes,
    },
    SubAck,
    /// The connection ended (the event loop's error).
    Closed(String),
}

/// A device on rumqttc, signed like the Python SDK (`_ss=1`), whose event loop runs in a task.
pub struct TestDevice {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<DevEvent>,
    pub pk: String,
    pub dn: String,
    task: JoinHandle<()>,
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Signed CONNECT options for a device.
pub fn options(addr: SocketAddr, pk: &str, dn: &str, secret: &str) -> MqttOptions {
    let id = DeviceIdentity::new(pk, dn, secret).expect("identity");
    let creds = sign(
        &id,
        &SignOptions {
            timestamp: Some("2524608000000".into()),
            extra_params: vec![("_ss".into(), "1".into())],
            ..SignOptions::default()
        },
    )
    .expect("sign");
    let mut opts = MqttOptions::new(
        creds.client_id.clone(),
        rumqttc::Broker::tcp("127.0.0.1", addr.port()),
    );
    opts.set_credentials(creds.username.clone(), creds.password.clone());
    opts.set_keep_alive(60);
    opts
}

impl TestDevice {
    /// Connects and waits for CONNACK 0. The event loop stops at the first error (no
    /// reconnection), which it reports as [`DevEvent::Closed`].
    pub async fn connect(addr: SocketAddr, pk: &str, dn: &str, secret: &str) -> TestDevice {
        match Self::try_connect(addr, pk, dn, secret).await {
            Ok(d) => d,
            Err(e) => panic!("device {pk}/{dn} could not connect: {e}"),
        }
    }

    /// Connects; the event loop's first error when the CONNECT is refused.
    pub async fn try_connect(
        addr: SocketAddr,
        pk: &str,
        dn: &str,
        secret: &str,
    ) -> Result<TestDevice, ConnectionError> {
        let (client, mut eventloop) = AsyncClient::builder(options(addr, pk, dn, secret)).build();
        // The CONNACK, before handing the loop to a task.
        guard("CONNACK", async {
            loop {
                match eventloop.poll().await? {
                    MqttEvent::Incoming(Incoming::ConnAck(_)) => return Ok::<(), ConnectionError>(()),
                    _ => continue,
                }
            }
        })
        .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Incoming::Publish(p))) => DevEvent::Publish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.clone(),
                    },
                    Ok(MqttEvent::Incoming(Incoming::SubAck(_))) => DevEvent::SubAck,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(DevEvent::Closed(e.to_string()));
                        return;
                    }
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        });
        Ok(TestDevice {
            client,
            rx,
            pk: pk.to_owned(),
            dn: dn.to_owned(),
            task,
        })
    }

    /// The next message the device receives.
    pub async fn next_publish(&mut self) -> (String, Bytes) {
        guard("a message to the device", async {
            loop {
                match self.rx.recv().await {
                    Some(DevEvent::Publish { topic, payload }) => return (topic, payload),
                    Some(DevEvent::SubAck) => {}
                    Some(DevEvent::Closed(e)) => panic!("connection closed while waiting for a message: {e}"),
                    None => panic!("event loop gone"),
                }
            }
        })
        .await
    }

    /// Waits for the connection to end; returns the reason.
    pub async fn closed(&mut self) -> String {
        guard("the connection to close", async {
            loop {
                match self.rx.recv().await {
                    Some(DevEvent::Closed(e)) => return e,
                    Some(_) => {}
                    None => panic!("event loop gone"),
                }
            }
        })
        .await
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter.to_owned(), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        guard("SUBACK", async {
            loop {
                match self.rx.recv().await {
                    Some(DevEvent::SubAck) => return,
                    Some(DevEvent::Closed(e)) => panic!("closed: {e}"),
                    Some(_) => {}
                    None => panic!("event loop gone"),
                }
            }
        })
        .await;
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(
                topic.to_owned(),
                Bytes::from(payload.into()),
                PublishOptions::at_least_once(),
            )
            .await
            .expect("publish");
    }
}
