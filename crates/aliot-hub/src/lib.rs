//! aliot-hub: an offline Alibaba Cloud IoT Platform on one machine.
//!
//! Module map (the MQTT layers first, then the platform's rooms):
//!
//! - `server`: accept loop (connection limit, accept backoff, graceful shutdown).
//! - `connection`: bytes ↔ MQTT packets over TCP or TLS (rmqtt-codec), packet size limit.
//! - `session`: MQTT state of one device: CONNECT, keepalive, QoS 1 inflight, subscriptions.
//! - `broker`: the online-device table and the [`broker::Broker`] handle used by the admin API.
//! - `auth`: CONNECT → verdict (signature, username, clientId grammar, CONNACK codes).
//! - `acl`: which topics a device may publish and subscribe.
//! - `alink`: the platform's answers (post replies, NTP, RRPC/property-set/service correlation).
//! - `events`: online/offline, uplinks, replies, refusals, as a broadcast stream.
//! - `directory`: the seam between the broker and the registry.
//! - `store`: the registry (products, devices) in redb.
//! - `admin`: the HTTP admin API (axum).
//! - `config`: hub settings, validated.
//! - `tls`: the local CA and server certificate for MQTT over TLS.

mod acl;
pub mod admin;
mod alink;
mod auth;
pub mod broker;
pub mod config;
mod connection;
pub mod directory;
pub mod error;
pub mod events;
mod metrics;
mod run;
mod server;
mod session;
pub mod store;
pub mod tls;

pub use broker::{Broker, BrokerConfig, PublishOutcome, SessionInfo, bind_listener};
pub use config::Config;
pub use error::{Error, Result};
pub use run::{RunningHub, run, start};
