//! The scan floor of the KPI catalog: the time to read, once, every stored column the catalog
//! reads, with a trivial aggregate (min) per column, on the same engine and threads as `run`.
//! Used by benches/compare/run.sh; not part of the CLI.
//!
//! ```text
//! scan_floor columns              # which columns the catalog reads, as JSON {table: [columns]}
//! scan_floor scan STORE COLUMNS   # scan those columns of the store (COLUMNS: that JSON file)
//! scan_floor size STORE COLUMNS   # in-memory size of those columns (the RSS yardstick)
//! ```
//!
//! Which columns are read is found by probing, not by a hand-kept list: for every stored
//! column, the whole catalog is planned over empty tables that lack that column; the column is
//! read if any KPI's plan then fails to resolve. Only the plans are resolved (no data), so the
//! probe takes a few seconds and is not part of the timed scan.

use std::collections::BTreeMap;
use std::time::Instant;

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::{Inputs, Tables};
use crm_kpi::kpi::run::conform;
use crm_kpi::kpi::{Grain, Params, parse_as_of, registry};
use crm_kpi::schema;
use crm_kpi::store::Store;
use polars::prelude::*;

fn catalog_resolves(tables: &Tables, params: &Params) -> bool {
    let inputs = Inputs::new(tables, params);
    registry().iter().all(|k| {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (k.build)(&inputs, params).and_then(|lf| conform(k, lf).collect_schema().map(|_| ()))
        }));
        matches!(built, Ok(Ok(())))
    })
}

fn used_columns() -> BTreeMap<&'static str, Vec<&'static str>> {
    let config = Config::default();
    let as_of = parse_as_of("2026-06-30", config.tz()).expect("as_of");
    let params = Params::new(as_of, Grain::Month, config);
    let empty = |def: &schema::TableDef, without: Option<&str>| {
        let mut s = def.polars_schema();
        if let Some(c) = without {
            s.shift_remove(c);
        }
        DataFrame::empty_with_schema(&s)
    };
    let all: Vec<(&'static str, DataFrame)> = schema::TABLES.iter().map(|d| (d.name, empty(d, None))).collect();
    assert!(
        catalog_resolves(&Tables::from_frames(all), &params),
        "the catalog must resolve over empty tables"
    );
    let mut used = BTreeMap::new();
    for def in schema::TABLES {
        let mut cols = Vec::new();
        for c in def.columns {
            let frames = schema::TABLES
                .iter()
                .map(|d| (d.name, empty(d, (d.name == def.name).then_some(c.name))))
                .collect();
            if !catalog_resolves(&Tables::from_frames(frames), &params) {
                cols.push(c.name);
            }
        }
        if !cols.is_empty() {
            used.insert(def.name, cols);
        }
    }
    used
}

/// Every table of the columns JSON with its used columns and a scan of it in the store.
fn used_scans(store: &str, columns: &str) -> PolarsResult<Vec<(String, Vec<String>, LazyFrame)>> {
    let used: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(columns)?).map_err(|e| polars_err!(ComputeError: "{e}"))?;
    let store = Store::open(std::path::Path::new(store)).map_err(|e| polars_err!(ComputeError: "{e}"))?;
    used.into_iter()
        .map(|(table, cols)| {
            let def = schema::table(&table).ok_or_else(|| polars_err!(ComputeError: "unknown table {table}"))?;
            let lf = store.scan_table(def).map_err(|e| polars_err!(ComputeError: "{e}"))?;
            Ok((table, cols, lf))
        })
        .collect()
}

fn scan(store: &str, columns: &str) -> PolarsResult<()> {
    let mut plans = Vec::new();
    let mut names = Vec::new();
    for (table, cols, lf) in used_scans(store, columns)? {
        let mut aggs = vec![len().alias("__rows")];
        aggs.extend(cols.iter().map(|c| col(c.as_str()).min()));
        plans.push(lf.select(aggs).logical_plan);
        names.push((table, cols.len()));
    }
    let t = Instant::now();
    let engine = if std::env::var_os("CRM_KPI_STREAMING").is_some() {
        Engine::Streaming
    } else {
        Engine::InMemory
    };
    let frames = LazyFrame::collect_all_with_engine(plans, engine, OptFlags::default())?;
    let ms = t.elapsed().as_millis();
    for ((name, n_cols), df) in names.iter().zip(frames) {
        let rows = df.column("__rows")?.get(0)?;
        println!("{name:<14} rows {rows} columns {n_cols}");
    }
    println!("scan {ms} ms");
    Ok(())
}

/// The in-memory size (polars' estimate, bytes) of every used column, one table at a time: the
/// yardstick of the peak-RSS target (peak RSS <= 2x the in-memory size of the columns read).
fn size(store: &str, columns: &str) -> PolarsResult<()> {
    let mut total = 0usize;
    for (table, cols, lf) in used_scans(store, columns)? {
        let df = lf
            .select(cols.iter().map(|c| col(c.as_str())).collect::<Vec<_>>())
            .collect()?;
        let bytes = df.estimated_size();
        total += bytes;
        println!("{table:<14} rows {} bytes {bytes}", df.height());
    }
    println!("columns read {total} bytes");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["columns"] => {
            // Debug builds need a big stack to plan the whole catalog.
            let used = std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(used_columns)
                .expect("thread")
                .join()
                .expect("probe");
            println!("{}", serde_json::to_string_pretty(&used).expect("json"));
        }
        ["scan", store, columns] => {
            if let Err(e) = scan(store, columns) {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        ["size", store, columns] => {
            if let Err(e) = size(store, columns) {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        _ => {
            eprintln!(
                "usage: scan_floor columns | scan_floor scan STORE COLUMNS_JSON | scan_floor size STORE COLUMNS_JSON"
            );
            std::process::exit(2);
        }
    }
}
