//! KPI outputs: Parquet partitions with key-value metadata, the run manifest, and printing
//! as a table, CSV or JSON for analysts.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::polars_utils::compression::ZstdLevel;
use polars::prelude::*;
use serde::Serialize;

use crate::kpi::Kpi;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing {}: {source}", path.display())]
    Polars { path: PathBuf, source: PolarsError },
}

/// Writes `OUT/<kpi>/as_of=<date>/part-0.parquet`, replacing an earlier run of the same
/// as_of atomically (the file is written beside it, fsynced, and renamed over it).
pub fn write_kpi(
    out: &Path,
    kpi: &Kpi,
    as_of: &str,
    config_hash: &str,
    df: &mut DataFrame,
) -> Result<PathBuf, OutputError> {
    let dir = out.join(kpi.name).join(format!("as_of={as_of}"));
    std::fs::create_dir_all(&dir).map_err(|source| OutputError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join("part-0.parquet");
    let tmp = dir.join(".part-0.parquet.tmp");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| OutputError::Io { path: p, source }
    };
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    let meta = KeyValueMetadata::from_static(vec![
        ("crm_kpi.kpi".to_string(), kpi.name.to_string()),
        ("crm_kpi.version".to_string(), kpi.version.to_string()),
        ("crm_kpi.grain".to_string(), kpi.grain.to_string()),
        ("crm_kpi.definition".to_string(), kpi.definition.to_string()),
        ("crm_kpi.as_of".to_string(), as_of.to_string()),
        ("crm_kpi.config_hash".to_string(), config_hash.to_string()),
        (
            "crm_kpi.engine_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    let level = ZstdLevel::try_new(3).map_err(|source| OutputError::Polars {
        path: tmp.clone(),
        source,
    })?;
    ParquetWriter::new(&mut file)
        .with_compression(ParquetCompression::Zstd(Some(level)))
        .with_statistics(StatisticsOptions::default())
        .with_key_value_metadata(Some(meta))
        .finish(df)
        .map_err(|source| OutputError::Polars {
            path: tmp.clone(),
            source,
        })?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// `OUT/_runs/<run id>.json`.
#[derive(Debug, Serialize)]
pub struct RunManifest {
    pub run_id: String,
    pub started_at: String,
    pub store: String,
    pub store_generation: u64,
    pub as_of: String,
    pub as_of_instant: String,
    pub grain: String,
    pub config_hash: String,
    pub engine: String,
    /// Time to collect every KPI together (shared scans), in milliseconds.
    pub collect_ms: u128,
    pub total_ms: u128,
    pub kpis: Vec<RunKpi>,
}

#[derive(Debug, Serialize)]
pub struct RunKpi {
    pub name: String,
    pub version: u32,
    pub rows: usize,
    pub path: String,
    /// Time to build the plan, and to write the file, in milliseconds.
    pub plan_ms: u128,
    pub write_ms: u128,
}

pub fn write_run_manifest(out: &Path, m: &RunManifest) -> Result<PathBuf, OutputError> {
    let dir = out.join("_runs");
    std::fs::create_dir_all(&dir).map_err(|source| OutputError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!("{}.json", m.run_id));
    let text = serde_json::to_string_pretty(m).expect("run manifest serializes");
    std::fs::write(&path, text).map_err(|source| OutputError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintFormat {
    Table,
    Csv,
    Json,
}

/// Sets polars' table-printing options. polars reads them from the environment only; call
/// this at start-up, before any other thread exists (`show` and `sql` do).
pub fn init_table_format() {
    // SAFETY: called from `main`'s thread before polars or rayon start any thread.
    unsafe {
        std::env::set_var("POLARS_FMT_TABLE_FORMATTING", "ASCII_MARKDOWN");
        std::env::set_var("POLARS_FMT_MAX_ROWS", "200");
        std::env::set_var("POLARS_FMT_MAX_COLS", "40");
        std::env::set_var("POLARS_FMT_TABLE_HIDE_DATAFRAME_SHAPE_INFORMATION", "1");
        std::env::set_var("POLARS_FMT_TABLE_INLINE_COLUMN_DATA_TYPE", "1");
        std::env::set_var("POLARS_FMT_STR_LEN", "60");
        std::env::set_var("POLARS_TABLE_WIDTH", "250");
    }
}

/// Prints a frame to a writer (stdout): an ASCII table, CSV with header, or JSON lines.
pub fn print(df: &mut DataFrame, format: PrintFormat, w: &mut dyn Write) -> PolarsResult<()> {
    match format {
        PrintFormat::Table => {
            writeln!(w, "{df}")?;
            Ok(())
        }
        PrintFormat::Csv => CsvWriter::new(w).include_header(true).finish(df),
        PrintFormat::Json => JsonWriter::new(w).with_json_format(JsonFormat::JsonLines).finish(df),
    }
}
