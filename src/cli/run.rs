//! `crm-kpi run`: the nightly batch. Computes the selected KPIs (default: all) as of a date
//! and writes `OUT/<kpi>/grain=<grain>/as_of=<date>/part-0.parquet` plus
//! `OUT/_runs/<run id>.json` and `OUT/_runs/latest.json`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::{Cli, Outcome};
use crate::kpi::inputs::Tables;
use crate::kpi::{Grain, Params, parse_as_of};
use crate::output::{RunKpi, RunManifest};
use crate::store::Store;

/// The sample store the README's main-job command runs on.
pub const SAMPLE_STORE: &str = "data/store";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory [default: `store` in crm-kpi.toml, else the sample store data/store].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_STORE")]
    pub store: Option<PathBuf>,
    /// Output directory [default: `out` in crm-kpi.toml, else ./out].
    #[arg(long, value_name = "DIR", env = "CRM_KPI_OUT")]
    pub out: Option<PathBuf>,
    /// Compute as of this date (end of that day in the configured timezone) or RFC 3339 instant (default: now).
    #[arg(long, value_name = "T")]
    pub as_of: Option<String>,
    /// Only these KPIs (comma-separated; see `crm-kpi list`).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub kpi: Vec<String>,
    /// Period grain.
    #[arg(long, value_enum, default_value = "month")]
    pub grain: Grain,
    /// Use polars' streaming engine (bounded memory on large stores).
    #[arg(long)]
    pub streaming: bool,
    /// Where the KPIs are computed: in this process (polars), or on Spark (the bundle of
    /// `crm-kpi spark export`, run by --spark-submit).
    #[arg(long, value_enum, default_value = "polars")]
    pub engine: EngineKind,
    /// With --engine spark: the command that runs the bundle's entry point, followed by its
    /// arguments (e.g. "spark-submit --master yarn --deploy-mode cluster").
    #[arg(long, value_name = "CMD", default_value = "spark-submit")]
    pub spark_submit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Polars,
    Spark,
}

pub fn resolve_as_of(as_of: Option<&str>, config: &crate::Config) -> anyhow::Result<i64> {
    match as_of {
        None => Ok(crate::kpi::now_us()),
        Some(s) => parse_as_of(s, config.tz()).ok_or_else(|| {
            crate::Error::Usage(format!(
                "--as-of `{s}`: expected a date YYYY-MM-DD, a local date-time YYYY-MM-DDTHH:MM[:SS] (in the configured timezone) or an RFC 3339 instant"
            ))
            .into()
        }),
    }
}

