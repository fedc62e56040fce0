//! Typed errors, one enum per phase. Each `Display` says what went wrong, where (file, table,
//! column, row when known) and what to do about it. Exit codes (README, "Commands"): every error here
//! is a usage, config or I/O problem and exits 2; data problems under `--strict` exit 1.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config {}: key `{key}`: {problem}; fix: {fix}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
        fix: String,
    },
}

/// Problems reading an input file. Row-level problems are not errors: those rows go to
/// quarantine with a reason.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot tell which table this is; name the file after a table ({tables}) or pass --table{hint}", path.display())]
    UnknownTable {
        path: PathBuf,
        tables: String,
        hint: String,
    },
    #[error("{}: unsupported file type; use .csv, .ndjson/.jsonl or .parquet", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: the file is empty; export it again with a header row", path.display())]
    Empty { path: PathBuf },
    #[error("{}: unreadable {format}: {message}", path.display())]
    Unreadable {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{} (table {table}): missing required column{} {}; found columns: {found}{hint}", path.display(), if missing.len() > 1 { "s" } else { "" }, missing.join(", "))]
    MissingColumns {
        path: PathBuf,
        table: String,
        missing: Vec<String>,
        found: String,
        hint: String,
    },
    #[error("{} (table {table}): column `{column}` has type {dtype}, which cannot hold {expected}", path.display())]
    ColumnType {
        path: PathBuf,
        table: String,
        column: String,
        dtype: String,
        expected: String,
    },
    #[error("{} (table {table}): columns {} all map to `{column}`; keep one, or map the others elsewhere in [mapping.{table}.columns]", path.display(), inputs.join(", "))]
    AmbiguousColumns {
        path: PathBuf,
        table: String,
        column: String,
        inputs: Vec<String>,
    },
    #[error("{}: line {line} is longer than {limit} bytes; is this really a CSV/NDJSON export?", path.display())]
    LineTooLong { path: PathBuf, line: usize, limit: usize },
}

impl IngestError {
    pub fn unreadable(path: &std::path::Path, format: &'static str, message: impl ToString) -> Self {
        IngestError::Unreadable {
            path: path.to_path_buf(),
            format,
            message: first_line(&message.to_string()),
        }
    }
}

/// Problems of a mapping source (`[[sources]]`, presets) met while staging the files it takes.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{what}: SQL `{sql}` failed: {message}")]
    Sql { what: String, sql: String, message: String },
    #[error("{what}: {message}")]
    Spec { what: String, message: String },
    #[error("{}: its name matches source{} {} but it lacks the column{} {}; found columns: {found}{hint}", path.display(), if sources.len() > 1 { "s" } else { "" }, sources.join(", "), if missing.len() > 1 { "s" } else { "" }, missing.join(", "))]
    Unclaimed {
        path: PathBuf,
        sources: Vec<String>,
        missing: Vec<String>,
        found: String,
        hint: String,
    },
    #[error("{} (source `{source_name}`, table {table}): no column `{column}` for the required `{canonical}`; found columns: {found}", path.display())]
    MissingColumn {
        path: PathBuf,
        source_name: String,
        table: String,
        canonical: String,
        column: String,
        found: String,
    },
    #[error("internal error while staging (please report): {0}")]
    Polars(#[from] polars::prelude::PolarsError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {}: {source} (while {action})", path.display())]
    Io {
        path: PathBuf,
        action: String,
        source: std::io::Error,
    },
    #[error("store {} is locked by another writer ({holder}); wait for it to finish: the lock is released as soon as that process exits", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("store {}: no _manifest.json; is this a crm-kpi store? create one with `crm-kpi ingest --store {} FILES...`, or point to another with --store DIR or CRM_KPI_STORE", path.display(), path.display())]
    NotAStore { path: PathBuf },
    #[error("store {}: _manifest.json is corrupt: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
    #[error("store {}: table {table}: {message}", path.display())]
    BadTable {
        path: PathBuf,
        table: String,
        message: String,
    },
    #[error("store {}: manifest schema version {found} is newer than this crm-kpi ({supported}); upgrade crm-kpi", path.display())]
    Version { path: PathBuf, found: u32, supported: u32 },
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    #[error(
        "--pipelines {wanted}: the configuration declares {have} pipeline(s); declare them with \
         [[pipelines]] (examples/two-pipelines.toml has two: crm-kpi --config examples/two-pipelines.toml \
         generate --pipelines 2 ...)"
    )]
    Pipelines { wanted: usize, have: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    #[error(
        "--pipelines {wanted}: the configuration declares {have} pipeline(s); declare them with \
         [[pipelines]] (examples/two-pipelines.toml has two: crm-kpi --config examples/two-pipelines.toml \
         generate --pipelines 2 ...)"
    )]
    Pipelines { wanted: usize, have: usize },
}

/// A KPI family that could not be computed: names the family and its KPIs. Bad input never
/// gets here (ingest quarantines it); a damaged store file, resource exhaustion or a bug does.
#[derive(Debug, thiserror::Error)]
#[error("computing the {family} KPIs ({kpis}): {source}{hint}")]
pub struct KpiError {
    pub family: &'static str,
    pub kpis: String,
    pub source: polars::prelude::PolarsError,
    /// What to check, for errors that read like a damaged file.
    pub hint: &'static str,
}

impl KpiError {
    pub fn new(family: &'static str, kpis: &[&str], source: polars::prelude::PolarsError) -> KpiError {
        let text = source.to_string().to_lowercase();
        let hint = if ["parquet", "out of spec", "decompress", "io error", "no such file"]
            .iter()
            .any(|w| text.contains(w))
        {
            "; a store file may be damaged: `crm-kpi validate --store STORE` checks every file"
        } else {
            " (please report)"
        };
        KpiError {
            family,
            kpis: kpis.join(", "),
            source,
            hint,
        }
    }
}

/// Any library error, by phase.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Kpi(#[from] KpiError),
    #[error("{0}")]
    Usage(String),
    /// A polars failure outside the cases above: a bug or resource exhaustion, not bad input.
    #[error("internal error (please report): {0}")]
    Polars(#[from] polars::prelude::PolarsError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
