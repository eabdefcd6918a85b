//! [`TestDevice`]: a device on rumqttc (a real third-party client), signed like the Python SDK
//! (`_ss=1`), whose event loop runs in a task.

use std::net::SocketAddr;

use aliot_protocol::{DeviceIdentity, SignOptions, sign};
use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, Incoming, MqttOptions, PublishOptions, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::guard::guard;

/// What a test device saw.
#[derive(Debug)]
pub enum DevEvent {
    /// A message.
    Publish {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
    /// A SUBACK.
    SubAck,
    /// The connection ended (the event loop's error).
    Closed(String),
}

/// A device whose event loop stops at the first error (no reconnection).
#[derive(Debug)]
pub struct TestDevice {
    /// The client handle.
    pub client: AsyncClient,
    /// What the event loop saw.
    pub rx: mpsc::UnboundedReceiver<DevEvent>,
    /// productKey.
    pub pk: String,
    /// deviceName.
    pub dn: String,
    task: JoinHandle<()>,
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Signed CONNECT options for a device (timestamp 2050, `_ss=1`, keepalive 60).
pub fn options(addr: SocketAddr, pk: &str, dn: &str, secret: &str) -> MqttOptions {
    let id = DeviceIdentity::new(pk, dn, secret).expect("a valid identity");
    let creds = sign(
        &id,
        &SignOptions {
            timestamp: Some("2524608000000".into()),
            extra_params: vec![("_ss".into(), "1".into())],
            ..SignOptions::default()
        },
    )
    .expect("sign");
    let mut opts = MqttOptions::new(
        creds.client_id.clone(),
        rumqttc::Broker::tcp("127.0.0.1", addr.port()),
    );
    opts.set_credentials(creds.username.clone(), creds.password.clone());
    opts.set_keep_alive(60);
    opts
}

impl TestDevice {
    /// Connects and waits for CONNACK 0.
    pub async fn connect(addr: SocketAddr, pk: &str, dn: &str, secret: &str) -> TestDevice {
        match Self::try_connect(addr, pk, dn, secret).await {
            Ok(d) => d,
            Err(e) => panic!("device {pk}/{dn} could not connect: {e}"),
        }
    }

    /// Connects; the event loop's first error when the CONNECT is refused.
    pub async fn try_connect(
        addr: SocketAddr,
        pk: &str,
        dn: &str,
        secret: &str,
    ) -> Result<TestDevice, ConnectionError> {
        let (client, mut eventloop) = AsyncClient::builder(options(addr, pk, dn, secret)).build();
        // The CONNACK, before handing the loop to a task.
        guard("CONNACK", async {
            loop {
                if let MqttEvent::Incoming(Incoming::ConnAck(_)) = eventloop.poll().await? {
                    return Ok::<(), ConnectionError>(());
                }
            }
        })
        .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Incoming::Publish(p))) => DevEvent::Publish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.clone(),
                    },
                    Ok(MqttEvent::Incoming(Incoming::SubAck(_))) => DevEvent::SubAck,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(DevEvent::Closed(e.to_string()));
                        return;
                    }
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        });
        Ok(TestDevice {
            client,
            rx,
            pk: pk.to_owned(),
            dn: dn.to_owned(),
            task,
        })
    }

    /// The next message the device receives.
    pub async fn next_publish(&mut self) -> (String, Bytes) {
        guard("a message to the device", async {
            loop {
                match self.rx.recv().await {
                    Some(DevEvent::Publish { topic, payload }) => return (topic, payload),
                    Some(DevEvent::SubAck) => {}
                    Some(DevEvent::Closed(e)) => panic!("connection closed while waiting for a message: {e}"),
                    None => panic!("event loop gone"),
                }
            }
        })
        .await
    }

    /// Waits for the connection to end; returns the reason.
    pub async fn closed(&mut self) -> String {
        guard("the connection to close", async {
            loop {
                match self.rx.recv().await {
                    Some(DevEvent::Closed(e)) => return e,
                    Some(_) => {}
                    None => panic!("event loop gone"),
                }
            }
        })
        .await
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter.to_owned(), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        guard("SUBACK", async {
            loop {
                match self.rx.recv().await {
                    Some(DevEvent::SubAck) => return,
                    Some(DevEvent::Closed(e)) => panic!("closed: {e}"),
                    Some(_) => {}
                    None => panic!("event loop gone"),
                }
            }
        })
        .await;
    }

    /// Publishes at QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(
                topic.to_owned(),
                Bytes::from(payload.into()),
                PublishOptions::at_least_once(),
            )
            .await
            .expect("publish");
    }
}
