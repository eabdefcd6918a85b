//! The result of a bench run, [`Summary`], and its two renderings: a readable two-column table
//! and one JSON object on one line.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Number of values (0: the percentiles are all 0).
    pub count: u64,
}

/// What a bench run measured, summed over its processes (histograms merged exactly). Its JSON
/// form (field names as here) is the `--format json` line of `aliot bench`.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// The workload (`connect`, `telemetry`, `downlink`, `rrpc`).
    pub workload: String,
    /// `mqtt://host:port (signed)`, `mqtts://…`, or `… (plain auth)`.
    pub target: String,
    /// Processes that ran the fleet.
    pub processes: usize,
    /// Devices in the fleet.
    pub devices: u64,
    /// Devices that got CONNACK 0.
    pub connected: u64,
    /// CONNACK refusals by return code (`"1"`..=`"5"`, or `"other"`).
    pub refused: BTreeMap<String, u64>,
    /// Connect attempts without a CONNACK: TCP/TLS error, timeout, or closed before CONNACK.
    pub connect_errors: u64,
    /// Connected devices whose connection ended before the end of the run.
    pub dropped: u64,
    /// Connects accepted per second over the ramp (first attempt → last CONNACK).
    pub connect_rate: f64,
    /// Seconds from the first connect attempt to the last CONNACK.
    pub ramp_s: f64,
    /// Connect → CONNACK.
    pub connack_latency_ms: Percentiles,
    /// Posts sent (telemetry, exhaust), or admin calls made (downlink, rrpc).
    pub sent: u64,
    /// PUBACKs received for QoS 1 posts.
    pub acked: u64,
    /// Posts replied to (or delivered, under plain auth), or admin calls answered.
    pub replied: u64,
    /// `sent` − `replied` − `reply_errors`: never answered (0 under `exhaust`, whose devices
    /// never read).
    pub lost: u64,
    /// Replies with an Alink code other than 200, or admin calls answered with an error.
    pub reply_errors: u64,
    /// Downlinks (property sets, service calls, RRPC) answered by the devices.
    pub downlinks_answered: u64,
    /// telemetry with an interval: posts per second the fleet is asked to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    /// Replies (or deliveries) per second over the hold phase.
    pub msgs_per_s: f64,
    /// PUBACKs per second over the hold phase.
    pub acks_per_s: f64,
    /// Post → reply (or delivery), or the admin call's round trip.
    pub reply_latency_ms: Percentiles,
    /// Post → PUBACK.
    pub ack_latency_ms: Percentiles,
    /// Seconds the fleet was held.
    pub hold_s: f64,
    /// Seconds of the whole run.
    pub duration_s: f64,
    /// Resident memory of the bench processes once the fleet was connected.
    pub bench_rss_bytes: u64,
    /// Resident memory the bench processes grew by, per connected device.
    pub bench_rss_per_device_kib: f64,
    /// CPU seconds of the bench processes.
    pub bench_cpu_seconds: f64,
    /// Peak RSS of the hub (from its `/metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_rss_bytes: Option<u64>,
    /// Growth of the hub's RSS per connected device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_rss_per_device_kib: Option<f64>,
    /// CPU seconds of the hub during the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_cpu_seconds: Option<f64>,
    /// Peak RSS of the server process (from /proc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    /// Growth of the server's RSS per connected device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_per_device_kib: Option<f64>,
    /// CPU seconds of the server during the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
    /// The first few distinct error messages (failed connects, failed admin calls).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// How a [`Summary`] is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable two-column table, one row per line.
    Table,
    /// One JSON object on one line.
    Json,
}

impl Summary {
    /// The summary in `format`, ending with a newline.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => table(self),
            Format::Json => {
                // Only strings, numbers and string-keyed maps: serialization cannot fail.
                let mut line = serde_json::to_string(self).unwrap_or_default();
                line.push('\n');
                line
            }
        }
    }

    /// Writes [`render`](Self::render) to `out`.
    ///
    /// # Errors
    /// The error of the write.
    pub fn write_to(&self, mut out: impl io::Write, format: Format) -> io::Result<()> {
        out.write_all(self.render(format).as_bytes())
    }
}

