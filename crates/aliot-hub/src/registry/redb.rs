//! [`RedbRegistry`]: the embedded registry, products and devices in one redb file, mirrored in
//! memory.
//!
//! # Durability
//!
//! Every registration, change and deletion is one redb write transaction committed with redb's
//! default durability (`Immediate`: `commit` returns once the data is on disk) *before* the
//! call returns, so an admin answer (201, 200, 204) is never given for something a `kill -9`
//! could lose.
//!
//! The exceptions are best effort by the [`Registry`] contract. The *last online* time and IP of
//! a device: the platform reports every login through [`Registry::device_online`], which must
//! never block the CONNECT path. Those updates go to memory at once and to disk through a bounded
//! queue drained by a writer task that batches them into one transaction. Most batches commit
//! without an fsync; at most one commit a second is made durable, and a 1 s timer makes the
//! last batch of a burst durable even when nothing else is written: after a crash the stored
//! last-online values are at most about two seconds stale (or, under overload, one login behind;
//! see [`ONLINE_QUEUE`]). And the latest reported property values
//! ([`Registry::remember_properties`]): kept in memory only, lost on restart, and bounded per
//! device ([`PropertyLimits`]).
//!
//! # Storage failures and damaged files
//!
//! The file is checked at every open, and a storage failure closes it until a reopen: see
//! `store.rs`. A record that does not decode is skipped when the file is read (at start and after
//! a reopen): it is logged with its key (the first [`MAX_REPORTED_RECORDS`] one by one), counted
//! in `/metrics` (`aliot_hub_registry_records_skipped`) and named in `/healthz` (`warnings`);
//! every other record is served. Registering the device again overwrites the bad record.
//!
//! # Concurrency
//!
//! Lookups (`Registry::device_auth`, tens of thousands per second on the CONNECT path) are served
//! from an in-memory copy of the device table, split into 16 std `RwLock`s by a hash of
//! (productKey, deviceName) so that readers on different cores rarely touch the same lock word.
//! The locks are std, not tokio: they are held for a hash lookup or an insert, never across an
//! `.await`. Writes are serialised by the store's lock (`store.rs`, taken on a blocking thread
//! for "commit, then update memory") so that memory always reflects the order of the commits.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use aliot_protocol::identity::validate_product_key;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use redb::{Database, ReadableDatabase as _, ReadableTable as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::store::{Backend, DEVICE_TOKENS, DEVICES, MAX_RETRY_DELAY, PRODUCT_TSL, PRODUCTS, Store};
use super::{
    BoxFuture, CallRecord, Device, DeviceAuth, Enrolled, Enrolment, EnrolmentStep, Error, EventRecord,
    History, LatestProperty, NewDevice, NodeType, Page, Product, ProductAuth, ProductTsl, Properties,
    PropertyLimits, PropertyPoint, Records, Registry, RegistryCounts, RegistryHealth, Result, Window,
    enrolment_rule, invalid, validate_new_devices, validate_product_name,
};
use crate::clock::now_ms;
use crate::config::{HistoryConfig, RegistryConfig, create_private_dir, ensure_private_file};

/// The database file inside the data directory.
pub const DB_FILE: &str = "registry.redb";

/// Number of lock shards of the in-memory device table.
const SHARDS: usize = 16;

/// Capacity of the queue of last-online updates between [`Registry::device_online`] and the
/// writer task. Overflow policy: when full (the disk cannot keep up with a login storm), the
/// update is dropped and counted (`online_updates_dropped`); memory already holds the new
/// value, so only its on-disk copy stays one login behind until the device's next login. The
/// batches written while the storage is down are dropped and counted the same way.
pub const ONLINE_QUEUE: usize = 8192;

/// Most last-online updates written in one transaction.
const ONLINE_BATCH: usize = 1024;

/// How often at most a last-online batch is committed with an fsync, and the period of the
/// writer's timer (which makes a burst's last batch durable, and retries a failed file).
const ONLINE_DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Undecodable records logged and named one by one; the others are only counted.
pub const MAX_REPORTED_RECORDS: usize = 16;

/// The longest record key quoted in a report (keys come from the file, which may be damaged).
const MAX_KEY_CHARS: usize = 160;

/// How a product is stored (JSON, so fields can be added later with `#[serde(default)]`).
#[derive(Clone, Serialize, Deserialize)]
struct ProductRecord {
    name: String,
    product_secret: String,
    created_ms: u64,
    #[serde(default)]
    dynamic_registration: bool,
    #[serde(default, skip_serializing_if = "NodeType::is_direct")]
    node_type: NodeType,
}

/// How a device is stored, on disk (JSON) and in memory.
///
/// The hub keeps one per registered device in memory, so its strings are `Box<str>` (16 bytes,
/// not `String`'s 24: they never change after registration); with the map's `Box<str>` key an
/// entry takes 104 bytes instead of 128. The JSON is the same.
#[derive(Clone, Serialize, Deserialize)]
struct DeviceRecord {
    device_secret: Box<str>,
    iot_id: Box<str>,
    enabled: bool,
    created_ms: u64,
    #[serde(default)]
    last_online_ms: Option<u64>,
    #[serde(default)]
    last_ip: Option<IpAddr>,
    /// How the device last registered itself (absent: by the admin API only). One byte, in
    /// what was padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dynamic_registration: Option<Enrolment>,
    /// The latest reported property values: memory only (see the module docs).
    #[serde(skip)]
    properties: Option<Box<Properties>>,
}

impl DeviceRecord {
    fn to_device(&self, product_key: &str, device_name: &str) -> Device {
        Device {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            device_secret: self.device_secret.to_string(),
            iot_id: self.iot_id.to_string(),
            enabled: self.enabled,
            created_ms: self.created_ms,
            last_online_ms: self.last_online_ms,
            last_ip: self.last_ip,
            dynamic_registration: self.dynamic_registration,
        }
    }
}

/// One shard of the device table: productKey → deviceName → record. Two levels so that a
/// lookup by `(&str, &str)` needs no allocation.
type Shard = HashMap<String, HashMap<Box<str>, DeviceRecord>>;

/// (productKey, deviceName) → deviceToken.
type Tokens = BTreeMap<(String, String), String>;

/// productKey → its thing model.
type Tsls = HashMap<String, Arc<ProductTsl>>;

/// Most dynamic registrations stored by one durable commit.
const ENROL_BATCH: usize = 512;

/// A dynamic registration waiting for its commit.
struct EnrolJob {
    product_key: String,
    device_name: String,
    how: Enrolment,
    reply: oneshot::Sender<Result<Enrolled>>,
}

/// Dynamic registrations waiting for a commit (group commit): the first to find no batch
/// running runs batches until the queue is empty; the others wait for their answer. The queue
/// holds at most one registration per waiting caller, and each caller is a connection the
/// listeners' limits bound (MQTT `max_connections`, `device_http.max_connections`).
#[derive(Default)]
struct EnrolQueue {
    jobs: Vec<EnrolJob>,
    running: bool,
}

/// A login to record on disk.
struct OnlineUpdate {
    product_key: String,
    device_name: String,
    ip: IpAddr,
    at_ms: u64,
}

/// Records that could not be decoded when the file was last read: how many, and the keys of
/// the first [`MAX_REPORTED_RECORDS`].
#[derive(Debug, Clone, Default)]
struct Skipped {
    count: u64,
    keys: Vec<String>,
}

impl Skipped {
    fn note(&mut self, record: &str, error: &Error) {
        self.count += 1;
        if self.keys.len() < MAX_REPORTED_RECORDS {
            let key: String = record.chars().take(MAX_KEY_CHARS).collect();
            tracing::error!(record = %key, error = %error, "skipped a registry record that cannot be decoded");
            self.keys.push(key);
        }
    }
}

/// iotId → (productKey, deviceName).
type IotIds = HashMap<Box<str>, (Box<str>, Box<str>)>;

