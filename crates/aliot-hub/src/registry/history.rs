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
//! # Layout: a row per post, not per value
//!
//! A commit costs what it touches: every B-tree leaf it changes is copied. The first layout kept
//! a row per (device, property, time) plus a latest row and a count per (device, property), so
//! a commit of 100 devices' 50-property posts changed ~15,000 leaves. Property values are now
//! kept as the device posted them: one `posts` row per device and time holding every value of
//! that time (an ordinary property post is one row; a batch or history post one row per distinct
//! time), one `latest` row per device and one count per device, so the same commit changes a few
//! hundred. Reading one property's history scans the device's rows in the window and picks that
//! identifier out of each; a page reads at most [`SCAN`] rows and, when it stops there, still
//! gives a cursor, so a rare identifier never makes one request slow.
//!
//! # Bounds
//!
//! Rows older than `retention_days` (by their own time) are pruned when the file is opened and
//! every `prune_interval_secs`. Per device, at most `max_values_per_device` property values
//! (all properties together: the oldest posts go first, whole), `max_events_per_device` events
//! and `max_calls_per_device` calls are kept: the oldest rows go first, in the commit that adds
//! new ones, the count read and written once per device and commit.
//!
//! # Tables
//!
//! Keys order rows by device, then time, then a sequence number unique in the file (so rows
//! with one time stay distinct and pages resume exactly after their cursor):
//! `posts ("pk/dn", time, seq) → values` (see [`encode_post`]), `device_latest "pk/dn" → each
//! property's latest value and time` (see [`encode_latest`]), `events ("pk/dn", time, seq) →
//! EventRecord JSON`, `calls ("pk/dn", time, seq) → CallRecord JSON`, `counts ("pk/dn", kind) →
//! values or rows`, `meta "seq" → the next sequence number`. A file of the first layout
//! (`points`, `latest`) loses its property values when opened (events and calls stay).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
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
/// Most rows one page reads: a page that stops there has fewer items than asked and a cursor.
pub(crate) const SCAN: usize = 50_000;

const POSTS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("posts");
const LATEST: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("device_latest");
const EVENTS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("events");
const CALLS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("calls");
const COUNTS: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("counts");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// The first layout's tables (a row per value, a latest row per property), removed on open.
const OLD_POINTS: TableDefinition<'_, (&str, u64, u64), &[u8]> = TableDefinition::new("points");
const OLD_LATEST: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("latest");

/// The kinds of `counts` rows: property values (in `posts` rows), events, calls.
const KIND_VALUES: &str = "v";
const KIND_EVENTS: &str = "e";
const KIND_CALLS: &str = "c";
/// The first layout's per-property counts (keyed by "pk/dn/id"), removed on open.
const OLD_KIND_POINTS: &str = "p";

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

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::storage("encoding a history row", e))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        record: what.to_owned(),
        source,
    })
}

fn malformed(what: &'static str) -> Error {
    Error::storage(
        "reading history",
        std::io::Error::other(format!("a malformed {what} row")),
    )
}

/// Reads the binary rows of `posts` and `device_latest`: big-endian lengths and times, and
/// the bytes they announce.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(self.bytes(2)?.try_into().ok()?)))
    }

    fn u32(&mut self) -> Option<usize> {
        usize::try_from(u32::from_be_bytes(self.bytes(4)?.try_into().ok()?)).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A u16-length identifier.
    fn id(&mut self) -> Option<&'a str> {
        let n = self.u16()?;
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    /// A u32-length value.
    fn value(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.bytes(n)
    }
}

