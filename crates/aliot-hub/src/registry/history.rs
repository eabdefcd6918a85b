//! [`History`]: what the hub keeps of devices' thing-model data, in its own redb file
//! (`history.redb`) beside the registry: every kept property value, the latest value of each
//! property with its time, every event, and the log of calls made to devices.
//!
//! # Why a file of its own
//!
//! History is written at the rate devices post, the registry at the rate devices are managed. In
//! one file every history commit would queue behind (and in front of) registrations and saved
//! sessions on redb's single writer, and pruning millions of rows would hold that writer too. A
//! separate file has its own writer and its own space; losing it (delete the file) loses history
//! only, never secrets.
//!
//! # Durability: group commit
//!
//! [`History::record`] puts the rows on a bounded queue ([`QUEUE`] jobs) and returns a future that
//! resolves once they are on disk. One writer task takes every job waiting (up to [`BATCH`]),
//! writes them in one transaction committed with redb's `Immediate` durability (fsync), then
//! answers them all: concurrent posts share one fsync. The platform sends a post's `_reply` only
//! after that future resolves, so what a device was told was kept survives a `kill -9`. When the
//! queue is full the rows are refused at once (the future resolves with an error: the post is
//! answered with code 500 and the device may retry) rather than making the MQTT task wait.
//!
//! # Bounds
//!
//! Rows older than `retention_days` (by their own time) are pruned when the file is opened and
//! every `prune_interval_secs`. Per device, each property keeps at most
//! `max_points_per_property` values, and at most `max_events_per_device` events and
//! `max_calls_per_device` calls: the oldest rows go first, in the commit that adds new ones.
//!
//! # Tables
//!
//! Keys order rows by series, then time, then a sequence number unique in the file (so rows
//! with one time stay distinct and pages resume exactly after their cursor):
//! `points (series "pk/dn/id", time, seq) → value JSON`, `latest ("pk/dn", id) → {time, value}`,
//! `events ("pk/dn", time, seq) → EventRecord JSON`, `calls ("pk/dn", time, seq) → CallRecord
//! JSON`, `counts (series or "pk/dn", kind) → rows`, `meta "seq" → the next sequence number`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::record::{
    CallRecord, Cursor, EventRecord, LatestProperty, Page, PropertyPoint, Records, Window, page,
};
use crate::BoxFuture;
use crate::config::HistoryConfig;

/// The history file in the data directory.
pub const HISTORY_FILE: &str = "history.redb";
/// Jobs waiting for the writer; beyond it [`History::record`] refuses at once (see the module docs).
pub(crate) const QUEUE: usize = 8192;
/// Most jobs written in one transaction.
pub(crate) const BATCH: usize = 1024;

const POINTS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("points");
const LATEST: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("latest");
const EVENTS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("events");
const CALLS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("calls");
const COUNTS: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("counts");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The kinds of `counts` rows.
const KIND_POINTS: &str = "p";
const KIND_EVENTS: &str = "e";
const KIND_CALLS: &str = "c";

/// A row's key and value as a range yields them.
type RowKey<'a> = redb::AccessGuard<'a, (&'static str, u64, u64)>;
type RowValue<'a> = redb::AccessGuard<'a, &'static [u8]>;

type RowTable = TableDefinition<'static, (&'static str, u64, u64), &'static [u8]>;

fn st<E: Into<redb::Error>>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(action, e.into())
}

fn device_key(product_key: &str, device_name: &str) -> String {
    format!("{product_key}/{device_name}")
}

fn series_key(device: &str, identifier: &str) -> String {
    format!("{device}/{identifier}")
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::storage("encoding a history row", e))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        record: what.to_owned(),
        source,
    })
}

/// The latest value of a property as stored: its time (8 bytes, big-endian: compared without
/// decoding the value) then the value's JSON.
struct Latest {
    time: u64,
    value: serde_json::Value,
}

/// The time of a stored latest value.
fn latest_time(row: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(row.get(..8)?.try_into().ok()?))
}

fn decode_latest(row: &[u8]) -> Result<Latest> {
    let time = latest_time(row).ok_or_else(|| {
        Error::storage(
            "reading history",
            std::io::Error::other("a latest value shorter than its time"),
        )
    })?;
    Ok(Latest {
        time,
        value: decode("latest", &row[8..])?,
    })
}

