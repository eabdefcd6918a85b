//! The device-facing HTTP(S) listener (spec §5): the platform's other doors besides MQTT.
//!
//! | request | what it does | file |
//! |---|---|---|
//! | `POST /auth/register/device` (form) | HTTPS dynamic registration (§5.1): a new deviceSecret | `auth.rs` |
//! | `POST /auth/devicename` (form) | HTTPS pre-authentication (§5.3): iotId, iotToken and this hub's MQTT endpoint | `auth.rs` |
//! | `POST /auth/bootstrap` (form) | bootstrap (§5.4): this hub's MQTT endpoint | `auth.rs` |
//! | `POST /auth` (JSON) | HTTP data channel (§5.5): a token | `channel.rs` |
//! | `POST /topic/{topic}` (header `password`) | HTTP data channel: one uplink, handled as over MQTT | `channel.rs` |
//! | `GET /config/{pk}/{configId}?expires=&signature=` | remote configuration download (signed, expiring URL) | `config.rs` |
//!
//! Answers are HTTP 200 with the platform's own codes in the body (`{"code":200,…}` for
//! `/auth/…`, `{"code":0,…}` for the data channel), as the platform answers them, so that the
//! official SDKs read them unchanged. The listener has the admin API's limits (connections,
//! header read timeout, served by `crate::http`) and a body limit ([`MAX_FORM_BYTES`] for the
//! `/auth` requests, the MQTT payload limit for `/topic`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use serde::Serialize;

use crate::platform::Platform;

mod auth;
mod channel;
pub(crate) mod config;
pub(crate) mod ota;

/// The largest `/auth…` request body: a few form or JSON fields.
pub(crate) const MAX_FORM_BYTES: usize = 8 * 1024;

/// The MQTT endpoint this hub tells devices to use (pre-authentication, bootstrap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MqttEndpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct DeviceHttpState {
    pub(crate) platform: Arc<Platform>,
    /// The MQTT listener devices are sent to (the TLS one when there is one).
    pub(crate) mqtt: MqttEndpoint,
    /// The largest `/topic` payload.
    pub(crate) max_payload: usize,
}

impl std::fmt::Debug for DeviceHttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHttpState")
            .field("mqtt", &self.mqtt)
            .finish_non_exhaustive()
    }
}

impl DeviceHttpState {
    pub(crate) fn new(platform: Arc<Platform>, mqtt: SocketAddr, max_payload: usize) -> Self {
        // A wildcard address is reached on loopback.
        let host = if mqtt.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            mqtt.ip().to_string()
        };
        Self {
            platform,
            mqtt: MqttEndpoint {
                host,
                port: mqtt.port(),
            },
            max_payload,
        }
    }
}

/// The device-facing router.
pub(crate) fn router(state: DeviceHttpState) -> Router {
    let max_payload = state.max_payload;
    let auth = Router::new()
        .route("/auth/register/device", post(auth::register))
        .route("/auth/devicename", post(auth::pre_authenticate))
        .route("/auth/bootstrap", post(auth::bootstrap))
        .route("/auth", post(channel::authenticate))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES));
    let topic = Router::new()
        .route("/topic/{*topic}", post(channel::publish))
        .layer(DefaultBodyLimit::max(max_payload));
    let download = config::router(state.platform.clone()).merge(ota::router(state.platform.ota().clone()));
    auth.merge(topic).with_state(state).merge(download)
}
