//! The parent of a bench run, and `processes` > 1: K worker processes started with the
//! [`WorkerCommand`](crate::WorkerCommand) (`aliot bench` re-executes itself with its hidden
//! `--worker` flag), each given its settings and a disjoint slice of the fleet as one JSON line on
//! stdin (secrets never appear on a command line), each printing JSON lines on stdout: progress
//! snapshots, then one result with its histograms serialized, merged here exactly.

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader};
use tokio::task::JoinSet;

use crate::error::{Error, Result, chain};
use crate::progress::Live;
use crate::report::Summary;
use crate::run::{self, OnProgress};
use crate::settings::{Plan, Settings, Workload};
use crate::source::{self, DeviceSpec};
use crate::stats::{self, Progress, WorkerResult, round3};
use crate::sysinfo;

/// What a worker reads on stdin.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerSpec {
    settings: Settings,
    devices: Vec<DeviceSpec>,
}

/// One line a worker prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WorkerLine {
    Progress(Progress),
    Result(Box<WorkerResult>),
    Error(String),
}

fn phase_rank(p: &str) -> u8 {
    match p {
        "ramp" => 0,
        "run" => 1,
        "drain" => 2,
        _ => 3,
    }
}

/// Sums the snapshots of the workers; the phase is the least advanced one.
fn sum(progress: &[Progress]) -> Progress {
    let mut out = Progress {
        phase: "close".into(),
        ..Progress::default()
    };
    for p in progress {
        if phase_rank(&p.phase) < phase_rank(&out.phase) {
            out.phase = p.phase.clone();
        }
        out.devices += p.devices;
        out.connected += p.connected;
        out.dropped += p.dropped;
        out.connect_errors += p.connect_errors;
        out.sent += p.sent;
        out.replied += p.replied;
        out.reply_p99_ms = out.reply_p99_ms.max(p.reply_p99_ms);
        for (k, v) in &p.refused {
            *out.refused.entry(k.clone()).or_default() += v;
        }
    }
    out
}

/// Samples the server (hub `/metrics`, or a PID's /proc) while the bench runs.
#[derive(Debug, Default, Clone)]
struct ServerSamples {
    baseline_rss: Option<u64>,
    peak_rss: Option<u64>,
    first_cpu: Option<f64>,
    last_cpu: Option<f64>,
    cpu_at_run: Option<f64>,
    cpu_at_drain: Option<f64>,
}

impl ServerSamples {
    fn add(&mut self, rss: Option<u64>, cpu: Option<f64>, phase: &str) {
        if let Some(r) = rss {
            self.baseline_rss.get_or_insert(r);
            self.peak_rss = Some(self.peak_rss.map_or(r, |p| p.max(r)));
        }
        if let Some(c) = cpu {
            self.first_cpu.get_or_insert(c);
            self.last_cpu = Some(c);
            if phase_rank(phase) >= 1 {
                self.cpu_at_run.get_or_insert(c);
            }
            if phase_rank(phase) >= 2 {
                self.cpu_at_drain.get_or_insert(c);
            }
        }
    }

    fn cpu(&self) -> Option<f64> {
        Some(round3(self.last_cpu? - self.first_cpu?))
    }

    fn per_device_kib(&self, connected: u64) -> Option<f64> {
        (connected > 0).then_some(())?;
        Some(round3(
            self.peak_rss?.saturating_sub(self.baseline_rss?) as f64 / 1024.0 / connected as f64,
        ))
    }
}

/// How long a `/metrics` scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the hub whose Prometheus text is at `url` (`http://host:port/metrics`; a URL
/// without the `/metrics` path names the hub itself).
fn metrics_client(url: &str) -> Result<aliot_admin::Client> {
    let base = url.trim_end_matches('/');
    let base = base.strip_suffix("/metrics").unwrap_or(base);
    aliot_admin::Client::new(base)
        .map(|c| c.with_timeout(SCRAPE_TIMEOUT))
        .map_err(|e| Error::ServerSampling(format!("--hub-metrics {url}: {}", chain(&e))))
}

async fn sample_hub(client: &aliot_admin::Client) -> (Option<u64>, Option<f64>) {
    match client.metrics().await {
        Ok(text) => (
            sysinfo::metric(&text, "process_resident_memory_bytes").map(|v| v as u64),
            sysinfo::metric(&text, "process_cpu_seconds_total"),
        ),
        Err(_) => (None, None),
    }
}

