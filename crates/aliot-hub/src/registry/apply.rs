//! Batch registration applications (cloud-side §1.6 "Batch registration": `BatchCheckDeviceNames`,
//! `BatchRegisterDevice`, `BatchRegisterDeviceWithApplyId`, `QueryBatchRegisterDeviceStatus`,
//! `QueryPageByApplyId`): what an `ApplyId` names, kept as long as the devices it registered.
//!
//! An application holds the names only; the devices' secrets and iotIds are read from the
//! registry when a page is asked for, so nothing secret is stored twice.
//!
//! # On disk (redb)
//!
//! One table, `batch_applies`: ApplyId (u64) → JSON [`ApplyRecord`]; one durable transaction per
//! change. A new ApplyId is the table's last one plus one, taken in the transaction that stores
//! it (the first is [`FIRST_APPLY_ID`]); at most [`MAX_APPLIES`] are kept, the oldest forgotten.

use redb::{ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// ApplyId → JSON [`ApplyRecord`].
const APPLIES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("batch_applies");

/// The first ApplyId given (the platform's are long integers of several digits).
pub const FIRST_APPLY_ID: u64 = 1_000_001;

/// The most applications kept: storing a new one beyond it forgets the oldest (its devices
/// stay registered; its ApplyId is then unknown). Bounds the table, which grows with API calls.
pub const MAX_APPLIES: usize = 1000;

/// Where an application stands (the platform's `Status` of `QueryBatchRegisterDeviceStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplyStatus {
    /// The names were checked and all are usable.
    CheckSuccess,
    /// Some names are unusable: nothing can be registered with it.
    CheckFailed,
    /// The devices are registered.
    CreateSuccess,
    /// The registration failed (a name was taken meanwhile); nothing was registered.
    CreateFailed,
}

impl ApplyStatus {
    /// The platform's text (`CHECK_SUCCESS`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyStatus::CheckSuccess => "CHECK_SUCCESS",
            ApplyStatus::CheckFailed => "CHECK_FAILED",
            ApplyStatus::CreateSuccess => "CREATE_SUCCESS",
            ApplyStatus::CreateFailed => "CREATE_FAILED",
        }
    }
}

/// One unusable name and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidName {
    /// The name as given.
    pub device_name: String,
    /// Why it cannot be registered.
    pub reason: String,
}

/// A batch registration application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// The product.
    pub product_key: String,
    /// Where it stands.
    pub status: ApplyStatus,
    /// The usable names, in the order given (the devices registered once created).
    pub names: Vec<String>,
    /// The unusable names.
    #[serde(default)]
    pub invalid: Vec<InvalidName>,
    /// When it was made, epoch ms.
    pub created_ms: u64,
}

fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

/// Stores an application (blocking, durable on return): a new one (`id` `None`, its ApplyId
/// returned) or a replacement.
pub(super) fn put(db: &redb::Database, id: Option<u64>, record: &ApplyRecord) -> Result<u64> {
    let bytes = serde_json::to_vec(record).map_err(|e| Error::storage("encoding a batch application", e))?;
    let txn = db.begin_write().map_err(st("starting a batch application"))?;
    let id = {
        let mut table = txn
            .open_table(APPLIES)
            .map_err(st("opening the batch applications"))?;
        let id = match id {
            Some(id) => id,
            None => {
                let count = table.len().map_err(st("reading the batch applications"))?;
                if count >= MAX_APPLIES as u64 {
                    table
                        .pop_first()
                        .map_err(st("forgetting the oldest batch application"))?;
                }
                table
                    .last()
                    .map_err(st("reading the batch applications"))?
                    .map_or(FIRST_APPLY_ID, |(k, _)| k.value().saturating_add(1))
            }
        };
        table
            .insert(id, bytes.as_slice())
            .map_err(st("writing a batch application"))?;
        id
    };
    txn.commit().map_err(st("committing a batch application"))?;
    Ok(id)
}

/// An application as stored (blocking).
pub(super) fn get(db: &redb::Database, id: u64) -> Result<Option<ApplyRecord>> {
    let txn = db.begin_read().map_err(st("reading a batch application"))?;
    let table = match txn.open_table(APPLIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(Error::storage("reading the batch applications", e)),
    };
    match table.get(id).map_err(st("reading a batch application"))? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| Error::Corrupt {
                record: format!("batch_applies/{id}"),
                source: e,
            }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ApplyRecord {
        ApplyRecord {
            product_key: "pk".into(),
            status: ApplyStatus::CheckSuccess,
            names: vec![name.into()],
            invalid: Vec::new(),
            created_ms: 1,
        }
    }

    #[test]
    fn apply_ids_follow_each_other_and_the_oldest_go_beyond_the_cap() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("a database");
        assert_eq!(get(&db, FIRST_APPLY_ID).expect("read"), None);
        let first = put(&db, None, &record("a")).expect("stored");
        assert_eq!(first, FIRST_APPLY_ID);
        let mut done = record("a");
        done.status = ApplyStatus::CreateSuccess;
        assert_eq!(put(&db, Some(first), &done).expect("replaced"), first);
        assert_eq!(get(&db, first).expect("read"), Some(done));
        for i in 1..MAX_APPLIES as u64 {
            assert_eq!(put(&db, None, &record("b")).expect("stored"), first + i);
        }
        let next = put(&db, None, &record("c")).expect("stored");
        assert_eq!(next, first + MAX_APPLIES as u64);
        assert_eq!(get(&db, first).expect("read"), None, "the oldest is forgotten");
        assert!(get(&db, first + 1).expect("read").is_some());
    }
}
