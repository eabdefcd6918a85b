//! Process metrics from `/proc/self` (Linux), in the Prometheus client libraries' names, so
//! that the bench can read the hub's memory and CPU from `/metrics`.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc/self/stat`. Linux fixes `USER_HZ` at 100 for user space on
/// every architecture it supports (`sysconf(_SC_CLK_TCK)` always answers 100), and reading it
/// through libc would need `unsafe`, which the workspace forbids.
const USER_HZ: f64 = 100.0;

/// Appends `process_resident_memory_bytes`, `process_cpu_seconds_total`,
/// `process_open_fds` and `process_threads` to `out`. Silently writes nothing for a value
/// that cannot be read (non-Linux systems).
pub(crate) fn render(out: &mut String) {
    if let Some(rss) = resident_bytes() {
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss as f64,
        );
    }
    if let Some(cpu) = cpu_seconds() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    if let Some(threads) = status_field("Threads:") {
        gauge(
            out,
            "process_threads",
            "Number of OS threads in the process.",
            threads as f64,
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// A numeric field of `/proc/self/status` (the first number after `key`).
fn status_field(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_field(&status, key)
}

fn parse_status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `VmRSS` of `/proc/self/status`, in bytes (the file gives kB).
fn resident_bytes() -> Option<u64> {
    status_field("VmRSS:").map(|kb| kb.saturating_mul(1024))
}

/// utime + stime of `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may itself contain spaces or ')', so
    // count fields from the last ')': field 3 (state) comes first, utime and stime are 14, 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_tricky_command_name() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn status_fields_are_read_by_key() {
        let status = "Name:\taliot\nVmRSS:\t   2048 kB\nThreads:\t5\n";
        assert_eq!(parse_status_field(status, "VmRSS:"), Some(2048));
        assert_eq!(parse_status_field(status, "Threads:"), Some(5));
        assert_eq!(parse_status_field(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_its_memory_and_cpu() {
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("process_resident_memory_bytes "), "{out}");
        assert!(out.contains("process_cpu_seconds_total "), "{out}");
    }
}
