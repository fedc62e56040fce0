//! `crm-kpi show`: one KPI for analysts, computed from the store, printed to stdout.

use std::path::PathBuf;

use crate::cli::run::{SAMPLE_STORE, resolve_as_of, select_kpis};
use crate::cli::{Cli, Outcome};
use crate::kpi::inputs::Tables;
use crate::kpi::{Grain, Params};
use crate::output::PrintFormat;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// KPI name (see `crm-kpi list`).
    pub kpi: String,
    /// Only rows of this dimension (e.g. owner_id, source, region, all).
    #[arg(long, value_name = "DIM")]
    pub by: Option<String>,
    /// As of this date or RFC 3339 instant (default: now).
    #[arg(long, value_name = "T")]
    pub as_of: Option<String>,
    /// Period grain.
    #[arg(long, value_enum, default_value = "month")]
    pub grain: Grain,
    /// Store directory.
    #[arg(long, value_name = "DIR", default_value = SAMPLE_STORE)]
    pub store: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PrintFormat,
    /// CSV as stored, for programs: cells starting with = + - @ are not prefixed with `'` (by
    /// default they are, so a spreadsheet does not run them as formulas).
    #[arg(long)]
    pub raw_csv: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    crate::output::init_table_format();
    let config = crate::cli::load_config(cli)?;
    let as_of_us = resolve_as_of(args.as_of.as_deref(), &config)?;
    let kpis = select_kpis(std::slice::from_ref(&args.kpi))?;
    let store = Store::open(&args.store)?;
    let config = config.for_store(&store)?;
    let params = Params::new(as_of_us, args.grain, config);
    let tables = Tables::from_store(&store)?;
    let (mut computed, _) = crate::kpi::run::compute(&tables, &params, kpis, polars::prelude::Engine::InMemory)?;
    let mut df = computed.remove(0).df;
    if let Some(dim) = &args.by {
        if df.column("dimension").is_err() {
            return Err(crate::Error::Usage(format!("KPI `{}` has no dimensions; drop --by", args.kpi)).into());
        }
        let mask: polars::prelude::BooleanChunked = df
            .column("dimension")?
            .str()?
            .iter()
            .map(|v| v == Some(dim.as_str()))
            .collect();
        df = df.filter(&mask)?;
    }
    let mut stdout = std::io::stdout().lock();
    crate::output::print(&mut df, args.format, &mut stdout, args.raw_csv)?;
    Ok(Outcome::Ok)
}