struct Inner {
    store: Arc<Store>,
    limits: PropertyLimits,
    products: RwLock<BTreeMap<String, ProductRecord>>,
    shards: Box<[RwLock<Shard>]>,
    /// The deviceTokens of devices registered without pre-registration.
    tokens: RwLock<Tokens>,
    /// Dynamic registrations waiting for their commit.
    enrol_queue: Mutex<EnrolQueue>,
    /// The products' thing models.
    tsls: RwLock<Tsls>,
    /// The products' remote configurations (metadata; the files stay on disk).
    configs: RwLock<super::remote_config::RemoteConfigs>,
    hasher: std::collections::hash_map::RandomState,
    device_count: AtomicU64,
    online_tx: mpsc::Sender<OnlineUpdate>,
    /// Shared with the writer task, which counts the batches it could not write.
    online_dropped: Arc<AtomicU64>,
    properties_refused: AtomicU64,
    skipped: Mutex<Skipped>,
    /// Stops the writer task and waits for it (taken once, by [`Registry::close`]).
    writer: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    /// Property values, events and calls (`history.redb`); `None` when `[history]` is off.
    history: Option<History>,
    /// The access keys (OpenAPI, AMQP), mirrored from their table.
    access_keys: super::access_keys::AccessKeys,
    /// iotId → (productKey, deviceName): a hint checked against the device's record at each
    /// lookup, so an entry left by a deleted product's devices answers nothing; rebuilt when the
    /// file is reopened.
    iot_ids: RwLock<IotIds>,
}

/// The embedded registry. A cheap `Clone` handle.
#[derive(Clone)]
pub struct RedbRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedbRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbRegistry")
            .field("path", &self.inner.store.path())
            .field("devices", &self.inner.device_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// `n` random letters and digits from the thread-local CSPRNG.
pub(crate) fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A productKey in the platform's style: `a1` and 9 letters or digits.
pub(super) fn generate_product_key() -> String {
    format!("a1{}", random_alnum(9))
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding a shard lock cannot leave a half-written HashMap entry visible
    // (insert/remove are single calls), so a poisoned lock is still consistent: keep serving.
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn encode<T: Serialize>(record: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Corrupt {
        record: record.to_owned(),
        source,
    })
}

fn decode<T: for<'de> Deserialize<'de>>(record: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        record: record.to_owned(),
        source,
    })
}

/// Runs blocking registry work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::storage("running a registry task", e))?
}

/// The registry as read from the file.
struct Snapshot {
    products: BTreeMap<String, ProductRecord>,
    shards: Vec<Shard>,
    tokens: Tokens,
    tsls: Tsls,
    configs: super::remote_config::RemoteConfigs,
    count: u64,
    skipped: Skipped,
}

/// Reads every record (blocking), skipping those that do not decode.
fn read_all(db: &Database, hasher: &impl BuildHasher) -> Result<Snapshot> {
    let mut products = BTreeMap::new();
    let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::new()).collect();
    let mut count = 0u64;
    let mut skipped = Skipped::default();
    let txn = db.begin_read().map_err(st("reading the registry"))?;
    let table = txn
        .open_table(PRODUCTS)
        .map_err(st("reading the products table"))?;
    for row in table.iter().map_err(st("reading the products table"))? {
        let (k, v) = row.map_err(st("reading a product"))?;
        let record = format!("products/{}", k.value());
        match decode::<ProductRecord>(&record, v.value()) {
            Ok(rec) => {
                products.insert(k.value().to_owned(), rec);
            }
            Err(e) => skipped.note(&record, &e),
        }
    }
    let table = txn.open_table(DEVICES).map_err(st("reading the devices table"))?;
    for row in table.iter().map_err(st("reading the devices table"))? {
        let (k, v) = row.map_err(st("reading a device"))?;
        let (pk, dn) = k.value();
        let record = format!("devices/{pk}/{dn}");
        match decode::<DeviceRecord>(&record, v.value()) {
            Ok(rec) => {
                shards[shard_index(hasher, pk, dn)]
                    .entry(pk.to_owned())
                    .or_default()
                    .insert(dn.into(), rec);
                count += 1;
            }
            Err(e) => skipped.note(&record, &e),
        }
    }
    let mut tokens = Tokens::new();
    let table = txn
        .open_table(DEVICE_TOKENS)
        .map_err(st("reading the device tokens table"))?;
    for row in table.iter().map_err(st("reading the device tokens table"))? {
        let (k, v) = row.map_err(st("reading a device token"))?;
        let (pk, dn) = k.value();
        tokens.insert((pk.to_owned(), dn.to_owned()), v.value().to_owned());
    }
    let mut tsls = Tsls::new();
    let table = txn
        .open_table(PRODUCT_TSL)
        .map_err(st("reading the thing models table"))?;
    for row in table.iter().map_err(st("reading the thing models table"))? {
        let (k, v) = row.map_err(st("reading a thing model"))?;
        let record = format!("tsl/{}", k.value());
        match ProductTsl::from_json(v.value().to_owned()) {
            Ok(tsl) => {
                tsls.insert(k.value().to_owned(), Arc::new(tsl));
            }
            Err(e) => skipped.note(&record, &e),
        }
    }
    let configs = super::remote_config::read(&txn, &mut |record, e| skipped.note(record, e))?;
    if skipped.count > 0 {
        tracing::error!(
            skipped = skipped.count,
            "registry records that cannot be decoded were skipped; the others are served"
        );
    }
    Ok(Snapshot {
        products,
        shards,
        tokens,
        tsls,
        configs,
        count,
        skipped,
    })
}

/// Maps a redb error met while `action` to the registry's error.
fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

impl RedbRegistry {
    /// Opens (or creates) the registry in `data_dir` (creating the directory) with the default
    /// settings, and loads it into memory. Starts the last-online writer task, so it must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Storage`] when the directory cannot be created, or the database cannot be
    /// opened (for example because another hub has it open) or is damaged beyond repair.
    pub async fn open(data_dir: &Path) -> Result<RedbRegistry> {
        Self::open_with(data_dir, &RegistryConfig::default()).await
    }

    /// As [`RedbRegistry::open`], with the limits of `config`.
    ///
    /// # Errors
    /// As [`RedbRegistry::open`], and [`Error::InvalidArgument`] for invalid settings.
    pub async fn open_with(data_dir: &Path, config: &RegistryConfig) -> Result<RedbRegistry> {
        Self::open_backend(data_dir, config, &HistoryConfig::default(), Backend::File).await
    }

    /// As [`RedbRegistry::open_with`], with the history settings of `history` (`history.redb`
    /// in the same directory, see [`History`]).
    ///
    /// # Errors
    /// As [`RedbRegistry::open`], and for `history.redb` too.
    pub async fn open_with_history(
        data_dir: &Path,
        config: &RegistryConfig,
        history: &HistoryConfig,
    ) -> Result<RedbRegistry> {
        Self::open_backend(data_dir, config, history, Backend::File).await
    }

    /// As [`RedbRegistry::open_with`], the file's writes and syncs failing while `fault` is on
    /// (feature `fault-injection`, for the hub's own tests).
    ///
    /// # Errors
    /// As [`RedbRegistry::open_with`].
    #[cfg(feature = "fault-injection")]
    pub async fn open_with_fault(
        data_dir: &Path,
        config: &RegistryConfig,
        fault: super::StorageFault,
    ) -> Result<RedbRegistry> {
        Self::open_backend(
            data_dir,
            config,
            &HistoryConfig::default(),
            Backend::Faulty(fault),
        )
        .await
    }

