//! [`BrokerHub`]: an in-process broker over a [`MemoryRegistry`], serving one listener on
//! loopback until the test stops it.

use std::net::SocketAddr;
use std::sync::Arc;

use aliot_hub::events::Event;
use aliot_hub::{Broker, BrokerConfig, Service};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::creds::{PK, SECRET};
use crate::guard::guard;
use crate::registry::MemoryRegistry;

/// A broker serving one listener.
#[derive(Debug)]
pub struct BrokerHub {
    /// The listener's address.
    pub addr: SocketAddr,
    /// The broker.
    pub broker: Broker,
    /// Its registry.
    pub registry: Arc<MemoryRegistry>,
    /// Subscribed before the listener starts, so no event is missed.
    pub events: broadcast::Receiver<Arc<Event>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<aliot_hub::Result<()>>>,
}

impl BrokerHub {
    /// A broker with the default settings on 127.0.0.1:0, with devices `dev1`..`dev3` of
    /// [`PK`] registered with [`SECRET`].
    pub async fn start() -> BrokerHub {
        Self::start_with(BrokerConfig::default()).await
    }

    /// As [`BrokerHub::start`] with other settings.
    pub async fn start_with(config: BrokerConfig) -> BrokerHub {
        Self::start_full(config, None).await
    }

    /// As [`BrokerHub::start_with`], serving TLS with `acceptor` when given.
    pub async fn start_full(config: BrokerConfig, acceptor: Option<tokio_rustls::TlsAcceptor>) -> BrokerHub {
        let registry = Arc::new(MemoryRegistry::default());
        for dn in ["dev1", "dev2", "dev3"] {
            registry.add(PK, dn, SECRET);
        }
        Self::serve(
            config,
            registry,
            "127.0.0.1:0".parse().expect("an address"),
            acceptor,
        )
    }

    /// A broker over `registry` on `addr` (port 0, or a port to reuse after a restart), plain
    /// or TLS.
    pub fn serve(
        config: BrokerConfig,
        registry: Arc<MemoryRegistry>,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> BrokerHub {
        let broker = Broker::new(config, registry.clone());
        let events = broker.service().events();
        let listener = aliot_hub::bind_listener(addr).expect("bind the test listener");
        let addr = listener.local_addr().expect("the listener's address");
        let (tx, rx) = oneshot::channel::<()>();
        let b = broker.clone();
        let task = tokio::spawn(async move {
            b.serve(listener, tls, async {
                let _ = rx.await;
            })
            .await
        });
        BrokerHub {
            addr,
            broker,
            registry,
            events,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The platform's API.
    pub fn service(&self) -> &Service {
        self.broker.service()
    }

    /// Stops the listener (every connection is closed) and waits for `serve` to return.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            guard("the broker to stop", task)
                .await
                .expect("the serve task")
                .expect("serve ends cleanly");
        }
    }

    /// Waits for the first event matching `pred`.
    pub async fn event(&mut self, pred: impl FnMut(&Event) -> bool) -> Arc<Event> {
        crate::events::next_event(&mut self.events, pred).await
    }

    /// Waits until the device is online (its status event).
    pub async fn online(&mut self, dn: &str) -> Arc<Event> {
        crate::events::online(&mut self.events, dn).await
    }

    /// Waits until the device is offline (its status event).
    pub async fn offline(&mut self, dn: &str) -> Arc<Event> {
        crate::events::offline(&mut self.events, dn).await
    }
}