pub fn select_kpis(names: &[String]) -> anyhow::Result<Vec<crate::kpi::Kpi>> {
    if names.is_empty() {
        return Ok(crate::kpi::registry());
    }
    names
        .iter()
        .map(|n| {
            crate::kpi::find(n).ok_or_else(|| {
                let all: Vec<_> = crate::kpi::registry().iter().map(|k| k.name).collect();
                let near = all
                    .iter()
                    .map(|k| (edit_distance(n, k), *k))
                    .filter(|(d, k)| *d <= 3.max(k.len() / 3))
                    .min();
                let hint = match near {
                    Some((_, k)) => format!("did you mean `{k}`? (`crm-kpi list` prints them all)"),
                    None => format!("known: {}", all.join(", ")),
                };
                crate::Error::Usage(format!("unknown KPI `{n}`; {hint}")).into()
            })
        })
        .collect()
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let config = crate::cli::load_config(cli)?;
    let store_dir = crate::cli::store_path(&args.store, &config, Some(SAMPLE_STORE))?;
    let out = crate::cli::out_path(&args.out, &config);
    if args.engine == EngineKind::Spark {
        return crate::cli::spark::submit(
            cli,
            &args.spark_submit,
            &store_dir,
            &out,
            args.as_of.as_deref(),
            args.grain,
            &args.kpi,
        );
    }
    let as_of_us = resolve_as_of(args.as_of.as_deref(), &config)?;
    let kpis = select_kpis(&args.kpi)?;
    let store = Store::open(&store_dir)?;
    let config = config.for_store(&store)?;
    let params = Params::new(as_of_us, args.grain, config.clone());
    let as_of = params.as_of_date().to_string();
    let tables = Tables::from_store(&store)?;
    let start = chrono::Utc::now();
    let run_id = format!("{}-{}", start.format("%Y%m%dT%H%M%S%.3fZ"), std::process::id());
    // One run writes an output directory at a time; what a killed run left half-written goes.
    let _out_lock = crate::output::lock_out(&out)?;
    let staging = crate::output::RunStaging::new(&out, &run_id);
    let mut staged = Vec::new();
    let engine = if args.streaming {
        polars::prelude::Engine::Streaming
    } else {
        polars::prelude::Engine::InMemory
    };
    let _ = crate::cli::log::RUN_ID.set(run_id.clone());
    let total = kpis.len();
    tracing::info!(run_id = %run_id, as_of = %as_of, grain = args.grain.name(), kpis = total, "run started");
    let progress = crate::cli::log::progress(format!("0/{total} KPIs as of {as_of}: computing"), cli.quiet);
    // Each family's outputs are written as soon as it is collected and then dropped, by a writer
    // thread, while the next family computes: polars keeps about one of the two cores busy on
    // most of a family's plans, and the writes (Parquet encoding and compression: 1.9 s of the
    // 26 s at scale m, the survival table alone 1.4 s) used to wait for each other.
    let config_hash = config.hash();
    let (out_kpis, collect_ms) = std::thread::scope(|scope| -> anyhow::Result<(Vec<RunKpi>, u128)> {
        // Bounded: a family's outputs wait while the previous family's are written, no more.
        let (send, recv) = std::sync::mpsc::sync_channel::<crate::kpi::run::Computed>(32);
        let (progress, staging, staged, as_of, run_id) = (&progress, &staging, &mut staged, &as_of, &run_id);
        let (grain, config_hash) = (args.grain.name(), &config_hash);
        let writer = scope.spawn(move || -> anyhow::Result<Vec<RunKpi>> {
            let mut out_kpis = Vec::new();
            for c in recv {
                progress.set_message(format!(
                    "{}/{total} KPIs as of {as_of}: writing {}",
                    out_kpis.len() + 1,
                    c.kpi.name
                ));
                let t = Instant::now();
                let path = crate::output::write_kpi(staging.dir(), &c.kpi, as_of, grain, config_hash, run_id, &c.df)?;
                let final_path = staging.final_path(&path);
                staged.push(path);
                tracing::info!(
                    kpi = c.kpi.name,
                    rows = c.df.height(),
                    ms = t.elapsed().as_millis() as u64,
                    done = out_kpis.len() + 1,
                    of = total,
                    "written"
                );
                out_kpis.push(RunKpi {
                    name: c.kpi.name.to_string(),
                    version: c.kpi.version,
                    rows: c.df.height(),
                    path: final_path.display().to_string(),
                    plan_ms: c.plan_ms,
                    write_ms: t.elapsed().as_millis(),
                });
            }
            Ok(out_kpis)
        });
        let computed = crate::kpi::run::compute_each(&tables, &params, kpis, engine, |c| {
            // The writer stops receiving only when a write failed: its error is the one reported.
            send.send(c).map_err(|_| anyhow::anyhow!("the output writer stopped"))
        });
        drop(send);
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the output writer panicked"))?
            .context("writing the KPIs")?;
        let collect_ms = computed.context("computing the KPIs")?;
        Ok((written, collect_ms))
    })?;
    crate::cli::log::finish_progress(&progress);
    staging.publish(&staged)?;
    let manifest = RunManifest {
        run_id,
        started_at: start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        store: store_dir.display().to_string(),
        store_generation: store.manifest().generation,
        as_of: as_of.clone(),
        as_of_instant: chrono::DateTime::from_timestamp_micros(as_of_us)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default(),
        grain: args.grain.name().to_string(),
        config_hash: config.hash(),
        engine: if args.streaming { "streaming" } else { "in-memory" }.to_string(),
        collect_ms,
        total_ms: started.elapsed().as_millis(),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        status: "succeeded".to_string(),
        kpis: out_kpis,
    };
    let path = crate::output::write_run_manifest(&out, &manifest)?;
    tracing::info!(
        kpis = manifest.kpis.len(),
        rows = manifest.kpis.iter().map(|k| k.rows as u64).sum::<u64>(),
        ms = manifest.total_ms as u64,
        manifest = %path.display(),
        "run finished"
    );
    // writeln, not println: a closed pipe (`crm-kpi run | head -1`) is an error that ends the
    // command quietly, not a panic.
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{} KPIs as of {as_of} written to {} in {} ms (run manifest {})",
        manifest.kpis.len(),
        out.display(),
        manifest.total_ms,
        path.display()
    )?;
    for k in &manifest.kpis {
        writeln!(stdout, "  {:<24} {:>8} rows", k.name, k.rows)?;
    }
    Ok(Outcome::Ok)
}