    async fn open_backend(
        data_dir: &Path,
        config: &RegistryConfig,
        history_config: &HistoryConfig,
        backend: Backend,
    ) -> Result<RedbRegistry> {
        config
            .validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        history_config
            .validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let dir = data_dir.to_owned();
        let (store, hasher, snapshot) = blocking(move || {
            // The registry holds every device's and product's secret: only the hub's user may
            // read it.
            create_private_dir(&dir)
                .map_err(|e| Error::storage(format!("creating the data directory {}", dir.display()), e))?;
            let path = dir.join(DB_FILE);
            ensure_private_file(&path)
                .map_err(|e| Error::storage(format!("creating {}", path.display()), e))?;
            let store = Store::open(path, backend)?;
            let hasher = std::collections::hash_map::RandomState::new();
            let snapshot = {
                let mut writer = store.lock();
                let (db, _) = writer.open()?;
                (read_all(db, &hasher)?, super::access_keys::read(db)?)
            };
            Ok((store, hasher, snapshot))
        })
        .await?;
        let store = Arc::new(store);
        let (snapshot, access_keys) = snapshot;
        let Snapshot {
            products,
            shards,
            tokens,
            tsls,
            configs,
            count,
            skipped,
        } = snapshot;
        tracing::info!(path = %store.path().display(), products = products.len(), devices = count, skipped = skipped.count, "registry opened");

        let history = if history_config.enabled {
            Some(History::open(data_dir, history_config).await?)
        } else {
            None
        };
        // See ONLINE_QUEUE for the capacity and the overflow policy.
        let (online_tx, online_rx) = mpsc::channel(ONLINE_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let online_dropped = Arc::new(AtomicU64::new(0));
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let writer = tokio::spawn(online_writer(
                weak.clone(),
                Arc::clone(&store),
                Arc::clone(&online_dropped),
                online_rx,
                stop_rx,
            ));
            Inner {
                store,
                limits: PropertyLimits::from(config),
                products: RwLock::new(products),
                shards: shards.into_iter().map(RwLock::new).collect(),
                tokens: RwLock::new(tokens),
                enrol_queue: Mutex::default(),
                tsls: RwLock::new(tsls),
                configs: RwLock::new(configs),
                hasher,
                device_count: AtomicU64::new(count),
                online_tx,
                online_dropped,
                properties_refused: AtomicU64::new(0),
                skipped: Mutex::new(skipped),
                writer: Mutex::new(Some((stop_tx, writer))),
                history,
                access_keys: super::access_keys::AccessKeys::default(),
                iot_ids: RwLock::default(),
            }
        });
        inner.access_keys.replace(access_keys);
        let registry = RedbRegistry { inner };
        registry.index_iot_ids();
        registry.restore_latest().await?;
        Ok(registry)
    }

    /// Puts the stored latest property values back into memory (where the property limits and
    /// `GET …/devices/{dn}` read them). A device past its limits keeps what it had in memory.
    async fn restore_latest(&self) -> Result<()> {
        let Some(history) = &self.inner.history else {
            return Ok(());
        };
        for (product_key, device_name, values) in history.all_latest().await? {
            if let Err(e) = self.remember_properties(&product_key, &device_name, values) {
                tracing::warn!(product_key, device_name, error = %e, "stored latest values not restored");
            }
        }
        Ok(())
    }

    /// Rebuilds the iotId index from the devices in memory.
    fn index_iot_ids(&self) {
        let mut index = HashMap::new();
        for shard in &self.inner.shards {
            for (pk, devices) in read_lock(shard).iter() {
                for (dn, rec) in devices {
                    index.insert(rec.iot_id.clone(), (pk.as_str().into(), dn.clone()));
                }
            }
        }
        *write_lock(&self.inner.iot_ids) = index;
    }

    /// Notes a new device in the iotId index.
    fn index_iot_id(&self, pk: &str, dn: &str, iot_id: &str) {
        write_lock(&self.inner.iot_ids).insert(iot_id.into(), (pk.into(), dn.into()));
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        self.inner.store.path()
    }

    fn history(&self) -> Result<&History> {
        self.inner.history.as_ref().ok_or(Error::Unsupported(
            "history (it is off: [history] enabled = false)",
        ))
    }

    fn shard(&self, pk: &str, dn: &str) -> &RwLock<Shard> {
        &self.inner.shards[shard_index(&self.inner.hasher, pk, dn)]
    }

    fn record<T>(&self, pk: &str, dn: &str, f: impl FnOnce(&DeviceRecord) -> T) -> Option<T> {
        read_lock(self.shard(pk, dn))
            .get(pk)
            .and_then(|m| m.get(dn))
            .map(f)
    }

    fn device_count_of(&self, product_key: &str) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| read_lock(s).get(product_key).map_or(0, HashMap::len))
            .sum()
    }

    fn product_view(&self, product_key: &str, r: &ProductRecord) -> Product {
        Product {
            product_key: product_key.to_owned(),
            name: r.name.clone(),
            product_secret: r.product_secret.clone(),
            created_ms: r.created_ms,
            device_count: self.device_count_of(product_key),
            dynamic_registration: r.dynamic_registration,
            node_type: r.node_type,
        }
    }

    fn require_device(&self, pk: &str, dn: &str) -> Result<()> {
        self.record(pk, dn, |_| ()).ok_or_else(|| Error::DeviceNotFound {
            product_key: pk.to_owned(),
            device_name: dn.to_owned(),
        })
    }

    fn require_product(&self, product_key: &str) -> Result<()> {
        if read_lock(&self.inner.products).contains_key(product_key) {
            Ok(())
        } else {
            Err(Error::ProductNotFound {
                product_key: product_key.to_owned(),
            })
        }
    }

    /// Runs a write under the store's lock (blocking): reopens the file first if a failure
    /// closed it (and then reloads memory from it), and reports a storage error to the store,
    /// which closes the file until the next reopen.
    fn write<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let mut writer = self.inner.store.lock();
        let (db, reopened) = writer.open()?;
        let result = if reopened {
            self.reload(db).and_then(|()| f(db))
        } else {
            f(db)
        };
        if let Err(e) = &result {
            writer.failed(e);
        }
        result
    }

    /// Replaces memory with what the reopened file holds, keeping what only memory has: the
    /// remembered properties and last-online times fresher than the stored ones. Under the
    /// store's lock, so no commit runs meanwhile.
    fn reload(&self, db: &Database) -> Result<()> {
        let inner = &self.inner;
        let Snapshot {
            products,
            shards,
            tokens,
            tsls,
            configs,
            count,
            skipped,
        } = read_all(db, &inner.hasher)?;
        *write_lock(&inner.tsls) = tsls;
        *write_lock(&inner.configs) = configs;
        *write_lock(&inner.products) = products;
        *write_lock(&inner.tokens) = tokens;
        for (lock, mut fresh) in inner.shards.iter().zip(shards) {
            let mut shard = write_lock(lock);
            for (pk, devices) in &mut fresh {
                for (dn, rec) in devices.iter_mut() {
                    let Some(old) = shard.get_mut(pk).and_then(|m| m.get_mut(dn)) else {
                        continue;
                    };
                    rec.properties = old.properties.take();
                    if old.last_online_ms > rec.last_online_ms {
                        rec.last_online_ms = old.last_online_ms;
                        rec.last_ip = old.last_ip;
                    }
                }
            }
            *shard = fresh;
        }
        inner.device_count.store(count, Ordering::Relaxed);
        self.index_iot_ids();
        *inner.skipped.lock().unwrap_or_else(PoisonError::into_inner) = skipped;
        tracing::info!(devices = count, "registry reloaded from the reopened file");
        Ok(())
    }

    /// Registers a product (blocking; on the blocking pool).
    fn create_product_blocking(&self, name: String, given: Option<String>) -> Result<Product> {
        self.write(|db| {
            let inner = &self.inner;
            let pk = match given {
                Some(pk) => {
                    if read_lock(&inner.products).contains_key(&pk) {
                        return Err(Error::ProductExists { product_key: pk });
                    }
                    pk
                }
                None => {
                    // 62^9 keys: a collision is unlikely, but cheap to rule out.
                    let products = read_lock(&inner.products);
                    let mut pk = generate_product_key();
                    while products.contains_key(&pk) {
                        pk = generate_product_key();
                    }
                    pk
                }
            };
            let rec = ProductRecord {
                name,
                product_secret: random_alnum(32),
                created_ms: now_ms(),
                dynamic_registration: false,
                node_type: NodeType::Direct,
            };
            let txn = db.begin_write().map_err(st("starting a product registration"))?;
            {
                let mut table = txn
                    .open_table(PRODUCTS)
                    .map_err(st("opening the products table"))?;
                table
                    .insert(pk.as_str(), encode(&format!("products/{pk}"), &rec)?.as_slice())
                    .map_err(st("writing a product"))?;
            }
            txn.commit().map_err(st("committing a product"))?;
            write_lock(&inner.products).insert(pk.clone(), rec.clone());
            tracing::info!(product_key = %pk, "product registered");
            Ok(self.product_view(&pk, &rec))
        })
    }

    /// Registers devices (blocking; on the blocking pool). Validated by the caller.
    fn create_devices_blocking(
        &self,
        pk: String,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> Result<Vec<Device>> {
        self.write(|db| {
            let inner = &self.inner;
            // Re-check under the write lock: the product may have gone meanwhile (it cannot
            // today, products are never deleted, but keep the invariant local).
            self.require_product(&pk)?;
            let now = now_ms();
            let mut out = Vec::with_capacity(devices.len());
            let mut new = Vec::with_capacity(devices.len());
            for NewDevice {
                device_name: dn,
                device_secret,
            } in devices
            {
                match self.record(&pk, &dn, |r| r.to_device(&pk, &dn)) {
                    Some(existing) if skip_existing => out.push(existing),
                    Some(_) => {
                        return Err(Error::DeviceExists {
                            product_key: pk.clone(),
                            device_name: dn,
                        });
                    }
                    None => {
                        let rec = DeviceRecord {
                            device_secret: device_secret.unwrap_or_else(|| random_alnum(32)).into(),
                            iot_id: random_alnum(32).into(),
                            enabled: true,
                            created_ms: now,
                            last_online_ms: None,
                            last_ip: None,
                            dynamic_registration: None,
                            properties: None,
                        };
                        out.push(rec.to_device(&pk, &dn));
                        new.push((dn, rec));
                    }
                }
            }
            if !new.is_empty() {
                let txn = db.begin_write().map_err(st("starting a device registration"))?;
                {
                    let mut table = txn.open_table(DEVICES).map_err(st("opening the devices table"))?;
                    for (dn, rec) in &new {
                        // Overwrites a record that was skipped because it did not decode.
                        let bytes = encode(&format!("devices/{pk}/{dn}"), rec)?;
                        table
                            .insert((pk.as_str(), dn.as_str()), bytes.as_slice())
                            .map_err(st("writing a device"))?;
                    }
                }
                txn.commit().map_err(st("committing devices"))?;
                let n = new.len();
                for (dn, rec) in new {
                    self.index_iot_id(&pk, &dn, &rec.iot_id);
                    write_lock(self.shard(&pk, &dn))
                        .entry(pk.clone())
                        .or_default()
                        .insert(dn.into(), rec);
                }
                inner.device_count.fetch_add(n as u64, Ordering::Relaxed);
                tracing::info!(product_key = %pk, count = n, "devices registered");
            }
            Ok(out)
        })
    }

    /// Applies `change` to a device's stored record, in one durable transaction, then to its
    /// copy in memory (blocking); `tokens` also drops its deviceToken. Only what `change` sets
    /// changes in memory: the last-online fields there may be fresher than the stored ones.
    fn change_device(
        &self,
        pk: &str,
        dn: &str,
        what: &'static str,
        drop_token: bool,
        change: impl Fn(&mut DeviceRecord),
    ) -> Result<Device> {
        self.write(|db| {
            let not_found = || Error::DeviceNotFound {
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
            };
            let record = format!("devices/{pk}/{dn}");
            let txn = db.begin_write().map_err(st("starting a device update"))?;
            {
                let mut table = txn.open_table(DEVICES).map_err(st("opening the devices table"))?;
                let stored: Option<DeviceRecord> =
                    match table.get((pk, dn)).map_err(st("reading a device"))? {
                        Some(guard) => Some(decode(&record, guard.value())?),
                        None => None,
                    };
                let Some(mut rec) = stored else {
                    return Err(not_found());
                };
                change(&mut rec);
                table
                    .insert((pk, dn), encode(&record, &rec)?.as_slice())
                    .map_err(st("writing a device"))?;
                if drop_token {
                    txn.open_table(DEVICE_TOKENS)
                        .map_err(st("opening the device tokens table"))?
                        .remove((pk, dn))
                        .map_err(st("deleting a device token"))?;
                }
            }
            txn.commit().map_err(st("committing a device update"))?;
            if drop_token {
                write_lock(&self.inner.tokens).remove(&(pk.to_owned(), dn.to_owned()));
            }
            let mut shard = write_lock(self.shard(pk, dn));
            let rec = shard
                .get_mut(pk)
                .and_then(|m| m.get_mut(dn))
                .ok_or_else(not_found)?;
            change(rec);
            tracing::info!(product_key = %pk, device_name = %dn, "device {what}");
            Ok(rec.to_device(pk, dn))
        })
    }

    /// Enables or disables a device (blocking).
    fn set_enabled_blocking(&self, pk: String, dn: String, enabled: bool) -> Result<Device> {
        let what = if enabled { "enabled" } else { "disabled" };
        self.change_device(&pk, &dn, what, false, |rec| rec.enabled = enabled)
    }

    /// Deletes a device (blocking).
    fn delete_device_blocking(&self, pk: String, dn: String) -> Result<Device> {
        self.write(|db| {
            let not_found = || Error::DeviceNotFound {
                product_key: pk.clone(),
                device_name: dn.clone(),
            };
            let txn = db.begin_write().map_err(st("starting a device deletion"))?;
            {
                let mut table = txn.open_table(DEVICES).map_err(st("opening the devices table"))?;
                if table
                    .remove((pk.as_str(), dn.as_str()))
                    .map_err(st("deleting a device"))?
                    .is_none()
                {
                    return Err(not_found());
                }
                txn.open_table(DEVICE_TOKENS)
                    .map_err(st("opening the device tokens table"))?
                    .remove((pk.as_str(), dn.as_str()))
                    .map_err(st("deleting a device token"))?;
            }
            super::desired::forget(&txn, &pk, &dn)?;
            super::shadow::forget(&txn, &pk, &dn)?;
            super::topology::forget(&txn, &pk, &dn)?;
            txn.commit().map_err(st("committing a device deletion"))?;
            write_lock(&self.inner.tokens).remove(&(pk.clone(), dn.clone()));
            let mut shard = write_lock(self.shard(&pk, &dn));
            let removed = shard
                .get_mut(&pk)
                .and_then(|m| m.remove(dn.as_str()))
                .ok_or_else(not_found)?;
            if shard.get(&pk).is_some_and(HashMap::is_empty) {
                shard.remove(&pk);
            }
            drop(shard);
            write_lock(&self.inner.iot_ids).remove(&removed.iot_id);
            self.inner.device_count.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(product_key = %pk, device_name = %dn, "device deleted");
            Ok(removed.to_device(&pk, &dn))
        })
    }
}

