//! `crm-kpi ingest`: validate CRM exports and commit them to a store.

use std::path::PathBuf;

use crate::cli::{Cli, Outcome};
use crate::ingest::{IngestOptions, Mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory, created if missing [default: `store` in crm-kpi.toml].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
    /// How rows whose primary key is already stored are treated.
    #[arg(long, value_enum, default_value = "upsert")]
    pub mode: Mode,
    /// Table of every file (default: from each file name, e.g. leads.csv, leads-2024.ndjson).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Exit with code 1 when any row was rejected (the accepted rows are still committed).
    #[arg(long)]
    pub strict: bool,
    /// Take the files exactly as this CRM exports them (names and columns untouched):
    /// salesforce, hubspot or pipedrive. Same as `preset = "..."` in crm-kpi.toml.
    #[arg(long, value_name = "CRM")]
    pub preset: Option<String>,
    /// Count each won deal without an order of its own as a paid order at its close, for
    /// CRMs that export no orders (revenue, CLV and retention). Same as
    /// `won_deals_as_orders = true` in crm-kpi.toml.
    #[arg(long)]
    pub won_deals_as_orders: bool,
    /// CSV, NDJSON (.ndjson/.jsonl) or Parquet exports.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let mut config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, None)?;
    if let Some(p) = &args.preset {
        if crate::ingest::staging::presets::text(p).is_none() {
            return Err(crate::Error::Usage(format!(
                "no preset `{p}`; built-in presets: {} (crm-kpi preset list)",
                crate::ingest::staging::presets::names().join(", ")
            ))
            .into());
        }
        config.preset = Some(p.to_ascii_lowercase());
    }
    config.won_deals_as_orders |= args.won_deals_as_orders;
    let opts = IngestOptions {
        mode: args.mode,
        table: args.table.clone(),
        batch_rows: None,
    };
    // A spinner on a terminal; nothing otherwise (logs stay quiet for cron and Airflow).
    let spinner = crate::cli::log::progress(
        format!(
            "ingesting {} files into {}: {}",
            args.files.len(),
            store_dir.display(),
            args.files
                .iter()
                .filter_map(|f| f.file_name())
                .map(|n| n.to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        cli.quiet,
    );
    let report = crate::ingest::ingest(&store_dir, &args.files, &opts, &config);
    crate::cli::log::finish_progress(&spinner);
    let report = report?;
    crate::cli::print_stdout(&report.render())?;
    if args.strict && report.rejected() > 0 {
        eprintln!(
            "error: {} rows were rejected (see quarantine/ in the store); exiting 1 under --strict",
            report.rejected()
        );
        return Ok(Outcome::DataProblems);
    }
    Ok(Outcome::Ok)
}
