//! `crm-kpi show`: one KPI for analysts, computed from the store, printed to stdout.

use std::path::PathBuf;

use crate::cli::run::{SAMPLE_STORE, resolve_as_of, select_kpis};
use crate::cli::{Cli, Outcome};
use crate::kpi::inputs::Tables;
use crate::kpi::{Grain, Params};
use crate::output::PrintFormat;
use crate::store::Store;
use polars::prelude::IntoColumn;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// KPI name (see `crm-kpi list`).
    #[arg(value_parser = kpi_names())]
    pub kpi: String,
    /// Only rows of this dimension (e.g. owner_id, source, region, all).
    #[arg(long, value_name = "DIM")]
    pub by: Option<String>,
    /// As of this date (its end), local date-time (in the configured timezone) or RFC 3339
    /// instant (default: now).
    #[arg(long, value_name = "T")]
    pub as_of: Option<String>,
    /// Period grain.
    #[arg(long, value_enum, default_value = "month")]
    pub grain: Grain,
    /// Store directory [default: `store` in crm-kpi.toml, else data/store].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PrintFormat,
    /// Only the rows of this period (by the KPI's period_start, snapshot_at or cohort_start):
    /// a year `2026`, a quarter `2026-Q1`, a month `2026-03`, or a range `2026-01-01..2026-04-01`
    /// (from inclusive, to exclusive).
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,
    /// CSV as stored, for programs: cells starting with = + - @ are not prefixed with `'` (by
    /// default they are, so a spreadsheet does not run them as formulas).
    #[arg(long)]
    pub raw_csv: bool,
}

/// The catalog's names: completed by the shell scripts, and a misspelt one gets clap's
/// "a similar value exists" tip.
fn kpi_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(crate::kpi::registry().iter().map(|k| k.name))
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    crate::output::init_table_format();
    let mut df = frame(cli, args)?;
    let rows = df.height();
    let mut stdout = std::io::stdout().lock();
    crate::output::print(&mut df, args.format, &mut stdout, args.raw_csv)?;
    if args.format == PrintFormat::Table && rows > crate::output::MAX_TABLE_ROWS {
        eprintln!(
            "{rows} rows ({} shown: the first and last); --format csv or json prints them all, --by one dimension fewer",
            crate::output::MAX_TABLE_ROWS
        );
    }
    Ok(Outcome::Ok)
}

