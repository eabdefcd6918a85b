//! The registry's database file: its tables, its opening (with an integrity check), the lock
//! every write takes, and what happens when the storage fails.
//!
//! # Integrity
//!
//! Every open (at start, and every reopen after a failure) runs redb's integrity check before
//! anything is read ([`redb::Builder::set_check_integrity_on_open`], the check of
//! [`Database::check_integrity`] done as part of the open): the checksum of every page of the
//! committed trees is verified and the allocator state rebuilt.
//!
//! - The file verifies (or redb could repair it by falling back to the previous commit, which
//!   it does without saying so: the `Ok(false)` of `check_integrity` is not observable in this
//!   mode): the hub starts.
//! - It cannot be repaired (`Corrupted`, or not a redb file): the hub refuses to start, naming
//!   the file and what to do: restore a backup, or move the file aside to start with an empty
//!   registry. Nothing the hub could do on its own (starting empty, say) would be better than
//!   that choice, and starting anyway would refuse every device.
//!
//! Why the check runs as part of the open and not after a plain open followed by
//! `check_integrity()`: a plain open of a damaged file may panic inside redb before the check
//! can run. Flipping one byte at each of 54 places of a 72 KiB registry, a plain open panicked 17
//! times; with the check on open, every damaged file was refused with an error and none
//! panicked. The price is one read of the whole file per open (and a commit: an open also
//! proves that the file can be written, which a reopen after a failure relies on).
//!
//! A record whose value does not decode is a different matter, handled where records are read
//! (`redb.rs`): it is skipped and reported, and every other record is served.
//!
//! # Storage failures
//!
//! redb latches an I/O error: after a failed write or sync, the `Database` refuses every later
//! transaction until it is closed and opened again. So when a write fails in storage the store
//! closes the database at once and records why: `/healthz` answers 503 with that reason, and
//! `/metrics` counts it. Then:
//!
//! - the next registration, change or deletion reopens the file first ([`Writer::open`]); when
//!   that works, the registry reloads its in-memory copy from the file (a commit whose sync failed
//!   may or may not have reached the disk: after the reopen, the disk is the truth);
//! - the last-online writer retries in the background (`redb.rs`, doubling its delay from 1 s to
//!   [`MAX_RETRY_DELAY`]), so that the hub recovers even when nobody writes. It never reopens
//!   for its own batches: while the storage is down they are dropped and counted, so a login
//!   storm on a failing disk does not become a storm of integrity checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redb::{Database, TableDefinition};

use super::{Error, Result};

/// productKey → JSON product record.
pub(super) const PRODUCTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("products");
/// (productKey, deviceName) → JSON device record.
pub(super) const DEVICES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("devices");
/// (productKey, deviceName) → the deviceToken issued by dynamic registration without
/// pre-registration (`regnwl`). Apart from the device records, which the hub keeps in memory
/// for every device: few devices have a token.
pub(super) const DEVICE_TOKENS: TableDefinition<'_, (&str, &str), &str> =
    TableDefinition::new("device_tokens");
/// productKey → the product's thing model (TSL JSON, as imported).
pub(super) const PRODUCT_TSL: TableDefinition<'_, &str, &str> = TableDefinition::new("product_tsl");

/// redb's page cache (read cache plus the write buffer of non-durable commits), at most.
///
/// redb's default is 1 GiB, and it keeps every page it touches up to that. A login storm's
/// last-online batches rewrite every device's record, so the cache grew with the fleet: with
/// 19,000 devices connected, the hub's RSS grew by 2.43 KiB per device with the default cache,
/// 1.9 with 4 MiB and 1.8 with 1 MiB. The registry is mirrored in memory and redb is only read on
/// the write paths, so a small cache costs at most a `pread` served by the OS page cache:
/// registering 100,000 devices took the same time (about 0.6 s) with 1 GiB and with 1 MiB.
const CACHE_BYTES: usize = 1024 * 1024;

/// The longest storage failure reason kept for `/healthz` (a reason is kept until a reopen).
const MAX_REASON_BYTES: usize = 512;

/// The longest delay between two background attempts to reopen a failed registry file.
pub(super) const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How the file is opened: as a plain file, or (feature `fault-injection`) through a backend
/// that fails on demand.
#[derive(Debug, Clone, Default)]
pub(super) enum Backend {
    /// redb's own file backend.
    #[default]
    File,
    /// The file behind a switch that makes its writes fail.
    #[cfg(feature = "fault-injection")]
    Faulty(super::fault::StorageFault),
}

impl Backend {
    fn open(&self, builder: &redb::Builder, path: &Path) -> Result<Database, redb::DatabaseError> {
        match self {
            Backend::File => builder.create(path),
            #[cfg(feature = "fault-injection")]
            Backend::Faulty(fault) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)?;
                let file = redb::backends::FileBackend::new(file)?;
                builder.create_with_backend(super::fault::FaultyBackend::new(file, fault.clone()))
            }
        }
    }
}

