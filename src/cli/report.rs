//! `crm-kpi report`: the KPI outputs of one as_of and grain as one self-contained HTML file.
//! Outputs already written for the same store generation, configuration, as_of instant and KPI
//! version are read; the others are computed first, by `run` (so they are also left in OUT).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use polars::prelude::{ParquetReader, SerReader, SortMultipleOptions};

use crate::cli::run::{SAMPLE_STORE, resolve_as_of};
use crate::cli::{Cli, Outcome};
use crate::kpi::{Grain, Params};
use crate::report::{KPIS, ReportData};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory [default: `store` in crm-kpi.toml, else the sample store data/store].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
    /// KPI output directory to read (and to write the KPIs it lacks) [default: `out` in
    /// crm-kpi.toml, else ./out].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_OUT")]
    pub out: Option<PathBuf>,
    /// As of this date (end of that day in the configured timezone) or RFC 3339 instant
    /// (default: now).
    #[arg(long, value_name = "T")]
    pub as_of: Option<String>,
    /// Period grain.
    #[arg(long, value_enum, default_value = "month")]
    pub grain: Grain,
    /// The HTML file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, Some(SAMPLE_STORE))?;
    let out = crate::cli::out_path(&args.out, &config);
    let as_of_us = resolve_as_of(args.as_of.as_deref(), &config)?;
    let store = Store::open(&store_dir)?;
    let config = config.for_store(&store)?;
    let params = Params::new(as_of_us, args.grain, config.clone());
    let as_of = params.as_of_date().to_string();
    let generation = store.manifest().generation;
    let config_hash = config.hash();
    let fresh = fresh_outputs(&out, &store_dir, generation, &config_hash, as_of_us, &as_of, args.grain);
    let missing: Vec<String> = KPIS
        .iter()
        .filter(|k| !fresh.contains(**k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        tracing::info!(
            kpis = missing.len(),
            "report: computing the KPIs the output folder lacks"
        );
        let instant = chrono::DateTime::from_timestamp_micros(as_of_us)
            .context("as_of out of range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let run_args = crate::cli::run::Args {
            store: Some(store_dir.clone()),
            out: Some(out.clone()),
            as_of: Some(instant),
            kpi: missing,
            grain: args.grain,
            streaming: false,
            engine: crate::cli::run::EngineKind::Polars,
            spark_submit: "spark-submit".into(),
        };
        crate::cli::run::run(cli, &run_args)?;
    }
    let read_started = Instant::now();
    let mut frames = BTreeMap::new();
    for k in KPIS {
        let path = crate::output::partition_dir(&out, k, args.grain.name(), &as_of).join("part-0.parquet");
        let file =
            std::fs::File::open(&path).with_context(|| format!("{}: cannot open the KPI output", path.display()))?;
        let df = ParquetReader::new(file)
            .finish()
            .with_context(|| format!("{}: cannot read the KPI output", path.display()))?;
        // In key order, whoever wrote the file (Spark's outputs are not sorted).
        let key = crate::kpi::find(k).map(|kpi| kpi.key.to_vec()).unwrap_or_default();
        let df = if key.is_empty() {
            df
        } else {
            df.sort(key, SortMultipleOptions::default().with_maintain_order(true))
                .with_context(|| format!("{}: cannot sort the KPI output", path.display()))?
        };
        frames.insert(k.to_string(), df);
    }
    let data = ReportData {
        frames,
        as_of: as_of.clone(),
        grain: args.grain,
        store: store_dir.display().to_string(),
        store_generation: generation,
        config_hash,
        currency: config.base_currency.clone(),
        stages: config
            .stages
            .iter()
            .map(|s| (s.pipeline.clone(), s.name.clone()))
            .collect(),
        fiscal_year_start_month: config.fiscal_year_start_month,
    };
    let html = crate::report::render(&data).context("rendering the report")?;
    write_atomic(&args.output, html.as_bytes())?;
    let ms = read_started.elapsed().as_millis();
    tracing::info!(ms = ms as u64, bytes = html.len(), "report written");
    crate::cli::print_stdout(&format!(
        "report as of {as_of} ({} grain) written to {} ({} KiB; read and rendered in {ms} ms, {} ms in all)\n",
        args.grain.name(),
        args.output.display(),
        html.len().div_ceil(1024),
        started.elapsed().as_millis()
    ))?;
    Ok(Outcome::Ok)
}

/// The KPIs whose file in OUT for this as_of date and grain was last written by a run of this
/// store (same path, generation and configuration), at this very as_of instant, with the
/// KPI's current version. Unreadable manifests are skipped (the KPI is then computed again).
fn fresh_outputs(
    out: &Path,
    store: &Path,
    generation: u64,
    config_hash: &str,
    as_of_us: i64,
    as_of: &str,
    grain: Grain,
) -> BTreeSet<String> {
    let mut manifests: Vec<serde_json::Value> = std::fs::read_dir(out.join("_runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") && n != "latest.json" && !n.starts_with('.')
        })
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    // Oldest first: the last run that wrote a file decides what it holds.
    manifests.sort_by(|a, b| a["run_id"].as_str().cmp(&b["run_id"].as_str()));
    let here = std::fs::canonicalize(store).ok();
    let mut last: BTreeMap<String, bool> = BTreeMap::new();
    for m in &manifests {
        if m["as_of"].as_str() != Some(as_of) || m["grain"].as_str() != Some(grain.name()) {
            continue;
        }
        let instant = m["as_of_instant"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_micros());
        let same = instant == Some(as_of_us)
            && m["store_generation"].as_u64() == Some(generation)
            && m["config_hash"].as_str() == Some(config_hash)
            && here.is_some()
            && m["store"].as_str().and_then(|s| std::fs::canonicalize(s).ok()) == here;
        for k in m["kpis"].as_array().into_iter().flatten() {
            let Some(name) = k["name"].as_str() else { continue };
            let version = crate::kpi::find(name).map(|k| u64::from(k.version));
            last.insert(name.to_string(), same && k["version"].as_u64() == version);
        }
    }
    last.into_iter().filter(|(_, ok)| *ok).map(|(k, _)| k).collect()
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("--output names no file")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write the report", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write the report", path.display()))?;
    Ok(())
}
