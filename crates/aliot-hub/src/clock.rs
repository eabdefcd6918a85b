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

/// Epoch ms of an RFC 3339 time (`2026-11-29T17:00:00Z`, `…T17:00:00.250+08:00`; `t`, `z` and a
/// space for `T` accepted); `None` when it is not one or is before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<u64>().ok()? * 10u64.pow(3 - u32::try_from(frac.len()).ok()?);
    }
    let offset_secs: i64 = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && tz.as_bytes()[3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let secs = i64::try_from(h * 3600 + m * 60).ok()?;
            if tz.starts_with('-') { -secs } else { secs }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to (year, month, day), the inverse of `civil`.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = i64::try_from(era * 146_097 + doe).ok()? - 719_468;
    let secs = days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()? - offset_secs;
    u64::try_from(secs).ok()?.checked_mul(1000)?.checked_add(millis)
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
    fn rfc3339_times_read_back_to_what_format_utc_writes() {
        for ms in [0, 1_535_700_748_205, 1_764_435_600_000, 951_782_400_999] {
            assert_eq!(parse_rfc3339(&format_utc(ms)), Some(ms), "{}", format_utc(ms));
        }
        assert_eq!(
            parse_rfc3339("2018-08-31T15:32:28.205+08:00"),
            Some(1_535_700_748_205)
        );
        assert_eq!(parse_rfc3339("2018-08-31 07:32:28z"), Some(1_535_700_748_000));
        for bad in [
            "2018-08-31",
            "2018-13-01T00:00:00Z",
            "2018-08-31T07:32:28",
            "1969-12-31T23:59:59Z",
            "x018-08-31T07:32:28Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

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
