//! Calls that wait for a device's answer (property set, services, RRPC).

use bytes::Bytes;
use tokio::sync::oneshot;

/// Which answer a call waits for. The platform decides which device message carries which key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CallKey {
    /// `thing.service.property.set`, answered on `set_reply` by Alink id.
    PropertySet(String),
    /// A synchronous service or raw RRPC, answered by RRPC message id (on
    /// `/sys/{pk}/{dn}/rrpc/response/{id}` or on the request's own `/ext/rrpc/{id}/…` topic).
    Rrpc(String),
}

impl std::fmt::Display for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallKey::PropertySet(id) => write!(f, "property set (id {id})"),
            CallKey::Rrpc(id) => write!(f, "RRPC call (id {id})"),
        }
    }
}

/// A call waiting for the device's answer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) key: CallKey,
    pub(crate) tx: oneshot::Sender<Bytes>,
}

/// Too many calls already wait for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyPending;