impl RedbRegistry {
    /// Allows or forbids dynamic registration for a product (blocking).
    fn set_dynamic_registration_blocking(&self, pk: String, enabled: bool) -> Result<Product> {
        self.change_product(pk, |rec| rec.dynamic_registration = enabled)
    }

    /// Changes a product's record (blocking): committed, then memory follows.
    fn change_product(&self, pk: String, change: impl FnOnce(&mut ProductRecord)) -> Result<Product> {
        self.write(|db| {
            let mut rec =
                read_lock(&self.inner.products)
                    .get(&pk)
                    .cloned()
                    .ok_or_else(|| Error::ProductNotFound {
                        product_key: pk.clone(),
                    })?;
            change(&mut rec);
            let txn = db.begin_write().map_err(st("starting a product update"))?;
            {
                let mut table = txn
                    .open_table(PRODUCTS)
                    .map_err(st("opening the products table"))?;
                table
                    .insert(pk.as_str(), encode(&format!("products/{pk}"), &rec)?.as_slice())
                    .map_err(st("writing a product"))?;
            }
            txn.commit().map_err(st("committing a product update"))?;
            write_lock(&self.inner.products).insert(pk.clone(), rec.clone());
            tracing::info!(product_key = %pk, dynamic_registration = rec.dynamic_registration, node_type = rec.node_type.as_str(), "product updated");
            Ok(self.product_view(&pk, &rec))
        })
    }

    /// Stores or removes a product's thing model (blocking).
    fn set_tsl_blocking(&self, pk: String, tsl: Option<ProductTsl>) -> Result<()> {
        self.write(|db| {
            self.require_product(&pk)?;
            let txn = db.begin_write().map_err(st("starting a thing model update"))?;
            {
                let mut table = txn
                    .open_table(PRODUCT_TSL)
                    .map_err(st("opening the thing models table"))?;
                match &tsl {
                    Some(t) => {
                        table
                            .insert(pk.as_str(), t.json.as_str())
                            .map_err(st("writing a thing model"))?;
                    }
                    None => {
                        table.remove(pk.as_str()).map_err(st("deleting a thing model"))?;
                    }
                }
            }
            txn.commit().map_err(st("committing a thing model"))?;
            let mut tsls = write_lock(&self.inner.tsls);
            match tsl {
                Some(t) => {
                    tsls.insert(pk.clone(), Arc::new(t));
                }
                None => {
                    tsls.remove(&pk);
                }
            }
            tracing::info!(product_key = %pk, "thing model updated");
            Ok(())
        })
    }