/// The database file and the state of its storage.
#[derive(Debug)]
pub(super) struct Store {
    path: PathBuf,
    backend: Backend,
    /// The open database; `None` after a storage failure, until a reopen. Every write holds this
    /// lock from its first read to its last memory update, so that memory reflects the commits in
    /// their order and a reopen never races a transaction. A std `Mutex`: it is only taken on
    /// blocking threads, and held across no `.await`.
    db: Mutex<Option<Database>>,
    /// Why the storage failed, while the database is closed. Apart from `db` so that `/healthz`
    /// never waits for a write in progress.
    fault: Mutex<Option<String>>,
    /// Writes, syncs and reopens that failed in storage.
    failures: AtomicU64,
    /// Reopens that worked.
    reopens: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its value whole (an `Option` set or taken), so a panic
    // elsewhere while it was held cannot leave it half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `e` and its sources, `: `-separated, cut to [`MAX_REASON_BYTES`].
fn reason(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Opens the file, checking its integrity, and creates the tables if missing. Blocking.
fn open_database(path: &Path, backend: &Backend) -> Result<Database> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder.set_check_integrity_on_open(true);
    let db = backend.open(&builder, path).map_err(|e| {
        let hint = match &e {
            redb::DatabaseError::DatabaseAlreadyOpen => " (is another aliot hub using this data directory?)",
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => {
                " (the file is damaged beyond repair: restore a backup, or move it aside to start \
                 with an empty registry)"
            }
            _ => "",
        };
        Error::storage(format!("opening {}{hint}", path.display()), e)
    })?;
    // Create the tables on first start so that readers never meet a missing table.
    let txn = db
        .begin_write()
        .map_err(|e| Error::storage("starting the first transaction", e))?;
    txn.open_table(PRODUCTS)
        .map_err(|e| Error::storage("creating the products table", e))?;
    txn.open_table(DEVICES)
        .map_err(|e| Error::storage("creating the devices table", e))?;
    txn.open_table(DEVICE_TOKENS)
        .map_err(|e| Error::storage("creating the device tokens table", e))?;
    txn.open_table(PRODUCT_TSL)
        .map_err(|e| Error::storage("creating the thing models table", e))?;
    txn.open_table(super::remote_config::CONFIGS)
        .map_err(|e| Error::storage("creating the remote config table", e))?;
    txn.open_table(super::remote_config::CONFIG_FILES)
        .map_err(|e| Error::storage("creating the remote config files table", e))?;
    txn.open_table(super::sessions::SESSIONS)
        .map_err(|e| Error::storage("creating the sessions table", e))?;
    txn.open_table(super::sessions::MESSAGES)
        .map_err(|e| Error::storage("creating the session messages table", e))?;
    txn.open_table(super::desired::DESIRED)
        .map_err(|e| Error::storage("creating the desired properties table", e))?;
    txn.open_table(super::shadow::SHADOWS)
        .map_err(|e| Error::storage("creating the shadows table", e))?;
    txn.open_table(super::topology::TOPOLOGY)
        .map_err(|e| Error::storage("creating the topology table", e))?;
    txn.open_table(super::topology::GATEWAY_OF)
        .map_err(|e| Error::storage("creating the topology table", e))?;
    txn.commit()
        .map_err(|e| Error::storage("committing the new tables", e))?;
    Ok(db)
}

impl Store {
    /// Opens the file (blocking).
    ///
    /// # Errors
    /// [`Error::Storage`] when it cannot be opened, is damaged beyond repair, or cannot be
    /// written.
    pub(super) fn open(path: PathBuf, backend: Backend) -> Result<Store> {
        let db = open_database(&path, &backend)?;
        Ok(Store {
            path,
            backend,
            db: Mutex::new(Some(db)),
            fault: Mutex::new(None),
            failures: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
        })
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the write lock (blocking: call it on a blocking thread).
    pub(super) fn lock(&self) -> Writer<'_> {
        Writer {
            store: self,
            db: lock(&self.db),
        }
    }

    /// Why the storage failed, while the file is closed after a failure.
    pub(super) fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    /// Writes, syncs and reopens that failed in storage.
    pub(super) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Reopens that worked.
    pub(super) fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    fn record_failure(&self, e: &Error) {
        let why = reason(e);
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %why, path = %self.path.display(), "registry storage failed; writes are refused until the file is reopened");
        *lock(&self.fault) = Some(why);
    }
}

/// The write lock, with the database behind it.
#[derive(Debug)]
pub(super) struct Writer<'a> {
    store: &'a Store,
    db: MutexGuard<'a, Option<Database>>,
}

impl Writer<'_> {
    /// The database, reopened first when a failure closed it. The flag says it was reopened:
    /// the caller then reloads what it mirrors in memory.
    ///
    /// # Errors
    /// [`Error::Storage`] when the reopen fails (the failure is recorded).
    pub(super) fn open(&mut self) -> Result<(&Database, bool)> {
        let store = self.store;
        let reopened = self.db.is_none();
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                let db =
                    open_database(&store.path, &store.backend).inspect_err(|e| store.record_failure(e))?;
                store.reopens.fetch_add(1, Ordering::Relaxed);
                *lock(&store.fault) = None;
                tracing::warn!(path = %store.path.display(), "registry storage reopened; writes work again");
                db
            }
        };
        Ok((self.db.insert(db), reopened))
    }

    /// The database when it is open (never reopens it).
    pub(super) fn if_open(&self) -> Option<&Database> {
        self.db.as_ref()
    }

    /// Reports the outcome of a write: a storage error closes the database (redb would refuse
    /// every later transaction anyway) until the next reopen. Other errors (not found, exists,
    /// an undecodable record) say nothing about the storage.
    pub(super) fn failed(&mut self, e: &Error) {
        if matches!(e, Error::Storage { .. }) && self.db.is_some() {
            // Dropping the handle closes the file and releases its lock, so it can be reopened.
            *self.db = None;
            self.store.record_failure(e);
        }
    }
}
