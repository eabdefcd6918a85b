//! The OTA room on disk: `ota.redb` in the data directory, four tables of JSON records
//! (`ota_packages` firmwareId →, `ota_jobs` jobId →, `ota_tasks` taskId →, `ota_modules`
//! `{pk}/{dn}` → module versions). Package files live beside it in `ota/packages/`.
//!
//! Memory holds every record (the room's state); a change marks its key dirty and wakes the
//! writer task, which commits every dirty record in one durable transaction (group commit) and
//! then advances the committed generation. An admin answer waits for its generation
//! ([`Store::durable`]): acknowledged = durable. The dirty set holds keys of records that exist
//! in memory anyway, so it is bounded by the state itself; no queue can overflow.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use super::OtaError;

pub(super) const PACKAGES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ota_packages");
pub(super) const JOBS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ota_jobs");
pub(super) const TASKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ota_tasks");
pub(super) const MODULES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ota_modules");

/// A record to write (or delete when its value is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Package(String),
    Job(String),
    Task(String),
    Modules(String),
}

impl Key {
    fn table(&self) -> (TableDefinition<'static, &'static str, &'static [u8]>, &str) {
        match self {
            Key::Package(k) => (PACKAGES, k),
            Key::Job(k) => (JOBS, k),
            Key::Task(k) => (TASKS, k),
            Key::Modules(k) => (MODULES, k),
        }
    }
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) packages: Vec<super::Package>,
    pub(super) jobs: Vec<super::Job>,
    pub(super) tasks: Vec<super::Task>,
    pub(super) modules: Vec<(String, super::ModuleVersions)>,
}

/// The database and the writer's bookkeeping.
#[derive(Debug)]
pub(super) struct Store {
    /// `None` in memory, and once closed.
    db: Mutex<Option<Arc<Database>>>,
    /// Where package files are kept.
    pub(super) dir: PathBuf,
    dirty: Mutex<HashSet<Key>>,
    /// The generation the next commit will reach (incremented on every mark).
    marked: Mutex<u64>,
    wake: Notify,
    committed: watch::Sender<u64>,
}

fn open_error(what: &str, e: impl std::fmt::Display) -> OtaError {
    OtaError::Storage(format!("{what}: {e}"))
}

fn read_table<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
) -> Result<Vec<(String, T)>, OtaError> {
    let t = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(open_error("opening an OTA table", e)),
    };
    let mut out = Vec::new();
    for row in t.iter().map_err(|e| open_error("reading an OTA table", e))? {
        let (k, v) = row.map_err(|e| open_error("reading an OTA record", e))?;
        match serde_json::from_slice::<T>(v.value()) {
            Ok(value) => out.push((k.value().to_owned(), value)),
            Err(e) => tracing::warn!(key = k.value(), error = %e, "undecodable OTA record skipped"),
        }
    }
    Ok(out)
}

impl Store {
    /// Opens (creates) `ota.redb` and the package directory under `data_dir`, and reads every
    /// record.
    pub(super) fn open(data_dir: &Path) -> Result<(Self, Loaded), OtaError> {
        let dir = data_dir.join("ota");
        std::fs::create_dir_all(dir.join("packages"))
            .map_err(|e| open_error("creating the OTA directory", e))?;
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| open_error("creating the OTA directory", e))?;
        let db =
            Database::create(data_dir.join("ota.redb")).map_err(|e| open_error("opening ota.redb", e))?;
        let txn = db.begin_read().map_err(|e| open_error("reading ota.redb", e))?;
        let loaded = Loaded {
            packages: read_table(&txn, PACKAGES)?.into_iter().map(|(_, v)| v).collect(),
            jobs: read_table(&txn, JOBS)?.into_iter().map(|(_, v)| v).collect(),
            tasks: read_table(&txn, TASKS)?.into_iter().map(|(_, v)| v).collect(),
            modules: read_table(&txn, MODULES)?,
        };
        drop(txn);
        // Leftovers of uploads a crash interrupted.
        if let Ok(entries) = std::fs::read_dir(dir.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok((Self::with(Some(Arc::new(db)), dir), loaded))
    }

    /// No database: state in memory only, package files in a private temporary directory (the
    /// hub built without a data directory, as the testkit's broker).
    pub(super) fn in_memory() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "aliot-ota-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        // Created by the first upload (`package.rs`): hubs that never see a package leave
        // nothing behind.
        Self::with(None, dir)
    }

    fn with(db: Option<Arc<Database>>, dir: PathBuf) -> Self {
        Self {
            db: Mutex::new(db),
            dir,
            dirty: Mutex::new(HashSet::new()),
            marked: Mutex::new(0),
            wake: Notify::new(),
            committed: watch::channel(0).0,
        }
    }

    /// Marks records changed; returns the generation that makes them durable.
    pub(super) fn mark(&self, keys: impl IntoIterator<Item = Key>) -> u64 {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        dirty.extend(keys);
        let mut marked = self.marked.lock().unwrap_or_else(PoisonError::into_inner);
        *marked += 1;
        let generation = *marked;
        drop(marked);
        drop(dirty);
        self.wake.notify_one();
        generation
    }

    /// Waits until the changes of `generation` are on disk.
    pub(super) async fn durable(&self, generation: u64) -> Result<(), OtaError> {
        let mut rx = self.committed.subscribe();
        rx.wait_for(|c| *c >= generation)
            .await
            .map(|_| ())
            .map_err(|_| OtaError::Storage("the OTA writer stopped".into()))
    }

    /// Lets the database go (after a flush, at shutdown): later changes stay in memory.
    pub(super) fn close(&self) {
        self.db.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// The writer: commits the dirty records, as read by `value`, until the store is dropped.
    pub(super) async fn run_writer(
        self: Arc<Self>,
        value: impl Fn(&Key) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) {
        let value = Arc::new(value);
        loop {
            self.wake.notified().await;
            let (keys, generation) = {
                let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
                let generation = *self.marked.lock().unwrap_or_else(PoisonError::into_inner);
                (std::mem::take(&mut *dirty), generation)
            };
            let rows: Vec<(Key, Option<Vec<u8>>)> = keys
                .into_iter()
                .map(|k| {
                    let v = value(&k);
                    (k, v)
                })
                .collect();
            let db = self.db.lock().unwrap_or_else(PoisonError::into_inner).clone();
            if let Some(db) = db {
                let written = tokio::task::spawn_blocking(move || commit(&db, &rows)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "OTA records not saved"),
                    Err(e) => tracing::error!(error = %e, "OTA writer task failed"),
                }
            }
            self.committed.send_replace(generation);
        }
    }
}

fn commit(db: &Database, rows: &[(Key, Option<Vec<u8>>)]) -> Result<(), OtaError> {
    let txn = db.begin_write().map_err(|e| open_error("writing ota.redb", e))?;
    {
        for (key, value) in rows {
            let (def, k) = key.table();
            let mut table = txn
                .open_table(def)
                .map_err(|e| open_error("opening an OTA table", e))?;
            match value {
                Some(v) => {
                    table
                        .insert(k, v.as_slice())
                        .map_err(|e| open_error("writing an OTA record", e))?;
                }
                None => {
                    table
                        .remove(k)
                        .map_err(|e| open_error("deleting an OTA record", e))?;
                }
            }
        }
    }
    txn.commit().map_err(|e| open_error("committing ota.redb", e))
}

/// A record as stored.
pub(super) fn encode<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}
