//! One process running its slice of the fleet through the phases: ramp (connect at `rate`), hold
//! (`duration`, the workload runs), drain (outstanding replies, at most `drain`), close.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::fleet::{Fleet, Phase};
use crate::settings::{Settings, TlsSettings, Workload};
use crate::source::DeviceSpec;
use crate::stats::{Progress, Stats, WorkerResult, unix_us};
use crate::wire::TlsClient;
use crate::{device, driver, subscriber, sysinfo};

/// How often progress is reported.
const TICK: Duration = Duration::from_millis(250);

/// Called with a snapshot every [`TICK`] and at each phase change.
pub(crate) type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// The TLS client (rustls, ring provider) trusting `ca_file`.
fn tls_client(t: &TlsSettings) -> Result<TlsClient> {
    let Some(ca_file) = &t.ca_file else {
        return Err(Error::Tls {
            message: "--tls needs --ca-file with the CA that signed the server certificate".into(),
            source: None,
        });
    };
    TlsClient::from_ca_file(ca_file, &t.server_name)
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Resolve {
            host: host.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::NoAddress {
            host: host.to_owned(),
        })
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `devices` with `settings` in this process.
pub(crate) async fn run_slice(
    settings: Settings,
    devices: Vec<DeviceSpec>,
    on_progress: OnProgress,
) -> Result<WorkerResult> {
    let start_us = unix_us();
    let addr = resolve(&settings.host, settings.port).await?;
    let tls = settings.tls.as_ref().map(tls_client).transpose()?;
    let n = devices.len();
    tracing::debug!(devices = n, %addr, worker = settings.worker_index, "running a slice of the fleet");
    let fleet = Arc::new(Fleet::new(settings, devices, addr, tls));
    // A std mutex: held only to copy or set a `&'static str`, never across an `.await`.
    let phase_name = Arc::new(Mutex::new("ramp"));
    // Aborted when this function returns, early (an error) or not.
    let ticker = {
        let (fleet, on_progress, phase_name) = (fleet.clone(), on_progress.clone(), phase_name.clone());
        AbortOnDrop(tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                let phase = *phase_name
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                on_progress(fleet.stats.progress(phase));
            }
        }))
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
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::Subscriber(
                    "the subscriber stopped before it was ready".into(),
                ));
            }
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
    // Every handshake ends: accepted, refused, failed, or timed out by the connect deadline.
    fleet.handshakes.all_done().await;
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
    if fleet.settings.workload == Workload::Exhaust {
        // The unfinished packets stay on the server for the whole drain, while it is sampled.
        tokio::time::sleep_until(drain_until).await;
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
    drop(ticker);
    let mut result = WorkerResult::from_stats(&fleet.stats)?;
    result.start_us = start_us;
    result.end_us = unix_us();
    result.hold_start_us = hold_start_us;
    result.hold_end_us = hold_end_us;
    result.rss_before_bytes = rss_before;
    result.rss_connected_bytes = rss_connected;
    result.cpu_seconds = sysinfo::cpu_seconds(None).unwrap_or(0.0);
    result.errors = fleet.errors();
    Ok(result)
}
