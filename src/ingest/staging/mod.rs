//! Staging: turns a CRM's export files, as the CRM names and shapes them, into rows of the
//! canonical tables, by the mapping sources of the config and of its preset
//! (`docs/mapping.md`). What comes out is text in canonical columns, with the file and row
//! each value came from; the ingest then parses, validates and stores it like any canonical
//! file, so every rule and the quarantine apply unchanged.
//!
//! Order of work: read each file once per records path; give each source its files (by name
//! pattern and required columns), unpivot and filter them; compute every source's columns
//! (lookups read other sources' rows); then settle what spans sources, table by table
//! (`tables.rs`): the merged stage list first, then deals, then their stage history.

pub mod eval;
pub mod presets;
pub mod spec;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::Config;
use crate::error::{Error, MappingError};
use crate::ingest::parse::{Locale, ParseOptions};
use crate::ingest::read::{self, FILE, ROW, is_internal};
use crate::schema::{self, TableDef};
use crate::store::Store;
pub use spec::{ColumnSpec, History, Lookup, Origin, Source};

pub type StagingError = MappingError;

/// What a source did to the rows, by rule, and notes for the user.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub by_rule: BTreeMap<String, u64>,
    pub notes: BTreeSet<String>,
}

impl Counts {
    pub fn add(&mut self, rule: &str, n: u64) {
        if n > 0 {
            *self.by_rule.entry(rule.to_string()).or_default() += n;
        }
    }

    pub fn note(&mut self, s: String) {
        self.notes.insert(s);
    }
}

/// One source's rows for the ingest: canonical columns as text, `FILE` and `ROW`.
pub struct StagedInput {
    pub source: String,
    pub table: &'static TableDef,
    /// The files its rows came from.
    pub files: Vec<PathBuf>,
    pub df: DataFrame,
    pub opts: ParseOptions,
    /// canonical column -> what the source read it from, for reasons.
    pub labels: BTreeMap<&'static str, String>,
}

/// What one source read and made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceReport {
    pub name: String,
    pub table: Option<String>,
    pub files: Vec<String>,
    /// Records read from its files (or written inline).
    pub read: u64,
    /// Rows it handed to the ingest.
    pub rows: u64,
    pub counts: Counts,
}

pub struct Staged {
    pub inputs: Vec<StagedInput>,
    pub reports: Vec<SourceReport>,
    /// Files a name pattern matched but no source took, named after a canonical table: they
    /// are ingested as canonical files.
    pub canonical: Vec<PathBuf>,
    /// Files no source took, with why (a preset takes a whole export folder).
    pub unread: Vec<String>,
}

/// The sources in effect: the config's own, then its preset's.
pub fn sources(config: &Config) -> Vec<Source> {
    let mut out = config.sources.clone();
    if let Some(p) = &config.preset {
        out.extend(presets::sources(p).expect("preset checked at config load"));
    }
    out
}

/// Splits the files into those some source's name patterns match (with the sources) and the
/// rest, which are canonical files named after their table.
pub fn claim(files: &[PathBuf], sources: &[Source]) -> (Vec<(PathBuf, Vec<usize>)>, Vec<PathBuf>) {
    let mut claimed = Vec::new();
    let mut rest = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let by: Vec<usize> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.files.iter().any(|p| spec::glob_match(p, &name)))
            .map(|(i, _)| i)
            .collect();
        if by.is_empty() {
            rest.push(f.clone());
        } else {
            claimed.push((f.clone(), by));
        }
    }
    (claimed, rest)
}

pub fn parse_options(source: &Source, config: &Config) -> ParseOptions {
    ParseOptions {
        tz: source
            .timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| config.tz()),
        locale: source.locale.as_deref().and_then(Locale::parse),
        formats: source.formats.clone(),
        lenient: source.lenient,
    }
}

/// Reads every claimed file once per records path.
struct Reader {
    cache: BTreeMap<(PathBuf, Option<String>), (DataFrame, u64)>,
}

impl Reader {
    fn read(&mut self, path: &Path, records: Option<&str>) -> Result<&(DataFrame, u64), Error> {
        let key = (path.to_path_buf(), records.map(str::to_string));
        if !self.cache.contains_key(&key) {
            let raw = read::read_file_with(path, records)?;
            let mut df = raw.df;
            // Staging reads everything as text (the ingest parses it afterwards).
            let text: Vec<Column> = df
                .columns()
                .iter()
                .map(|c| {
                    if c.name().as_str() == ROW || c.dtype() == &DataType::String {
                        Ok(c.clone())
                    } else {
                        read::text_column(c)
                    }
                })
                .collect::<PolarsResult<_>>()
                .map_err(MappingError::from)?;
            df = DataFrame::new(df.height(), text).map_err(MappingError::from)?;
            df.with_column(Column::new(FILE.into(), vec![path.display().to_string(); df.height()]))
                .map_err(MappingError::from)?;
            self.cache.insert(key.clone(), (df, raw.blank_lines));
        }
        Ok(&self.cache[&key])
    }
}

