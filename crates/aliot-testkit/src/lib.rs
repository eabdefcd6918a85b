//! aliot-testkit: what the workspace's tests share. Not published.
//!
//! Every server a test needs runs on loopback, on a port the system picks, in a temporary
//! directory, and stops with the test. Every wait has the hang guard ([`guard`]) and nothing
//! sleeps to synchronise.
//!
//! - [`MemoryRegistry`] and [`BrokerHub`]: an in-process broker over a registry in memory.
//! - [`TestHub`]: a whole hub through `aliot_hub::start`; [`OfflineAdmin`]: the admin router
//!   without a socket; [`http`]/[`http_json`]: one request.
//! - [`HubProcess`]: an `aliot hub` child process; [`admin`], [`ok_json`]: the CLI.
//! - [`Raw`], [`BlockingRaw`]: raw MQTT clients; [`creds`]: signed CONNECT fields as real SDKs
//!   build them; [`TestDevice`]: a device on rumqttc.
//! - [`events`]: waiting for the hub's events.
//! - [`browser`]: headless Chromium over WebDriver, for the console's tests.
//! - [`infra`]: a local PostgreSQL and nats-server for one test (`scripts/local-infra.sh`).
//!
//! ```no_run
//! # async fn demo() {
//! use aliot_testkit::{BrokerHub, Raw, creds};
//! let mut hub = BrokerHub::start().await;
//! let mut device = Raw::online(hub.addr, &creds("dev1", "_ss=1")).await;
//! hub.online("dev1").await;
//! device.ping().await;
//! # }
//! ```

mod broker;
pub mod browser;
mod creds;
mod device;
pub mod events;
mod guard;
mod http;
mod hub;
pub mod infra;
mod process;
mod raw;
mod registry;

pub use aliot_bench::wire;
pub use broker::BrokerHub;
pub use creds::{Creds, PK, SECRET, Signing, connect_packet, creds, creds_with, signed};
pub use device::{DevEvent, TestDevice, options};
pub use guard::{GUARD, guard, run_guarded, wait_guarded};
pub use http::{OfflineAdmin, TOKEN, http, http_json, http_post, try_request};
pub use hub::TestHub;
pub use process::{
    HubProcess, admin, aliot, aliot_binary, aliot_command, ok_json, sdk_node_package, sdk_python, stderr,
    workspace_binary,
};
pub use raw::{BlockingRaw, Raw, json, text};
pub use registry::MemoryRegistry;