fn encode_latest(time: u64, value: &serde_json::Value) -> Result<Vec<u8>> {
    let mut row = time.to_be_bytes().to_vec();
    serde_json::to_writer(&mut row, value).map_err(|e| Error::storage("encoding a history row", e))?;
    Ok(row)
}

struct Job {
    device: String,
    records: Records,
    done: Option<oneshot::Sender<Result<()>>>,
}

struct Inner {
    db: Arc<Database>,
    config: HistoryConfig,
    tx: mpsc::Sender<Job>,
    refused: AtomicU64,
    written: AtomicU64,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// The history store. A cheap `Clone` handle.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("written", &self.inner.written.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::storage("running a history task", e))?
}

impl History {
    /// Opens (or creates) `history.redb` in `data_dir`, prunes what is past the retention, and
    /// starts the writer and the pruning timer (inside a tokio runtime).
    ///
    /// # Errors
    /// [`Error::Storage`] when the file cannot be opened or pruned.
    pub async fn open(data_dir: &Path, config: &HistoryConfig) -> Result<History> {
        let path: PathBuf = data_dir.join(HISTORY_FILE);
        let cfg = config.clone();
        let (db, next_seq) = blocking(move || {
            let db = Database::create(&path).map_err(st("opening history.redb"))?;
            let txn = db.begin_write().map_err(st("creating the history tables"))?;
            let seq = {
                txn.open_table(POINTS)
                    .map_err(st("creating the history tables"))?;
                txn.open_table(LATEST)
                    .map_err(st("creating the history tables"))?;
                txn.open_table(EVENTS)
                    .map_err(st("creating the history tables"))?;
                txn.open_table(CALLS).map_err(st("creating the history tables"))?;
                txn.open_table(COUNTS)
                    .map_err(st("creating the history tables"))?;
                let meta = txn.open_table(META).map_err(st("creating the history tables"))?;
                let seq = meta.get("seq").map_err(st("reading the history sequence"))?;
                seq.map_or(1, |s| s.value())
            };
            txn.commit().map_err(st("creating the history tables"))?;
            let removed = prune(&db, &cfg, crate::clock::now_ms())?;
            if removed > 0 {
                tracing::info!(removed, "history rows past the retention pruned");
            }
            Ok((Arc::new(db), seq))
        })
        .await?;
        // See QUEUE for the capacity and the overflow policy.
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let writer = tokio::spawn(writer(Arc::clone(&db), config.clone(), next_seq, rx));
        let pruner = tokio::spawn(pruner(Arc::clone(&db), config.clone(), stop.clone()));
        Ok(History {
            inner: Arc::new(Inner {
                db,
                config: config.clone(),
                tx,
                refused: AtomicU64::new(0),
                written: AtomicU64::new(0),
                stop,
                tasks: std::sync::Mutex::new(vec![writer, pruner]),
            }),
        })
    }

