//! Ingest: read CRM exports, map columns and values, cast, validate every row, quarantine
//! the rows that break a rule (with their original values and a reason), merge the rest
//! into the store and commit atomically.

pub mod convert;
pub mod mapping;
pub mod merge;
pub mod parse;
pub mod read;
pub mod rules;
pub mod staging;

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, IngestError};
use crate::schema::{self, Rule, TableDef};
use crate::store::{Batch, BatchFile, Transaction};
use convert::Reasons;
use parse::ParseOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Insert new rows; a row whose key is already stored replaces it (unless the stored
    /// row has a later `updated_at`).
    #[default]
    Upsert,
    /// Insert new rows; a row whose key is already stored is reported as a duplicate.
    Append,
    /// Replace each ingested table with the rows of this batch.
    Replace,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Upsert => "upsert",
            Mode::Append => "append",
            Mode::Replace => "replace",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub mode: Mode,
    /// Table of every file, instead of guessing it from the file name.
    pub table: Option<String>,
    /// Rows read, checked and held in memory at a time (default `DEFAULT_BATCH_ROWS`, or
    /// the `CRM_KPI_INGEST_BATCH_ROWS` environment variable). Peak memory grows with it;
    /// the result does not depend on it.
    pub batch_rows: Option<usize>,
}

/// Rows per batch unless `IngestOptions::batch_rows` says otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 1 << 20;

