//! The fixed history window (2023-01-01 to 2026-06-30 UTC) and time helpers. Instants are
//! seconds since the Unix epoch (UTC), dates are days since 1970-01-01.

use chrono::{Datelike, NaiveDate};

use super::rng::Rng;

pub const DAY: i64 = 86_400;
pub const HOUR: i64 = 3_600;

/// First month of the history.
pub const START_YEAR: i32 = 2023;
/// Number of months in the window (2023-01 .. 2026-06).
pub const MONTHS: usize = 42;
/// Days of fx history before the window starts.
pub const FX_MARGIN_DAYS: i32 = 30;

/// Calendar of the window, precomputed once.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// Start instant (seconds) of month `m`, for m in 0..=MONTHS (the last is the window end).
    pub month_start: Vec<i64>,
    /// First instant of the window.
    pub start: i64,
    /// Last instant of the window (2026-06-30T23:59:59Z).
    pub end: i64,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::new()
    }
}

impl Calendar {
    pub fn new() -> Calendar {
        let month_start: Vec<i64> = (0..=MONTHS)
            .map(|m| {
                let y = START_YEAR + (m / 12) as i32;
                let mo = (m % 12) as u32 + 1;
                days_of(NaiveDate::from_ymd_opt(y, mo, 1).expect("valid month")) as i64 * DAY
            })
            .collect();
        let start = month_start[0];
        let end = month_start[MONTHS] - 1;
        Calendar {
            month_start,
            start,
            end,
        }
    }

    pub fn start_day(&self) -> i32 {
        (self.start / DAY) as i32
    }

    pub fn end_day(&self) -> i32 {
        (self.end / DAY) as i32
    }

    /// Month index (0-based from the window start) of an instant inside the window.
    pub fn month_of(&self, t: i64) -> usize {
        let i = self.month_start.partition_point(|s| *s <= t);
        i.saturating_sub(1).min(MONTHS - 1)
    }

    pub fn month_start_day(&self, m: usize) -> i32 {
        (self.month_start[m] / DAY) as i32
    }

    /// A random instant in month `m`: weekdays are favoured and most events fall in
    /// business hours.
    pub fn instant_in_month(&self, rng: &mut Rng, m: usize) -> i64 {
        let d0 = self.month_start[m] / DAY;
        let days = (self.month_start[m + 1] - self.month_start[m]) / DAY;
        let mut day = d0 + rng.below(days as u64) as i64;
        for _ in 0..3 {
            if !is_weekend(day) || rng.chance(0.25) {
                break;
            }
            day = d0 + rng.below(days as u64) as i64;
        }
        day * DAY + time_of_day(rng)
    }

    /// A random business-like instant in [a, b] (b >= a): a day drawn uniformly, a business
    /// hour on it, clamped into the interval.
    pub fn instant_between(&self, rng: &mut Rng, a: i64, b: i64) -> i64 {
        if b <= a {
            return a;
        }
        if b - a < 2 * DAY {
            return a + rng.below((b - a + 1) as u64) as i64;
        }
        let t = a + rng.below((b - a + 1) as u64) as i64;
        let mut day = t.div_euclid(DAY);
        if is_weekend(day) && rng.chance(0.8) {
            day += if day.rem_euclid(7) == 2 { 2 } else { 1 }; // Sat -> Mon, Sun -> Mon
        }
        (day * DAY + time_of_day(rng)).clamp(a, b)
    }
}

/// Seconds into a day: mostly 08:00-18:00, sometimes any time.
pub fn time_of_day(rng: &mut Rng) -> i64 {
    if rng.chance(0.8) {
        rng.range_i64(8 * HOUR, 18 * HOUR - 1)
    } else {
        rng.range_i64(0, DAY - 1)
    }
}

/// 1970-01-01 was a Thursday: day % 7 == 2 is Saturday, 3 is Sunday.
pub fn is_weekend(day: i64) -> bool {
    matches!(day.rem_euclid(7), 2 | 3)
}

pub fn days_of(d: NaiveDate) -> i32 {
    crate::timefmt::days_since_epoch(d)
}

/// Label like `2024-Q3` for a month index.
pub fn quarter_label(m: usize) -> String {
    let y = START_YEAR + (m / 12) as i32;
    format!("{y}-Q{}", (m % 12) / 3 + 1)
}

/// Label like `2024-07` for a month index.
pub fn month_label(m: usize) -> String {
    let y = START_YEAR + (m / 12) as i32;
    format!("{y}-{:02}", m % 12 + 1)
}

/// Formats an instant as RFC 3339 UTC (`2024-01-05T10:00:00Z`).
pub fn fmt_ts(t: i64) -> String {
    match chrono::DateTime::from_timestamp(t, 0) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => String::new(),
    }
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn fmt_date(d: i32) -> String {
    let nd = crate::timefmt::date_from_days(d);
    format!("{:04}-{:02}-{:02}", nd.year(), nd.month(), nd.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_fixed() {
        let c = Calendar::new();
        assert_eq!(fmt_ts(c.start), "2023-01-01T00:00:00Z");
        assert_eq!(fmt_ts(c.end), "2026-06-30T23:59:59Z");
        assert_eq!(c.month_of(c.start), 0);
        assert_eq!(c.month_of(c.end), MONTHS - 1);
        assert_eq!(c.month_of(c.month_start[5]), 5);
        assert_eq!(c.month_of(c.month_start[5] - 1), 4);
        assert_eq!(fmt_date(c.start_day()), "2023-01-01");
        assert_eq!(quarter_label(13), "2024-Q1");
        assert_eq!(month_label(41), "2026-06");
        // 2023-01-07 was a Saturday.
        assert!(is_weekend(c.start_day() as i64 + 6));
        assert!(!is_weekend(c.start_day() as i64 + 1));
    }

    #[test]
    fn instants_stay_in_bounds() {
        let c = Calendar::new();
        let mut r = Rng::new(3, &[]);
        for m in 0..MONTHS {
            for _ in 0..50 {
                let t = c.instant_in_month(&mut r, m);
                assert_eq!(c.month_of(t), m);
            }
        }
        for _ in 0..1000 {
            let a = c.start + r.below(1_000_000) as i64;
            let b = a + r.below(10_000_000) as i64;
            let t = c.instant_between(&mut r, a, b);
            assert!(a <= t && t <= b);
        }
    }
}
