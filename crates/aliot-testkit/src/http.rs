//! HTTP helpers: one request to a hub's admin API, and the admin router without a socket.

use std::sync::Arc;

use aliot_hub::admin::{AdminState, AdminToken, router};
use aliot_hub::registry::{RedbRegistry, Registry};
use aliot_hub::{Broker, BrokerConfig};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt as _;

use crate::guard::guard;

/// The admin token of every test hub.
pub const TOKEN: &str = "test-admin-token-0123456789";

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
        .expect("a valid request");
    let resp = guard("the HTTP answer", client.request(req))
        .await
        .expect("the HTTP request");
    let status = resp.status();
    let bytes = guard("the HTTP body", resp.into_body().collect())
        .await
        .expect("the body")
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"))
}

/// One `POST` with these headers and body bytes (forms, device payloads); the answer as
/// (status, text).
pub async fn http_post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> (StatusCode, String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method("POST").uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body.into())).expect("a valid request");
    let resp = guard("the HTTP answer", client.request(req))
        .await
        .expect("the HTTP request");
    let status = resp.status();
    let bytes = guard("the HTTP body", resp.into_body().collect())
        .await
        .expect("the body")
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"))
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

/// The admin router over a redb registry and a broker that serves nothing (no socket).
#[derive(Debug)]
pub struct OfflineAdmin {
    /// The data directory.
    pub dir: TempDir,
    /// The registry.
    pub registry: Arc<RedbRegistry>,
    /// The broker (not serving).
    pub broker: Broker,
    /// The admin API.
    pub app: axum::Router,
}

impl OfflineAdmin {
    /// A fresh registry in a temporary directory, and the admin API over it with [`TOKEN`].
    pub async fn new() -> OfflineAdmin {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let registry = Arc::new(RedbRegistry::open(dir.path()).await.expect("the registry"));
        let dyn_registry: Arc<dyn Registry> = registry.clone();
        let broker = Broker::new(BrokerConfig::default(), dyn_registry);
        let state = AdminState::new(
            broker.service().clone(),
            AdminToken::new(TOKEN).expect("a valid token"),
        );
        OfflineAdmin {
            dir,
            registry,
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
            .expect("a valid request");
        let resp = self
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the body");
        (
            status,
            String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"),
            ctype,
        )
    }

    /// One JSON request with [`TOKEN`]; (status, JSON or `null`).
    pub async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text, _) = self.send(method, path, Some(TOKEN), body.as_deref()).await;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        };
        (status, v)
    }
}

/// One blocking HTTP/1.1 request that may fail: `None` when the server cannot be reached or
/// the connection breaks (a hub being killed), else (status, body). For tests that stop a hub
/// under load; every read is bounded by the hang guard.
pub fn try_request(
    base_url: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let addr = base_url.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(crate::GUARD)).ok()?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8(answer).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}