impl IngestOptions {
    pub fn batch_rows(&self) -> usize {
        self.batch_rows
            .or_else(|| {
                std::env::var("CRM_KPI_INGEST_BATCH_ROWS")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(DEFAULT_BATCH_ROWS)
            .max(1)
    }

    /// Rows buffered per table (accepted rows before spilling, quarantined rows per file).
    fn buffer_rows(&self) -> usize {
        self.batch_rows().saturating_mul(2)
    }
}

/// Counts for one table of one ingest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableCounts {
    pub table: String,
    pub files: usize,
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Rows in the store after the commit.
    pub stored: u64,
    /// Rejected rows by rule code (duplicates under `duplicate_key`).
    pub by_rule: BTreeMap<String, u64>,
    /// Values kept but changed or counted, by `<rule>:<column>` (lenient nulls, blanks kept).
    pub adjusted: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub tables: Vec<TableCounts>,
    /// Files skipped because identical content was already ingested: (file, table, generation).
    pub skipped: Vec<(PathBuf, String, u64)>,
    /// Warnings worth a user's eye (ignored columns...).
    pub notes: Vec<String>,
    /// What each mapping source read, made and changed.
    pub sources: Vec<staging::SourceReport>,
    /// The generation committed, if anything was.
    pub generation: Option<u64>,
}

impl IngestReport {
    pub fn rejected(&self) -> u64 {
        self.tables.iter().map(|t| t.rejected).sum()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (p, t, g) in &self.skipped {
            s.push_str(&format!(
                "skipped {} ({t}): same content already ingested in batch {g}\n",
                p.display()
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        let used: Vec<&staging::SourceReport> = self
            .sources
            .iter()
            .filter(|r| !r.files.is_empty() || r.rows > 0)
            .collect();
        if !used.is_empty() {
            s.push_str(&format!(
                "{:<34} {:<14} {:>8} {:>8}  files\n",
                "mapping source", "table", "read", "rows"
            ));
            for r in &used {
                let files: Vec<&str> = r
                    .files
                    .iter()
                    .map(|f| Path::new(f).file_name().and_then(|n| n.to_str()).unwrap_or(f))
                    .collect();
                s.push_str(&format!(
                    "{:<34} {:<14} {:>8} {:>8}  {}\n",
                    r.name,
                    r.table.as_deref().unwrap_or("(lookup)"),
                    r.read,
                    r.rows,
                    files.join(", ")
                ));
            }
            let rules: Vec<String> = used
                .iter()
                .flat_map(|r| {
                    r.counts
                        .by_rule
                        .iter()
                        .map(move |(k, n)| format!("  {:<32} {k:<36} {n:>8}", r.name))
                })
                .collect();
            if !rules.is_empty() {
                s.push_str("rows and values the mapping dropped, added or rewrote, by rule:\n");
                s.push_str(&rules.join("\n"));
                s.push('\n');
            }
            for r in &used {
                for n in &r.counts.notes {
                    s.push_str(&format!("note: {n}\n"));
                }
            }
        }
        if !self.tables.is_empty() {
            s.push_str(&format!(
                "{:<14} {:>5} {:>10} {:>10} {:>9} {:>11} {:>10}\n",
                "table", "files", "read", "accepted", "rejected", "duplicates", "stored"
            ));
            for t in &self.tables {
                s.push_str(&format!(
                    "{:<14} {:>5} {:>10} {:>10} {:>9} {:>11} {:>10}\n",
                    t.table, t.files, t.read, t.accepted, t.rejected, t.duplicates, t.stored
                ));
            }
            let rules: Vec<String> = self
                .tables
                .iter()
                .flat_map(|t| {
                    t.by_rule
                        .iter()
                        .map(move |(r, n)| format!("  {:<14} {r:<22} {n:>8}", t.table))
                })
                .collect();
            if !rules.is_empty() {
                s.push_str("quarantined rows by rule:\n");
                s.push_str(&rules.join("\n"));
                s.push('\n');
            }
            let adjusted: Vec<String> = self
                .tables
                .iter()
                .flat_map(|t| {
                    t.adjusted
                        .iter()
                        .map(move |(r, n)| format!("  {:<14} {r:<36} {n:>8}", t.table))
                })
                .collect();
            if !adjusted.is_empty() {
                s.push_str("values kept but changed or counted, by rule:\n");
                s.push_str(&adjusted.join("\n"));
                s.push('\n');
            }
        }
        match self.generation {
            Some(g) => s.push_str(&format!("committed generation {g}\n")),
            None => s.push_str("nothing to commit; the store is unchanged\n"),
        }
        s
    }
}

/// Which table a file holds: `--table`, else the file name (`leads.csv`, `leads-2024.csv`).
pub fn table_for(path: &Path, forced: Option<&str>) -> Result<&'static TableDef, IngestError> {
    let unknown = || IngestError::UnknownTable {
        path: path.to_path_buf(),
        tables: schema::table_names().join(", "),
        hint: String::new(),
    };
    if let Some(t) = forced {
        return schema::table(t).ok_or_else(unknown);
    }
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let stem = stem.split('.').next().unwrap_or("");
    let mut candidates: Vec<&'static TableDef> = schema::TABLES
        .iter()
        .filter(|t| {
            stem == t.name
                || stem
                    .strip_prefix(t.name)
                    .is_some_and(|rest| rest.starts_with(['-', '_']))
        })
        .collect();
    candidates.sort_by_key(|t| std::cmp::Reverse(t.name.len()));
    candidates.first().copied().ok_or_else(unknown)
}

fn sha256_file(path: &Path) -> Result<String, IngestError> {
    let mut f = std::fs::File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// One input of a table: a canonical file, or the rows a mapping source staged.
enum Source {
    File(PathBuf),
    Staged(Box<staging::StagedInput>),
}

struct Input {
    table: &'static TableDef,
    source: Source,
    /// What decides the input's rows, before the store's state: the file's content hash, or
    /// the source name and every staged file's hash.
    content: String,
}

impl Input {
    fn label(&self) -> String {
        match &self.source {
            Source::File(p) => p.display().to_string(),
            Source::Staged(s) => {
                let files: Vec<String> = s.files.iter().map(|p| p.display().to_string()).collect();
                format!("{} (source {})", files.join(", "), s.source)
            }
        }
    }
}

/// Tables whose stored rows decide the fate of a table's rows (references, fx rates, stages).
fn depends_on(def: &TableDef) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = match def.name {
        "stage_events" => vec!["opportunities", "stages"],
        "orders" | "activities" => vec!["opportunities"],
        _ => vec![],
    };
    if def.money.is_some() {
        out.push("fx_rates");
    }
    out
}

fn sha256_text(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The input's fate key: its content, the config and the state of the tables its rules read.
/// A file is skipped only when all three are unchanged, so adding the fx rates a file's rows
/// were missing, or changing the mapping, brings them in again.
fn fate_key(input: &Input, config_hash: &str, store: &crate::store::Store) -> String {
    let mut parts: Vec<String> = vec![input.content.clone(), config_hash.to_string()];
    for t in depends_on(input.table) {
        let files = store
            .manifest()
            .tables
            .get(t)
            .map(|e| {
                e.files
                    .iter()
                    .map(|f| format!("{}:{}", f.path, f.rows))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        parts.push(format!("{t}={files}"));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    sha256_text(&refs)
}

fn unknown_table_hint(path: &Path) -> IngestError {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let guess = if name.starts_with("hubspot-crm-exports") {
        Some("hubspot")
    } else if [
        "opportunity",
        "lead",
        "account",
        "user",
        "task",
        "event",
        "currencytype",
        "datedconversionrate",
        "extract",
    ]
    .iter()
    .any(|p| name.starts_with(p))
    {
        Some("salesforce")
    } else if ["deals-", "organizations-", "persons-", "activities-", "leads-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        Some("pipedrive")
    } else {
        None
    };
    IngestError::UnknownTable {
        path: path.to_path_buf(),
        tables: schema::table_names().join(", "),
        hint: match guess {
            Some(p) => format!("; if this is a {p} export, pass --preset {p} (crm-kpi preset show {p})"),
            None => "; for a CRM's own export, pass --preset salesforce|hubspot|pipedrive or map it with [[sources]] (docs/mapping.md)".into(),
        },
    }
}

pub fn ingest(store: &Path, files: &[PathBuf], opts: &IngestOptions, config: &Config) -> Result<IngestReport, Error> {
    if files.is_empty() {
        return Err(Error::Usage(
            "no input files; pass CSV, NDJSON or Parquet exports".into(),
        ));
    }
    // Files are known by their absolute path (in quarantined rows' `_file`, in the batch log),
    // so reading one again supersedes what an earlier batch said of it.
    let files: Vec<PathBuf> = files
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let sources = staging::sources(config);
    let (claimed, plain) = if opts.table.is_some() {
        (Vec::new(), files.clone())
    } else {
        staging::claim(&files, &sources)
    };
    let mut inputs = Vec::new();
    let mut skipped_files: Vec<String> = Vec::new();
    for p in &plain {
        std::fs::metadata(p).map_err(|source| IngestError::Io {
            path: p.clone(),
            source,
        })?;
        let table = match opts.table.as_deref() {
            Some(_) => table_for(p, opts.table.as_deref())?,
            None => match table_for(p, None) {
                Ok(t) => t,
                // A preset takes a whole export folder: the objects it does not read are
                // left out, and listed.
                // A report export is the wrong kind of export: say what to export instead.
                Err(_) if config.preset.is_some() => {
                    if read::FileFormat::from_path(p).ok() == Some(read::FileFormat::Csv)
                        && let Ok(Some(m)) = read::report_export(p)
                    {
                        return Err(IngestError::unreadable(p, "CSV", m).into());
                    }
                    skipped_files.push(format!("{}: no source of the preset reads it", p.display()));
                    continue;
                }
                Err(_) => return Err(unknown_table_hint(p).into()),
            },
        };
        read::FileFormat::from_path(p)?;
        inputs.push(Input {
            table,
            source: Source::File(p.clone()),
            content: sha256_file(p)?,
        });
    }
    let mut staged_hashes = Vec::new();
    for (p, _) in &claimed {
        std::fs::metadata(p).map_err(|source| IngestError::Io {
            path: p.clone(),
            source,
        })?;
        read::FileFormat::from_path(p)?;
        staged_hashes.push(sha256_file(p)?);
    }
    staged_hashes.sort();
    let mut tx = Transaction::begin(store)?;
    let mut report = IngestReport::default();
    if !claimed.is_empty() {
        let base = tx.base_store();
        let staged = staging::stage(&claimed, &sources, config, Some(&base))?;
        skipped_files.extend(staged.unread.iter().cloned());
        for p in &staged.canonical {
            inputs.push(Input {
                table: table_for(p, None)?,
                source: Source::File(p.clone()),
                content: sha256_file(p)?,
            });
        }
        let all_hashes = staged_hashes.join(",");
        for si in staged.inputs {
            inputs.push(Input {
                table: si.table,
                content: sha256_text(&[&si.source, &all_hashes]),
                source: Source::Staged(Box::new(si)),
            });
        }
        report.sources = staged.reports;
    }
    report
        .notes
        .extend(skipped_files.into_iter().map(|f| format!("not read: {f}")));
    let config_hash = config.hash();
    let tz = config.tz();
    let batch_rows = opts.batch_rows();
    let scratch = tx.scratch_dir();
    let mut batch_files = Vec::new();
    let mut committed_anything = false;
    for def in schema::TABLES {
        // Lookups read the store as this batch leaves it so far (tables earlier in
        // dependency order are already written), only the columns they need.
        let staged = tx.staged_store();
        let mut mine: Vec<(&Input, String)> = Vec::new();
        for input in inputs.iter().filter(|i| i.table.name == def.name) {
            let fate = fate_key(input, &config_hash, &staged);
            if opts.mode != Mode::Replace
                && let Some((g, _)) = tx.base().ingested(def.name, &fate)
            {
                report
                    .skipped
                    .push((PathBuf::from(input.label()), def.name.to_string(), g));
                continue;
            }
            mine.push((input, fate));
        }
        if mine.is_empty() {
            continue;
        }
        committed_anything = true;
        let lookup = |name: &'static str, cols: &[&str]| -> Result<DataFrame, Error> {
            let def = schema::table(name).expect("canonical table");
            let cols: Vec<Expr> = cols.iter().map(|c| col(*c)).collect();
            Ok(staged.scan_table(def)?.select(cols).collect()?)
        };
        let deals = match def.name {
            "stage_events" | "orders" | "activities" => {
                rules::deals_from(&lookup("opportunities", &["opportunity_id", "created_at"])?)?
            }
            _ => rules::Deals::new(),
        };
        let fx = match def.money {
            Some(_) => rules::Fx::from_table(
                &config.base_currency,
                &lookup("fx_rates", &["currency", "date", "rate_to_base"])?,
            )?,
            None => rules::Fx::default(),
        };
        let stage_names: Vec<String> = match def.name {
            "stage_events" => {
                let stored = staged.read_table(&schema::STAGES)?;
                let names: Vec<String> = stored
                    .column("stage")?
                    .str()?
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect();
                if names.is_empty() {
                    config.stage_names().iter().map(|s| s.to_string()).collect()
                } else {
                    names
                }
            }
            _ => Vec::new(),
        };
        let ctx = rules::Context {
            config,
            tz,
            deals: &deals,
            fx: &fx,
            stages: &stage_names,
        };
        let mut out = TableOutcome {
            merge: merge::TableMerge::new(def, tz, &scratch, opts.buffer_rows())?,
            quarantine: merge::QuarantineWriter::new(def.name, opts.buffer_rows()),
            read: 0,
            rejected: 0,
            by_rule: BTreeMap::new(),
            adjusted: BTreeMap::new(),
        };
        let mut names = Vec::new();
        let mut table_rows = 0u64;
        for (input, fate) in &mine {
            let (src, parse, labels) = match &input.source {
                Source::File(p) => {
                    let mut po = ParseOptions::new(tz);
                    po.lenient = config.mapping(def.name).is_some_and(|m| m.lenient);
                    (read::RawBatches::open(p, batch_rows)?, po, BTreeMap::new())
                }
                Source::Staged(si) => (
                    read::RawBatches::from_frame(
                        Path::new(&input.label()),
                        read::FileFormat::Csv,
                        si.df.clone(),
                        batch_rows,
                    ),
                    si.opts.clone(),
                    si.labels.clone(),
                ),
            };
            out.merge.start_file();
            let file_counts = check_file(
                def,
                &src,
                config,
                &parse,
                &labels,
                &ctx,
                &mut out,
                &mut tx,
                &mut report.notes,
            )?;
            names.push(input.label());
            tracing::info!(
                table = def.name,
                file = %input.label(),
                rows = file_counts.0,
                rejected = file_counts.1,
                "read"
            );
            table_rows += file_counts.0;
            crate::cli::log::set_progress(format!(
                "ingesting {}: {table_rows} rows read from {} of {} files",
                def.name,
                names.len(),
                mine.len()
            ));
            batch_files.push(BatchFile {
                path: input.label(),
                table: def.name.to_string(),
                sha256: fate.clone(),
                rows: file_counts.0,
                accepted: 0,
                rejected: file_counts.1,
                duplicates: 0,
            });
        }
        drop(deals);
        // This batch's verdict on the files it read replaces what earlier batches quarantined
        // from them: the quarantine stands as of the latest read of each file.
        let reread: HashSet<String> = mine
            .iter()
            .flat_map(|(input, _)| match &input.source {
                Source::File(p) => vec![p.display().to_string()],
                Source::Staged(si) => si.files.iter().map(|p| p.display().to_string()).collect(),
            })
            .collect();
        let superseded = tx.supersede_quarantine(def.name, &reread)?;
        if superseded > 0 {
            report.notes.push(format!(
                "{}: {superseded} rows quarantined by earlier batches were read again and judged anew",
                def.name
            ));
        }
        let base = tx.base_store();
        let existing = match opts.mode {
            Mode::Replace => None,
            _ => Some(&base),
        };
        let TableOutcome {
            merge,
            mut quarantine,
            read,
            rejected,
            mut by_rule,
            adjusted,
        } = out;
        let merged = merge.finish(existing, opts.mode, &names, batch_rows, &mut tx)?;
        let mine_files = batch_files.iter_mut().filter(|f| f.table == def.name);
        for (f, (accepted, duplicates)) in mine_files.zip(&merged.per_file) {
            f.accepted = *accepted;
            f.duplicates = *duplicates;
        }
        // Duplicate losers go to quarantine after the rejected rows, with their original values.
        let duplicates = merged.losers.len() as u64;
        if duplicates > 0 {
            *by_rule.entry(Rule::DuplicateKey.code().to_string()).or_default() += duplicates;
            let mut per_file: BTreeMap<usize, Vec<(u32, String)>> = BTreeMap::new();
            for (f, r, m) in merged.losers {
                per_file.entry(f).or_default().push((r, m));
            }
            for (f, rows) in per_file {
                let q = quarantine_losers(mine[f].0, batch_rows, &rows)?;
                quarantine.push(q, &mut tx)?;
            }
        }
        quarantine.flush(&mut tx)?;
        report.tables.push(TableCounts {
            table: def.name.to_string(),
            files: mine.len(),
            read,
            accepted: merged.accepted,
            rejected,
            duplicates,
            stored: merged.stored,
            by_rule,
            adjusted,
        });
    }
    if !committed_anything {
        return Ok(report);
    }
    let generation = tx.generation();
    tx.add_batch(Batch {
        generation,
        mode: opts.mode.name().into(),
        committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        config_hash,
        files: batch_files,
    });
    tx.commit()?;
    report.generation = Some(generation);
    Ok(report)
}

/// The rows of one table from all files of a batch, as they are checked.
struct TableOutcome {
    merge: merge::TableMerge,
    quarantine: merge::QuarantineWriter,
    read: u64,
    rejected: u64,
    by_rule: BTreeMap<String, u64>,
    adjusted: convert::Adjusted,
}

/// Columns whose blanks are kept as null but counted (a deal without amount or account still
/// counts in win rates and funnels).
const COUNTED_BLANKS: &[(&str, &str)] = &[("opportunities", "amount"), ("opportunities", "account_id")];

/// Reads, maps, converts and checks one input batch by batch; returns (rows read, rows rejected).
#[allow(clippy::too_many_arguments)]
fn check_file(
    def: &TableDef,
    src: &read::RawBatches,
    config: &Config,
    parse: &ParseOptions,
    labels: &BTreeMap<&'static str, String>,
    ctx: &rules::Context,
    out: &mut TableOutcome,
    tx: &mut Transaction,
    notes: &mut Vec<String>,
) -> Result<(u64, u64), Error> {
    let path = src.path.clone();
    let format = src.format;
    let names = src.names();
    let mapping = config.mapping(def.name);
    let mut cmap = mapping::map_columns(def, &names, mapping);
    cmap.labels = labels.clone();
    if let Some((input, column)) = cmap.conflicts.first() {
        let mut inputs = vec![cmap.columns[column].clone(), input.clone()];
        inputs.extend(
            cmap.conflicts
                .iter()
                .skip(1)
                .filter(|(_, c)| c == column)
                .map(|(i, _)| i.clone()),
        );
        return Err(IngestError::AmbiguousColumns {
            path,
            table: def.name.into(),
            column: column.to_string(),
            inputs,
        }
        .into());
    }
    let missing: Vec<String> = def
        .input_columns()
        .filter(|c| c.required && !cmap.columns.contains_key(c.name))
        .map(|c| c.name.to_string())
        .collect();
    if !missing.is_empty() {
        let hint = if names.len() == 1 && format == read::FileFormat::Csv {
            "; the header has a single column: is the file delimited by , ; TAB or |?".to_string()
        } else if !labels.is_empty() {
            "; map them in the source's [sources.columns]".to_string()
        } else {
            format!(
                "; rename them in the file or map them in crm-kpi.toml under [mapping.{}.columns]",
                def.name
            )
        };
        return Err(IngestError::MissingColumns {
            path,
            table: def.name.into(),
            missing,
            found: names.join(", "),
            hint,
        }
        .into());
    }
    if !cmap.ignored.is_empty() && labels.is_empty() {
        notes.push(format!(
            "{}: columns not in the {} schema are not stored (kept in quarantined rows): {}",
            path.display(),
            def.name,
            cmap.ignored.join(", ")
        ));
    }
    convert::count(&mut out.adjusted, "blank_line", "(skipped)", src.blank_lines);
    let file_name = path.display().to_string();
    let staged = !labels.is_empty();
    let (mut read_rows, mut rejected) = (0u64, 0u64);
    for &(offset, len) in src.ranges() {
        let df = src.read(offset, len)?;
        let n = df.height();
        let mut reasons = Reasons::new(n);
        if let Ok(errs) = df.column(read::READ_ERROR) {
            for (i, e) in errs.str()?.iter().enumerate() {
                if let Some(e) = e {
                    reasons.set(i, Rule::Unparseable, e.to_string());
                }
            }
        }
        let typed = convert::convert(def, &df, &cmap, mapping, parse, &mut reasons, &mut out.adjusted).map_err(
            |(column, e)| {
                let canonical = cmap
                    .columns
                    .iter()
                    .find(|(_, i)| **i == column)
                    .and_then(|(c, _)| def.column(c));
                IngestError::ColumnType {
                    path: path.clone(),
                    table: def.name.into(),
                    dtype: df.column(&column).map(|c| c.dtype().to_string()).unwrap_or_default(),
                    column,
                    expected: format!(
                        "{} values ({})",
                        canonical.map_or("text", |c| c.kind.name()),
                        crate::error::first_line(&e.to_string())
                    ),
                }
            },
        )?;
        let mut typed = typed;
        if let Some(base) = rules::apply(def, &typed, &mut reasons, ctx)? {
            typed.with_column(base)?;
        }
        let ok = reasons.ok_mask();
        let accepted = typed.filter(&ok)?;
        drop(typed);
        for (_, column) in COUNTED_BLANKS.iter().filter(|(t, _)| *t == def.name) {
            convert::count(
                &mut out.adjusted,
                "blank_kept_as_null",
                column,
                accepted.column(column)?.null_count() as u64,
            );
        }
        if def.name == "opportunities" {
            let with_amount = accepted.column("amount")?.is_not_null();
            let no_base = accepted.column("amount_base")?.is_null();
            let n = (&with_amount & &no_base).sum().unwrap_or(0) as u64;
            convert::count(
                &mut out.adjusted,
                "no_fx_rate_kept_without_base_amount",
                "amount_base",
                n,
            );
        }
        // Rows are reported by their record number in the file; staged rows by position
        // (their file and record number travel with them).
        let record: Vec<u64> = match df.column(read::ROW) {
            Ok(r) if !staged => r.cast(&DataType::UInt64)?.u64()?.into_no_null_iter().collect(),
            _ => (offset as u64 + 1..=(offset + n) as u64).collect(),
        };
        let rows: Vec<u32> = (0..n).filter(|i| reasons.is_ok(*i)).map(|i| record[i] as u32).collect();
        let bad: Vec<(usize, Rule, String)> = reasons
            .0
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|(rule, m)| (i, rule, m)))
            .collect();
        for (_, rule, _) in &bad {
            *out.by_rule.entry(rule.code().to_string()).or_default() += 1;
        }
        if !bad.is_empty() {
            out.quarantine.push(quarantine_rows(&df, &file_name, &bad)?, tx)?;
        }
        drop(df);
        out.merge.add(accepted, &rows)?;
        read_rows += n as u64;
        rejected += bad.len() as u64;
    }
    out.read += read_rows;
    out.rejected += rejected;
    Ok((read_rows, rejected))
}

/// Original values (as text) of the given rows of a batch, with `_rule`, `_reason`, `_file`
/// and `_row` (the record number in the file; a staged row's own file and record).
fn quarantine_rows(raw: &DataFrame, file: &str, rows: &[(usize, Rule, String)]) -> PolarsResult<DataFrame> {
    let idx = IdxCa::from_vec("idx".into(), rows.iter().map(|(i, _, _)| *i as IdxSize).collect());
    let taken = raw.take(&idx)?;
    let mut cols: Vec<Column> = Vec::new();
    for c in taken.columns() {
        if read::is_internal(c.name()) {
            continue;
        }
        // An input column named like a column the quarantine adds keeps its value, renamed.
        let c = read::text_column(c)?;
        let c = match c.name().as_str() {
            "_rule" | "_reason" | "_file" | "_row" => {
                let renamed = format!("input{}", c.name());
                c.with_name(renamed.into())
            }
            _ => c,
        };
        cols.push(c);
    }
    let k = rows.len();
    cols.push(Column::new(
        "_rule".into(),
        rows.iter().map(|(_, r, _)| r.code()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "_reason".into(),
        rows.iter()
            .map(|(_, r, m)| format!("{}: {m}", r.code()))
            .collect::<Vec<_>>(),
    ));
    let files: Vec<String> = match taken.column(read::FILE) {
        Ok(f) => f.str()?.iter().map(|v| v.unwrap_or(file).to_string()).collect(),
        Err(_) => vec![file.to_string(); k],
    };
    cols.push(Column::new("_file".into(), files));
    let record: Vec<Option<u64>> = taken
        .column(read::ROW)?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .collect();
    cols.push(Column::new("_row".into(), record));
    DataFrame::new(k, cols)
}

/// Quarantine rows of the duplicate losers of one input (rows as reported: record numbers of a
/// file, positions of staged rows), in report order. A file is read again, batch by batch.
fn quarantine_losers(input: &Input, batch_rows: usize, rows: &[(u32, String)]) -> Result<DataFrame, Error> {
    const ORDER: &str = "__crm_kpi_order";
    let want: BTreeMap<u64, (usize, String)> = rows
        .iter()
        .enumerate()
        .map(|(k, (r, m))| (*r as u64, (k, m.clone())))
        .collect();
    let label = input.label();
    let mut frames = Vec::new();
    match &input.source {
        Source::Staged(si) => {
            let picked: Vec<(usize, Rule, String)> = want
                .iter()
                .map(|(r, (_, m))| (*r as usize - 1, Rule::DuplicateKey, m.clone()))
                .collect();
            let mut q = quarantine_rows(&si.df, &label, &picked)?;
            q.with_column(Column::new(
                ORDER.into(),
                want.values().map(|(k, _)| *k as u64).collect::<Vec<_>>(),
            ))?;
            frames.push(q.lazy());
        }
        Source::File(path) => {
            let src = read::RawBatches::open(path, batch_rows)?;
            for &(offset, len) in src.ranges() {
                let raw = src.read(offset, len)?;
                let record: Vec<u64> = raw
                    .column(read::ROW)?
                    .cast(&DataType::UInt64)?
                    .u64()?
                    .into_no_null_iter()
                    .collect();
                let mine: Vec<(usize, usize, String)> = record
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| want.get(r).map(|(k, m)| (*k, i, m.clone())))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let picked: Vec<(usize, Rule, String)> = mine
                    .iter()
                    .map(|(_, i, m)| (*i, Rule::DuplicateKey, m.clone()))
                    .collect();
                let mut q = quarantine_rows(&raw, &label, &picked)?;
                q.with_column(Column::new(
                    ORDER.into(),
                    mine.iter().map(|(k, ..)| *k as u64).collect::<Vec<_>>(),
                ))?;
                frames.push(q.lazy());
            }
        }
    }
    let q = concat_lf_diagonal(frames, UnionArgs::default())?
        .sort([ORDER], SortMultipleOptions::default())
        .collect()?;
    Ok(q.drop(ORDER)?)
}
