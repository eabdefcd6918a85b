//! Clean-session-0 sessions kept across restarts: their subscriptions and the QoS 1 messages
//! accepted for them and not yet acknowledged.
//!
//! The device table keeps these in memory and writes every change to a journal
//! (`table::journal`); a writer task hands the journal's changes to [`Registry::save_sessions`]
//! in batches, each one durable transaction, and an admin's "queued" answer waits for the batch
//! that holds its message. At start, [`Registry::sessions`] gives the table back what was saved.
//!
//! [`Registry::save_sessions`]: super::Registry::save_sessions
//! [`Registry::sessions`]: super::Registry::sessions
//!
//! # On disk (redb)
//!
//! Two tables of the registry's file: `sessions`, (productKey, deviceName) → the subscriptions
//! and the `_ss` flag (JSON), and `session_messages`, (productKey, deviceName, id) → the message
//! (binary: `queued_ms` as 8 bytes little-endian, the topic's length as 4, the topic, the payload).
//! Ids grow with every message the hub accepts, so a device's messages read back in the order
//! they were accepted.

use bytes::Bytes;
use redb::{ReadableTable as _, ReadableTableMetadata as _, Table, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// (productKey, deviceName) → JSON [`StoredSubscriptions`].
pub(super) const SESSIONS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("sessions");
/// (productKey, deviceName, id) → binary message (see the module docs).
pub(super) const MESSAGES: TableDefinition<'_, (&str, &str, u64), &[u8]> =
    TableDefinition::new("session_messages");

/// A QoS 1 message accepted for a clean-session-0 device and not yet acknowledged.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedMessage {
    /// Its id (unique in the hub, growing).
    pub id: u64,
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// When the hub accepted it, epoch ms (the offline queue's retention counts from it).
    pub queued_ms: u64,
}

impl std::fmt::Debug for SavedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedMessage")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .field("payload_bytes", &self.payload.len())
            .field("queued_ms", &self.queued_ms)
            .finish()
    }
}

/// A clean-session-0 session as saved: its subscriptions, its `_ss=1` flag and its messages in
/// the order they were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    /// productKey.
    pub product_key: String,
    /// deviceName.
    pub device_name: String,
    /// Topic filters with their granted QoS.
    pub subscriptions: Vec<(String, u8)>,
    /// `_ss=1`: system downlinks reach the device without a SUBSCRIBE.
    pub auto_subscribe: bool,
    /// Messages to deliver, oldest first.
    pub messages: Vec<SavedMessage>,
}

/// One change to the saved sessions, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// The device has a clean-session-0 session with these subscriptions (created or updated).
    Put {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// Topic filters with their granted QoS.
        subscriptions: Vec<(String, u8)>,
        /// `_ss=1`.
        auto_subscribe: bool,
        /// The session starts afresh: the device's earlier messages are dropped first.
        replace: bool,
    },
    /// The device's session and every message of it are gone (a clean-session-1 login, or the
    /// device was deleted).
    Delete {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
    },
    /// A message was accepted for the device.
    AddMessage {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// The message.
        message: SavedMessage,
    },
    /// A message was acknowledged (or expired): it is no longer owed.
    RemoveMessage {
        /// productKey.
        product_key: String,
        /// deviceName.
        device_name: String,
        /// Its id.
        id: u64,
    },
}

impl SessionChange {
    /// The device it is about: (productKey, deviceName).
    pub fn device(&self) -> (&str, &str) {
        match self {
            SessionChange::Put {
                product_key,
                device_name,
                ..
            }
            | SessionChange::Delete {
                product_key,
                device_name,
            }
            | SessionChange::AddMessage {
                product_key,
                device_name,
                ..
            }
            | SessionChange::RemoveMessage {
                product_key,
                device_name,
                ..
            } => (product_key, device_name),
        }
    }
}

/// How a session's subscriptions are stored (JSON, so fields can be added later).
#[derive(Serialize, Deserialize)]
struct StoredSubscriptions {
    subscriptions: Vec<(String, u8)>,
    #[serde(default)]
    auto_subscribe: bool,
}

fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

fn encode_message(m: &SavedMessage) -> Result<Vec<u8>> {
    let topic_len =
        u32::try_from(m.topic.len()).map_err(|_| Error::InvalidArgument("topic too long".into()))?;
    let mut out = Vec::with_capacity(12 + m.topic.len() + m.payload.len());
    out.extend_from_slice(&m.queued_ms.to_le_bytes());
    out.extend_from_slice(&topic_len.to_le_bytes());
    out.extend_from_slice(m.topic.as_bytes());
    out.extend_from_slice(&m.payload);
    Ok(out)
}

/// `None` when the bytes are not a message (a damaged record).
fn decode_message(id: u64, bytes: &[u8]) -> Option<SavedMessage> {
    let queued_ms = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let topic_len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(bytes.get(12..12usize.checked_add(topic_len)?)?).ok()?;
    Some(SavedMessage {
        id,
        topic: topic.to_owned(),
        payload: Bytes::copy_from_slice(bytes.get(12 + topic_len..)?),
        queued_ms,
    })
}

