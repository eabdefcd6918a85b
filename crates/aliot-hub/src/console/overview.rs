//! The overview: devices online/total, connects and messages per second over the last minutes
//! (sampled from the hub's counters), refusals by CONNACK code with their causes, memory and
//! connections.

use aliot_protocol::codes::ConnackCode;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::page::render;
use super::session::Session;
use super::{ConsoleState, SAMPLE_EVERY, SAMPLES, base};

/// One sample of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    /// Epoch seconds.
    time: u64,
    connects: f64,
    messages_in: f64,
    messages_out: f64,
}

/// The value of metric line `name` (with its labels, if any) in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn sample(state: &ConsoleState) -> Sample {
    let text = state.service().render_metrics();
    Sample {
        time: crate::clock::now_ms() / 1000,
        connects: metric(&text, "aliot_hub_connack_total{code=\"0\"}").unwrap_or(0.0),
        messages_in: metric(&text, "aliot_hub_messages_in_total").unwrap_or(0.0),
        messages_out: metric(&text, "aliot_hub_messages_out_total").unwrap_or(0.0),
    }
}

fn push(state: &ConsoleState, s: Sample) {
    let mut samples = state
        .inner
        .samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Bounded: the oldest sample goes when the ring is full.
    if samples.len() == SAMPLES {
        samples.pop_front();
    }
    samples.push_back(s);
}

/// Samples the counters every [`SAMPLE_EVERY`] until the console closes (outside a tokio
/// runtime, nothing is sampled).
pub(super) fn spawn_sampler(state: ConsoleState) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => push(&state, sample(&state)),
                () = state.closing().cancelled() => return,
            }
        }
    });
}

/// The resident memory of the process, bytes (Linux), if known.
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[derive(Serialize)]
struct Refusal {
    code: u8,
    name: &'static str,
    cause: &'static str,
    hint: &'static str,
    count: u64,
}

/// `GET /console/`.
pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
) -> Response {
    let text = state.service().render_metrics();
    let get = |name: &str| metric(&text, name).unwrap_or(0.0) as u64;
    let refusals: Vec<Refusal> = ConnackCode::ALL
        .iter()
        .filter(|c| c.code() != 0)
        .map(|c| Refusal {
            code: c.code(),
            name: c.name(),
            cause: c.cause(),
            hint: c.hint(),
            count: get(&format!("aliot_hub_connack_total{{code=\"{}\"}}", c.code())),
        })
        .collect();
    let memory = resident_memory().map(|b| format!("{:.1} MiB", b as f64 / 1048576.0));
    render(
        "overview.html",
        minijinja::context! {
            online => super::page::ser(&get("aliot_hub_sessions_online")),
            devices => super::page::ser(&get("aliot_hub_registry_devices")),
            products => super::page::ser(&get("aliot_hub_registry_products")),
            connections => super::page::ser(&get("aliot_hub_connections")),
            messages_in => super::page::ser(&get("aliot_hub_messages_in_total")),
            messages_out => super::page::ser(&get("aliot_hub_messages_out_total")),
            refusals => super::page::ser(&refusals),
            memory => super::page::ser(&memory),
            sessions => super::page::ser(&state.sessions().len()),
            window_minutes => super::page::ser(&(SAMPLE_EVERY.as_secs() * SAMPLES as u64 / 60)),
            ..base(&session, "overview"),
        },
    )
}

/// The chart's series (uPlot's columns): times, connects/s, messages in/s, messages out/s.
#[derive(Serialize)]
pub(super) struct Series {
    time: Vec<u64>,
    connects: Vec<f64>,
    messages_in: Vec<f64>,
    messages_out: Vec<f64>,
}

/// `GET /console/overview.json`: rates between consecutive samples (and the current one).
pub(super) async fn series(State(state): State<ConsoleState>) -> Response {
    let mut samples: Vec<Sample> = state
        .inner
        .samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .copied()
        .collect();
    samples.push(sample(&state));
    let mut out = Series {
        time: Vec::new(),
        connects: Vec::new(),
        messages_in: Vec::new(),
        messages_out: Vec::new(),
    };
    for pair in samples.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let secs = b.time.saturating_sub(a.time).max(1) as f64;
        out.time.push(b.time);
        out.connects.push((b.connects - a.connects).max(0.0) / secs);
        out.messages_in
            .push((b.messages_in - a.messages_in).max(0.0) / secs);
        out.messages_out
            .push((b.messages_out - a.messages_out).max(0.0) / secs);
    }
    Json(out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_name_and_label() {
        let text = "# HELP x\naliot_hub_connack_total{code=\"0\"} 7\naliot_hub_messages_in_total 12\n";
        assert_eq!(metric(text, "aliot_hub_connack_total{code=\"0\"}"), Some(7.0));
        assert_eq!(metric(text, "aliot_hub_messages_in_total"), Some(12.0));
        assert_eq!(metric(text, "aliot_hub_messages"), None);
    }
}
