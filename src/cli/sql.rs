//! `crm-kpi sql`: SQL (polars' dialect) over the store's tables and the KPI outputs.
//!
//! Tables: the 11 store tables under their names (all rows, no as-of filter), and every KPI
//! found in `--out` under its name (all `as_of` partitions; filter on the `as_of` column).

use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars::sql::SQLContext;

use crate::cli::run::SAMPLE_STORE;
use crate::cli::{Cli, Outcome};
use crate::output::PrintFormat;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query (or use -f FILE).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub query: Option<String>,
    /// Read the query from a file (e.g. queries/win_rate_by_owner.sql).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Store directory.
    #[arg(long, value_name = "DIR", default_value = SAMPLE_STORE)]
    pub store: PathBuf,
    /// KPI output directory of `crm-kpi run`.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PrintFormat,
}

/// A SQL context with the store's tables and the KPI outputs registered.
pub fn context(store: &Path, out: &Path) -> anyhow::Result<SQLContext> {
    let store = Store::open(store)?;
    let ctx = SQLContext::new();
    for def in crate::schema::TABLES {
        ctx.register(def.name, store.scan_table(def)?);
    }
    for k in crate::kpi::registry() {
        let dir = out.join(k.name);
        if !dir.is_dir() {
            continue;
        }
        let glob = dir.join("as_of=*").join("part-0.parquet");
        let args = ScanArgsParquet {
            hive_options: HiveOptions::new_disabled(),
            ..Default::default()
        };
        let lf = LazyFrame::scan_parquet(PlRefPath::new(glob.to_string_lossy().as_ref()), args)?;
        ctx.register(k.name, lf);
    }
    Ok(ctx)
}

pub fn run(_cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    crate::output::init_table_format();
    let query = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| crate::Error::Usage(format!("cannot read query file {}: {e}", f.display())))?,
        (None, None) => unreachable!("clap requires one"),
    };
    let mut ctx = context(&args.store, &args.out)?;
    let mut df = ctx
        .execute(&query)
        .and_then(|lf| lf.collect())
        .map_err(|e| crate::Error::Usage(format!("SQL: {}", crate::error::first_line(&e.to_string()))))?;
    let mut stdout = std::io::stdout().lock();
    crate::output::print(&mut df, args.format, &mut stdout)?;
    Ok(Outcome::Ok)
}
