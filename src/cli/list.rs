//! `crm-kpi list`: the KPI catalog; `--long` adds the definitions and output columns, `--json`
//! and `--markdown` print it for programs and for docs/kpis.md.

use crate::cli::{Cli, Outcome};
use crate::kpi::catalog;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print each KPI's definition, key and output columns.
    #[arg(long, conflicts_with_all = ["json", "markdown"])]
    pub long: bool,
    /// Print the catalog as JSON: an array of {name, family, family_title, grain, definition,
    /// version, key, columns: [{name, type}]}.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the KPI reference as Markdown (docs/kpis.md).
    #[arg(long)]
    pub markdown: bool,
}

pub fn run(_cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let text = if args.json {
        serde_json::to_string_pretty(&catalog::json())? + "\n"
    } else if args.markdown {
        catalog::reference_markdown()
    } else {
        catalog::text(args.long)
    };
    crate::cli::print_stdout(&text)?;
    Ok(Outcome::Ok)
}
