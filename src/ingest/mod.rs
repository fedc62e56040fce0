//! Ingest: read CRM exports, map columns and values, cast, validate every row, quarantine
//! the rows that break a rule (with their original values and a reason), merge the rest
//! into the store and commit atomically.

pub mod convert;
pub mod mapping;
pub mod read;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, IngestError, StoreError};
use crate::schema::{self, Rule, TableDef, UPDATED_AT};
use crate::store::{Batch, BatchFile, Transaction};
use convert::Reasons;
use read::RawFile;

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
    let base = tx.base_store();
    // Tables merged in this batch, for the lookups of the tables after them.
    let mut merged: HashMap<&'static str, DataFrame> = HashMap::new();
    let mut batch_files = Vec::new();
    for def in schema::TABLES {
        let mine: Vec<&Input> = inputs.iter().filter(|i| i.table.name == def.name).collect();
        if mine.is_empty() {
            continue;
        }
        let lookup = |name: &'static str, merged: &HashMap<&'static str, DataFrame>| -> Result<DataFrame, StoreError> {
            match merged.get(name) {
                Some(df) => Ok(df.clone()),
                None => base.read_table(schema::table(name).expect("canonical table")),
            }
        };
        let deals = match def.name {
            "stage_events" | "orders" | "activities" => rules::deals_from(&lookup("opportunities", &merged)?)?,
            _ => rules::Deals::new(),
        };
        let fx = match def.money {
            Some(_) => rules::Fx::from_table(&config.base_currency, &lookup("fx_rates", &merged)?)?,
            None => rules::Fx::default(),
        };
        let ctx = rules::Context {
            config,
            tz,
            deals: &deals,
            fx: &fx,
        };
        let mut out = TableOutcome::default();
        for input in &mine {
            let raw = read::read_file(&input.path)?;
            let file_counts = check_file(def, raw, config, &ctx, &mut out, &mut report.notes)?;
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
        let existing = match opts.mode {
            Mode::Replace => None,
            _ => Some(base.read_table(def)?),
        };
        let (table_df, counts, per_file) = merge(def, out, existing, opts.mode, &mut tx)?;
        let mine_files = batch_files.iter_mut().filter(|f| f.table == def.name);
        for (f, (accepted, duplicates)) in mine_files.zip(per_file) {
            f.accepted = accepted;
            f.duplicates = duplicates;
        }
        tx.write_table(def, &table_df, tz)?;
        merged.insert(def.name, table_df);
        report.tables.push(TableCounts {
            files: mine.len(),
            ..counts
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

/// The rows of one table from all files of a batch, checked.
#[derive(Default)]
struct TableOutcome {
    /// Accepted rows, typed, with provenance columns `__file` and `__row`.
    accepted: Vec<DataFrame>,
    /// Raw rows of each file (to quarantine duplicates later), by file index.
    raws: Vec<(String, DataFrame)>,
    /// Rejected rows, as quarantine frames.
    quarantine: Vec<DataFrame>,
    read: u64,
    rejected: u64,
    by_rule: BTreeMap<String, u64>,
}

const FILE_IDX: &str = "__file";
const ROW_NO: &str = "__row";

/// Reads, maps, converts and checks one file; returns (rows read, rows rejected).
fn check_file(
    def: &TableDef,
    raw: RawFile,
    config: &Config,
    ctx: &rules::Context,
    out: &mut TableOutcome,
    notes: &mut Vec<String>,
) -> Result<(u64, u64), Error> {
    let path = raw.path.clone();
    let format = raw.format;
    let df = raw.df;
    let n = df.height();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .filter(|s| s != read::READ_ERROR && s != read::RAW_LINE)
        .collect();
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
    let file_idx = out.raws.len() as u32;
    let file_name = path.display().to_string();
    let ok = reasons.ok_mask();
    let mut accepted = typed.filter(&ok)?;
    let rows: Vec<u32> = (0..n as u32)
        .filter(|i| reasons.is_ok(*i as usize))
        .map(|i| i + 1)
        .collect();
    accepted.with_column(Column::new(FILE_IDX.into(), vec![file_idx; rows.len()]))?;
    accepted.with_column(Column::new(ROW_NO.into(), rows))?;
    let bad: Vec<(usize, Rule, String)> = reasons
        .0
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|(rule, m)| (i, *rule, m.clone())))
        .collect();
    for (_, rule, _) in &bad {
        *out.by_rule.entry(rule.code().to_string()).or_default() += 1;
    }
    let rejected = bad.len() as u64;
    if !bad.is_empty() {
        out.quarantine.push(quarantine_rows(&df, &file_name, &bad)?);
    }
    out.accepted.push(accepted);
    out.raws.push((file_name, df));
    out.read += n as u64;
    out.rejected += rejected;
    Ok((n as u64, rejected))
}

/// Original values (as text) of the given rows, with `_rule`, `_reason`, `_file`, `_row`.
fn quarantine_rows(raw: &DataFrame, file: &str, rows: &[(usize, Rule, String)]) -> PolarsResult<DataFrame> {
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
        rows.iter().map(|(i, _, _)| *i as u64 + 1).collect::<Vec<_>>(),
    ));
    DataFrame::new(k, cols)
}