    /// Changes a product's remote configuration (blocking): `change` edits it and says what
    /// becomes of the file; both are committed together, then memory follows.
    fn change_config<'f>(
        &self,
        pk: &str,
        change: impl FnOnce(&mut super::RemoteConfig) -> super::remote_config::FileChange<'f>,
    ) -> Result<super::RemoteConfig> {
        self.write(|db| {
            self.require_product(pk)?;
            let mut config = read_lock(&self.inner.configs).get(pk).cloned().unwrap_or_default();
            let file = change(&mut config);
            super::remote_config::write(db, pk, &config, file)?;
            write_lock(&self.inner.configs).insert(pk.to_owned(), config.clone());
            tracing::info!(product_key = %pk, enabled = config.enabled, config_id = ?config.file.as_ref().map(|f| &f.config_id), "remote config updated");
            Ok(config)
        })
    }

    /// Makes a device registrable again (blocking): no last login, no deviceToken.
    fn reset_device_blocking(&self, pk: String, dn: String) -> Result<Device> {
        self.change_device(&pk, &dn, "reset", true, |rec| {
            rec.last_online_ms = None;
            rec.last_ip = None;
        })
    }

    /// Dynamic registrations in one durable transaction (blocking): for each, in order,
    /// [`enrolment_rule`] against the device as memory and the batch's earlier registrations
    /// leave it. A rule's refusal answers that registration only; a storage failure answers
    /// every registration of the batch (none is stored).
    fn enrol_batch(&self, jobs: &[(String, String, Enrolment)]) -> Vec<Result<Enrolled>> {
        /// What the batch stores for one device: its record and its new token.
        type Staged = HashMap<(String, String), (DeviceRecord, Option<String>)>;
        let outcome = self.write(|db| {
            let mut staged: Staged = HashMap::new();
            let mut answers: Vec<Result<Enrolled>> = Vec::with_capacity(jobs.len());
            let txn = db.begin_write().map_err(st("starting dynamic registrations"))?;
            {
                let mut table = txn.open_table(DEVICES).map_err(st("opening the devices table"))?;
                let mut tokens = txn
                    .open_table(DEVICE_TOKENS)
                    .map_err(st("opening the device tokens table"))?;
                for (pk, dn, how) in jobs {
                    let key = (pk.clone(), dn.clone());
                    let existing = match staged.get(&key) {
                        Some((rec, _)) => Some((rec.to_device(pk, dn), rec.clone())),
                        None => self.record(pk, dn, |r| (r.to_device(pk, dn), r.clone())),
                    };
                    let step = self
                        .require_product(pk)
                        .and_then(|()| enrolment_rule(pk, dn, *how, existing.as_ref().map(|(d, _)| d)));
                    let step = match step {
                        Ok(step) => step,
                        Err(e) => {
                            answers.push(Err(e));
                            continue;
                        }
                    };
                    let mut rec = match (step, existing) {
                        (EnrolmentStep::Create, _) | (_, None) => DeviceRecord {
                            device_secret: random_alnum(32).into(),
                            iot_id: random_alnum(32).into(),
                            enabled: true,
                            created_ms: now_ms(),
                            last_online_ms: None,
                            last_ip: None,
                            dynamic_registration: None,
                            properties: None,
                        },
                        (_, Some((_, rec))) => rec,
                    };
                    if step == EnrolmentStep::NewSecret {
                        rec.device_secret = random_alnum(32).into();
                    }
                    rec.dynamic_registration = Some(*how);
                    let token = (step != EnrolmentStep::NewSecret).then(|| random_alnum(32));
                    let record = format!("devices/{pk}/{dn}");
                    table
                        .insert((pk.as_str(), dn.as_str()), encode(&record, &rec)?.as_slice())
                        .map_err(st("writing a device"))?;
                    if let Some(token) = &token {
                        tokens
                            .insert((pk.as_str(), dn.as_str()), token.as_str())
                            .map_err(st("writing a device token"))?;
                    }
                    // A later registration of the same device in this batch keeps the token it
                    // does not replace.
                    let kept = token
                        .clone()
                        .or_else(|| staged.get(&key).and_then(|(_, t)| t.clone()));
                    // The answer is the device as this registration leaves it.
                    answers.push(Ok(Enrolled {
                        device: rec.to_device(pk, dn),
                        device_token: token,
                    }));
                    staged.insert(key, (rec, kept));
                }
            }
            txn.commit().map_err(st("committing dynamic registrations"))?;
            // Durable: memory follows, then the answers.
            for ((pk, dn), (rec, token)) in &staged {
                let mut shard = write_lock(self.shard(pk, dn));
                let devices = shard.entry(pk.clone()).or_default();
                if let Some(old) = devices.get_mut(dn.as_str()) {
                    old.device_secret = rec.device_secret.clone();
                    old.dynamic_registration = rec.dynamic_registration;
                } else {
                    devices.insert(dn.as_str().into(), rec.clone());
                    self.inner.device_count.fetch_add(1, Ordering::Relaxed);
                }
                drop(shard);
                self.index_iot_id(pk, dn, &rec.iot_id);
                if let Some(token) = token {
                    write_lock(&self.inner.tokens).insert((pk.clone(), dn.clone()), token.clone());
                }
            }
            for (pk, dn) in staged.keys() {
                tracing::info!(product_key = %pk, device_name = %dn, "device registered dynamically");
            }
            Ok(answers)
        });
        match outcome {
            Ok(answers) => answers,
            Err(e) => {
                let why = e.to_string();
                jobs.iter()
                    .map(|_| {
                        Err(Error::storage(
                            "storing dynamic registrations",
                            std::io::Error::other(why.clone()),
                        ))
                    })
                    .collect()
            }
        }
    }

    /// Runs the queued registrations, a batch (one durable commit) at a time, until none is
    /// left (blocking; one caller at a time, see [`EnrolQueue`]).
    fn run_enrolments(&self) {
        loop {
            let jobs: Vec<EnrolJob> = {
                let mut q = self
                    .inner
                    .enrol_queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if q.jobs.is_empty() {
                    q.running = false;
                    return;
                }
                let n = q.jobs.len().min(ENROL_BATCH);
                q.jobs.drain(..n).collect()
            };
            let keys: Vec<(String, String, Enrolment)> = jobs
                .iter()
                .map(|j| (j.product_key.clone(), j.device_name.clone(), j.how))
                .collect();
            let answers = self.enrol_batch(&keys);
            for (job, answer) in jobs.into_iter().zip(answers) {
                // The caller may have gone (its connection closed): the registration stands.
                let _ = job.reply.send(answer);
            }
        }
    }
}

impl Registry for RedbRegistry {
    fn create_product<'a>(
        &'a self,
        name: &'a str,
        product_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Product>> {
        Box::pin(async move {
            validate_product_name(name)?;
            if let Some(pk) = product_key {
                validate_product_key(pk).map_err(invalid)?;
            }
            let (this, name, given) = (self.clone(), name.to_owned(), product_key.map(str::to_owned));
            blocking(move || this.create_product_blocking(name, given)).await
        })
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        let products: Vec<Product> = read_lock(&self.inner.products)
            .iter()
            .map(|(pk, r)| self.product_view(pk, r))
            .collect();
        Box::pin(std::future::ready(Ok(products)))
    }

    fn product<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Option<Product>>> {
        let product = read_lock(&self.inner.products)
            .get(product_key)
            .map(|r| self.product_view(product_key, r));
        Box::pin(std::future::ready(Ok(product)))
    }

    fn create_devices<'a>(
        &'a self,
        product_key: &'a str,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> BoxFuture<'a, Result<Vec<Device>>> {
        Box::pin(async move {
            validate_new_devices(product_key, &devices)?;
            self.require_product(product_key)?;
            let (this, pk) = (self.clone(), product_key.to_owned());
            blocking(move || this.create_devices_blocking(pk, devices, skip_existing)).await
        })
    }

    fn device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>>> {
        let device = self.record(product_key, device_name, |r| {
            r.to_device(product_key, device_name)
        });
        Box::pin(std::future::ready(Ok(device)))
    }

    fn devices<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Vec<Device>>> {
        let result = self.require_product(product_key).map(|()| {
            let mut out = Vec::new();
            for shard in &*self.inner.shards {
                if let Some(m) = read_lock(shard).get(product_key) {
                    out.extend(m.iter().map(|(dn, r)| r.to_device(product_key, dn)));
                }
            }
            out.sort_unstable_by(|a, b| a.device_name.cmp(&b.device_name));
            out
        });
        Box::pin(std::future::ready(result))
    }

