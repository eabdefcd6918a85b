//! Counters and latency histograms of one process, its [`WorkerResult`], and the exact merge of
//! several results into a [`Summary`].
//!
//! Counters are relaxed atomics: each is independent and read only for display or at the end.
//! Histograms (hdrhistogram, microseconds, 3 significant figures) sit behind std mutexes, split
//! in [`SHARDS`] by device index so the two runtime threads rarely meet on one lock; each critical
//! section is one `record` call and never spans an `.await`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::{Percentiles, Summary};

const SHARDS: usize = 4;
/// Largest latency recorded: 10 minutes (larger values are clamped).
const MAX_US: u64 = 600_000_000;

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since this process's bench epoch (monotonic).
pub(crate) fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The tokio instant `us` microseconds after the bench epoch.
pub(crate) fn instant_at(us: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(epoch() + std::time::Duration::from_micros(us))
}

/// Wall-clock microseconds since 1970 (comparable across the worker processes of one machine).
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3)
        .expect("1..600e6 with 3 significant figures is a valid histogram")
}

/// A histogram split in shards.
#[derive(Debug)]
pub(crate) struct Latency {
    shards: [Mutex<Histogram<u64>>; SHARDS],
}

impl Latency {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(new_hist())),
        }
    }

    /// Records a latency in microseconds, in the shard of `key` (a device index).
    pub(crate) fn record(&self, key: usize, us: u64) {
        let mut h = self.shards[key % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.saturating_record(us.clamp(1, MAX_US));
    }

    /// All shards added together.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut out = new_hist();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Same bounds and precision on both sides: `add` cannot fail.
            let _ = out.add(&*h);
        }
        out
    }
}

/// Live counters of one process.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) devices: AtomicU64,
    pub(crate) attempted: AtomicU64,
    pub(crate) connected: AtomicU64,
    /// CONNACK refusals by return code (index 0..=5; 6 = any other code).
    pub(crate) refused: [AtomicU64; 7],
    /// No CONNACK: TCP/TLS error, timeout, or closed before CONNACK.
    pub(crate) connect_errors: AtomicU64,
    /// Connected devices whose connection ended before the end of the run.
    pub(crate) dropped: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) replied: AtomicU64,
    /// Replies with an Alink code other than 200, or admin calls answered with an error.
    pub(crate) reply_errors: AtomicU64,
    /// Downlinks (property sets, service calls, RRPC) answered by the devices.
    pub(crate) downlinks_answered: AtomicU64,
    pub(crate) connack: Latency,
    pub(crate) ack: Latency,
    pub(crate) reply: Latency,
    /// Wall-clock markers (unix µs; 0 = not reached).
    pub(crate) first_attempt_us: AtomicU64,
    pub(crate) last_connack_us: AtomicU64,
    pub(crate) last_reply_us: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            devices: AtomicU64::new(0),
            attempted: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            refused: Default::default(),
            connect_errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            replied: AtomicU64::new(0),
            reply_errors: AtomicU64::new(0),
            downlinks_answered: AtomicU64::new(0),
            connack: Latency::new(),
            ack: Latency::new(),
            reply: Latency::new(),
            first_attempt_us: AtomicU64::new(0),
            last_connack_us: AtomicU64::new(0),
            last_reply_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Marks the first connect attempt (keeps the earliest).
    pub(crate) fn mark_attempt(&self) {
        let _ = self
            .first_attempt_us
            .compare_exchange(0, unix_us(), Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn mark_connack(&self) {
        self.last_connack_us.fetch_max(unix_us(), Ordering::Relaxed);
    }

    pub(crate) fn mark_reply(&self) {
        self.last_reply_us.fetch_max(unix_us(), Ordering::Relaxed);
    }

    /// A compact live snapshot (what a worker prints, what the progress line shows).
    pub(crate) fn progress(&self, phase: &str) -> Progress {
        Progress {
            phase: phase.to_owned(),
            devices: Self::get(&self.devices),
            connected: Self::get(&self.connected),
            dropped: Self::get(&self.dropped),
            refused: refused_map(&self.refused),
            connect_errors: Self::get(&self.connect_errors),
            sent: Self::get(&self.sent),
            replied: Self::get(&self.replied),
            reply_p99_ms: ms(self.reply.merged().value_at_quantile(0.99)),
        }
    }
}

fn refused_map(refused: &[AtomicU64; 7]) -> BTreeMap<String, u64> {
    refused
        .iter()
        .enumerate()
        .filter_map(|(code, n)| {
            let n = Stats::get(n);
            (n > 0).then(|| {
                (
                    if code == 6 {
                        "other".to_owned()
                    } else {
                        code.to_string()
                    },
                    n,
                )
            })
        })
        .collect()
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// A live snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub(crate) phase: String,
    pub(crate) devices: u64,
    pub(crate) connected: u64,
    pub(crate) dropped: u64,
    pub(crate) refused: BTreeMap<String, u64>,
    pub(crate) connect_errors: u64,
    pub(crate) sent: u64,
    pub(crate) replied: u64,
    pub(crate) reply_p99_ms: f64,
}

/// What one process measured: exact counts, histograms serialized (V2, base64) so the parent can
/// merge them exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    pub(crate) devices: u64,
    pub(crate) connected: u64,
    pub(crate) refused: BTreeMap<String, u64>,
    pub(crate) connect_errors: u64,
    pub(crate) dropped: u64,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) replied: u64,
    pub(crate) reply_errors: u64,
    pub(crate) downlinks_answered: u64,
    pub(crate) connack_hist: String,
    pub(crate) ack_hist: String,
    pub(crate) reply_hist: String,
    pub(crate) first_attempt_us: u64,
    pub(crate) last_connack_us: u64,
    pub(crate) hold_start_us: u64,
    pub(crate) hold_end_us: u64,
    pub(crate) last_reply_us: u64,
    pub(crate) end_us: u64,
    pub(crate) start_us: u64,
    /// RSS of this process before the first device and once the fleet was connected.
    pub(crate) rss_before_bytes: u64,
    pub(crate) rss_connected_bytes: u64,
    pub(crate) cpu_seconds: f64,
    /// First error messages of failed connects (a few, for the user to see why).
    pub(crate) errors: Vec<String>,
}

