//! Parsing of the timestamp, date, number and boolean formats that CRM exports use
//! (README, "Canonical files"): RFC 3339, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.fff]`, `YYYY-MM-DDTHH:MM:SS`,
//! epoch seconds and epoch milliseconds. Naive values are local to the configured timezone.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// The instants crm-kpi stores: from 1900-01-01T00:00:00Z up to, not including,
/// 2200-01-01T00:00:00Z. A value outside is a typo or a sentinel (`-9000000000000000`), and
/// readers of the store (polars among them) fail on the far extremes of the 64-bit range.
pub const MIN_US: i64 = -2_208_988_800_000_000;
pub const MAX_US: i64 = 7_258_118_400_000_000;
/// The same range in days since 1970-01-01, for dates.
pub const MIN_DAY: i32 = -25_567;
pub const MAX_DAY: i32 = 84_006;
/// The allowed range, as said in quarantine reasons.
pub const RANGE_TEXT: &str = "1900-01-01 to 2199-12-31";

pub fn us_in_range(us: i64) -> bool {
    (MIN_US..MAX_US).contains(&us)
}

pub fn day_in_range(day: i32) -> bool {
    (MIN_DAY..MAX_DAY).contains(&day)
}

/// Epoch values at or above this are milliseconds (1e11 s is the year 5138).
const EPOCH_MS_THRESHOLD: i64 = 100_000_000_000;

/// Parses an instant to microseconds since the Unix epoch (UTC).
pub fn parse_timestamp_us(s: &str, tz: Tz) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit())
        || (s.starts_with('-') && s.len() > 1 && s[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        let n: i64 = s.parse().ok()?;
        let us = if n.abs() >= EPOCH_MS_THRESHOLD {
            n.checked_mul(1_000)?
        } else {
            n.checked_mul(1_000_000)?
        };
        return Some(us);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    // RFC 3339 with a space instead of `T`, or an offset written `+0000` (Salesforce) or `+00`
    // (PostgreSQL and DuckDB), with or without a space before it.
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp_micros());
        }
    }
    let s_utc = s.strip_suffix(" UTC").or_else(|| s.strip_suffix('Z'));
    let (body, zone) = match s_utc {
        Some(b) => (b, None),
        None => (s, Some(tz)),
    };
    let naive = parse_naive(body)?;
    match zone {
        None => Some(naive.and_utc().timestamp_micros()),
        Some(tz) => local_to_utc(naive, tz).map(|dt| dt.timestamp_micros()),
    }
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// A local wall-clock time to UTC: an ambiguous time (DST fall-back) takes the earlier
/// instant; a time that does not exist (spring-forward gap) is moved forward by the gap.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Some(dt),
        LocalResult::Ambiguous(a, _) => Some(a),
        LocalResult::None => {
            let later = naive + chrono::Duration::hours(1);
            tz.from_local_datetime(&later).earliest()
        }
    }
}

/// Parses a calendar date: `YYYY-MM-DD`, or any timestamp (its local date in `tz`).
/// Returns days since 1970-01-01.
pub fn parse_date_days(s: &str, tz: Tz) -> Option<i32> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(days_since_epoch(d));
    }
    let us = parse_timestamp_us(s, tz)?;
    let dt = DateTime::from_timestamp_micros(us)?.with_timezone(&tz);
    Some(days_since_epoch(dt.date_naive()))
}

pub fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

pub fn date_from_days(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days as i64)
}

