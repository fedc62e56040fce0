//! The KPI engine: a registry of KPIs, each a lazy query over the as-of inputs.
//!
//! Every KPI is declared once, in its family's file (`src/kpi/<family>.rs`, see [`Family`]), as a
//! [`Kpi`]: name, grain ("one row per ..."), definition, key, output schema, and a builder
//! `fn(&Inputs, &Params) -> LazyFrame`. Everything else that describes a KPI follows from that
//! entry: `crm-kpi list` (and `--json`), the README catalog and `docs/kpis.md` (generated, and
//! checked by a test), the Parquet metadata of each output, the collect batches of a run, the
//! benchmark groups and the reference implementations' registries.

pub mod catalog;
pub mod customers;
pub mod funnel;
pub mod inputs;
pub mod leads;
pub mod periods;
pub mod reps;
pub mod rules;
pub mod run;
pub mod spark;
pub mod trends;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use polars::prelude::*;

use crate::config::Config;
pub use inputs::Inputs;
pub use periods::Grain;

/// Run parameters shared by every KPI.
#[derive(Debug, Clone)]
pub struct Params {
    /// The instant the KPIs are computed as of (µs since the epoch, UTC).
    pub as_of_us: i64,
    pub grain: Grain,
    pub config: Config,
}

impl Params {
    pub fn new(as_of_us: i64, grain: Grain, config: Config) -> Params {
        Params {
            as_of_us,
            grain,
            config,
        }
    }

    pub fn tz(&self) -> Tz {
        self.config.tz()
    }

    /// `as_of` as a literal `Datetime(us, UTC)`.
    pub fn as_of_lit(&self) -> Expr {
        lit(Scalar::new_datetime(
            self.as_of_us,
            TimeUnit::Microseconds,
            Some(TimeZone::UTC),
        ))
    }

    /// The local calendar date of `as_of`.
    pub fn as_of_date(&self) -> NaiveDate {
        DateTime::from_timestamp_micros(self.as_of_us)
            .expect("valid as_of")
            .with_timezone(&self.tz())
            .date_naive()
    }

    /// Days from `ts` (a UTC datetime column) to as_of, as f64.
    pub fn age_days(&self, ts: Expr) -> Expr {
        (self.as_of_lit() - ts).dt().total_days(true)
    }
}

/// Parses `--as-of`: a date (the end of that day in `tz`), an RFC 3339 instant, or a local
/// date-time without offset (in `tz`).
pub fn parse_as_of(s: &str, tz: Tz) -> Option<i64> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let next = d.succ_opt()?.and_hms_opt(0, 0, 0)?;
        let start_next = crate::timefmt::local_to_utc(next, tz)?;
        return Some(start_next.timestamp_micros() - 1);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_micros());
    }
    // A local date-time without an offset: in the configured timezone.
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
    .and_then(|t| crate::timefmt::local_to_utc(t, tz))
    .map(|d| d.timestamp_micros())
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A family of KPIs: one file in `src/kpi/` (`<slug>.rs`), one collect batch of a run (its
/// KPIs share sub-plans), one test file (`tests/it/kpi_<slug>.rs`), one reference module per
/// engine (`reference/<engine>/<slug>.py`) and one section of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Leads,
    Funnel,
    Reps,
    Customers,
    Trends,
}

impl Family {
    /// Every family, in catalog and run order.
    pub const ALL: [Family; 5] = [
        Family::Leads,
        Family::Funnel,
        Family::Reps,
        Family::Customers,
        Family::Trends,
    ];

    /// The family's file, test and reference module name.
    pub fn slug(self) -> &'static str {
        match self {
            Family::Leads => "leads",
            Family::Funnel => "funnel",
            Family::Reps => "reps",
            Family::Customers => "customers",
            Family::Trends => "trends",
        }
    }

    /// The family's name in the catalog.
    pub fn title(self) -> &'static str {
        match self {
            Family::Leads => "leads",
            Family::Funnel => "funnel and pipeline",
            Family::Reps => "reps and activity",
            Family::Customers => "customers and revenue",
            Family::Trends => "trends",
        }
    }

    /// The family's KPIs, in catalog order, as its file declares them.
    pub fn kpis(self) -> Vec<Kpi> {
        match self {
            Family::Leads => leads::kpis(),
            Family::Funnel => funnel::kpis(),
            Family::Reps => reps::kpis(),
            Family::Customers => customers::kpis(),
            Family::Trends => trends::kpis(),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.title())
    }
}

/// One KPI of the catalog.
#[derive(Clone)]
pub struct Kpi {
    pub name: &'static str,
    pub family: Family,
    /// "one row per ..."
    pub grain: &'static str,
    pub definition: &'static str,
    /// Bumped whenever the definition or the output schema changes.
    pub version: u32,
    /// Output columns in order, with their types.
    pub columns: fn() -> Vec<(&'static str, DataType)>,
    /// Columns that together identify a row.
    pub key: &'static [&'static str],
    pub build: fn(&Inputs, &Params) -> PolarsResult<LazyFrame>,
    /// The same KPI in Spark SQL (`src/kpi/spark/<name>.sql`), for `crm-kpi spark export`.
    pub spark: spark::Spark,
}

