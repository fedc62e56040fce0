//! Ingest: read CRM exports, map columns and values, cast, validate every row, quarantine
//! the rows that break a rule (with their original values and a reason), merge the rest
//! into the store and commit atomically.

pub mod convert;
pub mod mapping;
pub mod merge;
pub mod read;
pub mod rules;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, IngestError};
use crate::schema::{self, Rule, TableDef};
use crate::store::{Batch, BatchFile, Transaction};
use convert::Reasons;

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
}

#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub tables: Vec<TableCounts>,
    /// Files skipped because identical content was already ingested: (file, table, generation).
    pub skipped: Vec<(PathBuf, String, u64)>,
    /// Warnings worth a user's eye (ignored columns...).
    pub notes: Vec<String>,
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

struct Input {
    path: PathBuf,
    table: &'static TableDef,
    sha256: String,
}

pub fn ingest(store: &Path, files: &[PathBuf], opts: &IngestOptions, config: &Config) -> Result<IngestReport, Error> {
    if files.is_empty() {
        return Err(Error::Usage(
            "no input files; pass CSV, NDJSON or Parquet exports".into(),
        ));
    }
    let mut inputs = Vec::new();
    for p in files {
        std::fs::metadata(p).map_err(|source| IngestError::Io {
            path: p.clone(),
            source,
        })?;
        let table = table_for(p, opts.table.as_deref())?;
        read::FileFormat::from_path(p)?;
        inputs.push(Input {
            path: p.clone(),
            table,
            sha256: sha256_file(p)?,
        });
    }
    let mut tx = Transaction::begin(store)?;
    let mut report = IngestReport::default();
    if opts.mode != Mode::Replace {
        inputs.retain(|i| match tx.base().ingested(i.table.name, &i.sha256) {
            Some((g, _)) => {
                report.skipped.push((i.path.clone(), i.table.name.to_string(), g));
                false
            }
            None => true,
        });
    }
    if inputs.is_empty() {
        return Ok(report);
    }
    let tz = config.tz();
    let batch_rows = opts.batch_rows();
    let scratch = tx.scratch_dir();
    let mut batch_files = Vec::new();
    for def in schema::TABLES {
        let mine: Vec<&Input> = inputs.iter().filter(|i| i.table.name == def.name).collect();
        if mine.is_empty() {
            continue;
        }
        // Lookups read the store as this batch leaves it so far (tables earlier in
        // dependency order are already written), only the columns they need.
        let staged = tx.staged_store();
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
        let ctx = rules::Context {
            config,
            tz,
            deals: &deals,
            fx: &fx,
        };
        let mut out = TableOutcome {
            merge: merge::TableMerge::new(def, tz, &scratch, opts.buffer_rows())?,
            quarantine: merge::QuarantineWriter::new(def.name, opts.buffer_rows()),
            read: 0,
            rejected: 0,
            by_rule: BTreeMap::new(),
        };
        let mut names = Vec::new();
        for input in &mine {
            let src = read::RawBatches::open(&input.path, batch_rows)?;
            out.merge.start_file();
            let file_counts = check_file(def, &src, config, &ctx, &mut out, &mut tx, &mut report.notes)?;
            names.push(input.path.display().to_string());
            batch_files.push(BatchFile {
                path: input.path.display().to_string(),
                table: def.name.to_string(),
                sha256: input.sha256.clone(),
                rows: file_counts.0,
                accepted: 0,
                rejected: file_counts.1,
                duplicates: 0,
            });
        }
        drop(deals);
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
                let q = quarantine_from_file(&mine[f].path, batch_rows, &rows)?;
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
        });
    }
    let generation = tx.generation();
    tx.add_batch(Batch {
        generation,
        mode: opts.mode.name().into(),
        committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        config_hash: config.hash(),
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
}

/// Reads, maps, converts and checks one file batch by batch; returns (rows read, rows rejected).
fn check_file(
    def: &TableDef,
    src: &read::RawBatches,
    config: &Config,
    ctx: &rules::Context,
    out: &mut TableOutcome,
    tx: &mut Transaction,
    notes: &mut Vec<String>,
) -> Result<(u64, u64), Error> {
    let path = src.path.clone();
    let format = src.format;
    let names = src.names();
    let mapping = config.mapping(def.name);
    let cmap = mapping::map_columns(def, &names, mapping);
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
    if !cmap.ignored.is_empty() {
        notes.push(format!(
            "{}: columns not in the {} schema are not stored (kept in quarantined rows): {}",
            path.display(),
            def.name,
            cmap.ignored.join(", ")
        ));
    }
    let file_name = path.display().to_string();
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
        let typed = convert::convert(def, &df, &cmap, mapping, ctx.tz, &mut reasons).map_err(|(column, e)| {
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
        })?;
        let mut typed = typed;
        if let Some(base) = rules::apply(def, &typed, &mut reasons, ctx)? {
            typed.with_column(base)?;
        }
        let ok = reasons.ok_mask();
        let accepted = typed.filter(&ok)?;
        drop(typed);
        let rows: Vec<u32> = (0..n)
            .filter(|i| reasons.is_ok(*i))
            .map(|i| (offset + i + 1) as u32)
            .collect();
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
            out.quarantine
                .push(quarantine_rows(&df, &file_name, offset, &bad)?, tx)?;
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

/// Original values (as text) of the given rows of a batch starting at file row `offset`,
/// with `_rule`, `_reason`, `_file`, `_row` (file-relative, 1-based).
fn quarantine_rows(
    raw: &DataFrame,
    file: &str,
    offset: usize,
    rows: &[(usize, Rule, String)],
) -> PolarsResult<DataFrame> {
    let idx = IdxCa::from_vec("idx".into(), rows.iter().map(|(i, _, _)| *i as IdxSize).collect());
    let taken = raw.take(&idx)?;
    let mut cols: Vec<Column> = Vec::new();
    for c in taken.columns() {
        if c.name() == read::READ_ERROR {
            continue;
        }
        cols.push(c.cast(&DataType::String)?);
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
    cols.push(Column::new("_file".into(), vec![file; k]));
    cols.push(Column::new(
        "_row".into(),
        rows.iter()
            .map(|(i, _, _)| (offset + *i) as u64 + 1)
            .collect::<Vec<_>>(),
    ));
    DataFrame::new(k, cols)
}

/// Quarantine rows of duplicate losers of one file (row numbers 1-based, in report order),
/// re-reading only the batches that hold them.
fn quarantine_from_file(path: &Path, batch_rows: usize, rows: &[(u32, String)]) -> Result<DataFrame, Error> {
    const ORDER: &str = "__order";
    let src = read::RawBatches::open(path, batch_rows)?;
    let file = path.display().to_string();
    let mut frames = Vec::new();
    for &(offset, len) in src.ranges() {
        let mine: Vec<(usize, usize, Rule, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| (*r as usize) > offset && (*r as usize) <= offset + len)
            .map(|(k, (r, m))| (k, *r as usize - 1 - offset, Rule::DuplicateKey, m.clone()))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let raw = src.read(offset, len)?;
        let picked: Vec<(usize, Rule, String)> = mine.iter().map(|(_, i, r, m)| (*i, *r, m.clone())).collect();
        let mut q = quarantine_rows(&raw, &file, offset, &picked)?;
        q.with_column(Column::new(
            ORDER.into(),
            mine.iter().map(|(k, ..)| *k as u64).collect::<Vec<_>>(),
        ))?;
        frames.push(q.lazy());
    }
    let q = concat_lf_diagonal(frames, UnionArgs::default())?
        .sort([ORDER], SortMultipleOptions::default())
        .collect()?;
    Ok(q.drop(ORDER)?)
}
