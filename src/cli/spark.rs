//! `crm-kpi spark export`: the catalog as a Spark bundle (the KPIs' Spark SQL rendered for one
//! configuration, as_of and grain, plus a PySpark entry point), and the submit step of
//! `crm-kpi run --engine spark`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{Cli, Outcome};
use crate::kpi::spark::Templates;
use crate::kpi::{Grain, Kpi, Params};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SparkCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SparkCommand {
    /// Write a bundle that computes the catalog on Spark: `spark-submit BUNDLE/crm_kpi_spark.py
    /// --store STORE --out OUT` (no crm-kpi binary needed on the cluster).
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The bundle folder to write (created; files of an earlier bundle are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Compute as of this date (end of that day in the configured timezone) or RFC 3339 instant (default: now).
    #[arg(long, value_name = "T")]
    pub as_of: Option<String>,
    /// Period grain.
    #[arg(long, value_enum, default_value = "month")]
    pub grain: Grain,
    /// Only these KPIs (comma-separated; see `crm-kpi list`).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub kpi: Vec<String>,
    /// Read the SQL templates from this folder instead of the built-in ones (for developing
    /// the Spark SQL: views.sql, views_<family>.sql, <kpi>.sql).
    #[arg(long, value_name = "DIR", hide = true)]
    pub templates: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        SparkCommand::Export(a) => {
            let files = export(cli, a)?;
            if !cli.quiet {
                println!(
                    "Spark bundle written to {} ({} files); run it with\n  spark-submit {} --store STORE --out OUT",
                    a.out.display(),
                    files.len(),
                    a.out.join("crm_kpi_spark.py").display()
                );
            }
            Ok(Outcome::Ok)
        }
    }
}

/// What a bundle is rendered for: the KPIs (those named, else the whole catalog), the run's
/// parameters and the configuration's hash.
fn prepare(
    cli: &Cli,
    as_of: Option<&str>,
    grain: Grain,
    names: &[String],
) -> anyhow::Result<(Vec<Kpi>, Params, String)> {
    let config = crate::cli::load_config(cli)?;
    let as_of_us = crate::cli::run::resolve_as_of(as_of, &config)?;
    let kpis = crate::cli::run::select_kpis(names)?;
    let config_hash = config.hash();
    Ok((kpis, Params::new(as_of_us, grain, config), config_hash))
}

/// Writes the bundle of `a` and returns its files.
pub fn export(cli: &Cli, a: &ExportArgs) -> anyhow::Result<Vec<PathBuf>> {
    let (kpis, params, config_hash) = prepare(cli, a.as_of.as_deref(), a.grain, &a.kpi)?;
    write_bundle(&a.out, &kpis, &params, &config_hash, a.templates.as_deref())
}

fn write_bundle(
    dir: &Path,
    kpis: &[Kpi],
    params: &Params,
    config_hash: &str,
    templates: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    let sql = dir.join("sql");
    if sql.exists() {
        // A bundle's SQL files are numbered by run order: an earlier bundle's would be run too.
        std::fs::remove_dir_all(&sql).with_context(|| format!("cannot replace {}", sql.display()))?;
    }
    crate::kpi::spark::export(dir, kpis, params, config_hash, &Templates { dir: templates })
        .map_err(|e| anyhow::anyhow!("spark export: {e}"))
}

/// `crm-kpi run --engine spark`: exports the bundle to a temporary folder and runs
/// `SUBMIT BUNDLE/crm_kpi_spark.py --store STORE --out OUT` through `sh -c`.
pub fn submit(
    cli: &Cli,
    submit: &str,
    store: &Path,
    out: &Path,
    as_of: Option<&str>,
    grain: Grain,
    names: &[String],
) -> anyhow::Result<Outcome> {
    let (kpis, params, config_hash) = prepare(cli, as_of, grain, names)?;
    if !store.join("_manifest.json").is_file() && !store.to_string_lossy().contains("://") {
        return Err(
            crate::Error::Usage(format!("{}: not a crm-kpi store (no _manifest.json)", store.display())).into(),
        );
    }
    let dir = TempDir(std::env::temp_dir().join(format!(
        "crm-kpi-spark-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )));
    write_bundle(dir.path(), &kpis, &params, &config_hash, None)?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (store, out) = if store.to_string_lossy().contains("://") {
        (store.to_path_buf(), out.to_path_buf())
    } else {
        (abs(store), abs(out))
    };
    let cmd = format!(
        "{submit} {} --store {} --out {}",
        quote(&dir.path().join("crm_kpi_spark.py")),
        quote(&store),
        quote(&out)
    );
    tracing::info!(command = %cmd, "submitting the Spark bundle");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .status()
        .with_context(|| format!("cannot run `{cmd}`"))?;
    if !status.success() {
        anyhow::bail!("the Spark job failed ({status}): `{cmd}`");
    }
    Ok(Outcome::Ok)
}

/// A path as one word for `sh -c`.
fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