    fn set_enabled<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Device>> {
        let (this, pk, dn) = (self.clone(), product_key.to_owned(), device_name.to_owned());
        Box::pin(blocking(move || this.set_enabled_blocking(pk, dn, enabled)))
    }

    fn delete_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>> {
        let (this, pk, dn) = (self.clone(), product_key.to_owned(), device_name.to_owned());
        Box::pin(async move {
            let deleted = blocking(move || this.delete_device_blocking(pk, dn)).await?;
            // A device registered again under this name starts without history.
            if let Some(h) = &self.inner.history
                && let Err(e) = h.forget(product_key, device_name).await
            {
                tracing::warn!(product_key, device_name, error = %e, "history of a deleted device not removed (pruned with age)");
            }
            Ok(deleted)
        })
    }

    fn device_auth<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<DeviceAuth>> {
        let auth = self.record(product_key, device_name, |r| DeviceAuth {
            device_secret: r.device_secret.to_string(),
            enabled: r.enabled,
            iot_id: r.iot_id.to_string(),
        });
        Box::pin(std::future::ready(auth))
    }

    fn product_auth<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Option<ProductAuth>> {
        let auth = read_lock(&self.inner.products)
            .get(product_key)
            .map(|r| ProductAuth {
                product_secret: r.product_secret.clone(),
                dynamic_registration: r.dynamic_registration,
            });
        Box::pin(std::future::ready(auth))
    }

    fn set_dynamic_registration<'a>(
        &'a self,
        product_key: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Product>> {
        let (this, pk) = (self.clone(), product_key.to_owned());
        Box::pin(blocking(move || {
            this.set_dynamic_registration_blocking(pk, enabled)
        }))
    }

    fn enrol<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        how: Enrolment,
    ) -> BoxFuture<'a, Result<Enrolled>> {
        let (reply, answer) = oneshot::channel();
        let job = EnrolJob {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            how,
            reply,
        };
        let lead = {
            let mut q = self
                .inner
                .enrol_queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.jobs.push(job);
            !std::mem::replace(&mut q.running, true)
        };
        if lead {
            // This registration runs the batches, its own and those queued meanwhile.
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.run_enrolments());
        }
        Box::pin(async move {
            answer
                .await
                .map_err(|e| Error::storage("waiting for a dynamic registration", e))?
        })
    }

    fn tsl(&self, product_key: &str) -> Option<Arc<ProductTsl>> {
        read_lock(&self.inner.tsls).get(product_key).cloned()
    }

    fn set_tsl<'a>(&'a self, product_key: &'a str, tsl: Option<ProductTsl>) -> BoxFuture<'a, Result<()>> {
        let (this, pk) = (self.clone(), product_key.to_owned());
        Box::pin(blocking(move || this.set_tsl_blocking(pk, tsl)))
    }

    fn reset_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>> {
        let (this, pk, dn) = (self.clone(), product_key.to_owned(), device_name.to_owned());
        Box::pin(blocking(move || this.reset_device_blocking(pk, dn)))
    }

    fn device_token<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        let token = read_lock(&self.inner.tokens)
            .get(&(product_key.to_owned(), device_name.to_owned()))
            .cloned();
        Box::pin(std::future::ready(token))
    }

    fn device_online(&self, product_key: &str, device_name: &str, ip: IpAddr, at_ms: u64) {
        {
            let mut shard = write_lock(self.shard(product_key, device_name));
            let Some(rec) = shard.get_mut(product_key).and_then(|m| m.get_mut(device_name)) else {
                return;
            };
            rec.last_online_ms = Some(at_ms);
            rec.last_ip = Some(ip);
        }
        let update = OnlineUpdate {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            ip,
            at_ms,
        };
        // Never wait: see ONLINE_QUEUE for the overflow policy. `Closed` only happens after
        // `close`, when logins are kept in memory only.
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inner.online_tx.try_send(update) {
            self.inner.online_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remember_properties(
        &self,
        product_key: &str,
        device_name: &str,
        values: Map<String, Value>,
    ) -> Result<()> {
        let mut shard = write_lock(self.shard(product_key, device_name));
        // A device deleted while connected has nothing to keep its values in.
        let Some(rec) = shard.get_mut(product_key).and_then(|m| m.get_mut(device_name)) else {
            return Ok(());
        };
        let props = rec.properties.get_or_insert_with(Box::default);
        let result = props.remember(values, self.inner.limits);
        if props.is_empty() {
            // A refused first post keeps nothing: "never reported" stays `None`.
            rec.properties = None;
        }
        if result.is_err() {
            self.inner.properties_refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn last_properties<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<Map<String, Value>>> {
        let props = self
            .record(product_key, device_name, |r| {
                r.properties.as_deref().map(|p| p.values().clone())
            })
            .flatten();
        Box::pin(std::future::ready(props))
    }

    fn desired<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<super::DesiredProperties>> {
        let this = self.clone();
        let (pk, dn) = (product_key.to_owned(), device_name.to_owned());
        Box::pin(blocking(move || {
            this.require_device(&pk, &dn)?;
            this.write(|db| super::desired::load(db, &pk, &dn))
        }))
    }

    fn change_desired<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        change: super::DesiredChange,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<super::DesiredOutcome>> {
        let this = self.clone();
        let (pk, dn) = (product_key.to_owned(), device_name.to_owned());
        Box::pin(blocking(move || {
            this.require_device(&pk, &dn)?;
            this.write(|db| super::desired::change(db, &pk, &dn, change, now_ms))
        }))
    }

    fn shadow<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::ShadowDocument>>> {
        let this = self.clone();
        let (pk, dn) = (product_key.to_owned(), device_name.to_owned());
        Box::pin(blocking(move || {
            this.require_device(&pk, &dn)?;
            this.write(|db| super::shadow::load(db, &pk, &dn))
        }))
    }

    fn change_shadow<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        change: super::ShadowChange,
        now_s: u64,
    ) -> BoxFuture<'a, Result<std::result::Result<super::ShadowDocument, super::ShadowRefusal>>> {
        let this = self.clone();
        let (pk, dn) = (product_key.to_owned(), device_name.to_owned());
        Box::pin(blocking(move || {
            this.require_device(&pk, &dn)?;
            this.write(|db| super::shadow::change(db, &pk, &dn, change, now_s))
        }))
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<super::SavedSession>>> {
        let this = self.clone();
        Box::pin(blocking(move || this.write(super::sessions::load)))
    }

    fn save_sessions(&self, changes: Vec<super::SessionChange>) -> BoxFuture<'_, Result<()>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            this.write(|db| super::sessions::save(db, &changes))
        }))
    }

    fn remote_config(&self, product_key: &str) -> super::RemoteConfig {
        read_lock(&self.inner.configs)
            .get(product_key)
            .cloned()
            .unwrap_or_default()
    }

    fn set_config_file<'a>(
        &'a self,
        product_key: &'a str,
        file: Option<Vec<u8>>,
    ) -> BoxFuture<'a, Result<super::RemoteConfig>> {
        let (this, pk) = (self.clone(), product_key.to_owned());
        Box::pin(blocking(move || {
            use super::remote_config::FileChange;
            match &file {
                Some(bytes) => {
                    let meta = super::ConfigFile::describe(random_alnum(20), bytes, now_ms())?;
                    this.change_config(&pk, |c| {
                        c.file = Some(meta);
                        FileChange::Put(bytes)
                    })
                }
                None => this.change_config(&pk, |c| {
                    c.file = None;
                    FileChange::Delete
                }),
            }
        }))
    }

    fn set_config_enabled<'a>(
        &'a self,
        product_key: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<super::RemoteConfig>> {
        let (this, pk) = (self.clone(), product_key.to_owned());
        Box::pin(blocking(move || {
            this.change_config(&pk, |c| {
                c.enabled = enabled;
                super::remote_config::FileChange::Keep
            })
        }))
    }

    fn config_file<'a>(
        &'a self,
        product_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::ConfigDownload>>> {
        let (this, pk) = (self.clone(), product_key.to_owned());
        Box::pin(blocking(move || {
            // Under the store's lock: the metadata and the bytes are of the same commit.
            this.write(|db| {
                let Some(meta) = read_lock(&this.inner.configs)
                    .get(&pk)
                    .and_then(|c| c.file.clone())
                else {
                    return Ok(None);
                };
                Ok(super::remote_config::read_file(db, &pk)?.map(|bytes| (meta, bytes)))
            })
        }))
    }

    fn set_node_type<'a>(
        &'a self,
        product_key: &'a str,
        node_type: NodeType,
    ) -> BoxFuture<'a, Result<Product>> {
        let this = self.clone();
        let pk = product_key.to_owned();
        Box::pin(blocking(move || {
            this.change_product(pk, |rec| rec.node_type = node_type)
        }))
    }

    fn add_topology<'a>(
        &'a self,
        gateway: super::DeviceRef,
        subs: Vec<super::DeviceRef>,
    ) -> BoxFuture<'a, Result<std::result::Result<Vec<super::DeviceRef>, super::TopoRefusal>>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            this.require_device(&gateway.0, &gateway.1)?;
            this.write(|db| super::topology::change(db, &gateway, super::topology::Change::Add(&subs)))
        }))
    }

    fn remove_topology<'a>(
        &'a self,
        gateway: super::DeviceRef,
        subs: Vec<super::DeviceRef>,
    ) -> BoxFuture<'a, Result<std::result::Result<Vec<super::DeviceRef>, super::TopoRefusal>>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            this.require_device(&gateway.0, &gateway.1)?;
            this.write(|db| super::topology::change(db, &gateway, super::topology::Change::Remove(&subs)))
        }))
    }

    fn topology<'a>(&'a self, gateway: super::DeviceRef) -> BoxFuture<'a, Result<Vec<super::DeviceRef>>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            this.write(|db| super::topology::subs(db, &gateway))
        }))
    }

    fn gateway_of<'a>(&'a self, sub: super::DeviceRef) -> BoxFuture<'a, Result<Option<super::DeviceRef>>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            this.write(|db| super::topology::gateway(db, &sub))
        }))
    }

    fn put_apply<'a>(
        &'a self,
        apply_id: Option<u64>,
        record: super::ApplyRecord,
    ) -> BoxFuture<'a, Result<u64>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            this.write(|db| super::apply::put(db, apply_id, &record))
        }))
    }

    fn apply(&self, apply_id: u64) -> BoxFuture<'_, Result<Option<super::ApplyRecord>>> {
        let this = self.clone();
        Box::pin(blocking(move || this.write(|db| super::apply::get(db, apply_id))))
    }

    fn create_access_key(&self, description: Option<String>) -> BoxFuture<'_, Result<super::AccessKey>> {
        let this = self.clone();
        Box::pin(blocking(move || {
            let key = super::AccessKey::generate(crate::clock::now_ms(), description);
            this.write(|db| {
                this.inner
                    .access_keys
                    .add(key, |k| super::access_keys::save(db, k))
            })
        }))
    }

    fn access_keys(&self) -> BoxFuture<'_, Result<Vec<super::AccessKeyInfo>>> {
        Box::pin(std::future::ready(Ok(self.inner.access_keys.list())))
    }

    fn delete_access_key<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, Result<bool>> {
        let this = self.clone();
        let id = access_key_id.to_owned();
        Box::pin(blocking(move || {
            this.write(|db| {
                this.inner
                    .access_keys
                    .delete(&id, || super::access_keys::remove(db, &id))
            })
        }))
    }

    fn access_key_secret(&self, access_key_id: &str) -> Option<String> {
        self.inner.access_keys.secret(access_key_id)
    }

    fn device_by_iot_id<'a>(&'a self, iot_id: &'a str) -> BoxFuture<'a, Result<Option<Device>>> {
        let hint = read_lock(&self.inner.iot_ids).get(iot_id).cloned();
        let device = hint.and_then(|(pk, dn)| {
            self.record(&pk, &dn, |r| {
                (*r.iot_id == *iot_id).then(|| r.to_device(&pk, &dn))
            })
            .flatten()
        });
        Box::pin(std::future::ready(Ok(device)))
    }

    fn counts(&self) -> RegistryCounts {
        RegistryCounts {
            products: read_lock(&self.inner.products).len() as u64,
            devices: self.inner.device_count.load(Ordering::Relaxed),
            online_updates_dropped: self.inner.online_dropped.load(Ordering::Relaxed),
        }
    }

    fn health(&self) -> RegistryHealth {
        let store = &self.inner.store;
        let skipped = self
            .inner
            .skipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        RegistryHealth {
            storage_error: store.fault(),
            storage_failures: store.failures(),
            reopens: store.reopens(),
            records_skipped: skipped.count,
            skipped_records: skipped.keys,
            properties_refused: self.inner.properties_refused.load(Ordering::Relaxed),
            history_rows_written: self.inner.history.as_ref().map_or(0, |h| h.counts().1),
            history_rows_refused: self.inner.history.as_ref().map_or(0, |h| h.counts().0),
        }
    }

    fn record(
        &self,
        product_key: &str,
        device_name: &str,
        records: Records,
    ) -> BoxFuture<'static, Result<()>> {
        match &self.inner.history {
            Some(h) => h.record(product_key, device_name, records),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn latest_properties<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LatestProperty>>> {
        Box::pin(async move { self.history()?.latest(product_key, device_name).await })
    }

    fn property_history<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        identifier: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<PropertyPoint>>> {
        Box::pin(async move {
            self.history()?
                .points(product_key, device_name, identifier, window)
                .await
        })
    }

    fn event_history<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        identifier: Option<String>,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<EventRecord>>> {
        Box::pin(async move {
            self.history()?
                .events(product_key, device_name, identifier, window)
                .await
        })
    }

    fn call_log<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Page<CallRecord>>> {
        Box::pin(async move { self.history()?.calls(product_key, device_name, window).await })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(h) = &self.inner.history {
                h.close().await;
            }
            let writer = self
                .inner
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((stop, task)) = writer {
                let _ = stop.send(());
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "the last-online writer task failed");
                }
            }
        })
    }
}