fn remove_messages(table: &mut Table<'_, (&str, &str, u64), &[u8]>, pk: &str, dn: &str) -> Result<()> {
    let ids: Vec<u64> = table
        .range((pk, dn, 0)..=(pk, dn, u64::MAX))
        .map_err(st("reading a session's messages"))?
        .map(|row| row.map(|(k, _)| k.value().2))
        .collect::<std::result::Result<_, _>>()
        .map_err(st("reading a session's messages"))?;
    for id in ids {
        table.remove((pk, dn, id)).map_err(st("deleting a message"))?;
    }
    Ok(())
}

/// Applies `changes` in order in one durable transaction (blocking).
pub(super) fn save(db: &redb::Database, changes: &[SessionChange]) -> Result<()> {
    let txn = db.begin_write().map_err(st("starting a session write"))?;
    {
        let mut sessions = txn
            .open_table(SESSIONS)
            .map_err(st("opening the sessions table"))?;
        let mut messages = txn
            .open_table(MESSAGES)
            .map_err(st("opening the messages table"))?;
        for change in changes {
            match change {
                SessionChange::Put {
                    product_key,
                    device_name,
                    subscriptions,
                    auto_subscribe,
                    replace,
                } => {
                    if *replace {
                        remove_messages(&mut messages, product_key, device_name)?;
                    }
                    let value = serde_json::to_vec(&StoredSubscriptions {
                        subscriptions: subscriptions.clone(),
                        auto_subscribe: *auto_subscribe,
                    })
                    .map_err(|e| Error::Corrupt {
                        record: format!("sessions/{product_key}/{device_name}"),
                        source: e,
                    })?;
                    sessions
                        .insert((product_key.as_str(), device_name.as_str()), value.as_slice())
                        .map_err(st("writing a session"))?;
                }
                SessionChange::Delete {
                    product_key,
                    device_name,
                } => {
                    sessions
                        .remove((product_key.as_str(), device_name.as_str()))
                        .map_err(st("deleting a session"))?;
                    remove_messages(&mut messages, product_key, device_name)?;
                }
                SessionChange::AddMessage {
                    product_key,
                    device_name,
                    message,
                } => {
                    let value = encode_message(message)?;
                    messages
                        .insert(
                            (product_key.as_str(), device_name.as_str(), message.id),
                            value.as_slice(),
                        )
                        .map_err(st("writing a message"))?;
                }
                SessionChange::RemoveMessage {
                    product_key,
                    device_name,
                    id,
                } => {
                    messages
                        .remove((product_key.as_str(), device_name.as_str(), *id))
                        .map_err(st("deleting a message"))?;
                }
            }
        }
    }
    txn.commit().map_err(st("committing sessions"))
}

/// Every saved session with its messages (blocking). A record that does not decode is skipped
/// and logged; messages of a device without a session record are dropped the same way.
pub(super) fn load(db: &redb::Database) -> Result<Vec<SavedSession>> {
    use redb::ReadableDatabase as _;
    let txn = db.begin_read().map_err(st("reading the sessions"))?;
    let sessions = txn
        .open_table(SESSIONS)
        .map_err(st("reading the sessions table"))?;
    let messages = txn
        .open_table(MESSAGES)
        .map_err(st("reading the messages table"))?;
    let mut out: Vec<SavedSession> =
        Vec::with_capacity(usize::try_from(sessions.len().unwrap_or(0)).unwrap_or(0));
    for row in sessions.iter().map_err(st("reading the sessions table"))? {
        let (k, v) = row.map_err(st("reading a session"))?;
        let (pk, dn) = k.value();
        match serde_json::from_slice::<StoredSubscriptions>(v.value()) {
            Ok(s) => out.push(SavedSession {
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
                subscriptions: s.subscriptions,
                auto_subscribe: s.auto_subscribe,
                messages: Vec::new(),
            }),
            Err(e) => {
                tracing::error!(product_key = pk, device_name = dn, error = %e, "a saved session cannot be decoded; skipped")
            }
        }
    }
    // Both tables are ordered by (productKey, deviceName): one merge walk.
    let mut at = 0;
    let mut orphans = 0u64;
    for row in messages.iter().map_err(st("reading the messages table"))? {
        let (k, v) = row.map_err(st("reading a message"))?;
        let (pk, dn, id) = k.value();
        while at < out.len() && (out[at].product_key.as_str(), out[at].device_name.as_str()) < (pk, dn) {
            at += 1;
        }
        let Some(session) = out
            .get_mut(at)
            .filter(|s| s.product_key == pk && s.device_name == dn)
        else {
            orphans += 1;
            continue;
        };
        match decode_message(id, v.value()) {
            Some(m) => session.messages.push(m),
            None => tracing::error!(
                product_key = pk,
                device_name = dn,
                id,
                "a saved message cannot be decoded; skipped"
            ),
        }
    }
    if orphans > 0 {
        tracing::warn!(orphans, "saved messages without a session were skipped");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_damage_is_refused() {
        let m = SavedMessage {
            id: 7,
            topic: "/pk/dn/user/get".into(),
            payload: Bytes::from_static(b"{\"a\":1}"),
            queued_ms: 1_700_000_000_000,
        };
        let bytes = encode_message(&m).expect("encodes");
        assert_eq!(decode_message(7, &bytes), Some(m));
        assert_eq!(decode_message(7, &bytes[..10]), None);
        let mut bad = bytes.clone();
        bad[8] = 0xFF;
        assert_eq!(decode_message(7, &bad), None);
    }
}
