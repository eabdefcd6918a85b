//! The cluster seam: the few calls that would cross hub nodes.
//!
//! With one hub process every device's session is in this process's [`DeviceTable`]; with
//! several processes a device is connected to one node while an admin call, a downlink or the
//! device's answer may arrive on another. Everything above the table (the application service,
//! the platform's completion of calls, the event stream) goes through [`Cluster`], so a
//! multi-node implementation (routing on a message bus) can replace [`LocalCluster`] without
//! touching the engine, the platform or the admin API:
//!
//! | call | crosses nodes because |
//! |---|---|
//! | [`Cluster::locate`], [`Cluster::session`] | who holds this device |
//! | [`Cluster::deliver`], [`Cluster::saved`] | deliver to it (or to its offline queue), and know when the node holding it saved it |
//! | [`Cluster::expect_answer`], [`Cluster::complete`] | the call waits on one node, the answer arrives on another |
//! | [`Cluster::disconnect`], [`Cluster::forget`], [`Cluster::block`] | the admin acts on a device wherever it is |
//! | [`Cluster::publish`], [`Cluster::subscribe`] | every node's events reach every node's listeners |

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use rmqtt_codec::v3::QoS;
use tokio::sync::{broadcast, oneshot};

use crate::BoxFuture;
use crate::clock::now_ms;
use crate::events::{Event, EventBus};
use crate::metrics::TableGauges;
use crate::table::{
    CallKey, CloseReason, DeviceTable, NotSaved, Outgoing, Reach, Taken, Ticket, TooManyPending, Undelivered,
};

/// A hub node's name (`"local"` for a single process).
pub(crate) type NodeId = Arc<str>;

pub use aliot_admin::SessionInfo;

/// A message for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Downlink {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
}

/// The calls that would cross nodes. Used as `Arc<dyn Cluster>`.
pub(crate) trait Cluster: Send + Sync + fmt::Debug + 'static {
    /// The node holding the device's connection, if it is online.
    fn locate(&self, product_key: &str, device_name: &str) -> Option<NodeId>;

    /// The device's MQTT session, if it is online.
    fn session(&self, product_key: &str, device_name: &str) -> Option<SessionInfo>;

    /// Delivers a downlink to the device wherever it is connected, or to its offline queue.
    /// A QoS 1 message for a clean-session-0 device comes with a ticket: it is saved until
    /// acknowledged, and [`Cluster::saved`] tells when it is on disk.
    fn deliver(
        &self,
        product_key: &str,
        device_name: &str,
        downlink: Downlink,
        reach: Reach,
    ) -> Result<Taken, Undelivered>;

    /// Resolves once the message of `ticket` is on disk.
    ///
    /// # Errors
    /// [`NotSaved`] when the storage failed meanwhile (the message is still held in memory).
    fn saved(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), NotSaved>>;

    /// Registers a call waiting for the device's answer `key` (before the request is sent).
    fn expect_answer(
        &self,
        product_key: &str,
        device_name: &str,
        key: CallKey,
    ) -> Result<oneshot::Receiver<Bytes>, TooManyPending>;

    /// Forgets a call whose caller stopped waiting.
    fn forget_answer(&self, product_key: &str, device_name: &str, key: &CallKey);

    /// Hands a device's answer to the call waiting for it, wherever it waits. Returns whether
    /// one was waiting.
    fn complete(&self, product_key: &str, device_name: &str, key: &CallKey, payload: Bytes) -> bool;

    /// Closes the device's connection wherever it is (disabled); returns whether it was online.
    fn disconnect(&self, product_key: &str, device_name: &str) -> bool;

    /// Forgets the device's stored session and offline queue and closes its connection
    /// (deleted); returns whether it was online.
    fn forget(&self, product_key: &str, device_name: &str) -> bool;

    /// Refuses the device's logins on every node from now on and closes its connection wherever
    /// it is (it is being disabled or deleted); returns whether it was online. A CONNECT that was
    /// authenticated before and registers after is refused too.
    fn block(&self, product_key: &str, device_name: &str) -> bool;

    /// Lets the device log in again (enabled, or registered anew).
    fn unblock(&self, product_key: &str, device_name: &str);

    /// Logs a sub-device out of whichever gateway connection speaks for it; returns whether
    /// one did.
    fn logout_sub(&self, product_key: &str, device_name: &str) -> bool;

    /// Closes the device's own connection because it logged in elsewhere (through a gateway):
    /// one session per device. Returns whether it was connected.
    fn kick(&self, product_key: &str, device_name: &str) -> bool;

    /// The deviceNames of a product's online devices, sorted.
    fn online_devices(&self, product_key: &str) -> Vec<String>;

    /// Sessions, offline queues and waiting calls, for `/metrics`.
    fn gauges(&self) -> TableGauges;

    /// Whether anyone listens to events (events are built only then).
    fn observed(&self) -> bool;

    /// Publishes an event to every listener.
    fn publish(&self, event: Event);

    /// A new listener of the events.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
}

