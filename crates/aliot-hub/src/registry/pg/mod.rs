//! [`PgRegistry`]: the registry on PostgreSQL (`aliot hub --registry postgres://…`), for several
//! hub processes sharing one platform.
//!
//! # Durability
//!
//! Every registration, change and deletion is one PostgreSQL transaction, committed before the
//! call returns (PostgreSQL's defaults: `synchronous_commit = on`, `fsync = on`), so an answer
//! is never given for something a crash of the hub or of PostgreSQL could lose. The rules are
//! the shared ones of `registry/mod.rs` (names, batches, [`enrolment_rule`]).
//!
//! Best effort, by the [`Registry`] contract: the last-online time and address
//! ([`Registry::device_online`]) go through a bounded queue ([`ONLINE_QUEUE`]) to a writer task
//! that writes them in batches (one `UPDATE … FROM unnest(…)`); a batch that fails (PostgreSQL
//! down) is dropped and counted. The latest reported property values
//! ([`Registry::remember_properties`]) stay in this process's memory, as with the embedded
//! registry (in a cluster, on the node that holds the device).
//!
//! # What is cached
//!
//! CONNECT must stay fast: each device's auth data (secret, enabled, iotId) and each product's
//! (productSecret, dynamic registration) are cached in memory, filled on a miss and dropped on
//! every change: at once for this process's own changes, and through PostgreSQL
//! `LISTEN/NOTIFY` (channel `aliot_registry`, sent in the changing transaction, so delivered
//! at its commit) for other processes' (see `cache.rs`, `listen.rs`). When the listening
//! connection is lost, the whole cache is dropped as soon as it is back.
//!
//! # Failures
//!
//! While PostgreSQL is unreachable, [`Registry::health`] names it (`/healthz` answers 503),
//! writes fail with [`Error::Storage`], the cache keeps serving CONNECTs of devices it knows,
//! and connected devices are served as before. Connections broken by the outage are dropped
//! and made again on demand; the listener reconnects by itself (100 ms doubling to 2 s).
//!
//! Thing models are kept whole in memory (read for every property post, [`Registry::tsl`] has no
//! miss path): read at start and after each reconnect of the listener, and again for a product
//! whose change is notified.
//!
//! # History
//!
//! Kept property values, events and the call log stay in the node's own `history.redb`
//! ([`History`]), like the embedded registry's: history is per node.

mod cache;
mod listen;
mod migrate;
mod pool;
mod sessions;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aliot_protocol::identity::validate_product_key;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Row};

use self::cache::{AuthCache, CHANNEL, device_payload, product_payload, tsl_payload};
use self::listen::Health;
use self::pool::Pool;
use crate::clock::now_ms;
use crate::config::{HistoryConfig, RegistryConfig, create_private_dir};
use crate::registry::{
    BoxFuture, CallRecord, Device, DeviceAuth, Enrolled, Enrolment, EnrolmentStep, Error, EventRecord,
    History, LatestProperty, NewDevice, NodeType, Page, Product, ProductAuth, ProductTsl, Properties,
    PropertyLimits, PropertyPoint, Records, Registry, RegistryCounts, RegistryHealth, Result, SavedSession,
    SessionChange, Window, enrolment_rule, invalid, random_alnum, validate_new_devices,
    validate_product_name,
};

/// Connections of one hub process to PostgreSQL (besides the listener's).
pub(super) const POOL_SIZE: usize = 16;

/// Capacity of the queue of last-online updates. Overflow policy: when full, the update is
/// dropped and counted (`online_updates_dropped`): the stored value stays one login behind.
pub(super) const ONLINE_QUEUE: usize = 8192;

/// Most last-online updates written in one statement.
const ONLINE_BATCH: usize = 1024;