/// Parses a number; accepts a leading `+`, surrounding spaces and `_`-free plain decimals.
/// Rejects NaN and infinities, which no CRM amount can be.
pub fn parse_f64(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

pub fn parse_i64(s: &str) -> Option<i64> {
    let t = s.trim();
    t.parse().ok().or_else(|| {
        // "12.0" from spreadsheets is an integer.
        let f: f64 = t.parse().ok()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Local calendar day (days since 1970-01-01) of an instant.
pub fn local_day(us: i64, tz: Tz) -> Option<i32> {
    let dt = DateTime::from_timestamp_micros(us)?.with_timezone(&tz);
    Some(days_since_epoch(dt.date_naive()))
}

/// Local month key (`YYYY-MM`) of an instant, used for store partitions.
pub fn month_key(us: i64, tz: Tz) -> String {
    match DateTime::from_timestamp_micros(us) {
        Some(dt) => dt.with_timezone(&tz).format("%Y-%m").to_string(),
        None => "invalid".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn every_documented_format_parses() {
        let utc = chrono_tz::UTC;
        let want = us(2024, 3, 5, 10, 30, 0);
        for s in [
            "2024-03-05T10:30:00Z",
            "2024-03-05T10:30:00+00:00",
            "2024-03-05T12:30:00+02:00",
            "2024-03-05T10:30:00.000Z",
            "2024-03-05 10:30:00",
            "2024-03-05T10:30:00",
            "2024-03-05 10:30",
            "2024-03-05 10:30:00 UTC",
            "2024-03-05T10:30:00.000+0000",
            "2024-03-05 10:30:00+00",
            "2024-03-05 10:30:00.000+00",
            "2024-03-05 12:30:00+02",
            "2024-03-05 10:30:00 +0000",
            "2024-03-05T05:30:00-0500",
            "1709634600",
            "1709634600000",
            " 2024-03-05 10:30:00 ",
        ] {
            assert_eq!(parse_timestamp_us(s, utc), Some(want), "{s}");
        }
        assert_eq!(parse_timestamp_us("2024-03-05", utc), Some(us(2024, 3, 5, 0, 0, 0)));
    }

    #[test]
    fn naive_values_are_local_to_the_configured_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            parse_timestamp_us("2024-01-15 10:00:00", paris),
            Some(us(2024, 1, 15, 9, 0, 0))
        );
        assert_eq!(
            parse_timestamp_us("2024-07-15 10:00:00", paris),
            Some(us(2024, 7, 15, 8, 0, 0))
        );
        // An explicit offset wins over the zone.
        assert_eq!(
            parse_timestamp_us("2024-07-15T10:00:00Z", paris),
            Some(us(2024, 7, 15, 10, 0, 0))
        );
        // Fall-back ambiguity takes the earlier instant; the spring-forward gap moves forward.
        assert_eq!(
            parse_timestamp_us("2024-10-27 02:30:00", paris),
            Some(us(2024, 10, 27, 0, 30, 0))
        );
        assert_eq!(
            parse_timestamp_us("2024-03-31 02:30:00", paris),
            Some(us(2024, 3, 31, 1, 30, 0))
        );
    }

    #[test]
    fn the_stored_range_is_1900_to_2199() {
        assert_eq!(MIN_US, us(1900, 1, 1, 0, 0, 0));
        assert_eq!(MAX_US, us(2200, 1, 1, 0, 0, 0));
        let d = |y, m, dd| days_since_epoch(NaiveDate::from_ymd_opt(y, m, dd).unwrap());
        assert_eq!(MIN_DAY, d(1900, 1, 1));
        assert_eq!(MAX_DAY, d(2200, 1, 1));
        assert!(us_in_range(MIN_US) && !us_in_range(MIN_US - 1) && !us_in_range(MAX_US));
        assert!(day_in_range(MAX_DAY - 1) && !day_in_range(MAX_DAY));
    }

    #[test]
    fn garbage_does_not_parse() {
        for s in [
            "",
            "  ",
            "yesterday",
            "2024-13-01",
            "2024-02-30",
            "05/03/2024",
            "12abc",
            "-",
            "9".repeat(40).as_str(),
        ] {
            assert_eq!(parse_timestamp_us(s, chrono_tz::UTC), None, "{s}");
        }
    }

    #[test]
    fn dates_take_the_local_day_of_timestamps() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let d = |y, m, dd| days_since_epoch(NaiveDate::from_ymd_opt(y, m, dd).unwrap());
        assert_eq!(parse_date_days("2024-03-05", ny), Some(d(2024, 3, 5)));
        assert_eq!(parse_date_days("2024-03-05T02:00:00Z", ny), Some(d(2024, 3, 4)));
        assert_eq!(parse_date_days("nope", ny), None);
        assert_eq!(
            date_from_days(d(2024, 3, 5)),
            NaiveDate::from_ymd_opt(2024, 3, 5).unwrap()
        );
    }

    #[test]
    fn numbers_and_bools() {
        assert_eq!(parse_f64(" 12.5 "), Some(12.5));
        assert_eq!(parse_f64("-3"), Some(-3.0));
        assert_eq!(parse_f64("12,5"), None);
        assert_eq!(parse_f64("NaN"), None);
        assert_eq!(parse_f64("inf"), None);
        assert_eq!(parse_i64("42"), Some(42));
        assert_eq!(parse_i64("42.0"), Some(42));
        assert_eq!(parse_i64("42.5"), None);
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
