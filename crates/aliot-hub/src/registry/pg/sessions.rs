//! Saved clean-session-0 sessions on PostgreSQL: the tables `sessions` ((productKey,
//! deviceName) → subscriptions as JSON text, `_ss`) and `session_messages` ((productKey,
//! deviceName, id) → topic, payload, queued time). A batch of changes is one transaction.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio_postgres::Client;

use crate::registry::{Error, Result, SavedMessage, SavedSession, SessionChange};

fn st(action: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::storage(action, e)
}

/// Every saved session with its messages, oldest first.
pub(super) async fn load(c: &Client) -> Result<Vec<SavedSession>> {
    let mut out: BTreeMap<(String, String), SavedSession> = BTreeMap::new();
    for row in c
        .query(
            "SELECT product_key, device_name, subscriptions, auto_subscribe FROM sessions",
            &[],
        )
        .await
        .map_err(st("reading sessions"))?
    {
        let (pk, dn): (String, String) = (row.get(0), row.get(1));
        let subs: &str = row.get(2);
        let subscriptions: Vec<(String, u8)> =
            serde_json::from_str(subs).map_err(|source| Error::Corrupt {
                record: format!("sessions/{pk}/{dn}"),
                source,
            })?;
        out.insert(
            (pk.clone(), dn.clone()),
            SavedSession {
                product_key: pk,
                device_name: dn,
                subscriptions,
                auto_subscribe: row.get(3),
                messages: Vec::new(),
            },
        );
    }
    for row in c
        .query(
            "SELECT product_key, device_name, id, topic, payload, queued_ms FROM session_messages \
             ORDER BY product_key, device_name, id",
            &[],
        )
        .await
        .map_err(st("reading saved messages"))?
    {
        let key: (String, String) = (row.get(0), row.get(1));
        // Messages of a session that is gone are not owed to anyone.
        if let Some(s) = out.get_mut(&key) {
            s.messages.push(SavedMessage {
                id: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                topic: row.get(3),
                payload: Bytes::from(row.get::<_, Vec<u8>>(4)),
                queued_ms: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
            });
        }
    }
    Ok(out.into_values().collect())
}

/// Applies `changes` in order, in one transaction.
pub(super) async fn save(c: &mut Client, changes: Vec<SessionChange>) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let txn = c.transaction().await.map_err(st("starting a session write"))?;
    let put = txn
        .prepare(
            "INSERT INTO sessions (product_key, device_name, subscriptions, auto_subscribe) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (product_key, device_name) DO UPDATE SET subscriptions = EXCLUDED.subscriptions, \
             auto_subscribe = EXCLUDED.auto_subscribe",
        )
        .await
        .map_err(st("preparing a session write"))?;
    let drop_messages = txn
        .prepare("DELETE FROM session_messages WHERE product_key = $1 AND device_name = $2")
        .await
        .map_err(st("preparing a session write"))?;
    let add = txn
        .prepare(
            "INSERT INTO session_messages (product_key, device_name, id, topic, payload, queued_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(st("preparing a session write"))?;
    let remove = txn
        .prepare("DELETE FROM session_messages WHERE product_key = $1 AND device_name = $2 AND id = $3")
        .await
        .map_err(st("preparing a session write"))?;
    for change in changes {
        match change {
            SessionChange::Put {
                product_key,
                device_name,
                subscriptions,
                auto_subscribe,
                replace,
            } => {
                if replace {
                    txn.execute(&drop_messages, &[&product_key, &device_name])
                        .await
                        .map_err(st("deleting a session's messages"))?;
                }
                let subs = serde_json::to_string(&subscriptions).map_err(|source| Error::Corrupt {
                    record: format!("sessions/{product_key}/{device_name}"),
                    source,
                })?;
                txn.execute(&put, &[&product_key, &device_name, &subs, &auto_subscribe])
                    .await
                    .map_err(st("writing a session"))?;
            }
            SessionChange::Delete {
                product_key,
                device_name,
            } => {
                txn.execute(&drop_messages, &[&product_key, &device_name])
                    .await
                    .map_err(st("deleting a session's messages"))?;
                txn.execute(
                    "DELETE FROM sessions WHERE product_key = $1 AND device_name = $2",
                    &[&product_key, &device_name],
                )
                .await
                .map_err(st("deleting a session"))?;
            }
            SessionChange::AddMessage {
                product_key,
                device_name,
                message,
            } => {
                let id = i64::try_from(message.id).unwrap_or(i64::MAX);
                let queued = i64::try_from(message.queued_ms).unwrap_or(i64::MAX);
                txn.execute(
                    &add,
                    &[
                        &product_key,
                        &device_name,
                        &id,
                        &message.topic,
                        &message.payload.as_ref(),
                        &queued,
                    ],
                )
                .await
                .map_err(st("writing a message"))?;
            }
            SessionChange::RemoveMessage {
                product_key,
                device_name,
                id,
            } => {
                let id = i64::try_from(id).unwrap_or(i64::MAX);
                txn.execute(&remove, &[&product_key, &device_name, &id])
                    .await
                    .map_err(st("deleting a message"))?;
            }
        }
    }
    txn.commit().await.map_err(st("committing sessions"))?;
    Ok(())
}
