//! Server-side subscription on disk: `subscription.redb` in the data directory.
//!
//! Tables: `sub_groups` (groupId → JSON [`GroupRecord`]), `sub_relations` (productKey → JSON
//! [`Relation`]), `sub_messages` ((groupId, messageId) → the message, binary). Changes are
//! queued as [`Op`]s; the writer commits everything queued in one durable transaction (group
//! commit) and then advances the committed generation, which callers wait for. Without a
//! database (a hub without a data directory) the writer only advances the generation.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::backlog::Message;
use super::model::{GroupRecord, Relation};

const GROUPS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sub_groups");
const RELATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sub_relations");
const MESSAGES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("sub_messages");

/// One change to write.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// A message for a group's backlog.
    Append(String, Arc<Message>),
    /// A message settled or dropped.
    Delete(String, u64),
    /// A group created (or its record changed).
    PutGroup(String, GroupRecord),
    /// A group and its backlog deleted.
    DeleteGroup(String),
    /// A group's backlog emptied (`cleanSession=true`).
    ClearGroup(String),
    /// A product's subscribe relation set.
    PutRelation(String, Relation),
    /// A product's subscribe relation deleted.
    DeleteRelation(String),
}

impl Op {
    /// Bytes it holds while queued.
    pub(super) fn size(&self) -> usize {
        match self {
            Op::Append(g, m) => g.len() + m.size() + 64,
            _ => 64,
        }
    }
}

/// What the database held at start.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) groups: Vec<(String, GroupRecord)>,
    pub(super) relations: Vec<(String, Relation)>,
    pub(super) messages: Vec<(String, Message)>,
}

/// Storage errors, as text (logged; the caller's answer says "not saved").
pub(super) type StoreError = String;

fn err(what: &str, e: impl std::fmt::Display) -> StoreError {
    format!("{what}: {e}")
}

/// Opens (creates) `subscription.redb` and reads it whole.
pub(super) fn open(data_dir: &Path) -> Result<(Arc<Database>, Loaded), StoreError> {
    let db = Database::create(data_dir.join("subscription.redb"))
        .map_err(|e| err("opening subscription.redb", e))?;
    let txn = db.begin_read().map_err(|e| err("reading subscription.redb", e))?;
    let mut loaded = Loaded::default();
    match txn.open_table(GROUPS) {
        Ok(t) => {
            for row in t.iter().map_err(|e| err("reading groups", e))? {
                let (k, v) = row.map_err(|e| err("reading a group", e))?;
                if let Ok(g) = serde_json::from_slice(v.value()) {
                    loaded.groups.push((k.value().to_owned(), g));
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err("opening groups", e)),
    }
    match txn.open_table(RELATIONS) {
        Ok(t) => {
            for row in t.iter().map_err(|e| err("reading relations", e))? {
                let (k, v) = row.map_err(|e| err("reading a relation", e))?;
                if let Ok(r) = serde_json::from_slice(v.value()) {
                    loaded.relations.push((k.value().to_owned(), r));
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err("opening relations", e)),
    }
    match txn.open_table(MESSAGES) {
        Ok(t) => {
            for row in t.iter().map_err(|e| err("reading messages", e))? {
                let (k, v) = row.map_err(|e| err("reading a message", e))?;
                let (group, id) = k.value();
                match decode(id, v.value()) {
                    Some(m) => loaded.messages.push((group.to_owned(), m)),
                    None => tracing::warn!(group, id, "undecodable backlog message skipped"),
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err("opening messages", e)),
    }
    drop(txn);
    Ok((Arc::new(db), loaded))
}

/// Commits `ops` in one durable transaction.
pub(super) fn commit(db: &Database, ops: &[Op]) -> Result<(), StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| err("writing subscription.redb", e))?;
    {
        let mut groups = txn.open_table(GROUPS).map_err(|e| err("opening groups", e))?;
        let mut relations = txn
            .open_table(RELATIONS)
            .map_err(|e| err("opening relations", e))?;
        let mut messages = txn.open_table(MESSAGES).map_err(|e| err("opening messages", e))?;
        let clear = |messages: &mut redb::Table<'_, (&str, u64), &[u8]>, g: &str| {
            messages
                .retain_in((g, 0)..=(g, u64::MAX), |_, _| false)
                .map_err(|e| err("clearing a backlog", e))
        };
        for op in ops {
            match op {
                Op::Append(g, m) => {
                    messages
                        .insert((g.as_str(), m.id), encode(m).as_slice())
                        .map_err(|e| err("writing a message", e))?;
                }
                Op::Delete(g, id) => {
                    messages
                        .remove((g.as_str(), *id))
                        .map_err(|e| err("deleting a message", e))?;
                }
                Op::PutGroup(g, r) => {
                    let v = serde_json::to_vec(r).map_err(|e| err("encoding a group", e))?;
                    groups
                        .insert(g.as_str(), v.as_slice())
                        .map_err(|e| err("writing a group", e))?;
                }
                Op::DeleteGroup(g) => {
                    groups
                        .remove(g.as_str())
                        .map_err(|e| err("deleting a group", e))?;
                    clear(&mut messages, g)?;
                }
                Op::ClearGroup(g) => clear(&mut messages, g)?,
                Op::PutRelation(pk, r) => {
                    let v = serde_json::to_vec(r).map_err(|e| err("encoding a relation", e))?;
                    relations
                        .insert(pk.as_str(), v.as_slice())
                        .map_err(|e| err("writing a relation", e))?;
                }
                Op::DeleteRelation(pk) => {
                    relations
                        .remove(pk.as_str())
                        .map_err(|e| err("deleting a relation", e))?;
                }
            }
        }
    }
    txn.commit().map_err(|e| err("committing subscription.redb", e))
}

/// `generateTime` (8 bytes BE), `qos` (1), topic length (4 BE), topic, body.
fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + m.size());
    out.extend_from_slice(&m.generate_time.to_be_bytes());
    out.push(m.qos);
    out.extend_from_slice(&u32::try_from(m.topic.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(m.topic.as_bytes());
    out.extend_from_slice(&m.body);
    out
}

fn decode(id: u64, v: &[u8]) -> Option<Message> {
    let generate_time = u64::from_be_bytes(v.get(0..8)?.try_into().ok()?);
    let qos = *v.get(8)?;
    let len = usize::try_from(u32::from_be_bytes(v.get(9..13)?.try_into().ok()?)).ok()?;
    let topic = std::str::from_utf8(v.get(13..13 + len)?).ok()?.to_owned();
    let body = Bytes::copy_from_slice(v.get(13 + len..)?);
    Some(Message {
        id,
        topic,
        body,
        generate_time,
        qos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_their_encoding() {
        let m = Message {
            id: 5,
            topic: "/as/mqtt/status/pk/dn".into(),
            body: Bytes::from_static(b"\x00\xffbody"),
            generate_time: 1_700_000_000_123,
            qos: 1,
        };
        assert_eq!(decode(5, &encode(&m)), Some(m));
        assert_eq!(decode(1, b"short"), None);
    }
}