    /// Queues `records` of a device; the future resolves once they are durable. The job is
    /// queued before this returns, so jobs are written in the order of the calls.
    pub fn record(
        &self,
        product_key: &str,
        device_name: &str,
        records: Records,
    ) -> BoxFuture<'static, Result<()>> {
        if records.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let (done, answer) = oneshot::channel();
        let n = records.len() as u64;
        let job = Job {
            device: device_key(product_key, device_name),
            records,
            done: Some(done),
        };
        match self.inner.tx.try_send(job) {
            Ok(()) => {
                let inner = Arc::clone(&self.inner);
                Box::pin(async move {
                    let r = answer
                        .await
                        .map_err(|e| Error::storage("waiting for the history writer", e))?;
                    let counter = if r.is_ok() { &inner.written } else { &inner.refused };
                    counter.fetch_add(n, Ordering::Relaxed);
                    r
                })
            }
            Err(e) => {
                self.inner.refused.fetch_add(n, Ordering::Relaxed);
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the history writer's queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the history writer has stopped",
                };
                Box::pin(std::future::ready(Err(Error::storage(
                    "queuing history rows",
                    std::io::Error::other(why),
                ))))
            }
        }
    }

    /// Rows refused because the queue was full or closed, and rows written.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.refused.load(Ordering::Relaxed),
            self.inner.written.load(Ordering::Relaxed),
        )
    }

    /// The latest value of each property of a device, by identifier.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub async fn latest(&self, product_key: &str, device_name: &str) -> Result<Vec<LatestProperty>> {
        let db = Arc::clone(&self.inner.db);
        let device = device_key(product_key, device_name);
        blocking(move || {
            let txn = db.begin_read().map_err(st("reading history"))?;
            let table = txn.open_table(LATEST).map_err(st("reading history"))?;
            let mut out = Vec::new();
            for row in table
                .range((device.as_str(), "")..)
                .map_err(st("reading history"))?
            {
                let (k, v) = row.map_err(st("reading history"))?;
                let (d, id) = k.value();
                if d != device {
                    break;
                }
                let latest = decode_latest(v.value())?;
                out.push(LatestProperty {
                    identifier: id.to_owned(),
                    value: latest.value,
                    time: latest.time,
                    name: None,
                    data_type: None,
                    unit: None,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Every device's latest values, as `(productKey, deviceName, identifier → value)` (read
    /// once, when the registry opens).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub async fn all_latest(
        &self,
    ) -> Result<Vec<(String, String, serde_json::Map<String, serde_json::Value>)>> {
        let db = Arc::clone(&self.inner.db);
        blocking(move || {
            let txn = db.begin_read().map_err(st("reading history"))?;
            let table = txn.open_table(LATEST).map_err(st("reading history"))?;
            let mut out: Vec<(String, String, serde_json::Map<String, serde_json::Value>)> = Vec::new();
            for row in table.iter().map_err(st("reading history"))? {
                let (k, v) = row.map_err(st("reading history"))?;
                let (device, id) = k.value();
                let Some((pk, dn)) = device.split_once('/') else {
                    continue;
                };
                let latest = decode_latest(v.value())?;
                match out.last_mut() {
                    Some((p, d, values)) if p == pk && d == dn => {
                        values.insert(id.to_owned(), latest.value);
                    }
                    _ => {
                        let mut values = serde_json::Map::new();
                        values.insert(id.to_owned(), latest.value);
                        out.push((pk.to_owned(), dn.to_owned(), values));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// A page of a property's values.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub async fn points(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: &str,
        window: Window,
    ) -> Result<Page<PropertyPoint>> {
        let series = series_key(&device_key(product_key, device_name), identifier);
        self.rows(POINTS, series, window, |time, bytes| {
            Ok(Some(PropertyPoint {
                time,
                value: decode("points", bytes)?,
            }))
        })
        .await
    }

    /// A page of a device's events (of one identifier when given).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub async fn events(
        &self,
        product_key: &str,
        device_name: &str,
        identifier: Option<String>,
        window: Window,
    ) -> Result<Page<EventRecord>> {
        self.rows(
            EVENTS,
            device_key(product_key, device_name),
            window,
            move |_, bytes| {
                let e: EventRecord = decode("events", bytes)?;
                Ok(identifier
                    .as_ref()
                    .is_none_or(|id| *id == e.identifier)
                    .then_some(e))
            },
        )
        .await
    }

    /// A page of the calls made to a device.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub async fn calls(
        &self,
        product_key: &str,
        device_name: &str,
        window: Window,
    ) -> Result<Page<CallRecord>> {
        self.rows(CALLS, device_key(product_key, device_name), window, |_, bytes| {
            decode("calls", bytes).map(Some)
        })
        .await
    }

    /// Reads a page of `table`'s rows of `series` (`keep` decodes a row, `None` skips it).
    async fn rows<T: Send + 'static>(
        &self,
        table: RowTable,
        series: String,
        window: Window,
        keep: impl Fn(u64, &[u8]) -> Result<Option<T>> + Send + 'static,
    ) -> Result<Page<T>> {
        let db = Arc::clone(&self.inner.db);
        blocking(move || {
            let Some((lo, hi)) = window.bounds() else {
                return Ok(page(Vec::new(), window.limit));
            };
            let txn = db.begin_read().map_err(st("reading history"))?;
            let t = txn.open_table(table).map_err(st("reading history"))?;
            let range = t
                .range((series.as_str(), lo.0, lo.1)..=(series.as_str(), hi.0, hi.1))
                .map_err(st("reading history"))?;
            let mut rows = Vec::new();
            let mut take =
                |row: std::result::Result<(RowKey<'_>, RowValue<'_>), redb::StorageError>| -> Result<bool> {
                    let (k, v) = row.map_err(st("reading history"))?;
                    let (_, time, seq) = k.value();
                    if let Some(item) = keep(time, v.value())? {
                        rows.push((Cursor { time, seq }, item));
                    }
                    Ok(rows.len() > window.limit)
                };
            match window.order {
                aliot_admin::Order::Asc => {
                    for row in range {
                        if take(row)? {
                            break;
                        }
                    }
                }
                aliot_admin::Order::Desc => {
                    for row in range.rev() {
                        if take(row)? {
                            break;
                        }
                    }
                }
            }
            Ok(page(rows, window.limit))
        })
        .await
    }

    /// Removes everything kept of a device (deleted): its values, latest values, events and
    /// calls. Rows still queued for it may be written afterwards; they go with age.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn forget(&self, product_key: &str, device_name: &str) -> Result<()> {
        let db = Arc::clone(&self.inner.db);
        let device = device_key(product_key, device_name);
        blocking(move || {
            let prefix = format!("{device}/");
            let txn = db.begin_write().map_err(st("removing history"))?;
            {
                // Every series of the device, from the counts: "pk/dn" (events, calls) and
                // "pk/dn/id" (values), the keys from "pk/dn/" up to "pk/dn0" ('/' + 1).
                let mut keys = Vec::new();
                let mut counts = txn.open_table(COUNTS).map_err(st("removing history"))?;
                let end = format!("{device}0");
                let own = counts
                    .range((device.as_str(), "")..=(device.as_str(), "~"))
                    .map_err(st("removing history"))?;
                let series = counts
                    .range((prefix.as_str(), "")..(end.as_str(), ""))
                    .map_err(st("removing history"))?;
                for row in own.chain(series) {
                    let (k, _) = row.map_err(st("removing history"))?;
                    let (key, kind) = k.value();
                    keys.push((key.to_owned(), kind.to_owned()));
                }
                for (key, kind) in &keys {
                    counts
                        .remove((key.as_str(), kind.as_str()))
                        .map_err(st("removing history"))?;
                }
                drop(counts);
                for (key, kind) in &keys {
                    let table = match kind.as_str() {
                        KIND_POINTS => POINTS,
                        KIND_EVENTS => EVENTS,
                        _ => CALLS,
                    };
                    let mut t = txn.open_table(table).map_err(st("removing history"))?;
                    t.retain_in(
                        (key.as_str(), 0, 0)..=(key.as_str(), u64::MAX, u64::MAX),
                        |_, _| false,
                    )
                    .map_err(st("removing history"))?;
                }
                let mut latest = txn.open_table(LATEST).map_err(st("removing history"))?;
                latest
                    .retain_in((device.as_str(), "")..=(device.as_str(), "\u{10FFFF}"), |_, _| {
                        false
                    })
                    .map_err(st("removing history"))?;
            }
            txn.commit().map_err(st("removing history"))?;
            Ok(())
        })
        .await
    }

    /// Writes what is queued and stops the writer and the pruner.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        // The writer ends when every sender is gone; the handle's own sender stays, so it is
        // stopped by a job without rows after the queued ones.
        let _ = self
            .inner
            .tx
            .send(Job {
                device: String::new(),
                records: Records::default(),
                done: None,
            })
            .await;
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a history task failed");
            }
        }
    }

    /// The settings.
    pub fn config(&self) -> &HistoryConfig {
        &self.inner.config
    }
}

/// Takes every waiting job (up to [`BATCH`]), writes them in one durable transaction and
/// answers them. A job without rows and without an answer (from [`History::close`]) ends it once
/// the jobs before it are written.
async fn writer(db: Arc<Database>, config: HistoryConfig, mut seq: u64, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let last = jobs.iter().position(|j| j.done.is_none() && j.records.is_empty());
        if let Some(i) = last {
            jobs.truncate(i);
        }
        let batch = std::mem::take(&mut jobs);
        let db2 = Arc::clone(&db);
        let cfg = config.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = commit(&db2, &cfg, seq, &batch);
            (batch, result)
        })
        .await;
        let Ok((batch, result)) = written else {
            tracing::error!("the history writer's commit task failed");
            return;
        };
        match result {
            Ok(next) => {
                seq = next;
                for job in batch {
                    if let Some(done) = job.done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "history rows not written");
                let message = e.to_string();
                for job in batch {
                    if let Some(done) = job.done {
                        let _ = done.send(Err(Error::storage(
                            "writing history rows",
                            std::io::Error::other(message.clone()),
                        )));
                    }
                }
            }
        }
        if last.is_some() {
            return;
        }
    }
}