/// The rows `show` prints: the KPI computed from the store, `--by` and `--period` applied,
/// stages in pipeline order. (The Python package's `crm_kpi.kpi` returns this frame.)
pub fn frame(cli: &Cli, args: &Args) -> anyhow::Result<polars::prelude::DataFrame> {
    let config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, Some(SAMPLE_STORE))?;
    let as_of_us = resolve_as_of(args.as_of.as_deref(), &config)?;
    let kpis = select_kpis(std::slice::from_ref(&args.kpi))?;
    let store = Store::open(&store_dir)?;
    let config = config.for_store(&store)?;
    let params = Params::new(as_of_us, args.grain, config);
    let tables = Tables::from_store(&store)?;
    let (mut computed, _) = crate::kpi::run::compute(&tables, &params, kpis, polars::prelude::Engine::InMemory)?;
    let mut df = computed.remove(0).df;
    if let Some(dim) = &args.by {
        if df.column("dimension").is_err() {
            return Err(crate::Error::Usage(format!("KPI `{}` has no dimensions; drop --by", args.kpi)).into());
        }
        let mut known: Vec<String> = df
            .column("dimension")?
            .str()?
            .iter()
            .flatten()
            .map(str::to_string)
            .collect();
        known.sort();
        known.dedup();
        if !known.iter().any(|d| d == dim) {
            return Err(crate::Error::Usage(format!(
                "KPI `{}` has no dimension `{dim}`; its dimensions are {}",
                args.kpi,
                known.join(", ")
            ))
            .into());
        }
        let mask: polars::prelude::BooleanChunked = df
            .column("dimension")?
            .str()?
            .iter()
            .map(|v| v == Some(dim.as_str()))
            .collect();
        df = df.filter(&mask)?;
    }
    if let Some(period) = &args.period {
        let (from, to) = parse_period(period).ok_or_else(|| {
            crate::Error::Usage(format!(
                "--period `{period}`: expected a year (2026), a quarter (2026-Q1), a month (2026-03) or a range 2026-01-01..2026-04-01"
            ))
        })?;
        let Some(c) = ["period_start", "snapshot_at", "cohort_start"]
            .into_iter()
            .find(|c| df.column(c).is_ok())
        else {
            return Err(crate::Error::Usage(format!("KPI `{}` has no period column; drop --period", args.kpi)).into());
        };
        let day = |d: chrono::NaiveDate| crate::timefmt::days_since_epoch(d);
        let days = df.column(c)?.cast(&polars::prelude::DataType::Int32)?;
        let mask: polars::prelude::BooleanChunked = days
            .i32()?
            .iter()
            .map(|v| v.is_some_and(|v| v >= day(from) && v < day(to)))
            .collect();
        df = df.filter(&mask)?;
    }
    // Stages in pipeline order, pipeline after pipeline, not alphabetically (rows of one stage
    // keep their order).
    if df.column("stage").is_ok() {
        let stages = &params.config.stages;
        let pipelines: Vec<Option<String>> = match df.column("pipeline") {
            Ok(c) => c.str()?.iter().map(|p| p.map(str::to_string)).collect(),
            Err(_) => vec![None; df.height()],
        };
        let pos: polars::prelude::UInt32Chunked = df
            .column("stage")?
            .str()?
            .iter()
            .zip(pipelines)
            .map(|(s, p)| {
                let s = s?;
                stages
                    .iter()
                    .position(|o| o.name == s && p.as_ref().is_none_or(|p| *p == o.pipeline))
                    .map(|i| i as u32)
            })
            .collect();
        df.with_column(pos.with_name("__stage_order".into()).into_column())?;
        df = df.sort(
            ["__stage_order"],
            polars::prelude::SortMultipleOptions::default()
                .with_maintain_order(true)
                .with_nulls_last(true),
        )?;
        df = df.drop("__stage_order")?;
    }
    Ok(df)
}

/// `--period`: [from, to) of a year, a calendar quarter, a month, or an explicit range.
fn parse_period(s: &str) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
    use chrono::NaiveDate;
    let s = s.trim();
    if let Some((a, b)) = s.split_once("..") {
        let d = |x: &str| NaiveDate::parse_from_str(x.trim(), "%Y-%m-%d").ok();
        return Some((d(a)?, d(b)?)).filter(|(a, b)| a < b);
    }
    let month = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1);
    let next = |y: i32, m: u32| if m == 12 { month(y + 1, 1) } else { month(y, m + 1) };
    if let Some((y, q)) = s.split_once("-Q").or_else(|| s.split_once("-q")) {
        let (y, q): (i32, u32) = (y.parse().ok()?, q.parse().ok()?);
        if !(1..=4).contains(&q) {
            return None;
        }
        let m = 3 * (q - 1) + 1;
        return Some((month(y, m)?, next(y, m + 2)?));
    }
    if let Some((y, m)) = s.split_once('-') {
        let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
        return Some((month(y, m)?, next(y, m)?));
    }
    let y: i32 = s.parse().ok()?;
    Some((month(y, 1)?, month(y + 1, 1)?))
}

#[cfg(test)]
mod tests {
    use super::parse_period;
    use chrono::NaiveDate;

    #[test]
    fn periods() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(parse_period("2026"), Some((d("2026-01-01"), d("2027-01-01"))));
        assert_eq!(parse_period("2026-Q4"), Some((d("2026-10-01"), d("2027-01-01"))));
        assert_eq!(parse_period("2026-12"), Some((d("2026-12-01"), d("2027-01-01"))));
        assert_eq!(
            parse_period("2026-02-03..2026-03-01"),
            Some((d("2026-02-03"), d("2026-03-01")))
        );
        assert_eq!(parse_period("2026-Q5"), None);
        assert_eq!(parse_period("2026-13"), None);
        assert_eq!(parse_period("soon"), None);
    }
}
