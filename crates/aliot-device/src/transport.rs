//! How an MQTT connection reaches the platform: TCP or TLS to `host:port`, the same for a
//! [`crate::Device`] and for a registration ([`crate::register`]).

use std::time::Duration;

use aliot_protocol::Endpoint;
use rumqttc::{Broker, MqttOptions, NetworkOptions, TlsConfiguration, Transport};

use crate::error::Result;
use crate::options::TrustAnchors;

/// MQTT options with `client_id` that dial `endpoint`'s `host:port`, over TLS (trusting
/// `trust`, verifying `server_name`, default the host) when the endpoint uses TLS; with the
/// `host:port` they dial.
pub(crate) fn mqtt_options(
    client_id: String,
    endpoint: &Endpoint,
    server_name: Option<&str>,
    trust: &TrustAnchors,
) -> Result<(MqttOptions, String)> {
    // The broker name is what TLS verifies (SNI); the socket always dials host:port.
    let server_name = server_name.unwrap_or(&endpoint.host).to_owned();
    let mut mqtt = MqttOptions::new(client_id, Broker::tcp(server_name, endpoint.port));
    if endpoint.tls {
        let config = crate::tls::client_config(trust)?;
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    let address = format!("{}:{}", endpoint.host, endpoint.port);
    let dial = address.clone();
    mqtt.set_socket_connector(move |_name, network| rumqttc::default_socket_connect(dial.clone(), network));
    Ok((mqtt, address))
}

/// Socket settings: no Nagle delay, and a bound on TCP + TLS + CONNACK (whole seconds).
pub(crate) fn network_options(connect_timeout: Duration) -> NetworkOptions {
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(connect_timeout.as_secs());
    network
}