/// How long opening waits for the first `LISTEN` (PostgreSQL just answered the migrations).
const FIRST_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the product and device counts of `/metrics` are read again (other processes
/// register devices too).
const COUNTS_EVERY: Duration = Duration::from_secs(5);

const DEVICE_COLS: &str = "product_key, device_name, device_secret, iot_id, enabled, created_ms, last_online_ms, last_ip, enrolment";

const PRODUCT_SELECT: &str = "SELECT p.product_key, p.name, p.product_secret, p.created_ms, p.dynamic_registration, \
     p.node_type, (SELECT count(*) FROM devices d WHERE d.product_key = p.product_key) FROM products p";

/// A login to record.
struct OnlineUpdate {
    product_key: String,
    device_name: String,
    ip: IpAddr,
    at_ms: u64,
}

struct Inner {
    pool: Arc<Pool>,
    cache: Arc<AuthCache>,
    health: Arc<Health>,
    limits: PropertyLimits,
    /// productKey → deviceName → the latest reported values (this process's devices).
    properties: Mutex<HashMap<String, HashMap<String, Properties>>>,
    properties_refused: AtomicU64,
    online_tx: mpsc::Sender<OnlineUpdate>,
    online_dropped: Arc<AtomicU64>,
    products: Arc<AtomicU64>,
    devices: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    history: Option<History>,
}

/// The registry on PostgreSQL. A cheap `Clone` handle.
#[derive(Clone)]
pub struct PgRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for PgRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRegistry")
            .field("pool", &self.inner.pool)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

fn st(action: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::storage(action, e)
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn node_type(s: &str) -> NodeType {
    match s {
        "gateway" => NodeType::Gateway,
        "sub" => NodeType::Sub,
        _ => NodeType::Direct,
    }
}

fn enrolment(s: Option<&str>) -> Option<Enrolment> {
    match s {
        Some("register") => Some(Enrolment::PreRegistered),
        Some("regnwl") => Some(Enrolment::NoPreRegistration),
        _ => None,
    }
}

fn device_of(row: &Row) -> Device {
    Device {
        product_key: row.get(0),
        device_name: row.get(1),
        device_secret: row.get(2),
        iot_id: row.get(3),
        enabled: row.get(4),
        created_ms: to_u64(row.get(5)),
        last_online_ms: row.get::<_, Option<i64>>(6).map(to_u64),
        last_ip: row.get::<_, Option<&str>>(7).and_then(|s| s.parse().ok()),
        dynamic_registration: enrolment(row.get(8)),
    }
}

fn product_of(row: &Row) -> Product {
    Product {
        product_key: row.get(0),
        name: row.get(1),
        product_secret: row.get(2),
        created_ms: to_u64(row.get(3)),
        dynamic_registration: row.get(4),
        node_type: node_type(row.get(5)),
        device_count: usize::try_from(row.get::<_, i64>(6)).unwrap_or(0),
    }
}

async fn notify(c: &impl GenericClient, payload: &str) -> Result<()> {
    c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map_err(st("announcing a registry change"))?;
    Ok(())
}

impl PgRegistry {
    /// Connects to the database at `url` (`postgres://user@host:port/db`, or key=value
    /// settings), applies the missing migrations and starts the listener and the last-online
    /// writer. History (when `history` is on) is kept in `data_dir/history.redb`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unusable URL; [`Error::Storage`] when PostgreSQL
    /// cannot be reached or migrated, or the history cannot be opened.
    pub async fn connect(
        url: &str,
        config: &RegistryConfig,
        data_dir: Option<(&Path, &HistoryConfig)>,
    ) -> Result<PgRegistry> {
        let pg = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::InvalidArgument(format!("invalid PostgreSQL URL: {e}")))?;
        let pool = Arc::new(Pool::new(pg, POOL_SIZE));
        {
            let (mut client, connection) = pool.connect().await?;
            let driver = tokio::spawn(connection);
            let applied = migrate::migrate(&mut client).await;
            drop(client);
            let _ = driver.await;
            applied?;
        }
        let history = match data_dir {
            Some((dir, h)) if h.enabled => {
                // History holds devices' data: only the hub's user may read it.
                let owned = dir.to_owned();
                tokio::task::spawn_blocking(move || create_private_dir(&owned))
                    .await
                    .map_err(|e| Error::storage("creating the data directory", e))?
                    .map_err(|e| {
                        Error::storage(format!("creating the data directory {}", dir.display()), e)
                    })?;
                Some(History::open(dir, h).await?)
            }
            _ => None,
        };
        let cache = Arc::new(AuthCache::default());
        let health = Arc::new(Health::default());
        let (stop, stop_rx) = watch::channel(false);
        let (online_tx, online_rx) = mpsc::channel(ONLINE_QUEUE);
        let online_dropped = Arc::new(AtomicU64::new(0));
        let products = Arc::new(AtomicU64::new(0));
        let devices = Arc::new(AtomicU64::new(0));
        let (listening_tx, listening) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen::run(
            pool.clone(),
            cache.clone(),
            health.clone(),
            stop_rx.clone(),
            listening_tx,
        ));
        // Nothing is cached before the first LISTEN is in place (see `listen::run`). PostgreSQL
        // answered the migrations just now; if it is gone again, the hub starts unhealthy.
        if tokio::time::timeout(FIRST_LISTEN_TIMEOUT, listening)
            .await
            .is_err()
        {
            tracing::warn!("PostgreSQL: not listening for registry changes yet; starting unhealthy");
        }
        let writer = tokio::spawn(writer(
            pool.clone(),
            online_rx,
            online_dropped.clone(),
            (products.clone(), devices.clone()),
            stop_rx,
        ));
        let registry = PgRegistry {
            inner: Arc::new(Inner {
                pool,
                cache,
                health,
                limits: PropertyLimits::from(config),
                properties: Mutex::default(),
                properties_refused: AtomicU64::new(0),
                online_tx,
                online_dropped,
                products,
                devices,
                stop,
                tasks: Mutex::new(vec![listener, writer]),
                history,
            }),
        };
        registry.refresh_counts().await;
        {
            let c = registry.inner.pool.get().await?;
            registry.inner.cache.set_all_tsls(cache::read_all_tsls(&c).await?);
        }
        tracing::info!("registry on PostgreSQL ready");
        Ok(registry)
    }

    async fn refresh_counts(&self) {
        if let Ok(c) = self.inner.pool.get().await {
            read_counts(&c, &self.inner.products, &self.inner.devices).await;
        }
    }

    /// Counts a failed operation (the listener decides whether PostgreSQL is reachable).
    fn observe<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(Error::Storage { .. }) = &r {
            self.inner.health.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn history(&self) -> Result<&History> {
        self.inner.history.as_ref().ok_or(Error::Unsupported(
            "history (it is off: [history] enabled = false)",
        ))
    }

    async fn create_product_inner(&self, name: &str, given: Option<&str>) -> Result<Product> {
        validate_product_name(name)?;
        if let Some(pk) = given {
            validate_product_key(pk).map_err(invalid)?;
        }
        let c = self.inner.pool.get().await?;
        loop {
            let pk = given.map_or_else(super::redb::generate_product_key, str::to_owned);
            let secret = random_alnum(32);
            let created = to_i64(now_ms());
            let inserted = c
                .execute(
                    "INSERT INTO products (product_key, name, product_secret, created_ms) VALUES ($1, $2, $3, $4)",
                    &[&pk, &name, &secret, &created],
                )
                .await;
            match inserted {
                Ok(_) => {
                    self.inner.products.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(product_key = %pk, "product registered");
                    return Ok(Product {
                        product_key: pk,
                        name: name.to_owned(),
                        product_secret: secret,
                        created_ms: to_u64(created),
                        device_count: 0,
                        dynamic_registration: false,
                        node_type: NodeType::Direct,
                    });
                }
                Err(e) if is_unique_violation(&e) && given.is_some() => {
                    return Err(Error::ProductExists { product_key: pk });
                }
                // A generated key collided (62^9 keys): draw another.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(Error::storage("registering a product", e)),
            }
        }
    }

    async fn product_inner(&self, pk: &str) -> Result<Option<Product>> {
        let c = self.inner.pool.get().await?;
        let row = c
            .query_opt(&format!("{PRODUCT_SELECT} WHERE p.product_key = $1"), &[&pk])
            .await
            .map_err(st("reading a product"))?;
        Ok(row.as_ref().map(product_of))
    }

    async fn create_devices_inner(
        &self,
        pk: &str,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> Result<Vec<Device>> {
        validate_new_devices(pk, &devices)?;
        let mut c = self.inner.pool.get().await?;
        let txn = c
            .transaction()
            .await
            .map_err(st("starting a device registration"))?;
        // The product stays while the devices go in.
        lock_product(&txn, pk).await?;
        let now = to_i64(now_ms());
        let names: Vec<&str> = devices.iter().map(|d| d.device_name.as_str()).collect();
        let secrets: Vec<String> = devices
            .iter()
            .map(|d| d.device_secret.clone().unwrap_or_else(|| random_alnum(32)))
            .collect();
        let ids: Vec<String> = devices.iter().map(|_| random_alnum(32)).collect();
        let inserted = txn
            .query(
                &format!(
                    "INSERT INTO devices (product_key, device_name, device_secret, iot_id, enabled, created_ms) \
                     SELECT $1, n, s, i, true, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS u(n, s, i) \
                     ON CONFLICT (product_key, device_name) DO NOTHING RETURNING {DEVICE_COLS}"
                ),
                &[&pk, &names, &secrets, &ids, &now],
            )
            .await
            .map_err(st("writing devices"))?;
        let mut by_name: HashMap<String, Device> = inserted
            .iter()
            .map(device_of)
            .map(|d| (d.device_name.clone(), d))
            .collect();
        let created = by_name.len();
        if created < devices.len() {
            let existing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !by_name.contains_key(*n))
                .collect();
            if !skip_existing {
                return Err(Error::DeviceExists {
                    product_key: pk.to_owned(),
                    device_name: existing.first().copied().unwrap_or_default().to_owned(),
                });
            }
            let rows = txn
                .query(
                    &format!(
                        "SELECT {DEVICE_COLS} FROM devices WHERE product_key = $1 AND device_name = ANY($2)"
                    ),
                    &[&pk, &existing],
                )
                .await
                .map_err(st("reading devices"))?;
            by_name.extend(rows.iter().map(device_of).map(|d| (d.device_name.clone(), d)));
        }
        if created > 0 {
            // Other processes may have cached "no such device" for some of them.
            notify(&txn, &cache::created_payload(pk)).await?;
        }
        txn.commit().await.map_err(st("committing devices"))?;
        if created > 0 {
            self.inner.cache.forget_unknown(pk);
            self.inner.devices.fetch_add(created as u64, Ordering::Relaxed);
            tracing::info!(product_key = %pk, count = created, "devices registered");
        }
        names
            .iter()
            .map(|n| {
                by_name.remove(*n).ok_or_else(|| {
                    Error::storage(
                        "registering devices",
                        std::io::Error::other(format!("device {n} vanished during its registration")),
                    )
                })
            })
            .collect()
    }

    /// Runs `sql` (an UPDATE … RETURNING the device's columns, `$1` = pk, `$2` = dn, then
    /// `params`) in a transaction that also announces the change; `drop_token` also deletes the
    /// deviceToken.
    async fn change_device(
        &self,
        pk: &str,
        dn: &str,
        set: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        drop_token: bool,
    ) -> Result<Device> {
        let mut c = self.inner.pool.get().await?;
        let txn = c.transaction().await.map_err(st("starting a device update"))?;
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&pk, &dn];
        all.extend_from_slice(params);
        let row = txn
            .query_opt(
                &format!(
                    "UPDATE devices SET {set} WHERE product_key = $1 AND device_name = $2 RETURNING {DEVICE_COLS}"
                ),
                &all,
            )
            .await
            .map_err(st("updating a device"))?
            .ok_or_else(|| Error::DeviceNotFound {
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
            })?;
        if drop_token {
            txn.execute(
                "DELETE FROM device_tokens WHERE product_key = $1 AND device_name = $2",
                &[&pk, &dn],
            )
            .await
            .map_err(st("deleting a device token"))?;
        }
        notify(&txn, &device_payload(pk, dn)).await?;
        txn.commit().await.map_err(st("committing a device update"))?;
        self.inner.cache.forget_device(pk, dn);
        Ok(device_of(&row))
    }

    async fn delete_device_inner(&self, pk: &str, dn: &str) -> Result<Device> {
        let mut c = self.inner.pool.get().await?;
        let txn = c.transaction().await.map_err(st("starting a device deletion"))?;
        let row = txn
            .query_opt(
                &format!(
                    "DELETE FROM devices WHERE product_key = $1 AND device_name = $2 RETURNING {DEVICE_COLS}"
                ),
                &[&pk, &dn],
            )
            .await
            .map_err(st("deleting a device"))?
            .ok_or_else(|| Error::DeviceNotFound {
                product_key: pk.to_owned(),
                device_name: dn.to_owned(),
            })?;
        notify(&txn, &device_payload(pk, dn)).await?;
        txn.commit().await.map_err(st("committing a device deletion"))?;
        self.inner.cache.forget_device(pk, dn);
        self.inner.devices.fetch_sub(1, Ordering::Relaxed);
        if let Some(m) = self
            .inner
            .properties
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(pk)
        {
            m.remove(dn);
        }
        tracing::info!(product_key = %pk, device_name = %dn, "device deleted");
        Ok(device_of(&row))
    }

    async fn change_product(
        &self,
        pk: &str,
        set: &str,
        value: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Product> {
        let mut c = self.inner.pool.get().await?;
        let txn = c.transaction().await.map_err(st("starting a product update"))?;
        let n = txn
            .execute(
                &format!("UPDATE products SET {set} = $2 WHERE product_key = $1"),
                &[&pk, value],
            )
            .await
            .map_err(st("updating a product"))?;
        if n == 0 {
            return Err(Error::ProductNotFound {
                product_key: pk.to_owned(),
            });
        }
        notify(&txn, &product_payload(pk)).await?;
        let row = txn
            .query_one(&format!("{PRODUCT_SELECT} WHERE p.product_key = $1"), &[&pk])
            .await
            .map_err(st("reading a product"))?;
        txn.commit().await.map_err(st("committing a product update"))?;
        self.inner.cache.forget_product(pk);
        Ok(product_of(&row))
    }

    async fn enrol_once(
        &self,
        pk: &str,
        dn: &str,
        how: Enrolment,
    ) -> std::result::Result<Result<Enrolled>, tokio_postgres::Error> {
        let mut c = match self.inner.pool.get().await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let txn = c.transaction().await?;
        if txn
            .query_opt("SELECT 1 FROM products WHERE product_key = $1 FOR SHARE", &[&pk])
            .await?
            .is_none()
        {
            return Ok(Err(Error::ProductNotFound {
                product_key: pk.to_owned(),
            }));
        }
        let existing = txn
            .query_opt(
                &format!(
                    "SELECT {DEVICE_COLS} FROM devices WHERE product_key = $1 AND device_name = $2 FOR UPDATE"
                ),
                &[&pk, &dn],
            )
            .await?
            .as_ref()
            .map(device_of);
        let step = match enrolment_rule(pk, dn, how, existing.as_ref()) {
            Ok(step) => step,
            Err(e) => return Ok(Err(e)),
        };
        let how_s = how.as_str();
        let row = match step {
            EnrolmentStep::Create => {
                txn.query_one(
                    &format!(
                        "INSERT INTO devices (product_key, device_name, device_secret, iot_id, enabled, created_ms, enrolment) \
                         VALUES ($1, $2, $3, $4, true, $5, $6) RETURNING {DEVICE_COLS}"
                    ),
                    &[&pk, &dn, &random_alnum(32), &random_alnum(32), &to_i64(now_ms()), &how_s],
                )
                .await?
            }
            EnrolmentStep::NewSecret => {
                txn.query_one(
                    &format!(
                        "UPDATE devices SET device_secret = $3, enrolment = $4 WHERE product_key = $1 AND device_name = $2 \
                         RETURNING {DEVICE_COLS}"
                    ),
                    &[&pk, &dn, &random_alnum(32), &how_s],
                )
                .await?
            }
            EnrolmentStep::NewToken => {
                txn.query_one(
                    &format!(
                        "UPDATE devices SET enrolment = $3 WHERE product_key = $1 AND device_name = $2 RETURNING {DEVICE_COLS}"
                    ),
                    &[&pk, &dn, &how_s],
                )
                .await?
            }
        };
        let token = (step != EnrolmentStep::NewSecret).then(|| random_alnum(32));
        if let Some(token) = &token {
            txn.execute(
                "INSERT INTO device_tokens (product_key, device_name, device_token) VALUES ($1, $2, $3) \
                 ON CONFLICT (product_key, device_name) DO UPDATE SET device_token = EXCLUDED.device_token",
                &[&pk, &dn, token],
            )
            .await?;
        }
        txn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &device_payload(pk, dn)])
            .await?;
        txn.commit().await?;
        self.inner.cache.forget_device(pk, dn);
        if step == EnrolmentStep::Create {
            self.inner.devices.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(product_key = %pk, device_name = %dn, "device registered dynamically");
        Ok(Ok(Enrolled {
            device: device_of(&row),
            device_token: token,
        }))
    }

    async fn enrol_inner(&self, pk: &str, dn: &str, how: Enrolment) -> Result<Enrolled> {
        // Two first registrations of one new device race to insert it: the loser tries again
        // and then finds it.
        for _ in 0..2 {
            match self.enrol_once(pk, dn, how).await {
                Ok(answer) => return answer,
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(Error::storage("storing a dynamic registration", e)),
            }
        }
        Err(Error::storage(
            "storing a dynamic registration",
            std::io::Error::other("concurrent registrations of the same device"),
        ))
    }

    async fn set_tsl_inner(&self, pk: &str, tsl: Option<ProductTsl>) -> Result<()> {
        let mut c = self.inner.pool.get().await?;
        let txn = c
            .transaction()
            .await
            .map_err(st("starting a thing model update"))?;
        lock_product(&txn, pk).await?;
        match &tsl {
            Some(t) => txn
                .execute(
                    "INSERT INTO product_tsl (product_key, json) VALUES ($1, $2) \
                     ON CONFLICT (product_key) DO UPDATE SET json = EXCLUDED.json",
                    &[&pk, &t.json],
                )
                .await
                .map_err(st("writing a thing model"))?,
            None => txn
                .execute("DELETE FROM product_tsl WHERE product_key = $1", &[&pk])
                .await
                .map_err(st("deleting a thing model"))?,
        };
        notify(&txn, &tsl_payload(pk)).await?;
        txn.commit().await.map_err(st("committing a thing model"))?;
        self.inner.cache.set_tsl(pk, tsl.map(Arc::new));
        tracing::info!(product_key = %pk, "thing model updated");
        Ok(())
    }

    async fn device_auth_inner(&self, pk: &str, dn: &str) -> Option<DeviceAuth> {
        if let Some(answer) = self.inner.cache.device(pk, dn) {
            return answer;
        }
        // A change notified while PostgreSQL was read keeps the answer out of the cache; read
        // again (a few times at most) so that a device just created or changed gets cached.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let generation = self.inner.cache.generation();
            let read = async {
                let c = self.inner.pool.get().await?;
                c.query_opt(
                    "SELECT device_secret, enabled, iot_id FROM devices WHERE product_key = $1 AND device_name = $2",
                    &[&pk, &dn],
                )
                .await
                .map_err(st("reading a device's credentials"))
            };
            match self.observe(read.await) {
                Ok(row) => {
                    let auth = row.map(|r| DeviceAuth {
                        device_secret: r.get(0),
                        enabled: r.get(1),
                        iot_id: r.get(2),
                    });
                    if self.inner.cache.fill_device(generation, pk, dn, auth.clone()) || attempts >= 3 {
                        return auth;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, product_key = %pk, device_name = %dn, "cannot read a device's credentials: login refused");
                    return None;
                }
            }
        }
    }

    async fn product_auth_inner(&self, pk: &str) -> Option<ProductAuth> {
        if let Some(answer) = self.inner.cache.product(pk) {
            return answer;
        }
        let generation = self.inner.cache.generation();
        let read = async {
            let c = self.inner.pool.get().await?;
            c.query_opt(
                "SELECT product_secret, dynamic_registration FROM products WHERE product_key = $1",
                &[&pk],
            )
            .await
            .map_err(st("reading a product's secret"))
        };
        let row = self.observe(read.await).ok().flatten()?;
        let auth = ProductAuth {
            product_secret: row.get(0),
            dynamic_registration: row.get(1),
        };
        self.inner.cache.fill_product(generation, pk, auth.clone());
        Some(auth)
    }
}

