//! # aliot-device
//!
//! An async device SDK for the Alibaba Cloud IoT Platform (Aliyun IoT) over MQTT 3.1.1: the
//! device signs its own CONNECT (`aliot-protocol`), stays connected, and speaks Alink.
//!
//! - **Connection**: TCP (`securemode=3`) or TLS (`securemode=2`, rustls with `ring`, the
//!   Alibaba Cloud IoT root CAs built in, or a CA file such as the local hub's). Every
//!   (re)connect is signed afresh with a new timestamp; reconnects use capped exponential backoff
//!   with jitter; a CONNACK refusal is a typed [`Error::Refused`] with the code, Aliyun's cause
//!   and the fix, and refusals 4 and 5 never turn into a reconnect storm ([`RefusalPolicy`]).
//! - **Delivery**: subscriptions are restored after every reconnect; QoS 1 messages published
//!   while offline wait in a bounded queue and are sent (again) until acknowledged.
//! - **Alink**: [`Device::post_property`], [`Device::post_event`] and [`Device::request`] wait for
//!   the platform's reply by id; property sets, service calls (asynchronous, and synchronous over
//!   RRPC in both topic styles), raw and custom-topic RRPC arrive as [`Event`]s that carry their
//!   own reply; [`Device::ntp`] returns the clock offset; [`Device::publish`] and
//!   [`Device::subscribe`] cover custom topics.
//! - **Remote configuration**: [`Device::config_get`] (`thing.config.get`) and
//!   [`Device::download_config`] (size and SHA-256 checked, 64 KB at most); pushes arrive as
//!   [`Event::ConfigPush`], answered by the SDK ([`config`]).
//! - **OTA**: [`ota::Ota`] reports versions (`/ota/device/inform`), gets the task pushed
//!   ([`Event::OtaUpgrade`]) or pending ([`ota::Ota::firmware_get`]), downloads it streamed to a
//!   file (resumed with `Range`), checks size and MD5/SHA-256, and reports progress and failures.
//! - **Dynamic registration**: [`register::register_mqtt`] obtains a deviceSecret (device
//!   registered beforehand) or a deviceToken (no pre-registration) with the productSecret; a
//!   [`Login::Token`] ([`DeviceOptions::with_token`]) logs in with that token, sent verbatim on
//!   every reconnect. [`register::register_https`] obtains a deviceSecret over HTTPS.
//! - **HTTPS pre-authentication**: a [`Login::PreAuth`] ([`DeviceOptions::with_pre_auth`])
//!   gets an iotToken from the auth service before connecting (`securemode=-1`), and a new one
//!   whenever the platform refuses the old one.
//! - **Two styles**: read the [`Events`] stream yourself, or register closures on [`Handlers`].
//!   Either way the network loop never waits for application code: events go through a bounded
//!   queue whose overflow is answered (code 429) or counted, never blocking keepalive.
//!
//! - **Gateways**: [`gateway::Gateway`] manages a gateway's topology, registers sub-devices and
//!   logs them in and out (singly or in batches of 50); each [`gateway::SubDevice`] has the
//!   thing API of a direct device and its own [`Events`], all on the gateway's connection, and
//!   sessions are restored after every reconnect.
//!
//! Module map: [`options`] (what to connect to and how), [`register`] (dynamic registration),
//! [`config`] (remote configuration; `config_push` answers pushes),
//! [`preauth`] (HTTPS pre-authentication), [`ota`] (firmware upgrades; `ota_info` parses tasks), `http` (the minimal HTTP/1.1 client both use),
//! [`event`] (what arrives),
//! `client` ([`Device`], the handle), `driver` (the network loop), `shared` (the state the
//! handles, the loop and the replies share), `connection` ([`Connected`], [`Disconnected`]:
//! below both `event` and `shared`), `backoff`, `route`, `pending` (pure state, unit-tested),
//! [`handler`] (convenience handlers), [`thing`] (thing-model checks of what is sent and asked),
//! [`gateway`] (sub-devices; `subs` routes their downlinks), `state` (desired properties and the device shadow: [`Device::desired_get`],
//! [`Device::shadow_update`]…), [`tls`], `transport` (TCP or TLS to the endpoint), and with the feature `exec`, `exec` (answer
//! requests by running a command).
//!
//! ## Example: connect, post a property, answer property sets and a service
//!
//! ```no_run
//! use aliot_device::{Device, DeviceOptions, Event, ReplyError};
//! use aliot_protocol::{DeviceIdentity, Endpoint};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = DeviceIdentity::new("a1B2c3D4e5F", "light-01", "device-secret")?;
//! let endpoint = Endpoint::custom("127.0.0.1", Some(1883), false)?; // `aliot hub` on this machine
//! let (device, mut events) = Device::connect(DeviceOptions::new(identity, endpoint)).await?;
//!
//! let reply = device.post_property(json!({"LightSwitch": 1})).await?;
//! println!("platform answered {} to id {}", reply.code, reply.id);
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::PropertySet(set) => {
//!             println!("set {:?}", set.properties());
//!             set.reply(Ok(json!({}))).await?;
//!         }
//!         Event::ServiceCall(call) if call.service() == "Reboot" => {
//!             call.reply(Ok(json!({"ok": 1}))).await?;
//!         }
//!         Event::ServiceCall(call) => call.reply(Err(ReplyError::new(460, "unknown service"))).await?,
//!         Event::Stopped(reason) => {
//!             println!("stopped: {reason:?}");
//!             break;
//!         }
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A refused connection reads like this:
//!
//! ```no_run
//! # use aliot_device::{Device, DeviceOptions, Error};
//! # async fn run(options: DeviceOptions) {
//! match Device::connect(options).await {
//!     Err(Error::Refused { code }) => eprintln!("CONNACK {code}: {}\nfix: {}", code.cause(), code.hint()),
//!     Err(other) => eprintln!("{other}"),
//!     Ok(_) => {}
//! }
//! # }
//! ```
//!
//! The `examples/` directory has one runnable program per feature, including a copy of the
//! classic "subscribe, print, exec" Python simulator.

mod backoff;
mod client;
mod clock;
pub mod config;
mod config_push;
mod connection;
mod driver;
pub mod error;
pub mod event;
#[cfg(feature = "exec")]
pub mod exec;
pub mod gateway;
pub mod handler;
mod http;
pub mod options;
pub mod ota;
mod ota_info;
mod pending;
pub mod preauth;
pub mod register;
mod route;
mod shared;
mod state;
mod subs;
pub mod thing;
pub mod tls;
mod transport;
mod url;

pub use client::{Device, Stats, TimeSync};
pub use error::{Error, Result};
pub use event::{
    Connected, Disconnected, Event, Events, Message, PropertySet, ReplyError, RrpcRequest, ServiceCall,
    ShadowMessage,
};
#[cfg(feature = "exec")]
pub use exec::{Exec, ExecOutcome};
pub use handler::Handlers;
pub use options::{Backoff, DeviceOptions, Login, QoS, RefusalPolicy, TrustAnchors};
pub use preauth::pre_authenticate;
pub use register::{Registration, register_https, register_mqtt};
pub use route::{CallVia, RrpcKind};
pub use state::DesiredValue;
