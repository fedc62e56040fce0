//! Helpers shared by the in-process KPI tests: canonical frames from a few columns, computing
//! KPIs on a big stack, printing rows for hand-checked expectations.

#![allow(dead_code)]

use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::run::compute;
use crm_kpi::kpi::{Kpi, Params, find};
use crm_kpi::schema::{self, Kind};
use polars::prelude::*;

/// A canonical frame of `table` from a few given columns (nulls for the rest). Timestamps and
/// dates may be given as `YYYY-MM-DD` strings (timestamps at midnight UTC); other types are
/// cast (Int64 timestamps are µs since the epoch).
pub fn canonical(table: &str, given: DataFrame) -> DataFrame {
    let def = schema::table(table).expect("canonical table");
    let exprs: Vec<Expr> = def
        .columns
        .iter()
        .map(|c| {
            let dt = c.kind.dtype();
            let is_str = given.column(c.name).map(|s| s.dtype() == &DataType::String).ok();
            match (is_str, c.kind) {
                (None, _) => lit(NULL).cast(dt).alias(c.name),
                (Some(true), Kind::Timestamp) => col(c.name).str().to_datetime(
                    Some(TimeUnit::Microseconds),
                    Some(TimeZone::UTC),
                    StrptimeOptions {
                        format: Some("%Y-%m-%d".into()),
                        ..Default::default()
                    },
                    lit("raise"),
                ),
                (Some(true), Kind::Date) => col(c.name).str().to_date(StrptimeOptions::default()),
                (Some(_), _) => col(c.name).cast(dt),
            }
        })
        .collect();
    let df = given.lazy().select(exprs).collect().expect("canonical frame");
    assert_eq!(df.schema().as_ref(), &def.polars_schema(), "{table}");
    df
}

/// Runs `f` on a thread with a 16 MiB stack: planning a KPI recurses deeply in debug builds.
pub fn big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Computes `kpis` together, as `run` does; one frame per KPI, in order.
pub fn compute_on(tables: Tables, params: Params, kpis: Vec<Kpi>, engine: Engine) -> Vec<DataFrame> {
    big_stack(move || {
        compute(&tables, &params, kpis, engine)
            .unwrap()
            .0
            .into_iter()
            .map(|c| c.df)
            .collect()
    })
}

pub fn kpi(name: &str) -> Kpi {
    find(name).unwrap_or_else(|| panic!("KPI {name} registered"))
}

/// The output has the declared columns, in order and with their types, and a unique key.
pub fn assert_schema_and_key(name: &str, df: &DataFrame) {
    let k = kpi(name);
    let declared: Vec<(String, DataType)> = (k.columns)().into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    let got: Vec<(String, DataType)> = df
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().clone()))
        .collect();
    assert_eq!(got, declared, "{name}");
    let key: Vec<String> = k.key.iter().map(|c| c.to_string()).collect();
    let distinct = df
        .unique_stable(Some(&key), UniqueKeepStrategy::Any, None)
        .unwrap()
        .height();
    assert_eq!(distinct, df.height(), "{name}: duplicate keys");
}

/// Whether two frames hold the same rows: same columns, types and row order, equal values, floats
/// equal to `rel` relative difference (a float sum or mean depends on the order of its terms,
/// which differs between polars' engines). Err names the first column and row that differ.
pub fn agree(a: &DataFrame, b: &DataFrame, rel: f64) -> Result<(), String> {
    if a.schema() != b.schema() || a.height() != b.height() {
        return Err(format!("shapes differ:\n{a}\n{b}"));
    }
    for (x, y) in a.columns().iter().zip(b.columns()) {
        let (x, y) = (x.as_materialized_series(), y.as_materialized_series());
        if x.dtype().is_float() {
            let (xs, ys) = (x.f64().unwrap(), y.f64().unwrap());
            for (i, (u, v)) in xs.iter().zip(ys.iter()).enumerate() {
                let same = match (u, v) {
                    (Some(u), Some(v)) => u == v || (u - v).abs() <= rel * u.abs().max(v.abs()),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return Err(format!("column {} row {i}: {u:?} vs {v:?}", x.name()));
                }
            }
        } else if !x.equals_missing(y) {
            return Err(format!("column {} differs:\n{a}\n{b}", x.name()));
        }
    }
    Ok(())
}

/// Rows as `a|b|c` strings, floats with 4 decimals.
pub fn rows(df: &DataFrame, cols: &[&str]) -> Vec<String> {
    rows_with_decimals(df, cols, 4)
}

/// Rows as `a|b|c` strings: null as `null`, floats with `decimals` decimals, dates as
/// `YYYY-MM-DD`, timestamps as `YYYY-MM-DD HH:MM` (UTC).
pub fn rows_with_decimals(df: &DataFrame, cols: &[&str], decimals: usize) -> Vec<String> {
    (0..df.height())
        .map(|i| {
            cols.iter()
                .map(|c| match df.column(c).unwrap().get(i).unwrap() {
                    AnyValue::Null => "null".to_string(),
                    AnyValue::Float64(v) => format!("{v:.decimals$}"),
                    AnyValue::Date(d) => crm_kpi::timefmt::date_from_days(d).to_string(),
                    AnyValue::Datetime(us, _, _) => chrono::DateTime::from_timestamp_micros(us)
                        .unwrap()
                        .format("%Y-%m-%d %H:%M")
                        .to_string(),
                    AnyValue::String(s) => s.to_string(),
                    AnyValue::StringOwned(s) => s.to_string(),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// A KPI's output of a run, read as a warehouse reads the folder: the file's columns with
/// `as_of` (a date, from the `as_of=` folder) in front, as the KPI declares them.
pub fn read_output(out: &std::path::Path, kpi: &str, grain: &str, as_of: &str) -> DataFrame {
    let p = out
        .join(kpi)
        .join(format!("grain={grain}"))
        .join(format!("as_of={as_of}"))
        .join("part-0.parquet");
    let df = ParquetReader::new(std::fs::File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .finish()
        .unwrap();
    let day = crm_kpi::timefmt::days_since_epoch(chrono::NaiveDate::parse_from_str(as_of, "%Y-%m-%d").unwrap());
    let mut cols = vec![Column::new_scalar("as_of".into(), Scalar::new_date(day), df.height())];
    cols.extend(df.columns().iter().cloned());
    DataFrame::new(df.height(), cols).unwrap()
}

/// The quarantine of `table` in the store at `store` (empty when there is none).
pub fn quarantine(store: &std::path::Path, table: &str) -> DataFrame {
    crm_kpi::store::Store::open(store)
        .unwrap()
        .read_quarantine(table)
        .unwrap()
        .unwrap_or_default()
}

/// A column's values as text, null as `null`.
pub fn strs(df: &DataFrame, c: &str) -> Vec<String> {
    df.column(c)
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("null").to_string())
        .collect()
}
