//! Where downlinks for sub-devices go: the sub-devices a gateway speaks for, each with its own
//! bounded event queue (`crate::Gateway`). Shared by the device handle and the network loop.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aliot_protocol::DeviceIdentity;
use tokio::sync::{mpsc, watch};

use crate::event::Event;

/// One logged-in sub-device: its identity (to log in again after a reconnect) and its queue.
pub(crate) struct SubRoute {
    pub(crate) identity: DeviceIdentity,
    pub(crate) events: mpsc::Sender<Event>,
}

/// The sub-devices of one gateway connection, by (productKey, deviceName).
///
/// A std mutex: held for one map operation, never across an `.await`; the network loop takes it
/// for each sub-device message.
#[derive(Default)]
pub(crate) struct SubRoutes {
    map: Mutex<BTreeMap<(String, String), SubRoute>>,
    /// Counts the reconnects after which the sub-devices were logged in again.
    pub(crate) restored: watch::Sender<u64>,
}

impl std::fmt::Debug for SubRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubRoutes").field("len", &self.len()).finish()
    }
}

impl SubRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), SubRoute>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the gateway speaks for `(pk, dn)`.
    pub(crate) fn contains(&self, pk: &str, dn: &str) -> bool {
        self.lock().contains_key(&(pk.to_owned(), dn.to_owned()))
    }

    /// The queue of `(pk, dn)`, if it is logged in.
    pub(crate) fn sender(&self, pk: &str, dn: &str) -> Option<mpsc::Sender<Event>> {
        self.lock()
            .get(&(pk.to_owned(), dn.to_owned()))
            .map(|r| r.events.clone())
    }

    /// Adds (or replaces) a sub-device.
    pub(crate) fn insert(&self, route: SubRoute) {
        let key = (
            route.identity.product_key().to_owned(),
            route.identity.device_name().to_owned(),
        );
        self.lock().insert(key, route);
    }

    /// Forgets a sub-device: its event stream ends.
    pub(crate) fn remove(&self, pk: &str, dn: &str) -> bool {
        self.lock().remove(&(pk.to_owned(), dn.to_owned())).is_some()
    }

    /// The identities of every sub-device, to log them in again.
    pub(crate) fn identities(&self) -> Vec<DeviceIdentity> {
        self.lock().values().map(|r| r.identity.clone()).collect()
    }

    /// How many sub-devices are logged in.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
