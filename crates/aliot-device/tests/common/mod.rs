//! Test helpers: an in-process hub on loopback port 0 with a temporary data directory.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aliot_device::{Backoff, DeviceOptions};
use aliot_hub::config::{Config, MqttsConfig};
use aliot_hub::directory::{DeviceAuth, Directory};
use aliot_hub::events::Event as HubEvent;
use aliot_hub::{Broker, BrokerConfig, RunningHub};
use aliot_protocol::{DeviceIdentity, Endpoint};
use tokio::sync::broadcast;

/// A hub started with [`aliot_hub::start`], and the data directory it lives in.
pub(crate) struct Hub {
    pub(crate) running: RunningHub,
    pub(crate) product_key: String,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// Starts a hub on free loopback ports (plus MQTT over TLS with its local CA when `tls`) and
    /// registers one product.
    pub(crate) async fn start(tls: bool) -> Hub {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        config.mqtt.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        if tls {
            config.mqtts = Some(MqttsConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                cert: None,
                key: None,
            });
        }
        let running = aliot_hub::start(config, std::future::pending())
            .await
            .expect("hub starts");
        let product = running
            .store()
            .create_product("test product", None)
            .await
            .expect("product");
        Hub {
            running,
            product_key: product.product_key,
            _dir: dir,
        }
    }

    /// Registers a device and returns its identity.
    pub(crate) async fn device(&self, name: &str) -> DeviceIdentity {
        let d = self
            .running
            .store()
            .create_device(&self.product_key, name, None)
            .await
            .expect("device");
        DeviceIdentity::new(d.product_key, d.device_name, d.device_secret).expect("identity")
    }

    pub(crate) fn broker(&self) -> &Broker {
        self.running.broker()
    }

    /// Options for plain MQTT to this hub, with a fast backoff.
    pub(crate) fn options(&self, identity: DeviceIdentity) -> DeviceOptions {
        let endpoint =
            Endpoint::custom("127.0.0.1", Some(self.running.mqtt_addr().port()), false).expect("endpoint");
        fast(DeviceOptions::new(identity, endpoint))
    }

    /// Options for MQTT over TLS to this hub, trusting its local CA.
    pub(crate) fn tls_options(&self, identity: DeviceIdentity) -> DeviceOptions {
        let addr = self.running.mqtts_addr().expect("TLS listener");
        let ca = self
            .running
            .tls_files()
            .and_then(|f| f.ca.clone())
            .expect("local CA");
        let endpoint = Endpoint::custom("127.0.0.1", Some(addr.port()), true).expect("endpoint");
        fast(DeviceOptions::new(identity, endpoint)).ca_file(ca)
    }
}

/// Short reconnect delays for tests (the values only speed tests up; nothing waits on them).
pub(crate) fn fast(options: DeviceOptions) -> DeviceOptions {
    options
        .backoff(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            stable_after: Duration::from_secs(30),
        })
        .request_timeout(Duration::from_secs(20))
}

/// A registry in a `HashMap`, for brokers the tests start and stop themselves.
#[derive(Default)]
pub(crate) struct MapDirectory(pub(crate) HashMap<(String, String), DeviceAuth>);

impl MapDirectory {
    pub(crate) fn with(identity: &DeviceIdentity) -> Arc<Self> {
        let mut map = HashMap::new();
        map.insert(
            (
                identity.product_key().to_owned(),
                identity.device_name().to_owned(),
            ),
            DeviceAuth {
                device_secret: identity.device_secret().to_owned(),
                enabled: true,
                iot_id: "iot-1".into(),
            },
        );
        Arc::new(MapDirectory(map))
    }
}

impl Directory for MapDirectory {
    fn device(&self, product_key: &str, device_name: &str) -> Option<DeviceAuth> {
        self.0
            .get(&(product_key.to_owned(), device_name.to_owned()))
            .cloned()
    }

    fn device_online(&self, _product_key: &str, _device_name: &str, _ip: IpAddr, _at_ms: u64) {}
}

/// A broker serving one listener until its stop sender fires.
pub(crate) struct Served {
    pub(crate) broker: Broker,
    pub(crate) events: broadcast::Receiver<Arc<HubEvent>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// A fresh broker on `addr` (port 0 or a port to reuse), with its events subscribed before
    /// it accepts anything.
    pub(crate) fn start(addr: SocketAddr, directory: Arc<MapDirectory>) -> (Served, SocketAddr) {
        let config = BrokerConfig {
            shutdown_grace_ms: 200,
            ..BrokerConfig::default()
        };
        let broker = Broker::new(config, directory);
        let events = broker.events();
        let listener = aliot_hub::bind_listener(addr).expect("bind");
        let local = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let b = broker.clone();
        let task = tokio::spawn(async move {
            let _ = b
                .serve(listener, None, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        (
            Served {
                broker,
                events,
                stop,
                task,
            },
            local,
        )
    }

    /// Stops accepting, closes every connection and waits for the listener to be released.
    pub(crate) async fn stop(self) -> broadcast::Receiver<Arc<HubEvent>> {
        let _ = self.stop.send(());
        self.task.await.expect("serve task");
        self.events
    }
}

/// Every event already in the receiver (never waits).
pub(crate) fn drain(rx: &mut broadcast::Receiver<Arc<HubEvent>>) -> Vec<Arc<HubEvent>> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return out,
        }
    }
}

/// Waits for the next uplink the hub saw on `topic`, returning its payload.
pub(crate) async fn next_uplink(rx: &mut broadcast::Receiver<Arc<HubEvent>>, topic: &str) -> String {
    loop {
        match rx.recv().await {
            Ok(e) => {
                if let HubEvent::Uplink(u) = &*e
                    && u.topic == topic
                {
                    return u.payload.clone().unwrap_or_default();
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("hub events ended: {e}"),
        }
    }
}
