//! [`Client`]: one async method per admin API endpoint.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::data_dir;
use crate::device::{
    BatchQuery, CreateBatch, CreateDevice, Credentials, Deleted, DeviceStatus, DeviceView, Format, ListQuery,
    UpdateDevice,
};
use crate::downlink::{Call, Publish, Published, Rrpc, RrpcAnswer};
use crate::error::{Error, Result};
use crate::event::{EventFilter, EventStream};
use crate::health::Health;
use crate::product::{CreateProduct, ProductView, TslSummary, UpdateProduct};
use crate::wire::{query, segment};

/// How long a request may take by default (answer included). Calls that wait for a device get
/// their device deadline on top.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The hub's default deadline for a device's answer (its `rrpc_timeout`), used to size the
/// wait of a call that gives no `timeout_ms`.
const HUB_CALL_DEADLINE: Duration = Duration::from_secs(8);

/// An admin API client: a base URL, a bearer token and a keep-alive connection pool.
///
/// A cheap `Clone` (the pool is shared). `Debug` never shows the token, and neither do the
/// client's logs (`tracing` at debug level: method, URL, status).
#[derive(Clone)]
pub struct Client {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    /// The base URL, without a trailing `/`.
    base: Arc<str>,
    /// `Bearer <token>`, marked sensitive.
    auth: Option<HeaderValue>,
    pub(crate) timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base)
            .field("token", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the admin API at `base_url` (`http://127.0.0.1:8080`; a trailing `/` is
    /// dropped), without a token: only [`Client::health`] and [`Client::metrics`] work until
    /// [`Client::with_token`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] unless `base_url` is an `http://` URL without a query.
    pub fn new(base_url: &str) -> Result<Self> {
        let base = base_url.trim_end_matches('/');
        let invalid = || Error::InvalidUrl {
            url: base_url.to_owned(),
        };
        if !base.starts_with("http://") {
            return Err(invalid());
        }
        let uri: hyper::Uri = format!("{base}/").parse().map_err(|_| invalid())?;
        if uri.authority().is_none() || uri.query().is_some() {
            return Err(invalid());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Ok(Self {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            base: base.into(),
            auth: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The client of the hub whose data directory is `dir`: the URL and token `aliot hub`
    /// wrote there (see [`crate::data_dir`]). Blocking file reads.
    ///
    /// # Errors
    ///
    /// [`Error::MissingFile`] when a file is missing or empty, [`Error::InvalidUrl`] and
    /// [`Error::InvalidToken`] as [`Client::new`] and [`Client::with_token`].
    pub fn from_data_dir(dir: &Path) -> Result<Self> {
        let missing = |file| Error::MissingFile {
            dir: dir.to_owned(),
            file,
        };
        let url = data_dir::url(dir).ok_or_else(|| missing(data_dir::URL_FILE))?;
        let token = data_dir::token(dir).ok_or_else(|| missing(data_dir::TOKEN_FILE))?;
        Self::new(&url)?.with_token(&token)
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`] when the token holds characters a header cannot carry.
    pub fn with_token(mut self, token: &str) -> Result<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::InvalidToken)?;
        value.set_sensitive(true);
        self.auth = Some(value);
        Ok(self)
    }

    /// The same client, allowing `timeout` per request instead of [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /healthz` (no token needed).
    ///
    /// # Errors
    ///
    /// As every call: [`Error::Connect`], [`Error::Timeout`], [`Error::Read`], [`Error::Http`]
    /// with the hub's code and message, [`Error::BadAnswer`].
    pub async fn health(&self) -> Result<Health> {
        self.get_json("/healthz").await
    }

    /// `GET /metrics`: the hub's Prometheus text (no token needed).
    ///
    /// # Errors
    ///
    /// As [`Client::health`].
    pub async fn metrics(&self) -> Result<String> {
        self.get_text("/metrics").await
    }

    /// `GET /api/v1/products`.
    ///
    /// # Errors
    ///
    /// As [`Client::health`].
    pub async fn products(&self) -> Result<Vec<ProductView>> {
        self.get_json("/api/v1/products").await
    }

    /// `POST /api/v1/products`: registers a product.
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `product_exists` (409) when the productKey is taken.
    pub async fn create_product(&self, product: &CreateProduct) -> Result<ProductView> {
        self.send_json(Method::POST, "/api/v1/products", product, self.timeout)
            .await
    }

    /// `GET /api/v1/products/{pk}`.
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `product_not_found` (404).
    pub async fn product(&self, product_key: &str) -> Result<ProductView> {
        self.get_json(&format!("/api/v1/products/{}", segment(product_key)))
            .await
    }

    /// `POST /api/v1/products/{pk}/devices`: registers a device.
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `device_exists` (409), `product_not_found` (404).
    pub async fn create_device(&self, product_key: &str, device: &CreateDevice) -> Result<Credentials> {
        self.send_json(Method::POST, &devices_path(product_key), device, self.timeout)
            .await
    }

    /// `POST /api/v1/products/{pk}/devices:batch`: registers many devices; their credentials.
    ///
    /// # Errors
    ///
    /// As [`Client::create_device`].
    pub async fn create_devices(&self, product_key: &str, batch: &CreateBatch) -> Result<Vec<Credentials>> {
        self.send_json(Method::POST, &batch_path(product_key, None), batch, self.timeout)
            .await
    }

    /// [`Client::create_devices`] answered as CSV: `productKey,deviceName,deviceSecret` lines.
    ///
    /// # Errors
    ///
    /// As [`Client::create_device`].
    pub async fn create_devices_csv(&self, product_key: &str, batch: &CreateBatch) -> Result<String> {
        let path = batch_path(product_key, Some(Format::Csv));
        let answer = self
            .exchange(Method::POST, &path, Some(encode(batch)), self.timeout)
            .await?;
        Ok(text(&answer))
    }

    /// `GET /api/v1/products/{pk}/devices[?status=]`: a product's devices (without their
    /// properties).
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `product_not_found` (404).
    pub async fn devices(&self, product_key: &str, status: Option<DeviceStatus>) -> Result<Vec<DeviceView>> {
        let q = ListQuery { status, format: None };
        self.get_json(&format!("{}{}", devices_path(product_key), query(&q)))
            .await
    }

    /// [`Client::devices`] as CSV: `productKey,deviceName,deviceSecret` lines.
    ///
    /// # Errors
    ///
    /// As [`Client::devices`].
    pub async fn devices_csv(&self, product_key: &str, status: Option<DeviceStatus>) -> Result<String> {
        let q = ListQuery {
            status,
            format: Some(Format::Csv),
        };
        self.get_text(&format!("{}{}", devices_path(product_key), query(&q)))
            .await
    }

    /// `GET …/devices/{dn}`: status, session, last login, last reported properties.
    ///
    /// # Errors
    ///
    /// As [`Client::health`]; `device_not_found` or `product_not_found` (404).
    pub async fn device(&self, product_key: &str, device_name: &str) -> Result<DeviceView> {
        self.get_json(&device_path(product_key, device_name)).await
    }

    /// `PUT /api/v1/products/{pk}/tsl`: imports the product's thing model (the console's TSL
    /// export, sent as it is).
    ///
    /// # Errors
    ///
    /// As [`Client::product`]; `invalid_argument` (400) naming the JSON path of a fault.
    pub async fn import_tsl(&self, product_key: &str, tsl_json: &str) -> Result<TslSummary> {
        let path = format!("/api/v1/products/{}/tsl", segment(product_key));
        let body = Bytes::from(tsl_json.to_owned());
        let answer = self
            .exchange(Method::PUT, &path, Some(body), self.timeout)
            .await?;
        self.decode(&path, &answer)
    }

    /// `GET /api/v1/products/{pk}/tsl`: the product's thing model, as it was imported.
    ///
    /// # Errors
    ///
    /// As [`Client::product`]; `tsl_not_found` (404) when the product has none.
    pub async fn export_tsl(&self, product_key: &str) -> Result<String> {
        self.get_text(&format!("/api/v1/products/{}/tsl", segment(product_key)))
            .await
    }

    /// `DELETE /api/v1/products/{pk}/tsl`: the product accepts any post again.
    ///
    /// # Errors
    ///
    /// As [`Client::product`].
    pub async fn delete_tsl(&self, product_key: &str) -> Result<serde_json::Value> {
        let path = format!("/api/v1/products/{}/tsl", segment(product_key));
        let answer = self.exchange(Method::DELETE, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }

    /// `PATCH /api/v1/products/{pk}` `{"dynamicRegistration"}`: allows or forbids dynamic
    /// registration (devices registering with the productSecret).
    ///
    /// # Errors
    ///
    /// As [`Client::product`].
    pub async fn set_dynamic_registration(&self, product_key: &str, enabled: bool) -> Result<ProductView> {
        let body = UpdateProduct {
            dynamic_registration: Some(enabled),
            ..UpdateProduct::default()
        };
        let path = format!("/api/v1/products/{}", segment(product_key));
        self.send_json(Method::PATCH, &path, &body, self.timeout).await
    }

    /// `PATCH …/devices/{dn}` `{"enabled"}`: enables or disables a device (a disabled one is
    /// refused at CONNECT and disconnected if online).
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn set_enabled(
        &self,
        product_key: &str,
        device_name: &str,
        enabled: bool,
    ) -> Result<DeviceView> {
        let body = UpdateDevice {
            enabled: Some(enabled),
        };
        let path = device_path(product_key, device_name);
        self.send_json(Method::PATCH, &path, &body, self.timeout).await
    }

    /// `POST …/devices/{dn}/reset`: an activated device may register dynamically again (its
    /// logins and deviceToken are forgotten).
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn reset_device(&self, product_key: &str, device_name: &str) -> Result<DeviceView> {
        let path = format!("{}/reset", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, &serde_json::json!({}), self.timeout)
            .await
    }

    /// `DELETE …/devices/{dn}` (disconnects the device if online).
    ///
    /// # Errors
    ///
    /// As [`Client::device`].
    pub async fn delete_device(&self, product_key: &str, device_name: &str) -> Result<Deleted> {
        let path = device_path(product_key, device_name);
        let answer = self.exchange(Method::DELETE, &path, None, self.timeout).await?;
        self.decode(&path, &answer)
    }

    /// `POST …/devices/{dn}/publish`: the platform's Pub on one of the device's topics.
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `invalid_argument` (400) for a topic not the device's or QoS 2,
    /// `queue_full` (503).
    pub async fn publish(
        &self,
        product_key: &str,
        device_name: &str,
        message: &Publish,
    ) -> Result<Published> {
        let path = format!("{}/publish", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, message, self.timeout).await
    }

    /// `POST …/devices/{dn}/properties`: sets properties and returns the device's
    /// `set_reply`. Waits for the device (`timeout_ms`, else the hub's 8 s) on top of the
    /// client's timeout.
    ///
    /// # Errors
    ///
    /// As [`Client::device`]; `device_offline` (409), `device_timeout` (504), `bad_reply` (502).
    pub async fn set_properties(&self, product_key: &str, device_name: &str, call: &Call) -> Result<Value> {
        let path = format!("{}/properties", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, call, self.call_wait(call.timeout_ms))
            .await
    }

    /// `POST …/devices/{dn}/services/{identifier}`: calls a service synchronously and returns
    /// the device's reply. Waits as [`Client::set_properties`].
    ///
    /// # Errors
    ///
    /// As [`Client::set_properties`].
    pub async fn invoke_service(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: &str,
        call: &Call,
    ) -> Result<Value> {
        let path = format!(
            "{}/services/{}",
            device_path(product_key, device_name),
            segment(identifier)
        );
        self.send_json(Method::POST, &path, call, self.call_wait(call.timeout_ms))
            .await
    }

    /// `POST …/devices/{dn}/rrpc`: a raw RRPC request; the device's answer. Waits as
    /// [`Client::set_properties`].
    ///
    /// # Errors
    ///
    /// As [`Client::set_properties`].
    pub async fn rrpc(&self, product_key: &str, device_name: &str, request: &Rrpc) -> Result<RrpcAnswer> {
        let path = format!("{}/rrpc", device_path(product_key, device_name));
        self.send_json(Method::POST, &path, request, self.call_wait(request.timeout_ms))
            .await
    }

    /// `GET /api/v1/events`: opens the hub's event stream. Once this returns, no event is
    /// missed; the stream lasts until the hub ends it or the [`EventStream`] is dropped (only
    /// opening it is time-limited).
    ///
    /// # Errors
    ///
    /// As [`Client::health`], for opening the stream.
    pub async fn events(&self, filter: &EventFilter) -> Result<EventStream> {
        let path = format!("/api/v1/events{}", query(filter));
        let url = self.url(&path);
        let request = self.request(Method::GET, &url, None)?;
        let response = tokio::time::timeout(self.timeout, self.open(request))
            .await
            .map_err(|_| self.timed_out(&url))??;
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout(self.timeout, response.into_body().collect())
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(Error::from_answer(status.as_u16(), &body));
        }
        tracing::debug!(%url, "admin event stream open");
        Ok(EventStream::new(response.into_body(), url))
    }

    /// How long a call that waits for a device may take.
    fn call_wait(&self, timeout_ms: Option<u64>) -> Duration {
        timeout_ms
            .map_or(HUB_CALL_DEADLINE, Duration::from_millis)
            .saturating_add(self.timeout)
    }

    /// How long a plain request may take (the client's timeout).
    pub(crate) fn wait(&self) -> Duration {
        self.timeout
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn timed_out(&self, url: &str) -> Error {
        Error::Timeout {
            url: url.to_owned(),
            after: self.timeout,
        }
    }

    fn request(&self, method: Method, url: &str, body: Option<Bytes>) -> Result<hyper::Request<Full<Bytes>>> {
        let mut builder = hyper::Request::builder().method(method).uri(url);
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        // The base URL was checked and paths are percent-encoded, so this fails only on a
        // base URL that `Uri` accepts alone but not with a path.
        builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| Error::InvalidUrl { url: url.to_owned() })
    }

    /// Sends a request; the answer's head (its body still to read).
    async fn open(&self, request: hyper::Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        self.http.request(request).await.map_err(|e| Error::Connect {
            url: self.base.to_string(),
            source: Box::new(e),
        })
    }

    /// One request within `wait`: the body of a 2xx answer, else [`Error::Http`].
    pub(crate) async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        wait: Duration,
    ) -> Result<Bytes> {
        let url = self.url(path);
        tracing::debug!(%method, %url, "admin request");
        let request = self.request(method, &url, body)?;
        let work = async {
            let response = self.open(request).await?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Read {
                    url: url.clone(),
                    source: Box::new(e),
                })?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(wait, work)
            .await
            .map_err(|_| Error::Timeout {
                url: url.clone(),
                after: wait,
            })??;
        tracing::debug!(status = status.as_u16(), %url, "admin answer");
        if status.is_success() {
            Ok(body)
        } else {
            Err(Error::from_answer(status.as_u16(), &body))
        }
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let answer = self.exchange(Method::GET, path, None, self.timeout).await?;
        self.decode(path, &answer)
    }

    async fn get_text(&self, path: &str) -> Result<String> {
        let answer = self.exchange(Method::GET, path, None, self.timeout).await?;
        Ok(text(&answer))
    }

    pub(crate) async fn send_json<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        wait: Duration,
    ) -> Result<T> {
        let answer = self.exchange(method, path, Some(encode(body)), wait).await?;
        self.decode(path, &answer)
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, path: &str, answer: &[u8]) -> Result<T> {
        serde_json::from_slice(answer).map_err(|source| Error::BadAnswer {
            url: self.url(path),
            source,
        })
    }
}

/// A request body as JSON.
fn encode<B: Serialize>(body: &B) -> Bytes {
    // The request types hold strings, numbers, booleans, unit enums and `serde_json::Value`s
    // (whose maps have string keys): serde_json writes all of them.
    Bytes::from(serde_json::to_vec(body).expect("request bodies always serialize to JSON"))
}

/// A text answer (CSV, Prometheus), any invalid UTF-8 replaced.
fn text(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer).into_owned()
}

fn devices_path(product_key: &str) -> String {
    format!("/api/v1/products/{}/devices", segment(product_key))
}

fn batch_path(product_key: &str, format: Option<Format>) -> String {
    let q = BatchQuery { format };
    format!("{}:batch{}", devices_path(product_key), query(&q))
}

pub(crate) fn device_path(product_key: &str, device_name: &str) -> String {
    format!("{}/{}", devices_path(product_key), segment(device_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_http() {
        let c = Client::new("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
        assert!(Client::new("http://h:1/prefix").is_ok());
        for bad in [
            "https://h",
            "h:8080",
            "",
            "http://",
            "http://h/?a=1",
            "http://bad host",
        ] {
            assert!(
                matches!(Client::new(bad), Err(Error::InvalidUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let c = Client::new("http://h:1")
            .and_then(|c| c.with_token("very-secret"))
            .expect("client");
        let debug = format!("{c:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(matches!(
            Client::new("http://h:1").and_then(|c| c.with_token("a\nb")),
            Err(Error::InvalidToken)
        ));
    }

    #[test]
    fn a_client_is_found_in_a_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Client::from_data_dir(dir.path()).expect_err("empty");
        assert!(e.to_string().contains(data_dir::URL_FILE), "{e}");
        std::fs::write(dir.path().join(data_dir::URL_FILE), "http://127.0.0.1:9/\n").expect("write");
        let e = Client::from_data_dir(dir.path()).expect_err("no token");
        assert!(e.to_string().contains(data_dir::TOKEN_FILE), "{e}");
        std::fs::write(dir.path().join(data_dir::TOKEN_FILE), "tok\n").expect("write");
        let c = Client::from_data_dir(dir.path()).expect("found");
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn names_in_paths_are_encoded() {
        assert_eq!(
            device_path("a1P", "d/../x"),
            "/api/v1/products/a1P/devices/d%2F..%2Fx"
        );
        assert_eq!(batch_path("a1P", None), "/api/v1/products/a1P/devices:batch");
        assert_eq!(
            batch_path("a1P", Some(Format::Csv)),
            "/api/v1/products/a1P/devices:batch?format=csv"
        );
    }

    #[test]
    fn calls_wait_for_the_device_on_top_of_the_timeout() {
        let c = Client::new("http://h:1").expect("client");
        assert_eq!(c.call_wait(None), Duration::from_secs(38));
        assert_eq!(c.call_wait(Some(100)), Duration::from_millis(30_100));
    }

    #[test]
    fn the_client_and_its_futures_can_move_between_threads() {
        fn send<T: Send>(_: &T) {}
        fn sync<T: Send + Sync>() {}
        sync::<Client>();
        let c = Client::new("http://h:1").expect("client");
        send(&c.products());
        send(&c.events(&EventFilter::default()));
    }
}
