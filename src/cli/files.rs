//! `crm-kpi files`: the Parquet files that hold a store table now, for tools that read them
//! directly (Spark, pandas, pyarrow, DuckDB). A store keeps each table in generation folders
//! (`tables/<table>/g<NNNNNN>/...`), old ones until no reader needs them, so reading the
//! folder would mix versions: the manifest says which files are current.

use std::path::PathBuf;

use crate::cli::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory [default: `store` in crm-kpi.toml, else data/store].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
    /// The table (leads, opportunities, stage_events, ...); every table when omitted, as
    /// `table<TAB>path` lines.
    pub table: Option<String>,
    /// Print {"table": [paths], ...} as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, Some(crate::cli::run::SAMPLE_STORE))?;
    let store = crate::store::Store::open(&store_dir)?;
    let tables: Vec<&str> = match &args.table {
        Some(t) => {
            let Some(def) = crate::schema::table(t) else {
                let names: Vec<&str> = crate::schema::TABLES.iter().map(|d| d.name).collect();
                return Err(
                    crate::Error::Usage(format!("unknown table `{t}`; the tables are {}", names.join(", "))).into(),
                );
            };
            vec![def.name]
        }
        None => crate::schema::TABLES.iter().map(|d| d.name).collect(),
    };
    let root = std::fs::canonicalize(&store_dir).unwrap_or_else(|_| store_dir.clone());
    let files = |t: &str| -> Vec<String> {
        store
            .manifest()
            .tables
            .get(t)
            .map(|e| {
                e.files
                    .iter()
                    .map(|f| root.join(&f.path).display().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = if args.json {
        let map: serde_json::Map<String, serde_json::Value> = tables
            .iter()
            .map(|t| (t.to_string(), serde_json::json!(files(t))))
            .collect();
        serde_json::to_string_pretty(&map)? + "\n"
    } else {
        let mut s = String::new();
        for t in &tables {
            for f in files(t) {
                if args.table.is_some() {
                    s.push_str(&format!("{f}\n"));
                } else {
                    s.push_str(&format!("{t}\t{f}\n"));
                }
            }
        }
        s
    };
    crate::cli::print_stdout(&text)?;
    Ok(Outcome::Ok)
}
