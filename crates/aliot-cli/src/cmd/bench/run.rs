//! One process running its slice of the fleet through the phases: ramp (connect at `rate`), hold
//! (`duration`, the workload runs), drain (outstanding replies, at most `drain`), close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::device::{Fleet, Phase};
use super::fleet::DeviceSpec;
use super::settings::{Settings, TlsSettings, Workload};
use super::stats::{Progress, Stats, WorkerResult, unix_us};
use super::{device, driver, subscriber, sysinfo};

/// How often progress is reported.
const TICK: Duration = Duration::from_millis(250);

/// Called with a snapshot every [`TICK`] and at each phase change.
pub(crate) type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// Builds the TLS connector (rustls, ring provider) trusting `ca_file`.
fn tls_connector(t: &TlsSettings) -> anyhow::Result<(TlsConnector, rustls_pki_types::ServerName<'static>)> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &t.ca_file {
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("bad CA certificate in {}", path.display()))?;
        }
    }
    if roots.is_empty() {
        anyhow::bail!("--tls needs --ca-file with the CA that signed the server certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls has no safe protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(t.server_name.clone())
        .with_context(|| format!("{:?} is not a valid server name", t.server_name))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// Counts handshakes that ended (accepted, refused or failed) and wakes the runner at the last.
#[derive(Debug)]
pub(crate) struct Handshakes {
    done: AtomicU64,
    total: u64,
    all: Notify,
}

impl Handshakes {
    #[cfg(test)]
    pub(crate) fn for_test(total: u64) -> Self {
        Self {
            done: AtomicU64::new(0),
            total,
            all: Notify::new(),
        }
    }

    pub(crate) fn finish_one(&self) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            self.all.notify_one();
        }
    }
}

/// Runs `devices` with `settings` in this process.
pub(crate) async fn run_slice(
    settings: Settings,
    devices: Vec<DeviceSpec>,
    on_progress: OnProgress,
) -> anyhow::Result<WorkerResult> {
    let start_us = unix_us();
    let addr = resolve(&settings.host, settings.port).await?;
    let tls = settings.tls.as_ref().map(tls_connector).transpose()?;
    let settings_max_pending = settings.max_pending;
    // One `watch` for the whole fleet: it holds only the latest phase (no queue can grow), and a
    // device that misses an intermediate phase simply acts on the current one.
    let (phase_tx, _) = watch::channel(Phase::Ramp);
    let n = devices.len();
    let handshakes = Arc::new(Handshakes {
        done: AtomicU64::new(0),
        total: n as u64,
        all: Notify::new(),
    });
    let fleet = Arc::new(Fleet {
        settings,
        devices,
        stats: Stats::new(),
        addr,
        tls,
        phase: phase_tx,
        errors: Mutex::new(Vec::new()),
        handshakes: handshakes.clone(),
        pending: (settings_max_pending > 0).then(|| tokio::sync::Semaphore::new(settings_max_pending)),
    });
    fleet.stats.devices.store(n as u64, Ordering::Relaxed);
    let phase_name = Arc::new(Mutex::new("ramp"));
    let ticker = {
        let (fleet, on_progress, phase_name) = (fleet.clone(), on_progress.clone(), phase_name.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                let phase = *phase_name
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                on_progress(fleet.stats.progress(phase));
            }
        })
    };
    let set_phase = |p: Phase, name: &'static str| {
        *phase_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        fleet.phase.send_replace(p);
        on_progress(fleet.stats.progress(name));
    };

    let plain_telemetry =
        fleet.settings.plain_auth.is_some() && fleet.settings.workload == Workload::Telemetry;
    let sub = if plain_telemetry {
        let (ready_tx, ready_rx) = oneshot::channel();
        let h = tokio::spawn(subscriber::run(fleet.clone(), ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => Some(h),
            Ok(Err(e)) => anyhow::bail!("{e}"),
            Err(_) => anyhow::bail!("the subscriber stopped before it was ready"),
        }
    } else {
        None
    };

    let rss_before = sysinfo::rss_bytes(None).unwrap_or(0);
    // Ramp: start device i at i / rate seconds (batches per millisecond tick at high rates).
    let mut tasks: Vec<JoinHandle<()>> = Vec::with_capacity(n);
    let ramp_start = tokio::time::Instant::now();
    let rate = fleet.settings.rate;
    while tasks.len() < n {
        let due = ((ramp_start.elapsed().as_secs_f64() * rate).floor() as usize + 1).min(n);
        while tasks.len() < due {
            tasks.push(tokio::spawn(device::run(fleet.clone(), tasks.len())));
        }
        if tasks.len() < n {
            let next_at = ramp_start + Duration::from_secs_f64(tasks.len() as f64 / rate);
            tokio::time::sleep_until(next_at.max(tokio::time::Instant::now() + Duration::from_millis(1)))
                .await;
        }
    }
    if n > 0 {
        // Every handshake ends: accepted, refused, failed, or timed out by the connect deadline.
        let all = handshakes.all.notified();
        if handshakes.done.load(Ordering::Acquire) < n as u64 {
            all.await;
        }
    }
    let rss_connected = sysinfo::rss_bytes(None).unwrap_or(0);

    // Hold.
    let hold_start_us = unix_us();
    set_phase(Phase::Run, "run");
    let hold_end = tokio::time::Instant::now() + fleet.settings.duration;
    let driver = matches!(fleet.settings.workload, Workload::Downlink | Workload::Rrpc)
        .then(|| tokio::spawn(driver::run(fleet.clone(), hold_end)));
    tokio::time::sleep_until(hold_end).await;
    let hold_end_us = unix_us();
    set_phase(Phase::Stop, "drain");

    // Drain: outstanding posts get their reply (or delivery), callers finish, at most `drain`.
    let drain_until = tokio::time::Instant::now() + fleet.settings.drain;
    if let Some(d) = driver {
        let _ = tokio::time::timeout_at(drain_until + Duration::from_secs(15), d).await;
    }
    if fleet.settings.workload == Workload::Telemetry {
        let s = &fleet.stats;
        let mut check = tokio::time::interval(Duration::from_millis(10));
        while tokio::time::Instant::now() < drain_until {
            check.tick().await;
            let (sent, replied, errors) = (
                Stats::get(&s.sent),
                Stats::get(&s.replied),
                Stats::get(&s.reply_errors),
            );
            if replied + errors >= sent {
                break;
            }
        }
    }
    set_phase(Phase::Close, "close");
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    if let Some(h) = sub {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    ticker.abort();
    let mut result = WorkerResult::from_stats(&fleet.stats)?;
    result.start_us = start_us;
    result.end_us = unix_us();
    result.hold_start_us = hold_start_us;
    result.hold_end_us = hold_end_us;
    result.rss_before_bytes = rss_before;
    result.rss_connected_bytes = rss_connected;
    result.cpu_seconds = sysinfo::cpu_seconds(None).unwrap_or(0.0);
    result.errors = fleet
        .errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(result)
}
