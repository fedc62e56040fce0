//! Periods cut in the configured timezone: week (configured start day), month, and fiscal
//! quarter and year (configured start month); the calendar helpers every family uses (period
//! lists up to as_of, period ends, local day starts and ends).

use polars::prelude::*;

use crate::config::{Config, WeekStart};
use crate::kpi::{Params, as_of_col, utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Grain {
    Week,
    #[default]
    Month,
    Quarter,
    Year,
}

impl Grain {
    pub fn name(self) -> &'static str {
        match self {
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }
}

/// The local calendar date of a UTC timestamp column.
pub fn local_date(ts: Expr, cfg: &Config) -> Expr {
    ts.dt().convert_time_zone(super::tz_name(cfg.tz())).dt().date()
}

/// A period's position on the grain's grid (Int64) from its start date: differences between
/// two period starts of the same grain are the number of periods between them (calendar or
/// fiscal quarters and years alike, since their starts share one residue of the month count).
pub fn period_ordinal(start: Expr, grain: Grain) -> Expr {
    let months_per = match grain {
        Grain::Week => {
            return start.cast(DataType::Int32).cast(DataType::Int64).floor_div(lit(7i64));
        }
        Grain::Month => 1i64,
        Grain::Quarter => 3,
        Grain::Year => 12,
    };
    let months = start.clone().dt().year().cast(DataType::Int64) * lit(12i64)
        + start.dt().month().cast(DataType::Int64)
        - lit(1i64);
    months.floor_div(lit(months_per))
}

/// The first day of the period a local date falls in.
pub fn period_start_of_date(date: Expr, grain: Grain, cfg: &Config) -> Expr {
    match grain {
        Grain::Week => match cfg.week_start {
            WeekStart::Monday => date.dt().truncate(lit("1w")),
            WeekStart::Sunday => date
                .dt()
                .offset_by(lit("1d"))
                .dt()
                .truncate(lit("1w"))
                .dt()
                .offset_by(lit("-1d")),
        },
        Grain::Month => month_start(date),
        Grain::Quarter | Grain::Year => {
            let every = if grain == Grain::Quarter { "1q" } else { "1y" };
            let shift = cfg.fiscal_year_start_month as i64 - 1;
            if shift == 0 {
                date.dt().truncate(lit(every))
            } else {
                date.dt()
                    .offset_by(lit(format!("-{shift}mo")))
                    .dt()
                    .truncate(lit(every))
                    .dt()
                    .offset_by(lit(format!("{shift}mo")))
            }
        }
    }
}

/// The first day of the month of a `Date` expression: the day number less the day of the month
/// plus one. Equal to `dt().truncate("1mo")` (a test checks every day of 1600-2400), which
/// rebuilds each value through chrono: 0.31 s over the 5.7M activities of scale m. Built from
/// polars' own expressions, so its optimizer sees through it: the same arithmetic in a `map`
/// over the column (Hinnant's days-to-civil) was as fast at m but made the funnel family 5%
/// slower at scale s (criterion; benches/README.md, "Issue 16").
pub fn month_start(date: Expr) -> Expr {
    let days = date.clone().cast(DataType::Int32);
    (days - date.dt().day().cast(DataType::Int32) + lit(1i32)).cast(DataType::Date)
}

/// The first day of the local period of a UTC timestamp column.
pub fn period_start(ts: Expr, grain: Grain, cfg: &Config) -> Expr {
    period_start_of_date(local_date(ts, cfg), grain, cfg)
}

/// The length of one period of `grain`, as a polars duration string.
pub fn period_every(grain: Grain) -> &'static str {
    match grain {
        Grain::Week => "1w",
        Grain::Month => "1mo",
        Grain::Quarter => "3mo",
        Grain::Year => "1y",
    }
}

/// The first day of as_of's period, as a `Date` expression.
pub fn current_period_start(p: &Params) -> Expr {
    period_start_of_date(as_of_col(p), p.grain, &p.config)
}

/// Every period start from `first` (a period start, `Date`) to as_of's period, as a list of
/// dates (empty when `first` is later; null when `first` is null). Explode it with
/// [`explode_dates`].
pub fn periods_to_as_of(first: Expr, p: &Params) -> PolarsResult<Expr> {
    date_ranges(
        Some(first),
        Some(current_period_start(p)),
        Some(Duration::parse(period_every(p.grain))),
        None,
        ClosedWindow::Both,
    )
}

/// One row per date of the list column `c`; rows with an empty or null list are dropped.
pub fn explode_dates(lf: LazyFrame, c: &str) -> LazyFrame {
    lf.explode(
        cols([c]),
        ExplodeOptions {
            empty_as_null: false,
            keep_nulls: false,
        },
    )
    .filter(col(c).is_not_null())
}

/// Whether the period starting at `start` had ended at as_of (its last local instant is at or
/// before as_of).
pub fn period_complete(start: Expr, p: &Params) -> Expr {
    day_end(period_end(start, p.grain), p).lt_eq(p.as_of_lit())
}

/// The last day of the period starting at `start` (a `Date` expression).
pub fn period_end(start: Expr, grain: Grain) -> Expr {
    start
        .dt()
        .offset_by(lit(period_every(grain)))
        .dt()
        .offset_by(lit("-1d"))
}