/// Runs a bench: resolves the fleet (reads the CSV, or registers the devices), runs it in this
/// process or in `processes` workers, samples the server, and merges the results exactly.
///
/// Refusals, lost messages and dropped connections are results (counted in the [`Summary`]),
/// not errors.
///
/// # Errors
/// A device list that cannot be read or used, a failed registration, a host that does not
/// resolve, a TLS setup that fails, a server that cannot be sampled, or a worker process that
/// fails.
pub async fn run(plan: &Plan) -> Result<Summary> {
    let devices = source::resolve(&plan.fleet, plan.settings.admin.as_ref()).await?;
    let live = Arc::new(Live::new(!plan.progress, devices.len() as u64));
    let latest = Arc::new(Mutex::new(vec![Progress::default(); plan.processes]));

    // Server sampling: a baseline before the first device, then every 500 ms.
    let hub = match &plan.hub_metrics {
        Some(url) => Some((metrics_client(url)?, url.clone())),
        None => None,
    };
    let (mut hub_samples, mut pid_samples) = (ServerSamples::default(), ServerSamples::default());
    if let Some((http, url)) = &hub {
        let (r, c) = sample_hub(http).await;
        if r.is_none() {
            return Err(Error::ServerSampling(format!(
                "--hub-metrics {url}: no process_resident_memory_bytes there"
            )));
        }
        hub_samples.add(r, c, "ramp");
    }
    if let Some(pid) = plan.server_pid {
        let r = sysinfo::rss_bytes(Some(pid))
            .ok_or_else(|| Error::ServerSampling(format!("--server-pid {pid}: no such process")))?;
        pid_samples.add(Some(r), sysinfo::cpu_seconds(Some(pid)), "ramp");
    }
    let samples = Arc::new(Mutex::new((hub_samples, pid_samples)));
    let sampler = {
        let (samples, latest, server_pid) = (samples.clone(), latest.clone(), plan.server_pid);
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                let phase = sum(&latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).phase;
                let h = match &hub {
                    Some((http, _)) => Some(sample_hub(http).await),
                    None => None,
                };
                let p =
                    server_pid.map(|pid| (sysinfo::rss_bytes(Some(pid)), sysinfo::cpu_seconds(Some(pid))));
                let mut s = samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((r, c)) = h {
                    s.0.add(r, c, &phase);
                }
                if let Some((r, c)) = p {
                    s.1.add(r, c, &phase);
                }
            }
        })
    };

    let results = if plan.processes == 1 {
        let on_progress: OnProgress = {
            let (live, latest) = (live.clone(), latest.clone());
            Arc::new(move |p: Progress| {
                live.show(&p);
                if let Some(slot) = latest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_mut(0)
                {
                    *slot = p;
                }
            })
        };
        vec![run::run_slice(plan.settings.clone(), devices, on_progress).await?]
    } else {
        run_workers(plan, devices, live.clone(), latest.clone()).await?
    };
    live.finish();
    sampler.abort();
    // One last sample after the run (CPU of the drain and close).
    let (mut hub_samples, mut pid_samples) = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some((http, _)) = &hub {
        let (r, c) = sample_hub(http).await;
        hub_samples.add(r, c, "close");
    }
    if let Some(pid) = plan.server_pid {
        pid_samples.add(
            sysinfo::rss_bytes(Some(pid)),
            sysinfo::cpu_seconds(Some(pid)),
            "close",
        );
    }

    let mut summary = stats::merge(&results)?;
    summary.workload = plan.settings.workload.as_str().to_owned();
    if plan.settings.workload == Workload::Exhaust {
        // Its devices never read a reply: an unanswered post is the point, not a loss.
        summary.lost = 0;
    }
    if plan.settings.workload == Workload::Telemetry && !plan.settings.interval.is_zero() {
        summary.offered_per_s = Some(stats::round1(
            summary.connected as f64 / plan.settings.interval.as_secs_f64(),
        ));
    }
    summary.target = format!(
        "{}{}:{}{}",
        if plan.settings.tls.is_some() {
            "mqtts://"
        } else {
            "mqtt://"
        },
        plan.settings.host,
        plan.settings.port,
        if plan.settings.plain_auth.is_some() {
            " (plain auth)"
        } else {
            " (signed)"
        }
    );
    if hub.is_some() {
        summary.hub_rss_bytes = hub_samples.peak_rss;
        summary.hub_rss_per_device_kib = hub_samples.per_device_kib(summary.connected);
        summary.hub_cpu_seconds = hub_samples.cpu();
    }
    if plan.server_pid.is_some() {
        summary.server_rss_bytes = pid_samples.peak_rss;
        summary.server_rss_per_device_kib = pid_samples.per_device_kib(summary.connected);
        summary.server_cpu_seconds = pid_samples.cpu();
    }
    Ok(summary)
}

