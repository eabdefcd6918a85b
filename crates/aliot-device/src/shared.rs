//! State shared by the [`crate::Device`] handles, the network loop and the reply handles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, PublishOptions};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::connection::Connected;
use crate::error::{Error, Result};
use crate::options::QoS;
use crate::pending::{Correlator, IdGenerator};

/// The connection as the rest of the SDK sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ConnState {
    /// Number of the network connection that is up (counted from 1), 0 when none is: set at
    /// CONNACK, before the subscriptions are restored.
    pub(crate) live: u64,
    /// Counts ready connections; a QoS 1 message whose send failed waits for a larger one.
    pub(crate) generation: u64,
    /// A connection is up and its subscriptions are restored: requests get their replies.
    pub(crate) connected: bool,
    /// The device stopped for good.
    pub(crate) closed: bool,
}

/// Counters, read by [`crate::Device::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) dropped_messages: AtomicU64,
    pub(crate) busy_replies: AtomicU64,
    pub(crate) resent: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) product_key: String,
    pub(crate) device_name: String,
    pub(crate) client: AsyncClient,
    /// Std mutexes: each is held for a map operation only, never across an `.await`, and the
    /// network loop must be able to take them without yielding.
    pub(crate) correlator: Mutex<Correlator>,
    pub(crate) subscriptions: Mutex<BTreeMap<String, QoS>>,
    pub(crate) conn: watch::Sender<ConnState>,
    /// Set once the device must stop; the network loop watches it while it is not connected.
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) stopping: AtomicBool,
    /// One permit per QoS 1 message waiting for its PUBACK.
    pub(crate) outbox: Arc<Semaphore>,
    pub(crate) outbox_capacity: usize,
    pub(crate) ids: IdGenerator,
    pub(crate) request_timeout: Duration,
    /// What TLS trusts, for HTTPS downloads (remote configuration) as for MQTT.
    pub(crate) trust: crate::options::TrustAnchors,
    pub(crate) counters: Counters,
    /// Told the outcome of the first connection ([`crate::Device::connect`]).
    pub(crate) first: Mutex<Option<oneshot::Sender<Result<Connected>>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("product_key", &self.product_key)
            .field("device_name", &self.device_name)
            .field("conn", &*self.conn.borrow())
            .finish_non_exhaustive()
    }
}

/// Locks a std mutex, recovering from poisoning: the maps stay consistent because every critical
/// section is a single insert/remove.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn rumqttc_qos(qos: QoS) -> rumqttc::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
    }
}

impl Shared {
    /// Ready: connected and subscriptions restored.
    pub(crate) fn is_connected(&self) -> bool {
        self.conn.borrow().connected
    }

    /// A network connection is up (CONNACK received), ready or not yet.
    pub(crate) fn network_up(&self) -> bool {
        self.conn.borrow().live != 0
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Asks the device to stop: a DISCONNECT when connected, and the loop exits.
    pub(crate) fn request_stop(&self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop.send_replace(true);
        // Graceful when there is room on the control channel (waits for in-flight QoS 1 for a
        // moment, then DISCONNECT); immediate otherwise.
        if self
            .client
            .try_disconnect_with_timeout(Duration::from_secs(2))
            .is_err()
        {
            let _ = self.client.try_disconnect_now();
        }
    }

    /// Sends now, without queueing for a reconnect: replies and QoS 0 messages.
    pub(crate) async fn publish_now(&self, topic: &str, payload: Bytes, qos: QoS) -> Result<()> {
        if !self.network_up() {
            return Err(Error::NotConnected);
        }
        self.client
            .publish(topic, payload, PublishOptions::new(rumqttc_qos(qos)))
            .await
            .map_err(|e| match e {
                rumqttc::ClientError::InvalidRequest(_) => Error::InvalidTopic(topic.to_owned()),
                _ => Error::Closed,
            })
    }

    /// Sends now if the request channel has room, else drops (logged). Never waits.
    pub(crate) fn try_publish_now(&self, topic: &str, payload: Bytes, qos: QoS) {
        if !self.network_up() {
            tracing::debug!(topic, "offline: answer not sent");
            return;
        }
        if let Err(e) = self
            .client
            .try_publish(topic, payload, PublishOptions::new(rumqttc_qos(qos)))
        {
            tracing::warn!(topic, error = %e, "answer not sent");
        }
    }

    /// Sends a QoS 1 message and waits for its PUBACK, re-sending it on every new connection
    /// until it is acknowledged or the device stops.
    pub(crate) async fn deliver(&self, topic: &str, payload: Bytes) -> Result<()> {
        let mut conn = self.conn.subscribe();
        let mut failed_on: Option<u64> = None;
        loop {
            let state = *conn
                .wait_for(|s| s.closed || (s.connected && failed_on.is_none_or(|g| s.generation > g)))
                .await
                .map_err(|_| Error::Closed)?;
            if state.closed {
                return Err(Error::Closed);
            }
            if failed_on.is_some() {
                self.counters.resent.fetch_add(1, Ordering::Relaxed);
            }
            let notice = self
                .client
                .publish_tracked(topic, payload.clone(), PublishOptions::at_least_once())
                .await
                .map_err(|e| match e {
                    rumqttc::ClientError::InvalidRequest(_) => Error::InvalidTopic(topic.to_owned()),
                    _ => Error::Closed,
                })?;
            match notice.wait_async().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // The connection went away before the PUBACK (the MQTT client drops its
                    // session state on every re-signed reconnect): send again on the next one.
                    tracing::debug!(topic, error = %e, generation = state.generation, "QoS 1 publish not acknowledged; will resend");
                    failed_on = Some(state.generation);
                }
            }
        }
    }

    /// The device stopped: wake every waiter.
    pub(crate) fn close(&self) {
        self.stopping.store(true, Ordering::Release);
        self.conn.send_modify(|s| {
            s.live = 0;
            s.connected = false;
            s.closed = true;
        });
        // Dropping the senders makes every pending request fail with `Closed`.
        *lock(&self.correlator) = Correlator::default();
    }
}