fn put_len16(out: &mut Vec<u8>, n: usize) -> Result<()> {
    let n = u16::try_from(n).map_err(|_| {
        Error::storage(
            "encoding a history row",
            std::io::Error::other("over 65535 items"),
        )
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_id(out: &mut Vec<u8>, id: &str) -> Result<()> {
    put_len16(out, id.len())?;
    out.extend_from_slice(id.as_bytes());
    Ok(())
}

fn put_value(out: &mut Vec<u8>, json: &[u8]) -> Result<()> {
    let n = u32::try_from(json.len()).map_err(|_| {
        Error::storage(
            "encoding a history row",
            std::io::Error::other("a value over 4 GiB"),
        )
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(json);
    Ok(())
}

/// A `posts` row: the number of values (u16), then each as its identifier (u16 length, UTF-8)
/// and its JSON (u32 length). Identifiers in one row are distinct.
fn encode_post(values: &[(&str, &serde_json::Value)]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + values.len() * 24);
    put_len16(&mut out, values.len())?;
    for (id, value) in values {
        put_id(&mut out, id)?;
        // The JSON straight into the row, its length written in front of it afterwards.
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut out, value).map_err(|e| Error::storage("encoding a history row", e))?;
        let n = u32::try_from(out.len() - at - 4).map_err(|_| {
            Error::storage(
                "encoding a history row",
                std::io::Error::other("a value over 4 GiB"),
            )
        })?;
        out[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }
    Ok(out)
}

/// How many values a `posts` row holds.
fn post_len(row: &[u8]) -> Result<u64> {
    Reader { rest: row }
        .u16()
        .map(|n| n as u64)
        .ok_or_else(|| malformed("posts"))
}

/// The JSON of `identifier`'s value in a `posts` row, if it has one.
fn post_value<'a>(row: &'a [u8], identifier: &str) -> Result<Option<&'a [u8]>> {
    let mut r = Reader { rest: row };
    let n = r.u16().ok_or_else(|| malformed("posts"))?;
    for _ in 0..n {
        let id = r.id().ok_or_else(|| malformed("posts"))?;
        let value = r.value().ok_or_else(|| malformed("posts"))?;
        if id == identifier {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// A device's latest values: identifier → (time, value JSON).
type LatestValues = std::collections::BTreeMap<String, (u64, Vec<u8>)>;

/// A `device_latest` row: the number of properties (u16), then each as its identifier (u16
/// length), its time (u64) and its JSON (u32 length), by identifier.
fn encode_latest(values: &LatestValues) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + values.len() * 32);
    put_len16(&mut out, values.len())?;
    for (id, (time, json)) in values {
        put_id(&mut out, id)?;
        out.extend_from_slice(&time.to_be_bytes());
        put_value(&mut out, json)?;
    }
    Ok(out)
}

fn decode_latest(row: &[u8]) -> Result<LatestValues> {
    let mut r = Reader { rest: row };
    let n = r.u16().ok_or_else(|| malformed("device_latest"))?;
    let mut out = LatestValues::new();
    for _ in 0..n {
        let (Some(id), Some(time), Some(json)) = (r.id(), r.u64(), r.value()) else {
            return Err(malformed("device_latest"));
        };
        out.insert(id.to_owned(), (time, json.to_vec()));
    }
    Ok(out)
}

/// One device's rows, encoded by the caller of [`History::record`] (on its own thread, so the
/// writer's transaction only inserts).
struct Job {
    device: String,
    /// `posts` rows: (time, row, values in it).
    posts: Vec<(u64, Vec<u8>, u64)>,
    /// The newest value of each identifier in `posts`: (identifier, time, JSON).
    latest: Vec<(String, u64, Vec<u8>)>,
    /// `events` and `calls` rows: (time, JSON).
    events: Vec<(u64, Vec<u8>)>,
    calls: Vec<(u64, Vec<u8>)>,
    done: Option<oneshot::Sender<Result<()>>>,
}

impl Job {
    fn encode(device: String, records: &Records) -> Result<Job> {
        use std::collections::BTreeMap;
        let mut posts = Vec::new();
        let mut newest: BTreeMap<&str, (u64, &serde_json::Value)> = BTreeMap::new();
        for (time, values) in post_rows(records) {
            posts.push((time, encode_post(&values)?, values.len() as u64));
            for (id, value) in values {
                // Equal times: the later value wins.
                let slot = newest.entry(id).or_insert((time, value));
                if slot.0 <= time {
                    *slot = (time, value);
                }
            }
        }
        let latest = newest
            .into_iter()
            .map(|(id, (time, value))| Ok((id.to_owned(), time, encode(value)?)))
            .collect::<Result<_>>()?;
        let events = records
            .events
            .iter()
            .map(|e| Ok((e.time, encode(e)?)))
            .collect::<Result<_>>()?;
        let calls = records
            .calls
            .iter()
            .map(|c| Ok((c.time, encode(c)?)))
            .collect::<Result<_>>()?;
        Ok(Job {
            device,
            posts,
            latest,
            events,
            calls,
            done: None,
        })
    }

    /// The job [`History::close`] sends: no rows, no answer.
    fn is_stop(&self) -> bool {
        self.done.is_none() && self.posts.is_empty() && self.events.is_empty() && self.calls.is_empty()
    }
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

/// Creates the tables and drops the first layout's property values; returns the next sequence
/// number.
fn create_tables(db: &Database) -> Result<u64> {
    let txn = db.begin_write().map_err(st("creating the history tables"))?;
    let seq = {
        txn.open_table(POSTS).map_err(st("creating the history tables"))?;
        txn.open_table(LATEST)
            .map_err(st("creating the history tables"))?;
        txn.open_table(EVENTS)
            .map_err(st("creating the history tables"))?;
        txn.open_table(CALLS).map_err(st("creating the history tables"))?;
        let mut counts = txn
            .open_table(COUNTS)
            .map_err(st("creating the history tables"))?;
        let old = txn
            .delete_table(OLD_POINTS)
            .map_err(st("removing the first history layout"))?;
        txn.delete_table(OLD_LATEST)
            .map_err(st("removing the first history layout"))?;
        if old {
            counts
                .retain(|(_, kind), _| kind != OLD_KIND_POINTS)
                .map_err(st("removing the first history layout"))?;
            tracing::warn!(
                "history.redb had property values in the first layout (a row per value): they \
                 were removed; events, calls and new values are kept"
            );
        }
        let meta = txn.open_table(META).map_err(st("creating the history tables"))?;
        let seq = meta.get("seq").map_err(st("reading the history sequence"))?;
        seq.map_or(1, |s| s.value())
    };
    txn.commit().map_err(st("creating the history tables"))?;
    Ok(seq)
}

impl History {
    /// Opens (or creates) `history.redb` in `data_dir`, prunes what is past the retention, and
    /// starts the writer and the pruning timer (inside a tokio runtime).
    ///
    /// # Errors
    /// [`Error::Storage`] when the file cannot be opened or pruned.
    pub async fn open(data_dir: &Path, config: &HistoryConfig) -> Result<History> {
        if let Some(old) = config.max_points_per_property {
            tracing::warn!(
                max_points_per_property = old,
                max_values_per_device = config.max_values_per_device,
                "[history] max_points_per_property is deprecated and ignored: the cap is per \
                 device now (max_values_per_device)"
            );
        }
        let path: PathBuf = data_dir.join(HISTORY_FILE);
        let cfg = config.clone();
        let (db, next_seq) = blocking(move || {
            let db = Database::create(&path).map_err(st("opening history.redb"))?;
            let seq = create_tables(&db)?;
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
        let mut job = match Job::encode(device_key(product_key, device_name), &records) {
            Ok(job) => job,
            Err(e) => {
                self.inner.refused.fetch_add(n, Ordering::Relaxed);
                return Box::pin(std::future::ready(Err(e)));
            }
        };
        drop(records);
        job.done = Some(done);
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

    /// Rows refused because the queue was full or closed, and rows written (property values,
    /// events and calls, each one).
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
            let Some(row) = table.get(device.as_str()).map_err(st("reading history"))? else {
                return Ok(Vec::new());
            };
            decode_latest(row.value())?
                .into_iter()
                .map(|(identifier, (time, json))| {
                    Ok(LatestProperty {
                        value: decode("latest", &json)?,
                        identifier,
                        time,
                        name: None,
                        data_type: None,
                        unit: None,
                    })
                })
                .collect()
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
            let mut out = Vec::new();
            for row in table.iter().map_err(st("reading history"))? {
                let (k, v) = row.map_err(st("reading history"))?;
                let Some((pk, dn)) = k.value().split_once('/') else {
                    continue;
                };
                let mut values = serde_json::Map::new();
                for (id, (_, json)) in decode_latest(v.value())? {
                    values.insert(id, decode("latest", &json)?);
                }
                out.push((pk.to_owned(), dn.to_owned(), values));
            }
            Ok(out)
        })
        .await
    }

    /// A page of a property's values: the device's posts in the window, that identifier's
    /// value from each that has one (at most 50,000 posts read a page).
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
        let identifier = identifier.to_owned();
        self.rows(
            POSTS,
            device_key(product_key, device_name),
            window,
            move |time, bytes| {
                post_value(bytes, &identifier)?
                    .map(|json| {
                        Ok(PropertyPoint {
                            time,
                            value: decode("posts", json)?,
                        })
                    })
                    .transpose()
            },
        )
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

    /// Reads a page of `table`'s rows of `device` (`keep` decodes a row, `None` skips it). At
    /// most [`SCAN`] rows are read: when more would be, the page ends there with the cursor of
    /// the last row read (fewer items than the limit, perhaps none).
    async fn rows<T: Send + 'static>(
        &self,
        table: RowTable,
        device: String,
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
                .range((device.as_str(), lo.0, lo.1)..=(device.as_str(), hi.0, hi.1))
                .map_err(st("reading history"))?;
            let mut rows = Vec::new();
            let mut scanned = 0usize;
            let mut last = None;
            // Ok(true): the page is full or the scan bound is reached (`last` set, more rows).
            let mut take =
                |row: std::result::Result<(RowKey<'_>, RowValue<'_>), redb::StorageError>| -> Result<bool> {
                    if scanned == SCAN {
                        return Ok(true);
                    }
                    let (k, v) = row.map_err(st("reading history"))?;
                    let (_, time, seq) = k.value();
                    scanned += 1;
                    last = Some(Cursor { time, seq });
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
            if scanned == SCAN && rows.len() <= window.limit {
                // Stopped by the bound, not by a full page: resume after the last row read
                // (the next call rereads nothing; it stops at the range's end).
                let mut p = page(rows, window.limit);
                p.next_cursor = last.map(|c| c.to_string());
                return Ok(p);
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
            let d = device.as_str();
            let txn = db.begin_write().map_err(st("removing history"))?;
            {
                let mut counts = txn.open_table(COUNTS).map_err(st("removing history"))?;
                counts
                    .retain_in((d, "")..=(d, "~"), |_, _| false)
                    .map_err(st("removing history"))?;
                for table in [POSTS, EVENTS, CALLS] {
                    let mut t = txn.open_table(table).map_err(st("removing history"))?;
                    t.retain_in((d, 0, 0)..=(d, u64::MAX, u64::MAX), |_, _| false)
                        .map_err(st("removing history"))?;
                }
                let mut latest = txn.open_table(LATEST).map_err(st("removing history"))?;
                latest.remove(d).map_err(st("removing history"))?;
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
                posts: Vec::new(),
                latest: Vec::new(),
                events: Vec::new(),
                calls: Vec::new(),
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
        let last = jobs.iter().position(Job::is_stop);
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

/// Sets a count (a count of 0 is no row).
fn set_count(counts: &mut Counts<'_>, key: &str, kind: &str, count: u64) -> Result<()> {
    if count == 0 {
        counts.remove((key, kind)).map_err(st("writing history"))?;
    } else {
        counts.insert((key, kind), count).map_err(st("writing history"))?;
    }
    Ok(())
}

/// Removes `device`'s oldest rows from `t` (its rows from `lo` up to, excluding, `until`) while
/// fewer than `excess` are removed, counted by `weight`; returns how many were removed.
fn remove_oldest(
    t: &mut redb::Table<'_, (&'static str, u64, u64), &'static [u8]>,
    device: &str,
    until: (u64, u64),
    excess: u64,
    weight: Weight,
) -> Result<u64> {
    let mut removed = 0;
    if excess == 0 {
        return Ok(0);
    }
    // A row is removed when the iterator yields it: stop asking once enough are gone.
    let rows = t
        .extract_from_if((device, 0, 0)..(device, until.0, until.1), |_, _| true)
        .map_err(st("trimming history"))?;
    for row in rows {
        let (_, v) = row.map_err(st("trimming history"))?;
        removed += weight(v.value())?;
        if removed >= excess {
            break;
        }
    }
    Ok(removed)
}

/// How much a row counts towards its cap: its values ([`post_len`]) or one ([`one_row`]).
type Weight = fn(&[u8]) -> Result<u64>;

fn one_row(_: &[u8]) -> Result<u64> {
    Ok(1)
}

/// The property values of one job as `posts` rows: one per distinct time (another one when an
/// identifier comes twice with one time), in time order.
fn post_rows(records: &Records) -> Vec<(u64, Vec<(&str, &serde_json::Value)>)> {
    use std::collections::BTreeMap;
    let mut by_time: BTreeMap<u64, Vec<Vec<(&str, &serde_json::Value)>>> = BTreeMap::new();
    for p in &records.properties {
        let rows = by_time.entry(p.time).or_default();
        let free = rows
            .iter_mut()
            .find(|r| r.iter().all(|(id, _)| *id != p.identifier));
        match free {
            Some(row) => row.push((p.identifier.as_str(), &p.value)),
            None => rows.push(vec![(p.identifier.as_str(), &p.value)]),
        }
    }
    by_time
        .into_iter()
        .flat_map(|(time, rows)| rows.into_iter().map(move |r| (time, r)))
        .collect()
}

/// Writes one batch of jobs; returns the next sequence number.
fn commit(db: &Database, config: &HistoryConfig, mut seq: u64, jobs: &[Job]) -> Result<u64> {
    use std::collections::BTreeMap;
    let txn = db.begin_write().map_err(st("writing history"))?;
    {
        let mut posts = txn.open_table(POSTS).map_err(st("writing history"))?;
        let mut events = txn.open_table(EVENTS).map_err(st("writing history"))?;
        let mut calls = txn.open_table(CALLS).map_err(st("writing history"))?;
        // New values, events and calls per device: one count update (and trim) each.
        let mut added: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
        // The newest value of each property of each device in this batch: one `device_latest`
        // update per device.
        let mut newest: BTreeMap<&str, BTreeMap<&str, (u64, &[u8])>> = BTreeMap::new();
        for job in jobs {
            let device = job.device.as_str();
            for (time, row, n) in &job.posts {
                posts
                    .insert((device, *time, seq), row.as_slice())
                    .map_err(st("writing history"))?;
                seq += 1;
                *added.entry((device, KIND_VALUES)).or_default() += n;
            }
            if !job.latest.is_empty() {
                let newest = newest.entry(device).or_default();
                for (id, time, json) in &job.latest {
                    // Equal times: the later job wins.
                    let slot = newest.entry(id).or_insert((*time, json));
                    if slot.0 <= *time {
                        *slot = (*time, json);
                    }
                }
            }
            for (kind, table, rows) in [
                (KIND_EVENTS, &mut events, &job.events),
                (KIND_CALLS, &mut calls, &job.calls),
            ] {
                for (time, json) in rows {
                    table
                        .insert((device, *time, seq), json.as_slice())
                        .map_err(st("writing history"))?;
                    seq += 1;
                    *added.entry((device, kind)).or_default() += 1;
                }
            }
        }
        let mut latest = txn.open_table(LATEST).map_err(st("writing history"))?;
        for (device, values) in newest {
            let mut kept = match latest.get(device).map_err(st("writing history"))? {
                Some(row) => decode_latest(row.value())?,
                None => LatestValues::new(),
            };
            for (id, (time, json)) in values {
                if kept.get(id).is_none_or(|(t, _)| *t <= time) {
                    kept.insert(id.to_owned(), (time, json.to_vec()));
                }
            }
            latest
                .insert(device, encode_latest(&kept)?.as_slice())
                .map_err(st("writing history"))?;
        }
        // Counts, and the devices past a cap trimmed: their oldest rows (by time) go, whole
        // posts for values, until the count is within the cap.
        let mut counts = txn.open_table(COUNTS).map_err(st("writing history"))?;
        for ((device, kind), n) in added {
            let (table, cap, weight): (_, u64, Weight) = match kind {
                KIND_VALUES => (&mut posts, config.max_values_per_device, post_len),
                KIND_EVENTS => (&mut events, config.max_events_per_device, one_row),
                _ => (&mut calls, config.max_calls_per_device, one_row),
            };
            let old = counts
                .get((device, kind))
                .map_err(st("writing history"))?
                .map_or(0, |c| c.value());
            let mut count = old + n;
            if count > cap {
                count -= remove_oldest(table, device, (u64::MAX, u64::MAX), count - cap, weight)?.min(count);
            }
            set_count(&mut counts, device, kind, count)?;
        }
        let mut meta = txn.open_table(META).map_err(st("writing history"))?;
        meta.insert("seq", seq).map_err(st("writing history"))?;
    }
    txn.commit().map_err(st("committing history"))?;
    Ok(seq)
}

/// Removes the rows older than the retention; returns how many (property values each one).
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
    // One transaction per device and kind: a long prune never holds the writer for long.
    for (device, kind) in keys {
        let (table, weight): (_, Weight) = match kind.as_str() {
            KIND_VALUES => (POSTS, post_len),
            KIND_EVENTS => (EVENTS, one_row),
            KIND_CALLS => (CALLS, one_row),
            _ => continue,
        };
        let txn = db.begin_write().map_err(st("pruning history"))?;
        let removed = {
            let mut t = txn.open_table(table).map_err(st("pruning history"))?;
            remove_oldest(&mut t, &device, (cutoff, 0), u64::MAX, weight)?
        };
        if removed > 0 {
            {
                let mut counts = txn.open_table(COUNTS).map_err(st("pruning history"))?;
                let old = counts
                    .get((device.as_str(), kind.as_str()))
                    .map_err(st("pruning history"))?
                    .map_or(0, |c| c.value());
                set_count(&mut counts, &device, &kind, old.saturating_sub(removed))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_post_row_holds_its_values_and_finds_one_by_identifier() {
        let (a, b) = (json!(1.5), json!({"x": "y"}));
        let row = encode_post(&[("T", &a), ("Pos", &b)]).expect("a row");
        assert_eq!(post_len(&row).expect("a length"), 2);
        assert_eq!(
            post_value(&row, "Pos").expect("a row"),
            Some(&br#"{"x":"y"}"#[..])
        );
        assert_eq!(post_value(&row, "T").expect("a row"), Some(&b"1.5"[..]));
        assert_eq!(post_value(&row, "P").expect("a row"), None);
        assert!(
            post_value(&row[..row.len() - 1], "Q").is_err(),
            "a cut row is an error"
        );
    }

    #[tokio::test]
    async fn a_rare_identifier_pages_through_the_scan_bound_with_a_cursor() {
        let dir = tempfile::tempdir().expect("a directory");
        let config = HistoryConfig::default();
        let history = History::open(dir.path(), &config).await.expect("opened");
        let now = crate::clock::now_ms();
        let sample = |id: &str, time| super::super::record::PropertySample {
            identifier: id.to_owned(),
            time,
            value: json!(time),
        };
        // SCAN + 1 posts of `a`, then one of `b`: `b` is past the first page's bound.
        let start = now - SCAN as u64 - 10;
        let mut properties: Vec<_> = (0..=SCAN as u64).map(|i| sample("a", start + i)).collect();
        properties.push(sample("b", now));
        let records = Records {
            properties,
            ..Records::default()
        };
        history.record("pk", "dn", records).await.expect("written");
        let window = Window::default();
        let first = history.points("pk", "dn", "b", window).await.expect("a page");
        assert!(first.items.is_empty(), "{:?}", first.items);
        let cursor = first.next_cursor.expect("a cursor at the bound");
        let next = Window {
            after: Some(cursor.parse().expect("a cursor")),
            ..window
        };
        let second = history.points("pk", "dn", "b", next).await.expect("a page");
        assert_eq!(second.items.len(), 1);
        assert_eq!((second.items[0].time, second.next_cursor), (now, None));
        let a = history.points("pk", "dn", "a", window).await.expect("a page");
        assert_eq!(a.items.len(), aliot_admin::DEFAULT_PAGE);
        let latest = history.latest("pk", "dn").await.expect("latest");
        let ids: Vec<_> = latest.iter().map(|l| (l.identifier.as_str(), l.time)).collect();
        assert_eq!(ids, [("a", start + SCAN as u64), ("b", now)]);
        history.close().await;
    }

    #[test]
    fn latest_values_read_back() {
        let mut v = LatestValues::new();
        v.insert("T".to_owned(), (7, b"1".to_vec()));
        v.insert("H".to_owned(), (9, b"\"x\"".to_vec()));
        let row = encode_latest(&v).expect("a row");
        assert_eq!(decode_latest(&row).expect("a row"), v);
        assert!(decode_latest(&row[..3]).is_err());
    }

    #[test]
    fn a_job_gives_a_row_per_time_and_repeats_go_to_another_row() {
        let sample = |id: &str, time| super::super::record::PropertySample {
            identifier: id.to_owned(),
            time,
            value: json!(time),
        };
        let records = Records {
            properties: vec![sample("a", 2), sample("b", 2), sample("a", 1), sample("a", 2)],
            ..Records::default()
        };
        let rows: Vec<(u64, Vec<&str>)> = post_rows(&records)
            .into_iter()
            .map(|(t, r)| (t, r.into_iter().map(|(id, _)| id).collect()))
            .collect();
        assert_eq!(rows, [(1, vec!["a"]), (2, vec!["a", "b"]), (2, vec!["a"])]);
    }
}