async fn read_counts(c: &tokio_postgres::Client, products: &AtomicU64, devices: &AtomicU64) {
    if let Ok(row) = c
        .query_one(
            "SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM devices)",
            &[],
        )
        .await
    {
        products.store(to_u64(row.get(0)), Ordering::Relaxed);
        devices.store(to_u64(row.get(1)), Ordering::Relaxed);
    }
}

/// Writes last-online updates in batches, and refreshes the counts now and then.
async fn writer(
    pool: Arc<Pool>,
    mut rx: mpsc::Receiver<OnlineUpdate>,
    dropped: Arc<AtomicU64>,
    (products, devices): (Arc<AtomicU64>, Arc<AtomicU64>),
    mut stop: watch::Receiver<bool>,
) {
    let mut counts = tokio::time::interval(COUNTS_EVERY);
    counts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(ONLINE_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, ONLINE_BATCH) => {
                if n == 0 {
                    return;
                }
                write_online(&pool, std::mem::take(&mut batch), &dropped).await;
            }
            _ = counts.tick() => {
                if let Ok(c) = pool.get().await {
                    read_counts(&c, &products, &devices).await;
                }
            }
            _ = stop.changed() => {
                // Write what is queued, then stop.
                rx.close();
                while rx.recv_many(&mut batch, ONLINE_BATCH).await > 0 {
                    write_online(&pool, std::mem::take(&mut batch), &dropped).await;
                }
                return;
            }
        }
    }
}