fn pct(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".into();
    }
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms  (n={})",
        p.p50, p.p90, p.p99, p.max, p.count
    )
}

/// The summary as a two-column table.
fn table(s: &Summary) -> String {
    let refused = if s.refused.is_empty() {
        "0".to_owned()
    } else {
        s.refused
            .iter()
            .map(|(c, n)| format!("{n} × CONNACK {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("workload", s.workload.clone()),
        ("target", s.target.clone()),
        ("processes", s.processes.to_string()),
        ("devices", s.devices.to_string()),
        ("connected", s.connected.to_string()),
        ("refused", refused),
        ("connect errors", s.connect_errors.to_string()),
        ("dropped", s.dropped.to_string()),
        (
            "connect rate",
            format!("{:.1} /s (ramp {:.3} s)", s.connect_rate, s.ramp_s),
        ),
        ("CONNACK latency", pct(&s.connack_latency_ms)),
        ("sent", s.sent.to_string()),
        ("acked (PUBACK)", s.acked.to_string()),
        ("replied", s.replied.to_string()),
        ("lost", s.lost.to_string()),
        ("reply errors", s.reply_errors.to_string()),
        ("downlinks answered", s.downlinks_answered.to_string()),
        (
            "msgs/s",
            match s.offered_per_s {
                Some(o) => format!("{:.1} (offered {o:.1})", s.msgs_per_s),
                None => format!("{:.1}", s.msgs_per_s),
            },
        ),
        ("PUBACK latency", pct(&s.ack_latency_ms)),
        ("reply latency", pct(&s.reply_latency_ms)),
        ("hold", format!("{:.3} s", s.hold_s)),
        ("duration", format!("{:.3} s", s.duration_s)),
        (
            "bench RSS",
            format!("{:.1} MiB", s.bench_rss_bytes as f64 / 1048576.0),
        ),
        (
            "bench RSS / device",
            format!("{:.2} KiB", s.bench_rss_per_device_kib),
        ),
        ("bench CPU", format!("{:.2} s", s.bench_cpu_seconds)),
    ];
    if let Some(b) = s.hub_rss_bytes {
        rows.push(("hub RSS", format!("{:.1} MiB", b as f64 / 1048576.0)));
    }
    if let Some(k) = s.hub_rss_per_device_kib {
        rows.push(("hub RSS / device", format!("{k:.2} KiB")));
    }
    if let Some(c) = s.hub_cpu_seconds {
        rows.push(("hub CPU", format!("{c:.2} s")));
    }
    if let Some(b) = s.server_rss_bytes {
        rows.push(("server RSS", format!("{:.1} MiB", b as f64 / 1048576.0)));
    }
    if let Some(k) = s.server_rss_per_device_kib {
        rows.push(("server RSS / device", format!("{k:.2} KiB")));
    }
    if let Some(c) = s.server_cpu_seconds {
        rows.push(("server CPU", format!("{c:.2} s")));
    }
    for e in &s.errors {
        rows.push(("error", e.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_should_be_one_line_without_the_absent_server_figures() {
        let s = Summary {
            workload: "connect".into(),
            ..Summary::default()
        };
        let text = s.render(Format::Json);
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["workload"], "connect");
        assert!(
            v.get("hub_rss_bytes").is_none() && v.get("errors").is_none(),
            "{v}"
        );
    }

    #[test]
    fn the_table_should_align_its_values_and_list_refusals_and_errors() {
        let s = Summary {
            refused: BTreeMap::from([("4".to_owned(), 2)]),
            errors: vec!["connect 127.0.0.1:1: refused".into()],
            ..Summary::default()
        };
        let t = s.render(Format::Table);
        assert!(t.contains("refused             2 × CONNACK 4\n"), "{t}");
        assert!(
            t.ends_with("error               connect 127.0.0.1:1: refused\n"),
            "{t}"
        );
        assert!(t.contains("CONNACK latency     -\n"), "{t}");
    }
}
