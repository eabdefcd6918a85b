//! The hub's one clock: epoch milliseconds, and the platform's two ways of writing them.
//!
//! Everything that stamps a time (events, the registry, the offline queue's retention) reads
//! [`now_ms`]; the pure parts of the hub (the device table, the platform's decisions) take the
//! time as an argument so that tests can pass their own.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The platform's offset for `time` fields: China Standard Time, UTC+8.
const CST_OFFSET_MS: u64 = 8 * 3600 * 1000;

/// `yyyy-MM-dd HH:mm:ss.SSS` in China Standard Time (the platform's `time` field).
pub fn format_cst(epoch_ms: u64) -> String {
    let (date, time) = civil(epoch_ms.saturating_add(CST_OFFSET_MS));
    format!("{date} {time}")
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC (the platform's `utcTime` field).
pub fn format_utc(epoch_ms: u64) -> String {
    let (date, time) = civil(epoch_ms);
    format!("{date}T{time}Z")
}

/// Splits epoch ms into (`yyyy-MM-dd`, `HH:mm:ss.SSS`), proleptic Gregorian calendar.
fn civil(epoch_ms: u64) -> (String, String) {
    let ms = epoch_ms % 1000;
    let secs = epoch_ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (h, m, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    // Days since 1970-01-01 to (year, month, day): shift the epoch to 0000-03-01 so that leap
    // days fall at the end of a 400-year era, then peel off eras, years and months.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{d:02}"),
        format!("{h:02}:{m:02}:{s:02}.{ms:03}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_the_platform() {
        // The example of the platform's documentation: 2018-08-31T07:32:28.205Z.
        let t = 1_535_700_748_205;
        assert_eq!(format_utc(t), "2018-08-31T07:32:28.205Z");
        assert_eq!(format_cst(t), "2018-08-31 15:32:28.205");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        // A leap day and the C SDK's far-future timestamp.
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_utc(2_524_608_000_000), "2050-01-01T00:00:00.000Z");
    }
}
