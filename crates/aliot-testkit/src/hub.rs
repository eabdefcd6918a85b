//! [`TestHub`]: a whole hub (registry, listeners, admin API) started in-process with
//! [`aliot_hub::start`] on loopback ports chosen by the system, in a temporary data directory.

use std::net::SocketAddr;

use aliot_hub::config::MqttsConfig;
use aliot_hub::registry::NewDevice;
use aliot_hub::{Config, RunningHub, Service};
use hyper::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::guard::guard;
use crate::http::{TOKEN, http_json};

/// A hub started in-process.
#[derive(Debug)]
pub struct TestHub {
    /// The running hub (`None` once stopped).
    pub hub: Option<RunningHub>,
    /// Its data directory.
    pub dir: TempDir,
    /// The admin API's base URL.
    pub base: String,
    /// The plain MQTT listener.
    pub mqtt: SocketAddr,
}

impl TestHub {
    /// A hub with the default settings in a new temporary directory.
    pub async fn start() -> TestHub {
        Self::start_in(tempfile::tempdir().expect("a temporary directory")).await
    }

    /// A hub with MQTT over TLS too (its local CA in the data directory).
    pub async fn start_tls() -> TestHub {
        Self::start_with(tempfile::tempdir().expect("a temporary directory"), |c| {
            c.mqtts = Some(MqttsConfig {
                listen: "127.0.0.1:0".parse().expect("an address"),
                cert: None,
                key: None,
            });
        })
        .await
    }

    /// A hub in `dir` (an earlier hub's directory, for a restart).
    pub async fn start_in(dir: TempDir) -> TestHub {
        Self::start_with(dir, |_| {}).await
    }

    /// A hub in `dir` with settings changed by `change` (listeners stay on port 0).
    pub async fn start_with(dir: TempDir, change: impl FnOnce(&mut Config)) -> TestHub {
        let mut config = Config {
            data_dir: Some(dir.path().to_owned()),
            ..Config::default()
        };
        config.mqtt.listen = "127.0.0.1:0".parse().expect("an address");
        config.admin.listen = "127.0.0.1:0".parse().expect("an address");
        config.openapi.listen = "127.0.0.1:0".parse().expect("an address");
        config.admin.token = Some(TOKEN.into());
        change(&mut config);
        let hub = aliot_hub::start(config, std::future::pending())
            .await
            .expect("the hub starts");
        let base = hub.admin_url().to_owned();
        let mqtt = hub.mqtt_addr();
        TestHub {
            hub: Some(hub),
            dir,
            base,
            mqtt,
        }
    }

    /// The running hub.
    pub fn hub(&self) -> &RunningHub {
        self.hub.as_ref().expect("the hub is running")
    }

    /// The platform's API.
    pub fn service(&self) -> &Service {
        self.hub().service()
    }

    /// Stops the hub and returns its data directory (for a restart).
    pub async fn stop(mut self) -> TempDir {
        if let Some(hub) = self.hub.take() {
            guard("the hub to stop", hub.stop()).await.expect("a clean stop");
        }
        self.dir
    }

    /// One admin API request with [`TOKEN`].
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        http_json(method, &format!("{}{path}", self.base), Some(TOKEN), body).await
    }

    /// Creates a product and a device through the admin API; returns (productKey, deviceName,
    /// deviceSecret).
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

    /// Creates a product through the service; returns its productKey.
    pub async fn product(&self) -> String {
        self.service()
            .create_product("test product", None)
            .await
            .expect("a product")
            .product_key
    }

    /// Registers a device of `product_key` through the service; returns its secret.
    pub async fn register(&self, product_key: &str, device_name: &str) -> String {
        let mut created = self
            .service()
            .create_devices(product_key, vec![NewDevice::named(device_name)], false)
            .await
            .expect("a device");
        created.pop().expect("one device").device_secret
    }

    /// The CONNACK code of a login with `c` (clean session 1); the connection is dropped.
    pub async fn login(&self, c: &crate::Creds) -> u8 {
        let (_raw, ack) = crate::Raw::connect(self.mqtt, c, true).await;
        u8::from(ack.return_code)
    }

    /// The value of an unlabelled counter or gauge of the hub's `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let (status, body) = crate::http("GET", &format!("{}/metrics", self.base), None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    }
}
