//! Storage faults on demand, for the hub's own tests (cargo feature `fault-injection`).
//!
//! The hub's tests need the registry's disk to fail at a moment they choose (a full disk, a
//! failed `fsync`) to check what the hub does then. [`StorageFault`] is a switch shared with a
//! redb storage backend that wraps the registry file: while it is on, every write, resize and
//! sync of the file fails with an I/O error; reads keep working. A registry opened with
//! [`RedbRegistry::open_with_fault`](super::RedbRegistry::open_with_fault) reopens its file
//! through the same switch after a failure.
//!
//! The feature is enabled only by the hub's own dev-dependency on itself: no build of the
//! `aliot` binary carries it.

use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// A switch that makes the registry's storage fail. A cheap `Clone` handle: every clone flips
/// the same switch.
#[derive(Debug, Clone, Default)]
pub struct StorageFault {
    inner: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    failing: AtomicBool,
    /// Writes, resizes and syncs refused so far.
    refused: AtomicU64,
}

impl StorageFault {
    /// A switch that is off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later write, resize and sync of the file fail (`true`) or work again
    /// (`false`).
    pub fn fail(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Whether the storage fails now.
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::SeqCst)
    }

    /// How many writes, resizes and syncs were refused so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), io::Error> {
        if self.is_failing() {
            self.inner.refused.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other("injected storage fault"));
        }
        Ok(())
    }
}

/// redb's file backend, failing its writes while the switch is on.
#[derive(Debug)]
pub(super) struct FaultyBackend {
    file: FileBackend,
    fault: StorageFault,
}

impl FaultyBackend {
    pub(super) fn new(file: FileBackend, fault: StorageFault) -> Self {
        Self { file, fault }
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.fault.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.fault.check()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.fault.check()?;
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    // The locks are the file's: a faulty registry still refuses a second hub on its file.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}
