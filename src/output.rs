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

/// Where a run writes its files before they replace the outputs: `OUT/.staging-<run id>`.
const STAGING: &str = ".staging-";

/// A run's outputs, written aside and moved into OUT only once every KPI is written: a run that
/// fails (or is killed) leaves OUT as it was, and its staging directory goes.
pub struct RunStaging {
    out: PathBuf,
    dir: PathBuf,
    published: bool,
}

impl RunStaging {
    pub fn new(out: &Path, run_id: &str) -> RunStaging {
        RunStaging {
            out: out.to_path_buf(),
            dir: out.join(format!("{STAGING}{run_id}")),
            published: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path a staged file will have in OUT.
    pub fn final_path(&self, staged: &Path) -> PathBuf {
        staged
            .strip_prefix(&self.dir)
            .map_or_else(|_| staged.to_path_buf(), |rel| self.out.join(rel))
    }

    /// Moves every staged file over its place in OUT (each by one rename).
    pub fn publish(mut self, staged: &[PathBuf]) -> Result<(), OutputError> {
        for s in staged {
            let dst = self.final_path(s);
            let parent = dst.parent().expect("a file in a partition");
            std::fs::create_dir_all(parent).map_err(|source| OutputError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
            std::fs::rename(s, &dst).map_err(|source| OutputError::Io {
                path: dst.clone(),
                source,
            })?;
        }
        // A `_SUCCESS` marker in each partition written (as Spark and Hadoop jobs leave), once
        // every file of the run is in place: what an Airflow sensor waits for.
        for s in staged {
            let marker = self.final_path(s).with_file_name("_SUCCESS");
            std::fs::write(&marker, b"").map_err(|source| OutputError::Io { path: marker, source })?;
        }
        self.published = true;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for RunStaging {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Locks an output directory for one run (creating it): a second run into it is refused with
/// who holds it, and the lock goes with the process. Temporary files a killed run left are
/// removed.
pub fn lock_out(out: &Path) -> anyhow::Result<crate::store::lock::WriterLock> {
    std::fs::create_dir_all(out).map_err(|source| OutputError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let lock = crate::store::lock::WriterLock::acquire(out).map_err(|e| match e {
        crate::error::StoreError::Locked { holder, .. } => anyhow::Error::from(crate::Error::Usage(format!(
            "output directory {} is being written by another run ({holder}); wait for it to finish, or write to another --out",
            out.display()
        ))),
        other => other.into(),
    })?;
    for kpi in std::fs::read_dir(out).into_iter().flatten().flatten() {
        if kpi.file_name().to_string_lossy().starts_with(STAGING) {
            let _ = std::fs::remove_dir_all(kpi.path());
            continue;
        }
        remove_tmp_files(&kpi.path(), 3);
    }
    Ok(lock)
}

/// Removes `.*.tmp` files a killed run left in `dir` and its folders, `depth` levels down.
fn remove_tmp_files(dir: &Path, depth: u32) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tmp_files(&e.path(), depth - 1);
        }
    }
}

/// The folder of one KPI's output for a run: `OUT/<kpi>/grain=<grain>/as_of=<date>`. Hive-style,
/// so that pandas, pyarrow, polars, DuckDB and Spark read `OUT/<kpi>` as one dataset with
/// `grain` and `as_of` as columns (which the files themselves do not repeat).
pub fn partition_dir(out: &Path, kpi: &str, grain: &str, as_of: &str) -> PathBuf {
    out.join(kpi)
        .join(format!("grain={grain}"))
        .join(format!("as_of={as_of}"))
}

/// The columns a KPI's file leaves to its folder names.
pub const PARTITION_COLUMNS: [&str; 1] = ["as_of"];

/// Writes `OUT/<kpi>/grain=<grain>/as_of=<date>/part-0.parquet`, replacing an earlier run of
/// the same grain and as_of atomically (the file is written beside it under a name of this run,
/// fsynced, and renamed over it). The file holds the KPI's columns but `as_of` (in the path),
/// with signed integers and plain UTF-8 strings, and no embedded Arrow schema: every reader
/// derives the types from the Parquet schema, and `pq.read_schema` shows the `crm_kpi.*`
/// metadata. The run manifest lists the files each run wrote; the files themselves carry no
/// run id, so two runs of the same inputs write the same bytes.
pub fn write_kpi(
    out: &Path,
    kpi: &Kpi,
    as_of: &str,
    grain: &str,
    config_hash: &str,
    run_id: &str,
    df: &DataFrame,
) -> Result<PathBuf, OutputError> {
    let dir = partition_dir(out, kpi.name, grain, as_of);
    std::fs::create_dir_all(&dir).map_err(|source| OutputError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut df = df.drop_many(PARTITION_COLUMNS);
    let path = dir.join("part-0.parquet");
    let tmp = dir.join(format!(".part-0.parquet.{run_id}.tmp"));
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
        ("crm_kpi.family".to_string(), kpi.family.slug().to_string()),
        ("crm_kpi.key".to_string(), kpi.key.join(",")),
        ("crm_kpi.as_of".to_string(), as_of.to_string()),
        ("crm_kpi.period_grain".to_string(), grain.to_string()),
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
        .finish(&mut df)
        .map_err(|source| OutputError::Polars {
            path: tmp.clone(),
            source,
        })?;
    drop(file);
    strip_arrow_schema(&tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// A Parquet file's footer: where it starts and its bytes (the thrift `FileMetaData`), after
/// checking the trailing length and `PAR1` against the file's size.
pub fn read_footer(f: &mut File) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let len = f.metadata()?.len();
    if len < 12 {
        return Err(bad("too short for a Parquet footer".into()));
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::Start(len - 8))?;
    f.read_exact(&mut tail)?;
    if &tail[4..] != b"PAR1" {
        return Err(bad("no PAR1 at its end (truncated?)".into()));
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer_len + 12 > len {
        return Err(bad(format!("a footer of {footer_len} bytes in a file of {len}")));
    }
    let start = len - 8 - footer_len;
    let mut footer = vec![0u8; footer_len as usize];
    f.seek(SeekFrom::Start(start))?;
    f.read_exact(&mut footer)?;
    Ok((start, footer))
}

/// Removes the `ARROW:schema` entry polars writes into a Parquet footer (and fsyncs the file).
/// With it, pyarrow 26 reads strings as `string_view`, which older readers refuse, and shows
/// the embedded schema's (empty) metadata instead of the file's; without it, every reader
/// takes the types from the Parquet schema itself (UTF-8 strings, dates, int64, double).
pub fn strip_arrow_schema(path: &Path) -> std::io::Result<()> {
    use polars_parquet_format::FileMetaData;
    use polars_parquet_format::thrift::protocol::{TCompactInputProtocol, TCompactOutputProtocol};
    use std::io::{Seek, SeekFrom, Write};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("parquet footer: {what}"));
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let (start, footer) = read_footer(&mut f)?;
    let mut meta = {
        let mut prot = TCompactInputProtocol::new(footer.as_slice(), 1 << 30);
        FileMetaData::read_from_in_protocol(&mut prot).map_err(|e| bad(&e.to_string()))?
    };
    if let Some(kv) = meta.key_value_metadata.as_mut() {
        kv.retain(|e| e.key != "ARROW:schema");
    }
    let mut out = Vec::with_capacity(footer.len());
    {
        let mut prot = TCompactOutputProtocol::new(&mut out);
        meta.write_to_out_protocol(&mut prot).map_err(|e| bad(&e.to_string()))?;
    }
    f.set_len(start)?;
    f.seek(SeekFrom::Start(start))?;
    f.write_all(&out)?;
    f.write_all(&(out.len() as u32).to_le_bytes())?;
    f.write_all(b"PAR1")?;
    f.sync_all()
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
    pub finished_at: String,
    /// `succeeded`: a run that fails writes no manifest and leaves OUT as it was.
    pub status: String,
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
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| OutputError::Io { path: p, source }
    };
    std::fs::write(&path, &text).map_err(io(&path))?;
    // The last successful run, replaced atomically: what a scheduler or a reader polls.
    let latest = dir.join("latest.json");
    let tmp = dir.join(format!(".latest.json.{}.tmp", m.run_id));
    std::fs::write(&tmp, &text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &latest).map_err(io(&latest))?;
    Ok(path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintFormat {
    /// A table for people: money with thousands separators and 2 decimals, rates with 4.
    Table,
    Csv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per line (JSON Lines).
    Ndjson,
}

/// The most rows `show` and `sql` print as a table (a notice says how many there were).
pub const MAX_TABLE_ROWS: usize = 200;

/// Sets polars' table-printing options. polars reads them from the environment only; call
/// this at start-up, before any other thread exists (`show` and `sql` do).
pub fn init_table_format() {
    // SAFETY: called from `main`'s thread before polars or rayon start any thread.
    unsafe {
        std::env::set_var("POLARS_FMT_TABLE_FORMATTING", "ASCII_MARKDOWN");
        std::env::set_var("POLARS_FMT_MAX_ROWS", MAX_TABLE_ROWS.to_string());
        std::env::set_var("POLARS_FMT_MAX_COLS", "40");
        std::env::set_var("POLARS_FMT_TABLE_HIDE_DATAFRAME_SHAPE_INFORMATION", "1");
        // Numbers print as formatted text: their types would read `str`.
        std::env::set_var("POLARS_FMT_TABLE_HIDE_COLUMN_DATA_TYPES", "1");
        std::env::set_var("POLARS_FMT_STR_LEN", "60");
        std::env::set_var("POLARS_TABLE_WIDTH", "250");
    }
}

/// Prints a frame to a writer (stdout): an ASCII table, CSV with header, or JSON lines.
///
/// Text from CRM exports is untrusted. In CSV, a cell starting with `=`, `+`, `-`, `@`, a tab
/// or a carriage return is a formula to a spreadsheet (OWASP's CSV injection): it gets a `'`
/// first, unless `raw_csv` (for programs that read the CSV). In a table, control characters
/// (terminal escape sequences) are shown as `?`.
pub fn print(df: &mut DataFrame, format: PrintFormat, w: &mut dyn Write, raw_csv: bool) -> PolarsResult<()> {
    match format {
        PrintFormat::Table => {
            let shown = readable_numbers(df)?;
            let safe = map_text(&shown, |s| {
                s.chars().any(char::is_control).then(|| {
                    s.chars()
                        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
                        .collect()
                })
            })?;
            writeln!(w, "{safe}")?;
            Ok(())
        }
        PrintFormat::Csv if !raw_csv => {
            let mut safe = map_text(df, |s| {
                s.starts_with(['=', '+', '-', '@', '\t', '\r']).then(|| format!("'{s}"))
            })?;
            CsvWriter::new(w).include_header(true).finish(&mut safe)
        }
        PrintFormat::Csv => CsvWriter::new(w).include_header(true).finish(df),
        PrintFormat::Json => {
            JsonWriter::new(&mut *w).with_json_format(JsonFormat::Json).finish(df)?;
            writeln!(w)?;
            Ok(())
        }
        PrintFormat::Ndjson => JsonWriter::new(w).with_json_format(JsonFormat::JsonLines).finish(df),
    }
}

/// A column holding a rate or share (printed with 4 decimals; other floats are money or days,
/// printed with 2).
fn is_rate(name: &str) -> bool {
    name.starts_with("ci_")
        || [
            "rate",
            "share",
            "survival",
            "p_alive",
            "attainment",
            "lvr",
            "retained",
            "churn",
        ]
        .iter()
        .any(|w| name.contains(w))
}

/// `n` with a `,` between thousands: 1234567.891 at 2 decimals is `1,234,567.89`.
pub(crate) fn grouped(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (k, c) in int.chars().enumerate() {
        if k > 0 && (int.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    let sign = if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// The frame as a table shows it: floats as text with fixed decimals and thousands separators
/// (2 decimals, or 4 for rates), integers with thousands separators.
fn readable_numbers(df: &DataFrame) -> PolarsResult<DataFrame> {
    let cols = df
        .columns()
        .iter()
        .map(|c| {
            let name = c.name().to_string();
            Ok(match c.dtype() {
                DataType::Float64 | DataType::Float32 => {
                    let d = if is_rate(&name) { 4 } else { 2 };
                    let v = c.cast(&DataType::Float64)?;
                    let t: StringChunked = v
                        .f64()?
                        .iter()
                        .map(|x| x.map(|x| if x.is_finite() { grouped(x, d) } else { x.to_string() }))
                        .collect();
                    t.with_name(name.into()).into_column()
                }
                DataType::Int64 | DataType::Int32 | DataType::UInt32 | DataType::UInt64 => {
                    let v = c.cast(&DataType::Float64)?;
                    let t: StringChunked = v.f64()?.iter().map(|x| x.map(|x| grouped(x, 0))).collect();
                    t.with_name(name.into()).into_column()
                }
                _ => c.clone(),
            })
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(df.height(), cols)
}

/// The frame with every text value that `f` rewrites rewritten (other values as they are).
fn map_text(df: &DataFrame, f: impl Fn(&str) -> Option<String>) -> PolarsResult<DataFrame> {
    let cols = df
        .columns()
        .iter()
        .map(|c| {
            if c.dtype() != &DataType::String {
                return Ok(c.clone());
            }
            let ca: StringChunked = c
                .str()?
                .iter()
                .map(|v| v.map(|s| f(s).unwrap_or_else(|| s.to_string())))
                .collect();
            Ok(ca.with_name(c.name().clone()).into_column())
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(df.height(), cols)
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_the_arrow_schema_polars_reads_the_same_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let mut df = df!(
            "s" => ["a", "b"],
            "i" => [1i64, 2],
            "u" => [1u32, 2],
            "f" => [1.5f64, 2.5],
            "b" => [true, false],
        )
        .unwrap();
        df.with_column(
            Column::new("t".into(), [0i64, 1_000_000])
                .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
                .unwrap(),
        )
        .unwrap();
        df.with_column(Column::new("d".into(), [0i32, 1]).cast(&DataType::Date).unwrap())
            .unwrap();
        ParquetWriter::new(File::create(&p).unwrap()).finish(&mut df).unwrap();
        strip_arrow_schema(&p).unwrap();
        let back = ParquetReader::new(File::open(&p).unwrap()).finish().unwrap();
        assert_eq!(back.schema(), df.schema());
        assert!(back.equals_missing(&df));
    }

    use super::*;

    #[test]
    fn csv_cells_that_are_formulas_are_neutralised_unless_raw() {
        let mut df = df!(
            "source" => ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "@SUM(1)", "-2", "web", "\tx"],
            "n" => [1i64, -2, 3, 4, 5, 6],
        )
        .unwrap();
        let mut out = Vec::new();
        print(&mut df, PrintFormat::Csv, &mut out, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "source,n\n\"'=HYPERLINK(\"\"http://x\"\")\",1\n'+cmd|' /C calc'!A0,-2\n'@SUM(1),3\n'-2,4\nweb,5\n'\tx,6\n"
        );
        let mut raw = Vec::new();
        print(&mut df, PrintFormat::Csv, &mut raw, true).unwrap();
        assert!(String::from_utf8(raw).unwrap().contains("\n@SUM(1),3\n"));
    }

    #[test]
    fn tables_show_control_characters_as_question_marks() {
        let mut df = df!("source" => ["\u{1b}[31mred\u{1b}[0m"]).unwrap();
        let mut out = Vec::new();
        print(&mut df, PrintFormat::Table, &mut out, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\u{1b}') && text.contains("?[31mred?[0m"), "{text}");
    }
}
