//! `crm-kpi validate`: a data-quality report of a store.

use std::path::PathBuf;

use crate::cli::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory [default: `store` in crm-kpi.toml].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, None)?;
    let report = crate::store::quality::report(&store_dir, &config)?;
    crate::cli::print_stdout(&report.render())?;
    Ok(Outcome::Ok)
}
