//! How an MQTT connection reaches the platform: TCP or TLS to `host:port`, the same for a
//! [`crate::Device`] and for a registration ([`crate::register`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aliot_protocol::Endpoint;
use rumqttc::{Broker, MqttOptions, NetworkOptions, TlsConfiguration, Transport};

use crate::error::Result;
use crate::options::TrustAnchors;

/// The `host:port` the next connection attempt dials: the endpoint's, or the one a
/// pre-authentication named ([`crate::Login::PreAuth`]).
#[derive(Debug, Clone)]
pub(crate) struct Dial(Arc<Mutex<String>>);

impl Dial {
    /// The address dialled.
    pub(crate) fn address(&self) -> String {
        crate::shared::lock(&self.0).clone()
    }

    /// Dials `address` from the next attempt on.
    pub(crate) fn set(&self, address: String) {
        *crate::shared::lock(&self.0) = address;
    }
}

/// MQTT options with `client_id` that dial `endpoint`'s `host:port` (or what the returned
/// [`Dial`] is set to), over TLS (trusting `trust`, verifying `server_name`, default the host)
/// when the endpoint uses TLS.
pub(crate) fn mqtt_options(
    client_id: String,
    endpoint: &Endpoint,
    server_name: Option<&str>,
    trust: &TrustAnchors,
) -> Result<(MqttOptions, Dial)> {
    // The broker name is what TLS verifies (SNI); the socket always dials host:port.
    let server_name = server_name.unwrap_or(&endpoint.host).to_owned();
    let mut mqtt = MqttOptions::new(client_id, Broker::tcp(server_name, endpoint.port));
    if endpoint.tls {
        let config = crate::tls::client_config(trust)?;
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    let dial = Dial(Arc::new(Mutex::new(format!(
        "{}:{}",
        endpoint.host, endpoint.port
    ))));
    let connector = dial.clone();
    mqtt.set_socket_connector(move |_name, network| {
        rumqttc::default_socket_connect(connector.address(), network)
    });
    Ok((mqtt, dial))
}

/// Socket settings: no Nagle delay, and a bound on TCP + TLS + CONNACK (whole seconds).
pub(crate) fn network_options(connect_timeout: Duration) -> NetworkOptions {
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(connect_timeout.as_secs());
    network
}
