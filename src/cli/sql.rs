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
    /// Store directory [default: `store` in crm-kpi.toml, else data/store].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
    /// KPI output directory of `crm-kpi run` [default: `out` in crm-kpi.toml, else ./out].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_OUT")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PrintFormat,
    /// CSV as stored, for programs: cells starting with = + - @ are not prefixed with `'` (by
    /// default they are, so a spreadsheet does not run them as formulas).
    #[arg(long)]
    pub raw_csv: bool,
    /// Let the query read files and URLs of its own (`read_csv('...')`, `read_parquet(...)`):
    /// by default it sees the store's tables and the KPI outputs only.
    #[arg(long)]
    pub allow_file_access: bool,
}

/// The file-reading table functions a query names, outside comments and string literals.
pub fn file_functions(sql: &str) -> Vec<String> {
    let mut code = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // A literal or a quoted name: skipped (doubled quotes stay inside it).
                while let Some(d) = chars.next() {
                    if d == c && chars.peek() != Some(&c) {
                        break;
                    }
                    if d == c {
                        chars.next();
                    }
                }
                code.push(' ');
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                code.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                code.push(' ');
            }
            _ => code.push(c),
        }
    }
    let re =
        regex::Regex::new(r"(?i)\b(read_(?:csv|parquet|ipc|json|ndjson|delta|excel))\s*\(").expect("valid pattern");
    re.captures_iter(&code).map(|c| c[1].to_lowercase()).collect()
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
        // `grain=<g>/as_of=<date>/part-0.parquet`: grain and as_of come from the folder names.
        let glob = dir.join("grain=*").join("as_of=*").join("part-0.parquet");
        let mut hive = HiveOptions::new_enabled();
        hive.schema = Some(std::sync::Arc::new(Schema::from_iter([
            Field::new("grain".into(), DataType::String),
            Field::new("as_of".into(), DataType::Date),
        ])));
        let args = ScanArgsParquet {
            hive_options: hive,
            ..Default::default()
        };
        let lf = LazyFrame::scan_parquet(PlRefPath::new(glob.to_string_lossy().as_ref()), args)?;
        let order: Vec<Expr> = ["as_of", "grain"]
            .into_iter()
            .chain((k.columns)().into_iter().map(|(c, _)| c).filter(|c| *c != "as_of"))
            .map(col)
            .collect();
        ctx.register(k.name, lf.select(order));
    }
    Ok(ctx)
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    crate::output::init_table_format();
    let query = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| crate::Error::Usage(format!("cannot read query file {}: {e}", f.display())))?,
        (None, None) => unreachable!("clap requires one"),
    };
    let readers = file_functions(&query);
    if !readers.is_empty() && !args.allow_file_access {
        return Err(crate::Error::Usage(format!(
            "SQL: `{}` reads files or URLs outside the store; queries see the store's tables and the KPI \
             outputs only. Pass --allow-file-access to let this query read them",
            readers[0]
        ))
        .into());
    }
    let config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, Some(SAMPLE_STORE))?;
    let out = crate::cli::out_path(&args.out, &config);
    let mut ctx = context(&store_dir, &out)?;
    let mut df = ctx
        .execute(&query)
        .and_then(|lf| lf.collect())
        .map_err(|e| {
            let msg = crate::error::first_line(&e.to_string());
            let hint = if msg.contains("not found") && !out.is_dir() {
                format!(
                    " (the KPI outputs are read from {}, which does not exist: run `crm-kpi run` first, or set --out DIR or CRM_KPI_OUT)",
                    out.display()
                )
            } else {
                String::new()
            };
            crate::Error::Usage(format!("SQL: {msg}{hint}"))
        })?;
    let mut stdout = std::io::stdout().lock();
    crate::output::print(&mut df, args.format, &mut stdout, args.raw_csv)?;
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_reading_functions_are_found_outside_literals_and_comments() {
        assert_eq!(file_functions("SELECT * FROM read_csv('/etc/shadow')"), ["read_csv"]);
        assert_eq!(
            file_functions("select * from READ_PARQUET ('http://x/y.parquet')"),
            ["read_parquet"]
        );
        assert!(file_functions("SELECT 'read_csv(x)' AS s FROM leads").is_empty());
        assert!(file_functions("SELECT * FROM leads -- read_csv('a')\n").is_empty());
        assert!(file_functions("SELECT /* read_json( */ 1 FROM leads").is_empty());
        assert!(file_functions("SELECT thread_csv(1) FROM leads").is_empty());
    }
}