/// The `counts` table, open for writing.
type Counts<'t> = redb::Table<'t, (&'static str, &'static str), u64>;

/// Adds `n` to a count and takes `removed` from it; returns the new count.
fn add_count(counts: &mut Counts<'_>, key: &str, kind: &str, n: u64, removed: u64) -> Result<u64> {
    let old = counts
        .get((key, kind))
        .map_err(st("writing history"))?
        .map_or(0, |c| c.value());
    let new = (old + n).saturating_sub(removed);
    if new == 0 {
        counts.remove((key, kind)).map_err(st("writing history"))?;
    } else {
        counts.insert((key, kind), new).map_err(st("writing history"))?;
    }
    Ok(new)
}

/// Removes the oldest rows of `key` in `table` beyond `cap`; returns how many.
fn trim(txn: &WriteTransaction, table: RowTable, key: &str, count: u64, cap: u64) -> Result<u64> {
    if count <= cap {
        return Ok(0);
    }
    let excess = count - cap;
    let mut t = txn.open_table(table).map_err(st("writing history"))?;
    let mut removed = 0;
    for row in t
        .extract_from_if((key, 0, 0)..=(key, u64::MAX, u64::MAX), |_, _| true)
        .map_err(st("trimming history"))?
        .take(usize::try_from(excess).unwrap_or(usize::MAX))
    {
        row.map_err(st("trimming history"))?;
        removed += 1;
    }
    Ok(removed)
}

