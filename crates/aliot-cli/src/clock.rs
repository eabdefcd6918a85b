//! The one clock of `aliot`: every reading of the time is here. What people read is in local
//! time, as the classic device simulator prints it; what is signed is in epoch milliseconds.
//! (Local time needs the time zone database, `TZ` or `/etc/localtime`: chrono reads it.)

use chrono::{DateTime, Local, SecondsFormat};

/// Now, in the local time zone.
fn now() -> DateTime<Local> {
    Local::now()
}

/// Milliseconds since the Unix epoch, now; `None` when the system clock is set before 1970.
pub(crate) fn now_ms() -> Option<u64> {
    u64::try_from(now().timestamp_millis()).ok()
}

/// Now, local time, to the second: `2026-11-23 09:18:31`.
pub(crate) fn local_now() -> String {
    now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Now, local time, RFC 3339 with milliseconds: `2026-11-23T09:18:31.123+08:00`.
pub(crate) fn local_now_rfc3339() -> String {
    now().to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// An epoch-milliseconds time in local time: `2026-11-23 09:18:23.428 +08:00`; empty when it
/// is out of range.
pub(crate) fn local_ms(epoch_ms: i64) -> String {
    DateTime::from_timestamp_millis(epoch_ms)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S%.3f %:z")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_local_dates() {
        let shape = |s: &str| {
            s.chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect::<String>()
        };
        assert_eq!(shape(&local_now()), "0000-00-00 00:00:00");
        assert_eq!(
            shape(&local_ms(1_795_396_703_428)).len(),
            "0000-00-00 00:00:00.000 +00:00".len()
        );
        assert!(
            local_ms(1_795_396_703_428).contains(":23.428 "),
            "{}",
            local_ms(1_795_396_703_428)
        );
        assert!(local_now_rfc3339().contains('T'));
        assert!(now_ms().is_some_and(|ms| ms > 1_700_000_000_000));
        assert_eq!(local_ms(i64::MAX), "");
    }
}