/// Splits the fleet into `plan.processes` contiguous slices and runs one worker per slice.
async fn run_workers(
    plan: &Plan,
    devices: Vec<DeviceSpec>,
    live: Arc<Live>,
    latest: Arc<Mutex<Vec<Progress>>>,
) -> Result<Vec<WorkerResult>> {
    let Some(command) = &plan.worker_command else {
        return Err(Error::Worker {
            message: "no command to start worker processes with".into(),
            source: None,
        });
    };
    let k = plan.processes;
    let per = devices.len().div_ceil(k);
    let mut slices: Vec<Vec<DeviceSpec>> = Vec::with_capacity(k);
    let mut rest = devices;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        slices.push(std::mem::replace(&mut rest, tail));
    }
    let k = slices.len();
    let mut set = JoinSet::new();
    for (w, slice) in slices.into_iter().enumerate() {
        let mut settings = plan.settings.clone();
        settings.worker_index = w;
        settings.rate = plan.settings.rate / k as f64;
        let spec = serde_json::to_vec(&WorkerSpec {
            settings,
            devices: slice,
        })
        .map_err(|e| Error::worker("cannot encode a worker's spec", e))?;
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::worker(
                    format!("cannot start worker {w} ({})", command.program.display()),
                    e,
                )
            })?;
        tracing::debug!(worker = w, pid = child.id(), "worker started");
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Worker {
                message: format!("worker {w} has no stdin or stdout pipe"),
                source: None,
            });
        };
        let (live, latest) = (live.clone(), latest.clone());
        set.spawn(async move {
            stdin
                .write_all(&spec)
                .await
                .map_err(|e| Error::worker(format!("cannot send worker {w} its spec"), e))?;
            drop(stdin);
            let mut lines = BufReader::new(stdout).lines();
            let mut result = None;
            while let Some(line) = lines
                .next_line()
                .await
                .map_err(|e| Error::worker(format!("reading worker {w}"), e))?
            {
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(WorkerLine::Progress(p)) => {
                        let total = {
                            let mut l = latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            if let Some(slot) = l.get_mut(w) {
                                *slot = p;
                            }
                            sum(&l)
                        };
                        live.show(&total);
                    }
                    Ok(WorkerLine::Result(r)) => result = Some(*r),
                    Ok(WorkerLine::Error(e)) => {
                        return Err(Error::Worker {
                            message: format!("worker {w}: {e}"),
                            source: None,
                        });
                    }
                    Err(_) => tracing::trace!(worker = w, %line, "not a worker line"),
                }
            }
            let status = child
                .wait()
                .await
                .map_err(|e| Error::worker(format!("waiting for worker {w}"), e))?;
            result.ok_or_else(|| Error::Worker {
                message: format!("worker {w} ended ({status}) without a result"),
                source: None,
            })
        });
    }
    let mut results = Vec::with_capacity(k);
    while let Some(r) = set.join_next().await {
        results.push(r.map_err(|e| Error::worker("a worker task panicked", e))??);
    }
    Ok(results)
}

/// The worker side of a multi-process run: reads its settings and slice of the fleet (one JSON
/// line) from `input`, runs them, and writes JSON lines to `output`: progress snapshots, then its
/// result (or the error that stopped it). `aliot bench --worker` calls it with its stdin and
/// stdout.
///
/// # Errors
/// Only when `input` cannot be read or is not a worker spec; a failure of the run itself is
/// written to `output` for the parent.
pub async fn run_worker<R, W>(input: R, output: W) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: Write + Send + 'static,
{
    let mut line = String::new();
    BufReader::new(input)
        .read_line(&mut line)
        .await
        .map_err(|e| Error::worker("reading the worker spec", e))?;
    let spec: WorkerSpec = serde_json::from_str(&line).map_err(|e| Error::worker("bad worker spec", e))?;
    // A std mutex: each line is written and flushed under it, never across an `.await`.
    let output = Arc::new(Mutex::new(output));
    let emit = move |line: &WorkerLine| {
        if let Ok(text) = serde_json::to_string(line) {
            let mut out = output.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The parent reading the other end is gone if this fails: nothing left to tell.
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    };
    let on_progress: OnProgress = {
        let emit = emit.clone();
        Arc::new(move |p| emit(&WorkerLine::Progress(p)))
    };
    match run::run_slice(spec.settings, spec.devices, on_progress).await {
        Ok(r) => emit(&WorkerLine::Result(Box::new(r))),
        Err(e) => emit(&WorkerLine::Error(chain(&e))),
    }
    Ok(())
}
