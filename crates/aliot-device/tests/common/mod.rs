//! Test helpers: a hub from `aliot-testkit`, and device options pointing at it.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::time::Duration;

use aliot_device::{Backoff, DeviceOptions};
use aliot_hub::Service;
use aliot_protocol::{DeviceIdentity, Endpoint};
use aliot_testkit::TestHub;

/// A hub started with [`aliot_hub::start`], with one product registered.
pub(crate) struct Hub {
    pub(crate) test: TestHub,
    pub(crate) product_key: String,
}

impl Hub {
    /// Starts a hub on free loopback ports (plus MQTT over TLS with its local CA when `tls`) and
    /// registers one product.
    pub(crate) async fn start(tls: bool) -> Hub {
        let test = if tls {
            TestHub::start_tls().await
        } else {
            TestHub::start().await
        };
        let product_key = test.product().await;
        Hub { test, product_key }
    }

    /// Registers a device and returns its identity.
    pub(crate) async fn device(&self, name: &str) -> DeviceIdentity {
        let secret = self.test.register(&self.product_key, name).await;
        DeviceIdentity::new(&self.product_key, name, secret).expect("identity")
    }

    /// The platform's API.
    pub(crate) fn service(&self) -> &Service {
        self.test.service()
    }

    /// Options for plain MQTT to this hub, with a fast backoff.
    pub(crate) fn options(&self, identity: DeviceIdentity) -> DeviceOptions {
        let endpoint = Endpoint::custom("127.0.0.1", Some(self.test.mqtt.port()), false).expect("endpoint");
        fast(DeviceOptions::new(identity, endpoint))
    }

    /// Options for MQTT over TLS to this hub, trusting its local CA.
    pub(crate) fn tls_options(&self, identity: DeviceIdentity) -> DeviceOptions {
        let hub = self.test.hub();
        let addr = hub.mqtts_addr().expect("TLS listener");
        let ca = hub.tls_files().and_then(|f| f.ca.clone()).expect("local CA");
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
