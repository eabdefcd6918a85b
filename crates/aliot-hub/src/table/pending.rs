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

/// The calls waiting for one device's answers, at most `max_pending_calls`.
///
/// Boxed, and absent when empty: every device the table holds has a slot with this in it, and
/// almost none has a call waiting. 8 bytes instead of a 24-byte `Vec` takes the table's entry
/// from 56 to 40 bytes (about 27 bytes per connected device with the map's spare capacity).
#[derive(Debug, Default)]
#[allow(
    clippy::box_collection,
    reason = "the box is the point: 8 bytes in every slot instead of the Vec's 24"
)]
pub(crate) struct PendingCalls(Option<Box<Vec<Pending>>>);

impl PendingCalls {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|v| v.is_empty())
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// Ends every waiting call (their receivers see the channel closed).
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&Pending) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }

    pub(crate) fn push(&mut self, call: Pending) {
        self.0.get_or_insert_with(Box::default).push(call);
    }

    /// Removes and returns the call waiting for `key`.
    pub(crate) fn take(&mut self, key: &CallKey) -> Option<Pending> {
        let v = self.0.as_mut()?;
        let i = v.iter().position(|p| &p.key == key)?;
        let call = v.swap_remove(i);
        if v.is_empty() {
            self.0 = None;
        }
        Some(call)
    }
}