fn shard_index(hasher: &impl BuildHasher, pk: &str, dn: &str) -> usize {
    // The modulo keeps the value below SHARDS, so the cast back cannot truncate.
    (hasher.hash_one((pk, dn)) % SHARDS as u64) as usize
}

/// What became of a last-online batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Nothing to write.
    Nothing,
    /// Committed and synced: it and every earlier batch survive a crash.
    Durable,
    /// Committed without a sync: visible, but a crash may lose it.
    NotDurable,
    /// Not written (the storage is down, or failed now).
    Dropped,
}

/// The background retries of a failed registry file: the first at the writer's next tick,
/// then after 2 s, 4 s... up to [`MAX_RETRY_DELAY`].
#[derive(Debug)]
struct Retry {
    at: Option<Instant>,
    delay: Duration,
}

impl Retry {
    fn new() -> Self {
        Self {
            at: None,
            delay: ONLINE_DURABLE_EVERY,
        }
    }

    /// Whether to try now (the storage being down).
    fn due(&mut self, now: Instant) -> bool {
        *self.at.get_or_insert(now) <= now
    }

    fn failed(&mut self, now: Instant) {
        self.delay = (self.delay * 2).min(MAX_RETRY_DELAY);
        self.at = Some(now + self.delay);
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// Writes last-online updates to disk in batches until told to stop, then writes what is left.
///
/// Its timer ticks every [`ONLINE_DURABLE_EVERY`]: it makes the last batch of a burst durable
/// (the batches themselves are durable at most once a second, see [`SyncState`]), and while the storage
/// is down it retries opening the file. It holds only a `Weak` reference to the registry, so
/// that dropping the registry's last handle (and with it the queue's sender) ends the task.
async fn online_writer(
    registry: Weak<Inner>,
    store: Arc<Store>,
    dropped: Arc<AtomicU64>,
    mut rx: mpsc::Receiver<OnlineUpdate>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(ONLINE_BATCH);
    let mut sync = SyncState::new(dropped);
    let mut retry = Retry::new();
    let mut tick = tokio::time::interval(ONLINE_DURABLE_EVERY);
    // After a stall (a slow disk), one tick, not a burst of them.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // After `stop`, drain what is queued and leave.
            _ = &mut stop => {
                rx.close();
                while let Some(u) = rx.recv().await {
                    batch.push(u);
                    if batch.len() == ONLINE_BATCH {
                        let durable = sync.durable_due();
                        let written = write_online(&store, std::mem::take(&mut batch), durable).await;
                        sync.note(written, ONLINE_BATCH);
                    }
                }
                let n = batch.len();
                let written = write_online(&store, std::mem::take(&mut batch), true).await;
                sync.note(written, n);
                return;
            }
            n = rx.recv_many(&mut batch, ONLINE_BATCH) => {
                if n == 0 {
                    // Every sender is gone: the store was dropped without `close`.
                    return;
                }
                let durable = sync.durable_due();
                let written = write_online(&store, std::mem::take(&mut batch), durable).await;
                sync.note(written, n);
            }
            _ = tick.tick() => {
                if sync.flush_due() {
                    // An empty durable commit makes the earlier non-durable ones durable.
                    let written = write_online(&store, Vec::new(), true).await;
                    sync.note(written, 0);
                }
                if store.fault().is_none() {
                    // Healthy (perhaps reopened by a write): the next failure starts afresh.
                    retry.reset();
                } else if retry.due(Instant::now()) {
                    let Some(inner) = registry.upgrade() else { return };
                    let this = RedbRegistry { inner };
                    // An empty write: it reopens the file (and reloads memory) if still closed.
                    match blocking(move || this.write(|_| Ok(()))).await {
                        Ok(()) => retry.reset(),
                        Err(_) => retry.failed(Instant::now()),
                    }
                }
            }
        }
    }
}

