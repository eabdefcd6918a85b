//! Resident memory and CPU time from /proc (Linux; `None` elsewhere).

/// VmRSS of a process in bytes (`None` for this process means /proc is not there).
pub(crate) fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// User + system CPU seconds of a process, from `/proc/{pid}/stat` (fields 14 and 15, in clock
/// ticks of USER_HZ, which is 100 on every Linux architecture we build for).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field 14 is index 11.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The value of an unlabelled metric in Prometheus text (`name 1.5e7`).
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix("{}").map(str::trim_start))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_should_have_rss_and_cpu_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes(None).is_some_and(|b| b > 0));
            assert!(cpu_seconds(None).is_some());
        }
    }

    #[test]
    fn metric_should_read_plain_and_exponent_values_and_ignore_prefixes() {
        let text = "# HELP process_resident_memory_bytes x\nprocess_resident_memory_bytes_extra 1\n\
                    process_resident_memory_bytes 1.2345e7\nprocess_cpu_seconds_total 12.5\n";
        assert_eq!(metric(text, "process_resident_memory_bytes"), Some(12_345_000.0));
        assert_eq!(metric(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(metric(text, "nope"), None);
    }
}
