//! `crm-kpi generate`: write a synthetic CRM history.

use std::path::PathBuf;

use crate::cli::{Cli, Outcome};
use crate::generate::{Format, GenerateOptions, Scale};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the history: tiny (~2k leads), s (~100k), m (~1M), l (~10M).
    #[arg(long, value_enum, default_value = "tiny")]
    pub scale: Scale,
    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (created); one file per table.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// File format of the tables.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Add a known number of bad rows of every kind the ingest rules catch, and print how many.
    #[arg(long)]
    pub dirty: bool,
    /// Spread the deals over this many of the configuration's pipelines ([[pipelines]]): with 2,
    /// expansion deals go to the second, a few after starting in the first (moved deals).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pipelines: usize,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let config = crate::cli::load_config(cli)?;
    let opts = GenerateOptions {
        scale: args.scale,
        seed: args.seed,
        out: args.out.clone(),
        format: args.format,
        dirty: args.dirty,
        pipelines: args.pipelines,
    };
    let report = crate::generate::generate(&opts, &config)?;
    crate::cli::print_stdout(&report.render())?;
    Ok(Outcome::Ok)
}