async fn write_online(pool: &Pool, batch: Vec<OnlineUpdate>, dropped: &AtomicU64) {
    // The latest login of each device in the batch.
    let mut latest: HashMap<(String, String), (i64, String)> = HashMap::with_capacity(batch.len());
    for u in batch {
        let at = to_i64(u.at_ms);
        let e = latest
            .entry((u.product_key, u.device_name))
            .or_insert((at, u.ip.to_string()));
        if at >= e.0 {
            *e = (at, u.ip.to_string());
        }
    }
    let n = latest.len();
    let (mut pks, mut dns, mut ats, mut ips) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((pk, dn), (at, ip)) in latest {
        pks.push(pk);
        dns.push(dn);
        ats.push(at);
        ips.push(ip);
    }
    let written = async {
        let c = pool.get().await?;
        c.execute(
            "UPDATE devices d SET last_online_ms = u.at, last_ip = u.ip \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS u(pk, dn, at, ip) \
             WHERE d.product_key = u.pk AND d.device_name = u.dn \
             AND (d.last_online_ms IS NULL OR d.last_online_ms <= u.at)",
            &[&pks, &dns, &ats, &ips],
        )
        .await
        .map_err(st("writing last-online times"))
    };
    if let Err(e) = written.await {
        dropped.fetch_add(n as u64, Ordering::Relaxed);
        tracing::warn!(error = %e, updates = n, "last-online updates dropped");
    }
}