/// Stages the claimed files: every source's rows, then the rules that span sources.
pub fn stage(
    claimed: &[(PathBuf, Vec<usize>)],
    sources: &[Source],
    config: &Config,
    store: Option<&Store>,
) -> Result<Staged, Error> {
    let mut reader = Reader { cache: BTreeMap::new() };
    // Which files each source takes: name pattern, then required columns.
    let mut taken: Vec<Vec<PathBuf>> = vec![Vec::new(); sources.len()];
    let mut canonical = Vec::new();
    let mut unread = Vec::new();
    for (path, by) in claimed {
        let mut accepted = false;
        let mut missing_all: Vec<(String, Vec<String>, String)> = Vec::new();
        for &i in by {
            let s = &sources[i];
            let (df, _) = reader.read(path, s.records.as_deref())?;
            // A file with no records (an API's empty page) has no columns to check.
            if df.height() == 0 {
                taken[i].push(path.clone());
                accepted = true;
                continue;
            }
            let mut missing: Vec<String> = s
                .requires
                .iter()
                .filter(|c| !eval::has_column_like(df, c))
                .cloned()
                .collect();
            missing.extend(
                s.without
                    .iter()
                    .filter(|c| eval::has_column_like(df, c))
                    .map(|c| format!("(none like) {c}")),
            );
            if missing.is_empty() {
                taken[i].push(path.clone());
                accepted = true;
            } else {
                let found = df
                    .get_column_names()
                    .iter()
                    .filter(|n| !is_internal(n))
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                missing_all.push((s.name.clone(), missing, found));
            }
        }
        if !accepted && crate::ingest::table_for(path, None).is_ok() {
            canonical.push(path.clone());
            continue;
        }
        if !accepted && config.preset.is_some() {
            let why: Vec<String> = missing_all
                .iter()
                .map(|(n, m, _)| format!("`{n}` needs {}", m.join(", ")))
                .collect();
            unread.push(format!("{} ({})", path.display(), why.join("; ")));
            continue;
        }
        if !accepted {
            let (_, missing, found) = missing_all.first().cloned().unwrap_or_default();
            return Err(MappingError::Unclaimed {
                path: path.clone(),
                sources: missing_all.iter().map(|(n, ..)| format!("`{n}`")).collect(),
                missing,
                found,
                hint: "; if this is another kind of export, map it with a [[sources]] entry (docs/mapping.md)".into(),
            }
            .into());
        }
    }

    // Each source's rows: its files (or inline rows), unpivoted, filtered.
    let mut reports: Vec<SourceReport> = Vec::new();
    let mut rows: BTreeMap<String, DataFrame> = BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        let mut rep = SourceReport {
            name: s.name.clone(),
            table: s.table.clone(),
            files: taken[i].iter().map(|p| p.display().to_string()).collect(),
            ..Default::default()
        };
        let mut frames = Vec::new();
        for p in &taken[i] {
            let (df, blank) = reader.read(p, s.records.as_deref())?;
            rep.counts.add("blank_line", *blank);
            frames.push(df.clone().lazy());
        }
        let df = if !s.rows.is_empty() {
            inline_rows(s).map_err(MappingError::from)?
        } else if frames.is_empty() {
            DataFrame::new(
                0,
                vec![
                    Column::new(FILE.into(), Vec::<String>::new()),
                    Column::new(ROW.into(), Vec::<u64>::new()),
                ],
            )
            .map_err(MappingError::from)?
        } else {
            concat_lf_diagonal(frames, UnionArgs::default())
                .and_then(|lf| lf.collect())
                .map_err(MappingError::from)?
        };
        rep.read = df.height() as u64;
        let what = format!("source `{}`", s.name);
        let mut df = df;
        if let Some(u) = &s.unpivot
            && df.height() > 0
        {
            df = eval::unpivot(df, &u.columns, &u.value, u.headers_only, &what)?;
        }
        if let Some(f) = &s.filter
            && df.height() > 0
        {
            let keep = eval::predicate(&df, f, &mut rep.counts, &format!("{what}, filter"))?;
            let dropped = keep.iter().filter(|k| *k != Some(true)).count() as u64;
            rep.counts.add("filtered", dropped);
            df = df.filter(&keep).map_err(MappingError::from)?;
        }
        let df = eval::Evaluator::prepare(df).map_err(MappingError::from)?;
        rows.insert(s.name.clone(), df);
        reports.push(rep);
    }

    // A lookup-only source's own columns (a key built from several, say) join its rows.
    for (i, s) in sources.iter().enumerate() {
        if s.table.is_some() || s.columns.is_empty() {
            continue;
        }
        let opts = parse_options(s, config);
        let mut df = rows[&s.name].clone();
        let mut computed = Vec::new();
        {
            let ev = eval::Evaluator {
                source: s,
                df: &df,
                lookups: &rows,
                opts: &opts,
            };
            for (name, spec) in &s.columns {
                computed.push(Column::new(
                    name.as_str().into(),
                    ev.column(name, spec, &mut reports[i].counts)?,
                ));
            }
        }
        for c in computed {
            df.with_column(c).map_err(MappingError::from)?;
        }
        rows.insert(s.name.clone(), df);
    }

    // Each table source's canonical columns.
    let mut outputs: Vec<tables::Output> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let Some(table) = s.table.as_deref() else { continue };
        let df = &rows[&s.name];
        if df.height() == 0 {
            continue;
        }
        let def = schema::table(table).expect("table checked at config load");
        let opts = parse_options(s, config);
        let ev = eval::Evaluator {
            source: s,
            df,
            lookups: &rows,
            opts: &opts,
        };
        let counts = &mut reports[i].counts;
        let mut cols: Vec<Column> = Vec::new();
        let mut labels = BTreeMap::new();
        for c in def.input_columns() {
            let Some(spec) = s.columns.get(c.name) else { continue };
            if matches!(spec.from, Origin::Column(_) | Origin::First(_))
                && c.required
                && spec.default.is_none()
                && !ev.present(spec)
            {
                let name = match &spec.from {
                    Origin::Column(n) => n.clone(),
                    _ => label_of(spec),
                };
                let file = taken[i].first().cloned().unwrap_or_default();
                return Err(MappingError::MissingColumn {
                    path: file,
                    source_name: s.name.clone(),
                    table: def.name.to_string(),
                    canonical: c.name.to_string(),
                    column: name.clone(),
                    found: df
                        .get_column_names()
                        .iter()
                        .filter(|n| !is_internal(n) && !n.starts_with('$'))
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into());
            }
            let values = ev.column(c.name, spec, counts)?;
            cols.push(Column::new(c.name.into(), values));
            labels.insert(c.name, label_of(spec));
        }
        const INITIAL: &str = "__crm_kpi_initial_stage";
        if let Some(spec) = s.initial_stage.as_ref().filter(|_| def.name == "stage_events") {
            cols.push(Column::new(INITIAL.into(), ev.column("initial_stage", spec, counts)?));
        }
        if let Some(sql) = s.reopen.as_ref().filter(|_| def.name == "stage_events") {
            let what = format!("source `{}`, reopen", s.name);
            let flags = eval::predicate(df, sql, counts, &what)?;
            cols.push(flags.with_name(tables::REOPEN.into()).into_column());
        }
        cols.push(df.column(FILE).map_err(MappingError::from)?.clone());
        cols.push(df.column(ROW).map_err(MappingError::from)?.clone());
        let mut out = DataFrame::new(df.height(), cols).map_err(MappingError::from)?;
        if s.distinct {
            let keys: Vec<String> = out
                .get_column_names()
                .iter()
                .filter(|n| !is_internal(n))
                .map(|n| n.to_string())
                .collect();
            let before = out.height();
            out = out
                .unique_stable(Some(&keys), UniqueKeepStrategy::First, None)
                .map_err(MappingError::from)?;
            counts.add("duplicate_row_dropped", (before - out.height()) as u64);
        }
        let extra = match out.column(INITIAL) {
            Ok(c) => Some(
                c.str()
                    .map_err(MappingError::from)?
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect::<Vec<_>>(),
            ),
            Err(_) => None,
        };
        if extra.is_some() {
            out = out.drop(INITIAL).map_err(MappingError::from)?;
        }
        outputs.push(tables::Output {
            source: i,
            def,
            df: out,
            initial: extra,
            opts,
            labels,
        });
    }

    let settled = tables::settle(outputs, sources, &mut reports, config, store)?;
    let mut inputs = Vec::new();
    for o in settled {
        let s = &sources[o.source];
        let files = taken[o.source].clone();
        reports[o.source].rows += o.df.height() as u64;
        inputs.push(StagedInput {
            source: s.name.clone(),
            table: o.def,
            files,
            df: o.df,
            opts: o.opts,
            labels: o.labels,
        });
    }
    Ok(Staged {
        inputs,
        reports,
        canonical,
        unread,
    })
}

fn label_of(spec: &ColumnSpec) -> String {
    match &spec.from {
        Origin::Column(c) => c.clone(),
        Origin::Sql(s) => format!("sql: {s}"),
        Origin::Value(v) => format!("value '{v}'"),
        Origin::First(specs) => specs.iter().map(label_of).collect::<Vec<_>>().join(" | "),
    }
}

fn inline_rows(s: &Source) -> PolarsResult<DataFrame> {
    let mut names: Vec<String> = Vec::new();
    for r in &s.rows {
        for k in r.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let n = s.rows.len();
    let mut cols: Vec<Column> = names
        .iter()
        .map(|k| {
            let v: Vec<Option<String>> = s
                .rows
                .iter()
                .map(|r| {
                    r.get(k).map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                })
                .collect();
            Column::new(k.as_str().into(), v)
        })
        .collect();
    cols.push(Column::new(FILE.into(), vec![format!("(source {})", s.name); n]));
    cols.push(Column::new(ROW.into(), (1..=n as u64).collect::<Vec<_>>()));
    DataFrame::new(n, cols)
}