/// The UTC instant a local calendar day starts (local midnight; where midnight does not exist
/// because of a DST jump, the day starts an hour later).
pub fn day_start(date: Expr, p: &Params) -> Expr {
    let tz = crate::kpi::tz_name(p.tz());
    let naive = date.cast(DataType::Datetime(TimeUnit::Microseconds, None));
    let local = |e: Expr| {
        e.dt()
            .replace_time_zone(Some(tz.clone()), lit("earliest"), NonExistent::Null)
    };
    coalesce(&[local(naive.clone()), local(naive.dt().offset_by(lit("1h")))])
        .dt()
        .convert_time_zone(TimeZone::UTC)
        .cast(utc())
}

/// The last instant (µs) of a local calendar day, in UTC.
pub fn day_end(date: Expr, p: &Params) -> Expr {
    day_start(date.dt().offset_by(lit("1d")), p).dt().offset_by(lit("-1us"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(dates: &[&str], grain: Grain, cfg: &Config) -> Vec<String> {
        let df = df!("d" => dates).unwrap();
        let out = df
            .lazy()
            .select([
                period_start_of_date(col("d").str().to_date(StrptimeOptions::default()), grain, cfg)
                    .cast(DataType::String),
            ])
            .collect()
            .unwrap();
        out.column("d")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect()
    }

    #[test]
    fn month_start_equals_truncation_on_every_day_of_eight_centuries() {
        // 1600-01-01 .. 2400-12-31 as day numbers since 1970-01-01 (leap centuries 1600, 2000,
        // 2400; common ones 1700, 1800, 1900, 2100, 2200, 2300), with a null.
        let days: Vec<Option<i32>> = (-135_140..157_420).map(Some).chain([None]).collect();
        let df = df!("d" => days).unwrap();
        let out = df
            .lazy()
            .select([col("d").cast(DataType::Date)])
            .select([
                month_start(col("d")).cast(DataType::Int32).alias("ours"),
                col("d").dt().truncate(lit("1mo")).cast(DataType::Int32).alias("polars"),
            ])
            .collect()
            .unwrap();
        let (ours, polars) = (out.column("ours").unwrap(), out.column("polars").unwrap());
        assert_eq!(ours.len(), 292_561);
        assert!(ours.equals_missing(polars));
        assert_eq!(ours.null_count(), 1);
        // Spot values, through the period start of the month grain.
        assert_eq!(
            starts(
                &["2024-03-15", "1969-12-31", "2000-02-29"],
                Grain::Month,
                &Config::default()
            ),
            ["2024-03-01", "1969-12-01", "2000-02-01"]
        );
    }

    #[test]
    fn calendar_and_fiscal_periods() {
        let mut cfg = Config::default();
        let d = ["2024-01-01", "2024-03-31", "2024-04-01", "2024-12-31", "2025-02-14"];
        assert_eq!(
            starts(&d, Grain::Month, &cfg),
            ["2024-01-01", "2024-03-01", "2024-04-01", "2024-12-01", "2025-02-01"]
        );
        assert_eq!(
            starts(&d, Grain::Quarter, &cfg),
            ["2024-01-01", "2024-01-01", "2024-04-01", "2024-10-01", "2025-01-01"]
        );
        // Fiscal quarters from April (Apr-Jun, Jul-Sep, Oct-Dec, Jan-Mar) start like calendar ones;
        // from February they do not.
        cfg.fiscal_year_start_month = 2;
        assert_eq!(
            starts(&d, Grain::Quarter, &cfg),
            ["2023-11-01", "2024-02-01", "2024-02-01", "2024-11-01", "2025-02-01"]
        );
        cfg.fiscal_year_start_month = 4;
        assert_eq!(
            starts(&d, Grain::Quarter, &cfg),
            ["2024-01-01", "2024-01-01", "2024-04-01", "2024-10-01", "2025-01-01"]
        );
        assert_eq!(
            starts(&d, Grain::Year, &cfg),
            ["2023-04-01", "2023-04-01", "2024-04-01", "2024-04-01", "2024-04-01"]
        );
        // 2024-03-31 is a Sunday.
        assert_eq!(
            starts(&["2024-03-31", "2024-04-01"], Grain::Week, &cfg),
            ["2024-03-25", "2024-04-01"]
        );
        cfg.week_start = WeekStart::Sunday;
        assert_eq!(
            starts(&["2024-03-31", "2024-04-01", "2024-03-30"], Grain::Week, &cfg),
            ["2024-03-31", "2024-03-31", "2024-03-24"]
        );
    }

    #[test]
    fn periods_are_cut_in_the_configured_timezone() {
        let cfg = Config {
            timezone: "America/New_York".into(),
            ..Config::default()
        };
        // 2024-03-01T02:00Z is still February 29 in New York.
        let df = df!("us" => [1_709_258_400_000_000i64]).unwrap();
        let out = df
            .lazy()
            .select([period_start(col("us").cast(super::super::utc()), Grain::Month, &cfg).cast(DataType::String)])
            .collect()
            .unwrap();
        assert_eq!(out.column("us").unwrap().str().unwrap().get(0), Some("2024-02-01"));
    }
}