/// When the writer's commits were last made durable.
///
/// Last-online times are advisory: most batches commit without an fsync, and at most one a
/// second is made durable (as are the last one at close, and a burst's last one at the next
/// tick). A registration commit (always durable) also persists what came before it. This keeps
/// fsync off a login storm's path.
#[derive(Debug)]
struct SyncState {
    last_durable: Instant,
    /// A batch was committed without an fsync since the last durable commit of the writer.
    unsynced: bool,
    /// Last-online updates not written (`online_updates_dropped`), shared with the registry.
    dropped: Arc<AtomicU64>,
}

impl SyncState {
    fn new(dropped: Arc<AtomicU64>) -> Self {
        Self {
            last_durable: Instant::now(),
            unsynced: false,
            dropped,
        }
    }

    /// Whether the next batch is to be committed durably.
    fn durable_due(&self) -> bool {
        self.last_durable.elapsed() >= ONLINE_DURABLE_EVERY
    }

    /// Whether the timer is to make the earlier batches durable.
    fn flush_due(&self) -> bool {
        self.unsynced && self.durable_due()
    }

    /// Takes note of what became of a batch of `n` updates.
    fn note(&mut self, written: Written, n: usize) {
        match written {
            Written::Durable => {
                self.last_durable = Instant::now();
                self.unsynced = false;
            }
            Written::NotDurable => self.unsynced = true,
            Written::Dropped => {
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            }
            Written::Nothing => {}
        }
    }
}

/// Writes a batch (an empty one only to make earlier commits durable). Never reopens a failed
/// file: the batch is dropped then (see `store.rs`).
async fn write_online(store: &Arc<Store>, batch: Vec<OnlineUpdate>, durable: bool) -> Written {
    if batch.is_empty() && !durable {
        return Written::Nothing;
    }
    let store = Arc::clone(store);
    let n = batch.len();
    let result = blocking(move || {
        let mut writer = store.lock();
        let Some(db) = writer.if_open() else {
            return Ok(Written::Dropped);
        };
        let result = commit_online(db, batch, durable);
        if let Err(e) = &result {
            writer.failed(e);
        }
        result
    })
    .await;
    match result {
        Ok(written) => written,
        Err(e) => {
            tracing::warn!(error = %e, updates = n, "could not record last-online times");
            Written::Dropped
        }
    }
}

/// One last-online transaction (blocking).
fn commit_online(db: &Database, batch: Vec<OnlineUpdate>, durable: bool) -> Result<Written> {
    let mut txn = db.begin_write().map_err(st("starting a last-online batch"))?;
    // When redb cannot skip the fsync, the commit simply stays durable.
    let durable = durable || txn.set_durability(redb::Durability::None).is_err();
    {
        let mut table = txn.open_table(DEVICES).map_err(st("opening the devices table"))?;
        for u in batch {
            let key = (u.product_key.as_str(), u.device_name.as_str());
            let stored: Option<DeviceRecord> = match table.get(key).map_err(st("reading a device"))? {
                Some(guard) => decode("last online", guard.value()).ok(),
                None => None,
            };
            // A device deleted meanwhile stays deleted (and an unreadable record untouched).
            let Some(mut rec) = stored else { continue };
            if rec.last_online_ms.is_some_and(|t| t > u.at_ms) {
                continue;
            }
            rec.last_online_ms = Some(u.at_ms);
            rec.last_ip = Some(u.ip);
            table
                .insert(key, encode("last online", &rec)?.as_slice())
                .map_err(st("writing a last-online time"))?;
        }
    }
    txn.commit().map_err(st("committing a last-online batch"))?;
    Ok(if durable {
        Written::Durable
    } else {
        Written::NotDurable
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 8: the hub keeps one record per registered device in memory.
    #[test]
    fn a_device_record_stays_small() {
        let size = std::mem::size_of::<DeviceRecord>();
        assert!(size <= 88, "DeviceRecord grew to {size} bytes");
    }

    #[test]
    fn generated_product_keys_look_like_the_platforms() {
        for _ in 0..100 {
            let pk = generate_product_key();
            assert_eq!(pk.len(), 11);
            assert!(pk.starts_with("a1"));
            assert!(pk.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(validate_product_key(&pk).is_ok());
        }
    }

    #[test]
    fn product_names_must_be_printable_and_short() {
        assert!(validate_product_name("Smart lamp").is_ok());
        assert!(validate_product_name("  ").is_err());
        assert!(validate_product_name("a\nb").is_err());
        assert!(validate_product_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let d = Device {
            product_key: "pk".into(),
            device_name: "dn".into(),
            device_secret: "topsecretvalue".into(),
            iot_id: "id".into(),
            enabled: true,
            created_ms: 1,
            last_online_ms: None,
            last_ip: None,
            dynamic_registration: None,
        };
        assert!(!format!("{d:?}").contains("topsecret"));
        let p = Product {
            product_key: "pk".into(),
            name: "n".into(),
            product_secret: "topsecret".into(),
            created_ms: 1,
            device_count: 0,
            dynamic_registration: false,
            node_type: NodeType::Direct,
        };
        assert!(!format!("{p:?}").contains("topsecret"));
    }

    /// Group commit: registrations of the same device in one batch see each other, a refusal
    /// answers only its own registration, and every answer is what memory and the file keep.
    #[tokio::test]
    async fn one_batch_applies_its_registrations_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = RedbRegistry::open(dir.path()).await.expect("registry");
        r.create_product("p", Some("a1Batch")).await.expect("product");
        r.set_dynamic_registration("a1Batch", true).await.expect("switch");
        let jobs = vec![
            ("a1Batch".to_owned(), "d".to_owned(), Enrolment::NoPreRegistration),
            ("a1Batch".to_owned(), "d".to_owned(), Enrolment::NoPreRegistration),
            ("a1Batch".to_owned(), "d".to_owned(), Enrolment::PreRegistered),
            ("a1Batch".to_owned(), "ghost".to_owned(), Enrolment::PreRegistered),
            ("a1Nope".to_owned(), "x".to_owned(), Enrolment::NoPreRegistration),
        ];
        let this = r.clone();
        let answers = tokio::task::spawn_blocking(move || this.enrol_batch(&jobs))
            .await
            .expect("the batch");
        let first = answers[0].as_ref().expect("created");
        let second = answers[1].as_ref().expect("a new token");
        let third = answers[2].as_ref().expect("a new secret");
        assert_ne!(first.device_token, second.device_token);
        assert!(third.device_token.is_none());
        assert_ne!(third.device.device_secret, second.device.device_secret);
        assert!(matches!(answers[3], Err(Error::DeviceNotFound { .. })));
        assert!(matches!(answers[4], Err(Error::ProductNotFound { .. })));
        // Memory and, after a reopen, the file keep the last of each.
        let check = |r: &RedbRegistry| {
            let auth = r
                .record("a1Batch", "d", |rec| rec.device_secret.to_string())
                .expect("d");
            assert_eq!(auth, third.device.device_secret);
        };
        check(&r);
        assert_eq!(r.device_token("a1Batch", "d").await, second.device_token);
        assert_eq!(r.counts().devices, 1);
        r.close().await;
        drop(r);
        let r = RedbRegistry::open(dir.path()).await.expect("reopen");
        check(&r);
        assert_eq!(r.device_token("a1Batch", "d").await, second.device_token);
    }
}
