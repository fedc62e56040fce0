//! `validate`: checks a store's integrity (every file the manifest names exists, has the
//! recorded row count and the canonical schema; primary keys are unique) and reports data
//! quality: row counts, null rates of optional columns, orphan references, time ranges and
//! quarantined rows by rule. Integrity failures are errors; quality findings are reported.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::config::Config;
use crate::error::StoreError;
use crate::schema::{self, Kind, REFERENCES};
use crate::store::Store;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableQuality {
    pub table: String,
    pub rows: u64,
    pub files: usize,
    /// optional column -> share of nulls (0-1)
    pub null_rates: BTreeMap<String, f64>,
    /// (column, min, max) of the table's main timestamp
    pub time_range: Option<(String, String, String)>,
    pub quarantined: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Orphans {
    pub table: String,
    pub column: String,
    pub target: String,
    pub count: u64,
    pub enforced: bool,
}

#[derive(Debug, Clone, Default)]
pub struct QualityReport {
    pub generation: u64,
    pub tables: Vec<TableQuality>,
    pub orphans: Vec<Orphans>,
    /// Deals whose export and stage history disagree, by kind (`kpi::inputs::export_vs_history`).
    pub disagreements: Vec<Disagreement>,
    /// With several pipelines: deals read in a pipeline other than their export's, by kind.
    pub pipelines: Vec<Disagreement>,
}

/// Deals of one kind of disagreement between the export and the stage history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Disagreement {
    pub kind: String,
    pub deals: u64,
    /// Up to three opportunity ids, smallest first.
    pub examples: Vec<String>,
}

/// What each kind of disagreement means and how the KPIs settle it (docs/decisions.md).
const DISAGREEMENTS: [(&str, &str); 4] = [
    (
        "export_close",
        "closed in the export after the last event of its history (which has won/lost events): the export's close counts from closed_at",
    ),
    (
        "reopened",
        "open in the export, the history ends won/lost: reopened (at updated_at, else 1 µs after the event)",
    ),
    (
        "history_close",
        "closed in the export, an event of the history is at or after closed_at: the history counts",
    ),
    (
        "close_date",
        "same outcome, the export's closed_at is later than the event: the event's time counts",
    ),
];

/// How deals are read when the store has several pipelines (docs/decisions.md, "Pipelines").
const PIPELINE_KINDS: [(&str, &str); 3] = [
    (
        "no_pipeline",
        "the export names no pipeline: read in the first pipeline",
    ),
    (
        "unknown_pipeline",
        "the export names a pipeline that is not configured: read in the first pipeline",
    ),
    (
        "moved",
        "a stage event names a stage its pipeline lacks: read in the first pipeline that has it (the deal moved)",
    ),
];

fn bad(store: &Path, table: &str, message: String) -> StoreError {
    StoreError::BadTable {
        path: store.to_path_buf(),
        table: table.to_string(),
        message,
    }
}