impl Registry for PgRegistry {
    fn create_product<'a>(
        &'a self,
        name: &'a str,
        product_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Product>> {
        Box::pin(async move { self.observe(self.create_product_inner(name, product_key).await) })
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        Box::pin(async move {
            let read = async {
                let c = self.inner.pool.get().await?;
                let rows = c
                    .query(&format!("{PRODUCT_SELECT} ORDER BY p.product_key"), &[])
                    .await
                    .map_err(st("reading products"))?;
                Ok(rows.iter().map(product_of).collect())
            };
            self.observe(read.await)
        })
    }

    fn product<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Option<Product>>> {
        Box::pin(async move { self.observe(self.product_inner(product_key).await) })
    }

    fn create_devices<'a>(
        &'a self,
        product_key: &'a str,
        devices: Vec<NewDevice>,
        skip_existing: bool,
    ) -> BoxFuture<'a, Result<Vec<Device>>> {
        Box::pin(async move {
            self.observe(
                self.create_devices_inner(product_key, devices, skip_existing)
                    .await,
            )
        })
    }

    fn device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>>> {
        Box::pin(async move {
            let read = async {
                let c = self.inner.pool.get().await?;
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT {DEVICE_COLS} FROM devices WHERE product_key = $1 AND device_name = $2"
                        ),
                        &[&product_key, &device_name],
                    )
                    .await
                    .map_err(st("reading a device"))?;
                Ok(row.as_ref().map(device_of))
            };
            self.observe(read.await)
        })
    }

    fn devices<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Result<Vec<Device>>> {
        Box::pin(async move {
            let read = async {
                let c = self.inner.pool.get().await?;
                if c.query_opt("SELECT 1 FROM products WHERE product_key = $1", &[&product_key])
                    .await
                    .map_err(st("reading a product"))?
                    .is_none()
                {
                    return Err(Error::ProductNotFound {
                        product_key: product_key.to_owned(),
                    });
                }
                let rows = c
                    .query(
                        &format!(
                            "SELECT {DEVICE_COLS} FROM devices WHERE product_key = $1 ORDER BY device_name"
                        ),
                        &[&product_key],
                    )
                    .await
                    .map_err(st("reading devices"))?;
                Ok(rows.iter().map(device_of).collect())
            };
            self.observe(read.await)
        })
    }

    fn set_enabled<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Device>> {
        Box::pin(async move {
            let r = self
                .change_device(product_key, device_name, "enabled = $3", &[&enabled], false)
                .await;
            if r.is_ok() {
                let what = if enabled { "enabled" } else { "disabled" };
                tracing::info!(product_key = %product_key, device_name = %device_name, "device {what}");
            }
            self.observe(r)
        })
    }

    fn delete_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>> {
        Box::pin(async move { self.observe(self.delete_device_inner(product_key, device_name).await) })
    }

    fn device_auth<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<DeviceAuth>> {
        // A cache hit answers without an await point that could wait.
        Box::pin(self.device_auth_inner(product_key, device_name))
    }

    fn device_online(&self, product_key: &str, device_name: &str, ip: IpAddr, at_ms: u64) {
        let update = OnlineUpdate {
            product_key: product_key.to_owned(),
            device_name: device_name.to_owned(),
            ip,
            at_ms,
        };
        // Never wait: see ONLINE_QUEUE for the overflow policy.
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
        // A device known to be gone has nothing to keep its values in.
        if matches!(self.inner.cache.device(product_key, device_name), Some(None)) {
            return Ok(());
        }
        let mut all = self
            .inner
            .properties
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let devices = all.entry(product_key.to_owned()).or_default();
        let props = devices.entry(device_name.to_owned()).or_default();
        let result = props.remember(values, self.inner.limits);
        if props.is_empty() {
            // A refused first post keeps nothing: "never reported" stays `None`.
            devices.remove(device_name);
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
        let values = self
            .inner
            .properties
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(product_key)
            .and_then(|m| m.get(device_name))
            .map(|p| p.values().clone());
        Box::pin(std::future::ready(values))
    }

    fn product_auth<'a>(&'a self, product_key: &'a str) -> BoxFuture<'a, Option<ProductAuth>> {
        Box::pin(self.product_auth_inner(product_key))
    }

    fn set_dynamic_registration<'a>(
        &'a self,
        product_key: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Product>> {
        Box::pin(async move {
            self.observe(
                self.change_product(product_key, "dynamic_registration", &enabled)
                    .await,
            )
        })
    }

    fn set_node_type<'a>(
        &'a self,
        product_key: &'a str,
        node_type: NodeType,
    ) -> BoxFuture<'a, Result<Product>> {
        Box::pin(async move {
            let s = node_type.as_str();
            self.observe(self.change_product(product_key, "node_type", &s).await)
        })
    }

    fn enrol<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
        how: Enrolment,
    ) -> BoxFuture<'a, Result<Enrolled>> {
        Box::pin(async move { self.observe(self.enrol_inner(product_key, device_name, how).await) })
    }

    fn device_token<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let read = async {
                let c = self.inner.pool.get().await?;
                c.query_opt(
                    "SELECT device_token FROM device_tokens WHERE product_key = $1 AND device_name = $2",
                    &[&product_key, &device_name],
                )
                .await
                .map_err(st("reading a device token"))
            };
            self.observe(read.await).ok().flatten().map(|r| r.get(0))
        })
    }

    fn reset_device<'a>(
        &'a self,
        product_key: &'a str,
        device_name: &'a str,
    ) -> BoxFuture<'a, Result<Device>> {
        Box::pin(async move {
            let r = self
                .change_device(
                    product_key,
                    device_name,
                    "last_online_ms = NULL, last_ip = NULL",
                    &[],
                    true,
                )
                .await;
            self.observe(r)
        })
    }

    fn tsl(&self, product_key: &str) -> Option<Arc<ProductTsl>> {
        self.inner.cache.tsl(product_key)
    }

    fn set_tsl<'a>(&'a self, product_key: &'a str, tsl: Option<ProductTsl>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.observe(self.set_tsl_inner(product_key, tsl).await) })
    }

    fn counts(&self) -> RegistryCounts {
        RegistryCounts {
            products: self.inner.products.load(Ordering::Relaxed),
            devices: self.inner.devices.load(Ordering::Relaxed),
            online_updates_dropped: self.inner.online_dropped.load(Ordering::Relaxed),
        }
    }

    fn health(&self) -> RegistryHealth {
        let (written, refused) = self.inner.history.as_ref().map_or((0, 0), History::counts);
        RegistryHealth {
            storage_error: self.inner.health.error(),
            storage_failures: self.inner.health.failures.load(Ordering::Relaxed),
            reopens: self.inner.health.reconnects.load(Ordering::Relaxed),
            records_skipped: 0,
            skipped_records: Vec::new(),
            properties_refused: self.inner.properties_refused.load(Ordering::Relaxed),
            history_rows_written: written,
            history_rows_refused: refused,
        }
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SavedSession>>> {
        Box::pin(async move {
            let read = async {
                let c = self.inner.pool.get().await?;
                sessions::load(&c).await
            };
            self.observe(read.await)
        })
    }

    fn save_sessions(&self, changes: Vec<SessionChange>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let write = async {
                let mut c = self.inner.pool.get().await?;
                sessions::save(&mut c, changes).await
            };
            self.observe(write.await)
        })
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
            let _ = self.inner.stop.send(true);
            let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
            for task in tasks {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "a task of the PostgreSQL registry failed");
                }
            }
        })
    }
}

/// Locks the product's row for the rest of the transaction (`FOR SHARE`: it cannot be deleted
/// while the transaction writes under it).
///
/// # Errors
/// [`Error::ProductNotFound`], or the storage error.
async fn lock_product(txn: &tokio_postgres::Transaction<'_>, pk: &str) -> Result<()> {
    let found = txn
        .query_opt("SELECT 1 FROM products WHERE product_key = $1 FOR SHARE", &[&pk])
        .await
        .map_err(st("reading a product"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::ProductNotFound {
            product_key: pk.to_owned(),
        }),
    }
}