/// One hub process: every device is in this table.
#[derive(Debug)]
pub(crate) struct LocalCluster {
    node: NodeId,
    table: Arc<DeviceTable>,
    events: EventBus,
}

impl LocalCluster {
    pub(crate) fn new(table: Arc<DeviceTable>, events: EventBus) -> Self {
        Self {
            node: Arc::from("local"),
            table,
            events,
        }
    }
}

impl Cluster for LocalCluster {
    fn locate(&self, product_key: &str, device_name: &str) -> Option<NodeId> {
        self.table
            .session(product_key, device_name)
            .or_else(|| self.table.subs().gateway(product_key, device_name))
            .map(|_| self.node.clone())
    }

    fn session(&self, product_key: &str, device_name: &str) -> Option<SessionInfo> {
        let s = self.table.session(product_key, device_name)?;
        Some(SessionInfo {
            client_id: s.id.client_id().to_string(),
            client_ip: s.id.ip,
            connected_at: s.id.connected_ms,
            clean_session: s.id.clean_session,
            keep_alive: s.id.keep_alive,
            subscriptions: s.subscription_count(),
            auto_subscribe: s.id.auto_subscribe,
            ext_rrpc: s.id.ext_rrpc,
        })
    }

    fn deliver(
        &self,
        product_key: &str,
        device_name: &str,
        downlink: Downlink,
        reach: Reach,
    ) -> Result<Taken, Undelivered> {
        let now = now_ms();
        let msg = Outgoing::new(downlink.topic, downlink.payload, downlink.qos, now);
        // A logged-in sub-device is reached on its gateway's connection.
        if let Some(gateway) = self.table.subs().gateway(product_key, device_name) {
            return self.table.deliver_on(&gateway, msg);
        }
        self.table.deliver(product_key, device_name, msg, reach, now)
    }

    fn saved(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), NotSaved>> {
        Box::pin(self.table.journal().wait(ticket))
    }

    fn expect_answer(
        &self,
        product_key: &str,
        device_name: &str,
        key: CallKey,
    ) -> Result<oneshot::Receiver<Bytes>, TooManyPending> {
        self.table.expect_answer(product_key, device_name, key)
    }

    fn forget_answer(&self, product_key: &str, device_name: &str, key: &CallKey) {
        self.table.forget_answer(product_key, device_name, key);
    }

    fn complete(&self, product_key: &str, device_name: &str, key: &CallKey, payload: Bytes) -> bool {
        self.table.complete(product_key, device_name, key, payload)
    }

    fn disconnect(&self, product_key: &str, device_name: &str) -> bool {
        self.table
            .disconnect(product_key, device_name, CloseReason::AdminDisconnect)
    }

    fn forget(&self, product_key: &str, device_name: &str) -> bool {
        self.table.forget(product_key, device_name)
    }

    fn block(&self, product_key: &str, device_name: &str) -> bool {
        self.table.block(product_key, device_name)
    }

    fn unblock(&self, product_key: &str, device_name: &str) {
        self.table.unblock(product_key, device_name);
    }

    fn kick(&self, product_key: &str, device_name: &str) -> bool {
        self.table
            .disconnect(product_key, device_name, CloseReason::Kicked)
    }

    fn logout_sub(&self, product_key: &str, device_name: &str) -> bool {
        self.table
            .subs()
            .kick(&(product_key.to_owned(), device_name.to_owned()))
            .is_some()
    }

    fn online_devices(&self, product_key: &str) -> Vec<String> {
        self.table.online_devices(product_key)
    }

    fn gauges(&self) -> TableGauges {
        self.table.gauges()
    }

    fn observed(&self) -> bool {
        self.events.observed()
    }

    fn publish(&self, event: Event) {
        self.events.publish(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}
