//! What all the simulated devices of one process share while they run: the settings, the device
//! list, the live [`Stats`], the current [`Phase`], and the count of finished handshakes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, Semaphore, watch};

use crate::settings::Settings;
use crate::source::DeviceSpec;
use crate::stats::Stats;
use crate::wire::TlsClient;

/// Error messages kept for the summary (the first few distinct ones).
const KEPT_ERRORS: usize = 5;

/// What the fleet is asked to do right now (one `watch` channel for every device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connect, then idle (keepalive only).
    Ramp,
    /// Run the workload.
    Run,
    /// No new posts: wait for outstanding replies.
    Stop,
    /// Disconnect now.
    Close,
}

/// What all devices of a process share.
pub(crate) struct Fleet {
    pub(crate) settings: Settings,
    pub(crate) devices: Vec<DeviceSpec>,
    pub(crate) stats: Stats,
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<TlsClient>,
    /// The current phase. A `watch` holds only the latest value (no queue can grow), and a device
    /// that misses an intermediate phase simply acts on the current one.
    pub(crate) phase: watch::Sender<Phase>,
    /// The first few connect errors, for the summary. A std mutex: it is held for one push and
    /// never across an `.await`.
    errors: Mutex<Vec<String>>,
    /// Counts finished handshakes so the runner knows when the ramp is over.
    pub(crate) handshakes: Handshakes,
    /// `max_pending`: a permit per handshake in flight.
    pub(crate) pending: Option<Semaphore>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("settings", &self.settings)
            .field("devices", &self.devices.len())
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A fleet of `devices` in the `Ramp` phase.
    pub(crate) fn new(
        settings: Settings,
        devices: Vec<DeviceSpec>,
        addr: SocketAddr,
        tls: Option<TlsClient>,
    ) -> Self {
        let pending = (settings.max_pending > 0).then(|| Semaphore::new(settings.max_pending));
        let stats = Stats::new();
        stats.devices.store(devices.len() as u64, Ordering::Relaxed);
        Self {
            handshakes: Handshakes::new(devices.len() as u64),
            settings,
            devices,
            stats,
            addr,
            tls,
            phase: watch::Sender::new(Phase::Ramp),
            errors: Mutex::new(Vec::new()),
            pending,
        }
    }

    /// Keeps an error message for the summary (the first few distinct ones).
    pub(crate) fn note_error(&self, e: String) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() < KEPT_ERRORS && !errors.contains(&e) {
            errors.push(e);
        }
    }

    /// The error messages kept.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The local address device `idx` connects from, if `source_ip` names any.
    pub(crate) fn source_ip(&self, idx: usize) -> Option<IpAddr> {
        let ips = &self.settings.source_ips;
        (!ips.is_empty()).then(|| ips[idx % ips.len()])
    }

    /// The topic a device posts to: the platform's property post, or under plain auth a topic
    /// of this process that its subscriber listens to.
    pub(crate) fn post_topic(&self, d: &DeviceSpec) -> String {
        if self.settings.plain_auth.is_some() {
            format!(
                "aliot-bench/w{}/{}/{}",
                self.settings.worker_index, d.product_key, d.device_name
            )
        } else {
            format!(
                "/sys/{}/{}/thing/event/property/post",
                d.product_key, d.device_name
            )
        }
    }
}

/// Counts handshakes that ended (accepted, refused or failed) and wakes the runner at the last.
#[derive(Debug)]
pub(crate) struct Handshakes {
    done: AtomicU64,
    total: u64,
    all: Notify,
}

impl Handshakes {
    pub(crate) fn new(total: u64) -> Self {
        Self {
            done: AtomicU64::new(0),
            total,
            all: Notify::new(),
        }
    }

    pub(crate) fn finish_one(&self) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            // `notify_one` stores a permit if the runner is not waiting yet, so the wake-up of
            // the last handshake cannot be lost.
            self.all.notify_one();
        }
    }

    /// Returns once every handshake has ended.
    pub(crate) async fn all_done(&self) {
        if self.total == 0 {
            return;
        }
        let all = self.all.notified();
        if self.done.load(Ordering::Acquire) < self.total {
            all.await;
        }
    }
}