impl std::fmt::Debug for Kpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kpi").field("name", &self.name).finish()
    }
}

impl Kpi {
    pub fn schema(&self) -> Schema {
        (self.columns)().into_iter().map(|(n, t)| (n.into(), t)).collect()
    }
}

/// The catalog, in documentation order.
pub fn registry() -> Vec<Kpi> {
    Family::ALL.into_iter().flat_map(Family::kpis).collect()
}

pub fn find(name: &str) -> Option<Kpi> {
    registry().into_iter().find(|k| k.name == name)
}

/// The UTC datetime type of stored timestamps.
pub fn utc() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// The sum of a float expression per group, the same in every run: the group's values are
/// added in value order. (A float sum depends on the order of its terms, and the order rows
/// reach an aggregation after joins, or across polars' partitioned group-by, varies from run
/// to run: the last digits of `won_amount` differed between two runs.)
pub fn stable_sum(e: Expr) -> Expr {
    e.sort(SortOptions::default()).sum()
}

/// Group-by keys: the `first` columns, then the dimension column when there is one (the
/// per-dimension builds of [`by_dimensions`]).
pub fn group_keys(first: &[&str], dim: Option<&str>) -> Vec<Expr> {
    first.iter().map(|c| col(*c)).chain(dim.map(col)).collect()
}

/// `num / den` as f64, null when `den` is zero or null (never NaN or inf).
pub fn ratio(num: Expr, den: Expr) -> Expr {
    when(den.clone().cast(DataType::Float64).eq(lit(0.0)))
        .then(lit(NULL).cast(DataType::Float64))
        .otherwise(num.cast(DataType::Float64) / den.cast(DataType::Float64))
}

/// The `as_of` column every output carries (the local date of the run's instant).
pub fn as_of_col(p: &Params) -> Expr {
    lit(Scalar::new_date(crate::timefmt::days_since_epoch(p.as_of_date()))).alias("as_of")
}

/// Unpivots a KPI computed per dimension into the long `dimension` / `dimension_value` form:
/// `build(dim_expr)` is called once per dimension (`None` = all) and the results stacked.
pub fn by_dimensions(
    dims: &[&'static str],
    build: impl Fn(Option<&'static str>) -> PolarsResult<LazyFrame>,
) -> PolarsResult<LazyFrame> {
    let mut parts = vec![build(None)?.with_columns([
        lit("all").alias("dimension"),
        lit(NULL).cast(DataType::String).alias("dimension_value"),
    ])];
    for d in dims {
        parts.push(build(Some(d))?.with_columns([
            lit(*d).alias("dimension"),
            col(*d).cast(DataType::String).alias("dimension_value"),
        ]));
    }
    concat_lf_diagonal(parts, UnionArgs::default())
}

pub fn tz_name(tz: Tz) -> TimeZone {
    TimeZone::opt_try_new(Some(tz.name()))
        .ok()
        .flatten()
        .unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn as_of_dates_end_at_local_midnight() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let us = parse_as_of("2024-07-01", paris).unwrap();
        // 2024-07-02T00:00 Paris = 2024-07-01T22:00Z; minus one microsecond.
        assert_eq!(
            us,
            chrono::Utc
                .with_ymd_and_hms(2024, 7, 1, 22, 0, 0)
                .unwrap()
                .timestamp_micros()
                - 1
        );
        assert_eq!(parse_as_of("2024-07-01T10:00:00Z", paris), Some(1_719_828_000_000_000));
        assert_eq!(parse_as_of("yesterday", paris), None);
        // 12:00 in Paris (summer time) is 10:00 UTC.
        assert_eq!(parse_as_of("2024-07-01T12:00:00", paris), Some(1_719_828_000_000_000));
        assert_eq!(parse_as_of("2024-07-01 12:00", paris), Some(1_719_828_000_000_000));
    }

    #[test]
    fn every_kpi_is_declared_by_its_family() {
        for f in Family::ALL {
            for k in f.kpis() {
                assert_eq!(k.family, f, "{} is declared in src/kpi/{}.rs", k.name, f.slug());
            }
        }
    }

    #[test]
    fn kpi_names_are_unique() {
        let r = registry();
        let names: std::collections::HashSet<_> = r.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), r.len());
        for k in &r {
            assert!(k.grain.starts_with("one row per"), "{}", k.name);
            assert!(!k.definition.is_empty(), "{}", k.name);
            let cols: Vec<_> = (k.columns)().into_iter().map(|(c, _)| c).collect();
            assert_eq!(cols.first(), Some(&"as_of"), "{}", k.name);
            for key in k.key {
                assert!(cols.contains(key), "{}: key {key}", k.name);
            }
        }
    }
}