pub(crate) fn encode_hist(h: &Histogram<u64>) -> Result<String> {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| Error::Histogram(format!("cannot serialize: {e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

pub(crate) fn decode_hist(s: &str) -> Result<Histogram<u64>> {
    if s.is_empty() {
        return Ok(new_hist());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| Error::Histogram(format!("a worker's histogram is not base64: {e}")))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| Error::Histogram(format!("a worker's histogram does not decode: {e:?}")))?;
    Ok(h)
}

impl WorkerResult {
    /// Finishes a process's result from its live stats.
    pub(crate) fn from_stats(s: &Stats) -> Result<Self> {
        Ok(Self {
            devices: Stats::get(&s.devices),
            connected: Stats::get(&s.connected),
            refused: refused_map(&s.refused),
            connect_errors: Stats::get(&s.connect_errors),
            dropped: Stats::get(&s.dropped),
            sent: Stats::get(&s.sent),
            acked: Stats::get(&s.acked),
            replied: Stats::get(&s.replied),
            reply_errors: Stats::get(&s.reply_errors),
            downlinks_answered: Stats::get(&s.downlinks_answered),
            connack_hist: encode_hist(&s.connack.merged())?,
            ack_hist: encode_hist(&s.ack.merged())?,
            reply_hist: encode_hist(&s.reply.merged())?,
            first_attempt_us: Stats::get(&s.first_attempt_us),
            last_connack_us: Stats::get(&s.last_connack_us),
            last_reply_us: Stats::get(&s.last_reply_us),
            ..Self::default()
        })
    }
}

/// Merges worker results exactly (counts added, histograms added bucket by bucket).
pub(crate) fn merge(results: &[WorkerResult]) -> Result<Summary> {
    let mut s = Summary {
        processes: results.len(),
        ..Summary::default()
    };
    let (mut connack, mut ack, mut reply) = (new_hist(), new_hist(), new_hist());
    let mut rss_delta: u64 = 0;
    let (mut first, mut last_connack, mut hold_start, mut hold_end, mut last_reply) =
        (u64::MAX, 0, u64::MAX, 0, 0);
    let (mut start, mut end) = (u64::MAX, 0);
    for r in results {
        s.devices += r.devices;
        s.connected += r.connected;
        for (k, v) in &r.refused {
            *s.refused.entry(k.clone()).or_default() += v;
        }
        s.connect_errors += r.connect_errors;
        s.dropped += r.dropped;
        s.sent += r.sent;
        s.acked += r.acked;
        s.replied += r.replied;
        s.reply_errors += r.reply_errors;
        s.downlinks_answered += r.downlinks_answered;
        let _ = connack.add(decode_hist(&r.connack_hist)?);
        let _ = ack.add(decode_hist(&r.ack_hist)?);
        let _ = reply.add(decode_hist(&r.reply_hist)?);
        rss_delta += r.rss_connected_bytes.saturating_sub(r.rss_before_bytes);
        s.bench_rss_bytes += r.rss_connected_bytes;
        s.bench_cpu_seconds += r.cpu_seconds;
        if r.first_attempt_us > 0 {
            first = first.min(r.first_attempt_us);
        }
        last_connack = last_connack.max(r.last_connack_us);
        if r.hold_start_us > 0 {
            hold_start = hold_start.min(r.hold_start_us);
        }
        hold_end = hold_end.max(r.hold_end_us);
        last_reply = last_reply.max(r.last_reply_us);
        start = start.min(r.start_us);
        end = end.max(r.end_us);
        for e in &r.errors {
            if s.errors.len() < 5 && !s.errors.contains(e) {
                s.errors.push(e.clone());
            }
        }
    }
    s.lost = s.sent.saturating_sub(s.replied + s.reply_errors);
    let secs = |a: u64, b: u64| if b > a { (b - a) as f64 / 1e6 } else { 0.0 };
    let ramp = secs(first, last_connack);
    s.connect_rate = if ramp > 0.0 {
        round1(s.connected as f64 / ramp)
    } else {
        0.0
    };
    s.ramp_s = round3(ramp);
    // Replies are counted from the start of the hold to the last reply (the drain tail included).
    s.hold_s = round3(secs(hold_start, hold_end));
    let window = secs(hold_start, hold_end.max(last_reply));
    s.msgs_per_s = if window > 0.0 {
        round1(s.replied as f64 / window)
    } else {
        0.0
    };
    s.acks_per_s = if window > 0.0 {
        round1(s.acked as f64 / window)
    } else {
        0.0
    };
    s.duration_s = round3(secs(start, end));
    s.connack_latency_ms = percentiles(&connack);
    s.ack_latency_ms = percentiles(&ack);
    s.reply_latency_ms = percentiles(&reply);
    s.bench_rss_per_device_kib = if s.connected > 0 {
        round3(rss_delta as f64 / 1024.0 / s.connected as f64)
    } else {
        0.0
    };
    s.bench_cpu_seconds = round3(s.bench_cpu_seconds);
    Ok(s)
}

/// The percentiles of a histogram of microseconds, in milliseconds.
pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
        count: h.len(),
    }
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_with(latencies: &[u64], connected: u64) -> WorkerResult {
        let mut h = new_hist();
        for &l in latencies {
            h.record(l).expect("in range");
        }
        WorkerResult {
            devices: connected,
            connected,
            sent: latencies.len() as u64,
            replied: latencies.len() as u64,
            reply_hist: encode_hist(&h).expect("encodes"),
            refused: BTreeMap::from([("4".to_owned(), 1)]),
            ..WorkerResult::default()
        }
    }

    #[test]
    fn merge_should_add_counts_and_histograms_exactly() {
        let a = result_with(&[1000, 2000, 3000], 3);
        let b = result_with(&[4000, 100_000], 2);
        let s = merge(&[a, b]).expect("merges");
        assert_eq!(s.connected, 5);
        assert_eq!(s.refused.get("4"), Some(&2));
        assert_eq!(s.reply_latency_ms.count, 5);
        assert_eq!(s.lost, 0);
        // 100 ms is the max of the second worker: the merged max must be it (within precision).
        assert!(
            (s.reply_latency_ms.max - 100.0).abs() < 0.1,
            "{:?}",
            s.reply_latency_ms
        );
        assert!(
            (s.reply_latency_ms.p50 - 3.0).abs() < 0.01,
            "{:?}",
            s.reply_latency_ms
        );
    }

    #[test]
    fn histograms_should_round_trip_through_base64() {
        let mut h = new_hist();
        h.record_n(1234, 7).expect("in range");
        let back = decode_hist(&encode_hist(&h).expect("encodes")).expect("decodes");
        assert_eq!(back.len(), 7);
        assert_eq!(back.max(), h.max());
        assert!(decode_hist("").expect("empty is an empty histogram").is_empty());
    }

    #[test]
    fn lost_should_count_posts_without_a_reply() {
        let mut r = result_with(&[1000], 1);
        r.sent = 10;
        r.reply_errors = 2;
        assert_eq!(merge(&[r]).expect("merges").lost, 7);
    }
}
