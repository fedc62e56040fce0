//! Where one KPI's time goes: polars' per-node profile of its plan on a store (in memory), after
//! the shared frames its plan reads were collected (their collect time printed first). A
//! developer's tool for the performance work (benches/README.md); not part of the CLI.
//!
//! ```text
//! profile_kpi STORE KPI [AS_OF] [TOP]     # AS_OF default 2026-06-30, TOP default 25 nodes
//! ```

use std::time::Instant;

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::{Inputs, Tables, reproducible};
use crm_kpi::kpi::run::conform;
use crm_kpi::kpi::{Grain, Params, find, parse_as_of};
use crm_kpi::store::Store;
use polars::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, kpi, rest @ ..] = args.as_slice() else {
        return Err("usage: profile_kpi STORE KPI [AS_OF] [TOP]".into());
    };
    let as_of = rest.first().map_or("2026-06-30", String::as_str);
    let top: usize = rest.get(1).map_or(Ok(25), |s| s.parse())?;
    let store = Store::open(std::path::Path::new(store))?;
    let config = Config::default().for_store(&store)?;
    let as_of_us = parse_as_of(as_of, config.tz()).ok_or("bad AS_OF")?;
    let params = Params::new(as_of_us, Grain::Month, config);
    let tables = Tables::from_store(&store)?;
    let inputs = Inputs::new(&tables, &params);
    let k = find(kpi).ok_or("unknown KPI")?;
    let t = Instant::now();
    let lf = reproducible(conform(&k, (k.build)(&inputs, &params)?));
    println!("planned (shared frames collected) in {} ms", t.elapsed().as_millis());
    let t = Instant::now();
    let (df, profile) = lf.profile()?;
    println!("collected {} rows in {} ms", df.height(), t.elapsed().as_millis());
    let profile = profile
        .lazy()
        .with_column((col("end") - col("start")).alias("us"))
        .sort(["us"], SortMultipleOptions::default().with_order_descending(true))
        .limit(top as IdxSize)
        .collect()?;
    let (names, us) = (
        profile.column("node")?.str()?,
        profile.column("us")?.cast(&DataType::Int64)?,
    );
    for (n, d) in names.iter().zip(us.i64()?.iter()) {
        println!("{:>8.1} ms  {}", d.unwrap_or(0) as f64 / 1000.0, n.unwrap_or(""));
    }
    Ok(())
}
