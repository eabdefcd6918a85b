//! The final summary on stdout: a table, or one JSON object on the last line.

use std::io::Write as _;

use super::Format;
use super::stats::{Percentiles, Summary};

/// Prints the summary.
pub(crate) fn print(s: &Summary, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(s)?)?,
        Format::Table => out.write_all(table(s).as_bytes())?,
    }
    out.flush()?;
    Ok(())
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
pub(crate) fn table(s: &Summary) -> String {
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