/// Writes one batch of jobs; returns the next sequence number.
fn commit(db: &Database, config: &HistoryConfig, mut seq: u64, jobs: &[Job]) -> Result<u64> {
    use std::collections::BTreeMap;
    let txn = db.begin_write().map_err(st("writing history"))?;
    // New rows per (series or device, kind), for the counts and caps.
    let mut added: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    {
        let mut points = txn.open_table(POINTS).map_err(st("writing history"))?;
        let mut latest = txn.open_table(LATEST).map_err(st("writing history"))?;
        let mut events = txn.open_table(EVENTS).map_err(st("writing history"))?;
        let mut calls = txn.open_table(CALLS).map_err(st("writing history"))?;
        // The newest value of each property in this batch: one `latest` update each.
        let mut newest: BTreeMap<(&str, &str), (u64, &serde_json::Value)> = BTreeMap::new();
        for job in jobs {
            let device = job.device.as_str();
            for p in &job.records.properties {
                let series = series_key(device, &p.identifier);
                points
                    .insert((series.as_str(), p.time, seq), encode(&p.value)?.as_slice())
                    .map_err(st("writing history"))?;
                seq += 1;
                *added.entry((series, KIND_POINTS)).or_default() += 1;
                // Equal times: the later point wins.
                let slot = newest
                    .entry((device, p.identifier.as_str()))
                    .or_insert((p.time, &p.value));
                if slot.0 <= p.time {
                    *slot = (p.time, &p.value);
                }
            }
            for e in &job.records.events {
                events
                    .insert((device, e.time, seq), encode(e)?.as_slice())
                    .map_err(st("writing history"))?;
                seq += 1;
                *added.entry((device.to_owned(), KIND_EVENTS)).or_default() += 1;
            }
            for c in &job.records.calls {
                calls
                    .insert((device, c.time, seq), encode(c)?.as_slice())
                    .map_err(st("writing history"))?;
                seq += 1;
                *added.entry((device.to_owned(), KIND_CALLS)).or_default() += 1;
            }
        }
        for ((device, id), (time, value)) in newest {
            let newer = match latest.get((device, id)).map_err(st("writing history"))? {
                Some(old) => latest_time(old.value()).is_none_or(|t| t <= time),
                None => true,
            };
            if newer {
                let row = encode_latest(time, value)?;
                latest
                    .insert((device, id), row.as_slice())
                    .map_err(st("writing history"))?;
            }
        }
    }
    // Counts first (the table opened once), then the series past their cap are trimmed.
    let mut over = Vec::new();
    {
        let mut counts = txn.open_table(COUNTS).map_err(st("writing history"))?;
        for ((key, kind), n) in added {
            let cap = match kind {
                KIND_POINTS => config.max_points_per_property,
                KIND_EVENTS => config.max_events_per_device,
                _ => config.max_calls_per_device,
            };
            let count = add_count(&mut counts, &key, kind, n, 0)?;
            if count > cap {
                over.push((key, kind, count, cap));
            }
        }
    }
    for (key, kind, count, cap) in over {
        let table = match kind {
            KIND_POINTS => POINTS,
            KIND_EVENTS => EVENTS,
            _ => CALLS,
        };
        let removed = trim(&txn, table, &key, count, cap)?;
        let mut counts = txn.open_table(COUNTS).map_err(st("writing history"))?;
        add_count(&mut counts, &key, kind, 0, removed)?;
    }
    {
        let mut meta = txn.open_table(META).map_err(st("writing history"))?;
        meta.insert("seq", seq).map_err(st("writing history"))?;
    }
    txn.commit().map_err(st("committing history"))?;
    Ok(seq)
}

