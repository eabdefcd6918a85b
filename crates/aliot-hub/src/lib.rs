//! aliot-hub: an offline Alibaba Cloud IoT Platform on one machine.
//!
//! The rooms, each in one place (docs/ARCHITECTURE.md traces a CONNECT and a property post
//! through them):
//!
//! - `engine`: MQTT only: the accept loop, framed connections, the connection task (CONNECT,
//!   keepalive, QoS 1 both ways), every CONNACK code. It asks the platform through a trait and
//!   knows nothing about Alink.
//! - `table`: the device table, no IO: sessions, takeover, clean-session-0 inheritance, the
//!   offline queue (its retention and limits), the inflight window, calls waiting for answers.
//! - `platform`: what the platform does with what devices send: the CONNECT verdict, topic
//!   rights, then one file per feature (thing posts, services and RRPC, NTP, remote config,
//!   OTA requests).
//! - `cluster`: the seam for the calls that would cross hub nodes (who holds a device, deliver
//!   to it, complete a call, publish an event); one in-process implementation.
//! - [`registry`]: the [`registry::Registry`] trait (products, devices, secrets, status,
//!   properties) and its embedded redb implementation.
//! - [`service`]: the application service, the platform's API that the admin REST API calls.
//! - [`subscription`]: server-side subscription: consumer groups, subscribe relations, the
//!   durable backlog per group and the AMQP 1.0 transport consumers attach with.
//! - `openapi`: Aliyun's OpenAPI (RPC, 2018-01-20) for backends on the official server SDKs:
//!   signatures, the envelope, the actions over the service.
//! - [`admin`]: the admin HTTP API (axum). [`events`]: the event stream. [`clock`]: the one
//!   clock. [`config`], [`tls`], [`error`].
//! - [`Broker`] wires the rooms together; [`start`]/[`run`] add the registry, the listeners and
//!   the admin API.
//!
//! ```no_run
//! # async fn demo() -> aliot_hub::Result<()> {
//! let mut config = aliot_hub::Config::default();
//! config.data_dir = Some("./hub-data".into());
//! config.mqtt.listen = "127.0.0.1:0".parse().expect("an address");
//! config.admin.listen = "127.0.0.1:0".parse().expect("an address");
//! let hub = aliot_hub::start(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("MQTT on {}, admin API on {}", hub.mqtt_addr(), hub.admin_url());
//! hub.wait().await
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;

pub mod admin;
mod broker;
pub mod capacity;
pub mod clock;
mod cluster;
pub mod config;
mod device_http;
mod engine;
pub mod error;
pub mod events;
mod http;
mod metrics;
mod openapi;
pub mod ota;
mod persist;
mod platform;
pub mod registry;
mod run;
pub mod service;
mod signed_url;
pub mod subscription;
mod table;
pub mod tls;

pub use broker::{Broker, bind_listener};
pub use config::{BrokerConfig, Config};
pub use error::{Error, Result};
pub use run::{RunningHub, run, start};
pub use service::{PublishOutcome, Service};

/// A boxed future (the registry trait and the engine's hooks are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