pub fn report(root: &Path, config: &Config) -> Result<QualityReport, StoreError> {
    let store = Store::open(root)?;
    // The stage list a run reads: the store's own when it holds one.
    let config = &config.clone().for_store(&store)?;
    let m = store.manifest();
    let tz = config.tz();
    let mut out = QualityReport {
        generation: m.generation,
        ..Default::default()
    };
    let mut frames: BTreeMap<&str, DataFrame> = BTreeMap::new();
    for def in schema::TABLES {
        let mut q = TableQuality {
            table: def.name.to_string(),
            ..Default::default()
        };
        if let Some(entry) = m.tables.get(def.name) {
            for f in &entry.files {
                let path = root.join(&f.path);
                let file = File::open(&path).map_err(|e| bad(root, def.name, format!("{}: {e}", f.path)))?;
                let mut reader = ParquetReader::new(file);
                let n = reader
                    .num_rows()
                    .map_err(|e| bad(root, def.name, format!("{}: {e}", f.path)))?;
                if n as u64 != f.rows {
                    return Err(bad(
                        root,
                        def.name,
                        format!("{} has {n} rows, the manifest says {}", f.path, f.rows),
                    ));
                }
                let schema = reader
                    .schema()
                    .map_err(|e| bad(root, def.name, format!("{}: {e}", f.path)))?;
                for c in def.columns {
                    // A file written before a column was added to the schema lacks it; it reads
                    // as null (`Store::scan_table`).
                    let Some(found) = schema.get(c.name).map(DataType::from_arrow_field) else {
                        continue;
                    };
                    if found != c.kind.dtype() {
                        return Err(bad(
                            root,
                            def.name,
                            format!(
                                "{}: column {} is {:?}, expected {:?}",
                                f.path,
                                c.name,
                                found,
                                c.kind.dtype()
                            ),
                        ));
                    }
                }
            }
            if entry.files.iter().map(|f| f.rows).sum::<u64>() != entry.rows {
                return Err(bad(
                    root,
                    def.name,
                    "file row counts do not add up to the table's".into(),
                ));
            }
            q.files = entry.files.len();
        }
        let df = store.read_table(def)?;
        q.rows = df.height() as u64;
        let keys = df.select(def.primary_key.iter().copied())?;
        let dup = keys.height() - keys.unique_stable(None, UniqueKeepStrategy::First, None)?.height();
        if dup > 0 {
            return Err(bad(
                root,
                def.name,
                format!("{dup} rows repeat a primary key ({})", def.primary_key.join(", ")),
            ));
        }
        if q.rows > 0 {
            for c in def.columns.iter().filter(|c| !c.required) {
                let nulls = df.column(c.name)?.null_count();
                q.null_rates.insert(c.name.to_string(), nulls as f64 / q.rows as f64);
            }
            let ts = def.partition_by.or_else(|| {
                def.columns
                    .iter()
                    .find(|c| c.kind == Kind::Timestamp && c.required)
                    .map(|c| c.name)
            });
            let ts = ts.or_else(|| {
                let optional = |c: &&schema::Column| c.kind == Kind::Timestamp && c.name != schema::UPDATED_AT;
                def.columns.iter().find(optional).map(|c| c.name)
            });
            let date = def.columns.iter().find(|c| c.kind == Kind::Date).map(|c| c.name);
            if let Some(col) = ts.or(date) {
                let s = df.column(col)?.as_materialized_series().clone();
                let fmt = |v: Option<i64>| -> String {
                    match (v, s.dtype()) {
                        (None, _) => "-".into(),
                        (Some(v), DataType::Date) => crate::timefmt::date_from_days(v as i32).to_string(),
                        (Some(us), _) => chrono::DateTime::from_timestamp_micros(us)
                            .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())
                            .unwrap_or_default(),
                    }
                };
                let phys = s.to_physical_repr().cast(&DataType::Int64)?;
                let ca = phys.i64()?;
                q.time_range = Some((col.to_string(), fmt(ca.min()), fmt(ca.max())));
            }
        }
        if let Some(qdf) = store.read_quarantine(def.name)? {
            let rules = qdf.column("_rule")?.str()?.clone();
            for r in rules.iter().flatten() {
                *q.quarantined.entry(r.to_string()).or_default() += 1;
            }
        }
        frames.insert(def.name, df);
        out.tables.push(q);
    }
    out.disagreements = disagreements(&frames["opportunities"], &frames["stage_events"], config)?;
    // With one pipeline, only deals naming another pipeline are news (a Salesforce record type
    // with no `[[pipelines]]` for it).
    let kinds = pipeline_kinds(&frames["opportunities"], &frames["stage_events"], config)?;
    let unknown = kinds.iter().any(|k| k.kind == "unknown_pipeline" && k.deals > 0);
    if config.pipeline_names().len() > 1 || unknown {
        out.pipelines = kinds;
    }
    for r in REFERENCES {
        let (src, dst) = (&frames[r.table], &frames[r.target]);
        if src.height() == 0 {
            continue;
        }
        let values = src.select([r.column])?.lazy().filter(col(r.column).is_not_null());
        let targets = dst.select([r.target_column])?.lazy();
        let n = values
            .anti_join(targets, col(r.column), col(r.target_column))
            .collect()?
            .height();
        out.orphans.push(Orphans {
            table: r.table.into(),
            column: r.column.into(),
            target: format!("{}.{}", r.target, r.target_column),
            count: n as u64,
            enforced: r.enforced,
        });
    }
    Ok(out)
}

/// Counts the deals of each kind of disagreement between the export and the history.
fn disagreements(opportunities: &DataFrame, events: &DataFrame, config: &Config) -> PolarsResult<Vec<Disagreement>> {
    let per_deal = crate::kpi::inputs::export_vs_history(opportunities.clone().lazy(), events.clone().lazy(), config)
        .filter(col("disagreement").is_not_null())
        .select([col("disagreement").alias("kind"), col("opportunity_id")]);
    count_kinds(per_deal, &DISAGREEMENTS)
}

/// Deals per kind, in the order of `kinds`, from rows (kind, opportunity_id): the count and the
/// three smallest ids.
fn count_kinds(per_deal: LazyFrame, kinds: &[(&str, &str)]) -> PolarsResult<Vec<Disagreement>> {
    let per_deal = per_deal
        .sort(["kind", "opportunity_id"], SortMultipleOptions::default())
        .collect()?;
    let found = per_deal.column("kind")?.str()?.clone();
    let ids = per_deal.column("opportunity_id")?.str()?.clone();
    Ok(kinds
        .iter()
        .map(|(kind, _)| {
            let mine: Vec<&str> = found
                .iter()
                .zip(ids.iter())
                .filter(|(k, _)| *k == Some(*kind))
                .filter_map(|(_, id)| id)
                .collect();
            Disagreement {
                kind: kind.to_string(),
                deals: mine.len() as u64,
                examples: mine.iter().take(3).map(|s| s.to_string()).collect(),
            }
        })
        .collect())
}