/// Removes the rows older than the retention; returns how many.
fn prune(db: &Database, config: &HistoryConfig, now_ms: u64) -> Result<u64> {
    let cutoff = now_ms.saturating_sub(config.retention_ms());
    if cutoff == 0 {
        return Ok(0);
    }
    let keys: Vec<(String, String)> = {
        let txn = db.begin_read().map_err(st("reading history"))?;
        let counts = txn.open_table(COUNTS).map_err(st("reading history"))?;
        let mut keys = Vec::new();
        for row in counts.iter().map_err(st("reading history"))? {
            let (k, _) = row.map_err(st("reading history"))?;
            let (key, kind) = k.value();
            keys.push((key.to_owned(), kind.to_owned()));
        }
        keys
    };
    let mut total = 0;
    // One transaction per series: a long prune never holds the writer for long.
    for (key, kind) in keys {
        let table = match kind.as_str() {
            KIND_POINTS => POINTS,
            KIND_EVENTS => EVENTS,
            _ => CALLS,
        };
        let txn = db.begin_write().map_err(st("pruning history"))?;
        let removed = {
            let mut t = txn.open_table(table).map_err(st("pruning history"))?;
            let mut removed = 0u64;
            for row in t
                .extract_from_if((key.as_str(), 0, 0)..(key.as_str(), cutoff, 0), |_, _| true)
                .map_err(st("pruning history"))?
            {
                row.map_err(st("pruning history"))?;
                removed += 1;
            }
            removed
        };
        if removed > 0 {
            {
                let mut counts = txn.open_table(COUNTS).map_err(st("pruning history"))?;
                add_count(&mut counts, &key, &kind, 0, removed)?;
            }
            txn.commit().map_err(st("pruning history"))?;
            total += removed;
        } else {
            txn.abort().map_err(st("pruning history"))?;
        }
    }
    Ok(total)
}

/// Prunes every `prune_interval_secs` until `stop`.
async fn pruner(db: Arc<Database>, config: HistoryConfig, stop: CancellationToken) {
    let period = Duration::from_secs(config.prune_interval_secs);
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        let (db, cfg) = (Arc::clone(&db), config.clone());
        match tokio::task::spawn_blocking(move || prune(&db, &cfg, crate::clock::now_ms())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "history rows past the retention pruned"),
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning history failed; retried at the next interval"),
            Err(e) => tracing::warn!(error = %e, "the history pruning task failed"),
        }
    }
}