/// Primary-key text of every row (columns joined by U+001F; null as U+0000).
fn keys(df: &DataFrame, pk: &[&str]) -> PolarsResult<Vec<String>> {
    let cols: Vec<StringChunked> = pk
        .iter()
        .map(|c| Ok(df.column(c)?.cast(&DataType::String)?.str()?.clone()))
        .collect::<PolarsResult<_>>()?;
    Ok((0..df.height())
        .map(|i| {
            cols.iter()
                .map(|c| c.get(i).unwrap_or("\u{0}"))
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect())
}

fn updated(df: &DataFrame) -> PolarsResult<Int64Chunked> {
    Ok(df.column(UPDATED_AT)?.cast(&DataType::Int64)?.i64()?.clone())
}

/// Later `updated_at` wins; without both, the later-read row wins.
fn newer(candidate: Option<i64>, incumbent: Option<i64>) -> bool {
    match (candidate, incumbent) {
        (Some(c), Some(i)) => c >= i,
        _ => true,
    }
}

/// Deduplicates the batch, merges it with the stored table by mode, and queues the
/// quarantine file. Returns the new table, its counts, and (accepted, duplicates) per file.
#[allow(clippy::type_complexity)]
fn merge(
    def: &TableDef,
    mut out: TableOutcome,
    existing: Option<DataFrame>,
    mode: Mode,
    tx: &mut Transaction,
) -> Result<(DataFrame, TableCounts, Vec<(u64, u64)>), Error> {
    let lfs: Vec<LazyFrame> = out.accepted.drain(..).map(|d| d.lazy()).collect();
    let batch = concat(
        lfs,
        UnionArgs {
            rechunk: true,
            ..Default::default()
        },
    )?
    .collect()?;
    let bkeys = keys(&batch, def.primary_key)?;
    let bupd = updated(&batch)?;
    let files = batch.column(FILE_IDX)?.u32()?.clone();
    let rows = batch.column(ROW_NO)?.u32()?.clone();
    let origin = |i: usize| (files.get(i).unwrap_or(0) as usize, rows.get(i).unwrap_or(0) as usize);
    // In-batch duplicates: one winner per key.
    let mut winner: HashMap<&str, usize> = HashMap::with_capacity(bkeys.len());
    let mut losers: Vec<(usize, usize, String)> = Vec::new(); // (file, row, reason)
    let describe = |i: usize, out: &TableOutcome| {
        let (f, r) = origin(i);
        format!("row {r} of {}", out.raws[f].0)
    };
    let pk_text = |k: &str| {
        format!(
            "({}) = ({})",
            def.primary_key.join(", "),
            k.replace('\u{1f}', ", ").replace('\u{0}', "null")
        )
    };
    for (i, k) in bkeys.iter().enumerate() {
        match winner.get(k.as_str()).copied() {
            None => {
                winner.insert(k, i);
            }
            Some(w) => {
                let (lose, win) = if newer(bupd.get(i), bupd.get(w)) {
                    (w, i)
                } else {
                    (i, w)
                };
                winner.insert(k, win);
                let (f, r) = origin(lose);
                losers.push((
                    f,
                    r,
                    format!("duplicate primary key {}; {} wins", pk_text(k), describe(win, &out)),
                ));
            }
        }
    }
    let mut keep = vec![false; batch.height()];
    for &i in winner.values() {
        keep[i] = true;
    }
    // Against the stored table.
    let mut table = match existing {
        Some(existing) if existing.height() > 0 => {
            let ekeys = keys(&existing, def.primary_key)?;
            let eupd = updated(&existing)?;
            let stored: HashMap<&str, usize> = ekeys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
            let mut replaced = vec![false; existing.height()];
            for (i, k) in bkeys.iter().enumerate() {
                if !keep[i] {
                    continue;
                }
                let Some(&e) = stored.get(k.as_str()) else { continue };
                let (f, r) = origin(i);
                if mode == Mode::Append {
                    keep[i] = false;
                    losers.push((
                        f,
                        r,
                        format!(
                            "duplicate primary key {}: already stored (append mode keeps the stored row)",
                            pk_text(k)
                        ),
                    ));
                } else if newer(bupd.get(i), eupd.get(e)) {
                    replaced[e] = true;
                } else {
                    keep[i] = false;
                    losers.push((
                        f,
                        r,
                        format!(
                            "duplicate primary key {}: the stored row has a later updated_at",
                            pk_text(k)
                        ),
                    ));
                }
            }
            let still: BooleanChunked = replaced.iter().map(|r| !r).collect();
            Some(existing.filter(&still)?)
        }
        _ => None,
    };
    let mut per_file = vec![(0u64, 0u64); out.raws.len()];
    for (i, k) in keep.iter().enumerate() {
        if *k {
            per_file[origin(i).0].0 += 1;
        }
    }
    for (f, _, _) in &losers {
        per_file[*f].1 += 1;
    }
    let keep_mask: BooleanChunked = keep.iter().copied().collect();
    let new_rows = batch.filter(&keep_mask)?.drop_many([FILE_IDX, ROW_NO]);
    let accepted = new_rows.height() as u64;
    let merged = match table.take() {
        Some(old) => {
            let mut old = old;
            old.vstack_mut_owned(new_rows.select(old.get_column_names_owned())?)?;
            old
        }
        None => new_rows,
    };
    // Quarantine: rejected rows, then duplicate losers (original values from their files).
    let duplicates = losers.len() as u64;
    if duplicates > 0 {
        *out.by_rule.entry(Rule::DuplicateKey.code().to_string()).or_default() += duplicates;
        let mut per_file: BTreeMap<usize, Vec<(usize, Rule, String)>> = BTreeMap::new();
        for (f, r, m) in losers {
            per_file.entry(f).or_default().push((r - 1, Rule::DuplicateKey, m));
        }
        for (f, rows) in per_file {
            let (name, raw) = &out.raws[f];
            out.quarantine.push(quarantine_rows(raw, name, &rows)?);
        }
    }
    if !out.quarantine.is_empty() {
        let lfs: Vec<LazyFrame> = out.quarantine.drain(..).map(|d| d.lazy()).collect();
        let mut q = concat_lf_diagonal(lfs, UnionArgs::default())?.collect()?;
        tx.write_quarantine(def.name, &mut q)?;
    }
    let counts = TableCounts {
        table: def.name.to_string(),
        files: 0,
        read: out.read,
        accepted,
        rejected: out.rejected,
        duplicates,
        stored: merged.height() as u64,
        by_rule: out.by_rule,
    };
    Ok((merged, counts, per_file))
}