/// Counts the deals of each kind of `PIPELINE_KINDS`.
fn pipeline_kinds(opportunities: &DataFrame, events: &DataFrame, config: &Config) -> PolarsResult<Vec<Disagreement>> {
    use crate::kpi::inputs::{deal_pipeline, resolve_stages};
    let opps = opportunities.clone().lazy();
    let names: Vec<&str> = config.pipeline_names();
    let moved = resolve_stages(
        events.clone().lazy().select([col("opportunity_id"), col("stage")]),
        opps.clone(),
        config,
        &["pipeline"],
    )
    .join(
        opps.clone()
            .select([col("opportunity_id"), deal_pipeline(config).alias("__deal_pipeline")]),
        [col("opportunity_id")],
        [col("opportunity_id")],
        JoinArgs::new(JoinType::Inner),
    )
    .filter(
        col("pipeline")
            .is_not_null()
            .and(col("pipeline").neq(col("__deal_pipeline"))),
    )
    .select([lit("moved").alias("kind"), col("opportunity_id")])
    .unique(None, UniqueKeepStrategy::Any);
    let export = opps
        .select([
            when(col("pipeline").is_null())
                .then(lit("no_pipeline"))
                .when(
                    col("pipeline")
                        .is_in(lit(Series::new("p".into(), names)).implode(false), false)
                        .not(),
                )
                .then(lit("unknown_pipeline"))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("kind"),
            col("opportunity_id"),
        ])
        .filter(col("kind").is_not_null());
    count_kinds(concat([export, moved], UnionArgs::default())?, &PIPELINE_KINDS)
}

impl QualityReport {
    pub fn render(&self) -> String {
        let mut s = format!(
            "store generation {}: integrity OK (files, row counts, schemas, unique keys)\n\n",
            self.generation
        );
        s.push_str(&format!(
            "{:<14} {:>10} {:>5}  {}\n",
            "table", "rows", "files", "time range"
        ));
        for t in &self.tables {
            let range = t
                .time_range
                .as_ref()
                .map_or("-".into(), |(c, a, b)| format!("{c}: {a} .. {b}"));
            s.push_str(&format!("{:<14} {:>10} {:>5}  {range}\n", t.table, t.rows, t.files));
        }
        s.push_str("\nnull rates of optional columns (non-zero):\n");
        for t in &self.tables {
            let nz: Vec<String> = t
                .null_rates
                .iter()
                .filter(|(_, r)| **r > 0.0)
                .map(|(c, r)| format!("{c} {:.1}%", r * 100.0))
                .collect();
            if !nz.is_empty() {
                s.push_str(&format!("  {:<14} {}\n", t.table, nz.join(", ")));
            }
        }
        s.push_str("\norphan references (values with no matching row):\n");
        for o in &self.orphans {
            let note = if o.enforced { " (enforced at ingest)" } else { "" };
            s.push_str(&format!(
                "  {}.{} -> {}: {}{note}\n",
                o.table, o.column, o.target, o.count
            ));
        }
        s.push_str("\nexport and history disagree (deals; docs/decisions.md):\n");
        for d in &self.disagreements {
            let what = DISAGREEMENTS.iter().find(|(k, _)| *k == d.kind).map_or("", |(_, w)| w);
            let eg = if d.examples.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", d.examples.join(", "))
            };
            s.push_str(&format!("  {:<14} {:>8}  {what}{eg}\n", d.kind, d.deals));
        }
        if !self.pipelines.is_empty() {
            s.push_str("\ndeals and pipelines (deals; docs/decisions.md, \"Pipelines\"):\n");
            for d in &self.pipelines {
                let what = PIPELINE_KINDS.iter().find(|(k, _)| *k == d.kind).map_or("", |(_, w)| w);
                let eg = if d.examples.is_empty() {
                    String::new()
                } else {
                    format!(" (e.g. {})", d.examples.join(", "))
                };
                s.push_str(&format!("  {:<16} {:>6}  {what}{eg}\n", d.kind, d.deals));
            }
        }
        let q: Vec<String> = self
            .tables
            .iter()
            .flat_map(|t| {
                t.quarantined
                    .iter()
                    .map(move |(r, n)| format!("  {:<14} {r:<22} {n:>8}", t.table))
            })
            .collect();
        s.push_str("\nquarantined rows by rule:\n");
        if q.is_empty() {
            s.push_str("  none\n");
        } else {
            s.push_str(&q.join("\n"));
            s.push('\n');
        }
        s
    }
}
