//! The Parquet store: one dataset per table (Hive-partitioned by local month where that
//! helps pruning), quarantined rows per table, and `_manifest.json`.
//!
//! Layout:
//! ```text
//! STORE/_manifest.json
//! STORE/.lock
//! STORE/tables/<table>/g<generation>/[month=YYYY-MM/]part-0.parquet
//! STORE/quarantine/<table>/batch=<generation>/part-0.parquet
//! ```
//!
//! Atomic commit: a transaction writes new files into directories named after the next
//! generation, which no manifest references yet, fsyncs them, then writes
//! `_manifest.json.tmp`, fsyncs it and renames it over `_manifest.json`. A crash before the
//! rename leaves the old manifest and old files untouched; the orphaned directories are
//! removed by the next writer. Readers go through the manifest and never list directories.

pub mod lock;
pub mod manifest;
pub mod pin;
pub mod quality;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use polars::polars_utils::compression::ZstdLevel;
use polars::prelude::*;

use crate::error::StoreError;
use crate::schema::TableDef;
use lock::WriterLock;
pub use manifest::{Batch, BatchFile, FileEntry, MANIFEST, Manifest, TableEntry};

/// Directory of the store holding scratch files of a running ingest (never referenced by a
/// manifest).
pub const SCRATCH: &str = "tmp";

/// The `month=` partition value of a timestamp (µs) in the store's timezone.
pub fn month_of(us: Option<i64>, tz: Tz) -> String {
    us.map_or_else(|| "null".to_string(), |us| crate::timefmt::month_key(us, tz))
}

/// A read-only view of a store, as of the manifest read at open. Opened by a reader, it pins
/// that version (see `pin`): writers leave its files alone while it lives.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    manifest: Manifest,
    _pin: Option<std::sync::Arc<pin::Pin>>,
}

fn io_err(path: &Path, action: &str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    let action = action.to_string();
    move |source| StoreError::Io { path, action, source }
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        // Pin the version read, then check it is still the current one: a writer that
        // committed in between kept the version before its own, and the next read pins that.
        loop {
            let Some(manifest) = Manifest::load(root)? else {
                return Err(StoreError::NotAStore {
                    path: root.to_path_buf(),
                });
            };
            let held = pin::pin(root, &manifest);
            let now = Manifest::load(root)?.map(|m| m.generation);
            if held.is_none() || now == Some(manifest.generation) {
                return Ok(Store {
                    root: root.to_path_buf(),
                    manifest,
                    _pin: held.map(std::sync::Arc::new),
                });
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The stored table, or an empty frame with the canonical schema if it was never ingested.
    pub fn read_table(&self, def: &TableDef) -> Result<DataFrame, StoreError> {
        match self.manifest.tables.get(def.name) {
            None => Ok(DataFrame::empty_with_schema(&def.polars_schema())),
            Some(entry) => read_files(&self.root, def.name, &entry.files, Some(&def.polars_schema())),
        }
    }

    /// A lazy scan of the stored table (the files the manifest names, in order).
    pub fn scan_table(&self, def: &TableDef) -> Result<LazyFrame, StoreError> {
        let files = match self.manifest.tables.get(def.name) {
            None => return Ok(DataFrame::empty_with_schema(&def.polars_schema()).lazy()),
            Some(entry) => &entry.files,
        };
        let schema = def.polars_schema();
        let bad = |f: &FileEntry, e: PolarsError| StoreError::BadTable {
            path: self.root.clone(),
            table: def.name.to_string(),
            message: format!(
                "{}: {} (the file is damaged; `crm-kpi validate --store {}` checks every file)",
                f.path,
                crate::error::first_line(&e.to_string()),
                self.root.display()
            ),
        };
        let scans = files
            .iter()
            .map(|f| {
                let path = self.abs(&f.path);
                let mut scan = LazyFrame::scan_parquet(
                    PlRefPath::new(path.to_string_lossy().as_ref()),
                    ScanArgsParquet::default(),
                )
                .map_err(|e| bad(f, e))?;
                // A file written before a column was added to the schema reads it as null.
                let have = scan.collect_schema().map_err(|e| bad(f, e))?;
                let missing: Vec<Expr> = schema
                    .iter()
                    .filter(|(n, _)| have.get(n).is_none())
                    .map(|(n, t)| lit(NULL).cast(t.clone()).alias(n.clone()))
                    .collect();
                if !missing.is_empty() {
                    let order: Vec<Expr> = schema.iter_names().cloned().map(col).collect();
                    scan = scan.with_columns(missing).select(order);
                }
                Ok(scan)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(concat(scans, UnionArgs::default())?)
    }

    /// The pipeline stages the store holds (a CRM's own stage list, ingested by a preset or
    /// a `stages` file), in pipeline order; None when it holds none.
    pub fn stages(&self) -> Result<Option<Vec<crate::config::Stage>>, StoreError> {
        use crate::config::{Stage, Terminal};
        let df = self.read_table(&crate::schema::STAGES)?;
        if df.height() == 0 {
            return Ok(None);
        }
        let df = df.sort(
            ["position", "stage"],
            SortMultipleOptions::default().with_nulls_last(true),
        )?;
        let names = df.column("stage")?.str()?.clone();
        let prob = df.column("probability")?.f64()?.clone();
        let term = df.column("terminal")?.str()?.clone();
        let pipe = df.column("pipeline")?.str()?.clone();
        let rows: Vec<(Option<&str>, Stage)> = (0..df.height())
            .filter_map(|i| {
                Some((
                    pipe.get(i),
                    Stage {
                        name: names.get(i)?.to_string(),
                        probability: prob.get(i),
                        terminal: match term.get(i) {
                            Some("won") => Some(Terminal::Won),
                            Some("lost") => Some(Terminal::Lost),
                            _ => None,
                        },
                        pipeline: crate::config::DEFAULT_PIPELINE.into(),
                    },
                ))
            })
            .collect();
        Ok(Some(group_by_pipeline(rows)))
    }

    /// All quarantined rows of a table (all batches), or None if there are none.
    pub fn read_quarantine(&self, table: &str) -> Result<Option<DataFrame>, StoreError> {
        match self.manifest.quarantine.get(table) {
            None => Ok(None),
            Some(files) if files.is_empty() => Ok(None),
            Some(files) => read_files(&self.root, table, files, None).map(Some),
        }
    }
}

/// A stored stage list (in position order, each stage with its pipeline or none) as pipelines:
/// the named pipelines in the order of their first stage, each with its own stages and the
/// stages that name no pipeline (Pipedrive's Won and Lost, shared by every pipeline), in
/// position order, a name once per pipeline. Without any named pipeline, one "default".
fn group_by_pipeline(rows: Vec<(Option<&str>, crate::config::Stage)>) -> Vec<crate::config::Stage> {
    let mut pipelines: Vec<&str> = Vec::new();
    for (p, _) in &rows {
        if let Some(p) = p
            && !pipelines.contains(p)
        {
            pipelines.push(p);
        }
    }
    if pipelines.is_empty() {
        pipelines.push(crate::config::DEFAULT_PIPELINE);
    }
    let mut out = Vec::new();
    for name in pipelines {
        let mut seen = std::collections::HashSet::new();
        for (p, s) in &rows {
            if p.is_none_or(|p| p == name) && seen.insert(s.name.as_str()) {
                let mut s = s.clone();
                s.pipeline = name.to_string();
                out.push(s);
            }
        }
    }
    out
}

fn read_files(root: &Path, table: &str, files: &[FileEntry], schema: Option<&Schema>) -> Result<DataFrame, StoreError> {
    let mut frames = Vec::with_capacity(files.len());
    for f in files {
        let path = root.join(&f.path);
        let file = File::open(&path).map_err(io_err(&path, "opening a table file"))?;
        let df = ParquetReader::new(file).finish().map_err(|e| StoreError::BadTable {
            path: root.to_path_buf(),
            table: table.to_string(),
            message: format!("{}: {}", f.path, crate::error::first_line(&e.to_string())),
        })?;
        frames.push(df);
    }
    let mut out = match frames.len() {
        0 => match schema {
            Some(s) => return Ok(DataFrame::empty_with_schema(s)),
            None => return Ok(DataFrame::empty()),
        },
        1 => frames.pop().expect("one frame"),
        _ => {
            let lfs = frames.into_iter().map(|d| d.lazy()).collect::<Vec<_>>();
            concat_lf_diagonal(lfs, UnionArgs::default())?.collect()?
        }
    };
    if let Some(s) = schema {
        // A file written before a column was added to the schema reads it as null.
        for (name, dtype) in s.iter() {
            if out.column(name).is_err() {
                out.with_column(Column::full_null(name.clone(), out.height(), dtype))?;
            }
        }
        let names: Vec<_> = s.iter_names().cloned().collect();
        out = out.select(names).map_err(|e| StoreError::BadTable {
            path: root.to_path_buf(),
            table: table.to_string(),
            message: crate::error::first_line(&e.to_string()),
        })?;
    }
    Ok(out)
}

/// A write transaction: holds the writer lock, stages new files under the next generation,
/// and publishes them all at once in `commit`.
pub struct Transaction {
    root: PathBuf,
    _lock: WriterLock,
    base: Manifest,
    next: Manifest,
    committed: bool,
}

/// A transaction dropped without a commit (an error, a full disk) removes what it wrote: no
/// manifest references it, and the store is left as it was, without waiting for the next
/// writer to clean up.
impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.collect_garbage(&[&self.base]);
        }
    }
}

impl Transaction {
    /// Locks the store (creating it if needed), reads its manifest and removes what a
    /// crashed writer may have left behind.
    pub fn begin(root: &Path) -> Result<Transaction, StoreError> {
        std::fs::create_dir_all(root).map_err(io_err(root, "creating the store directory"))?;
        let lock = WriterLock::acquire(root)?;
        let base = Manifest::load(root)?.unwrap_or_else(Manifest::new);
        let mut next = base.clone();
        next.generation = base.generation + 1;
        let tx = Transaction {
            root: root.to_path_buf(),
            _lock: lock,
            base,
            next,
            committed: false,
        };
        tx.collect_garbage(&[&tx.base])?;
        Ok(tx)
    }

    pub fn base(&self) -> &Manifest {
        &self.base
    }

    pub fn generation(&self) -> u64 {
        self.next.generation
    }

    /// The store as committed before this transaction.
    pub fn base_store(&self) -> Store {
        Store {
            root: self.root.clone(),
            manifest: self.base.clone(),
            _pin: None,
        }
    }

    /// The store as it will be after this transaction, with the tables written so far.
    pub fn staged_store(&self) -> Store {
        Store {
            root: self.root.clone(),
            manifest: self.next.clone(),
            _pin: None,
        }
    }

    /// Scratch directory of this transaction (spilled rows); removed by `commit` and by the
    /// next writer if this one crashes.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join(SCRATCH).join(format!("g{:06}", self.next.generation))
    }

    /// Store-relative directory of the new version of a table.
    pub fn table_dir(&self, def: &TableDef) -> String {
        format!("tables/{}/g{:06}", def.name, self.next.generation)
    }

    /// Writes one file of the new version of a table: `<dir>/[month=M/]part-<n>.parquet`.
    pub fn write_table_file(
        &mut self,
        def: &TableDef,
        month: Option<&str>,
        part: usize,
        df: &mut DataFrame,
    ) -> Result<FileEntry, StoreError> {
        let dir = self.table_dir(def);
        let rel = match month {
            Some(m) => format!("{dir}/month={m}/part-{part}.parquet"),
            None => format!("{dir}/part-{part}.parquet"),
        };
        let rows = write_parquet(&self.root.join(&rel), df)?;
        Ok(FileEntry { path: rel, rows })
    }

    /// Publishes (in this transaction) the files written with `write_table_file` as the new
    /// version of a table.
    pub fn set_table(&mut self, def: &TableDef, files: Vec<FileEntry>) -> Result<(), StoreError> {
        let dir = self.table_dir(def);
        sync_dir_tree(&self.root.join(&dir))?;
        let rows = files.iter().map(|f| f.rows).sum();
        self.next.tables.insert(
            def.name.to_string(),
            TableEntry {
                dir,
                rows,
                partitioned_by: def.partition_by.map(str::to_string),
                files,
            },
        );
        Ok(())
    }

    /// Writes a new version of a table (sorted, partitioned by local month if declared).
    pub fn write_table(&mut self, def: &TableDef, df: &DataFrame, tz: Tz) -> Result<(), StoreError> {
        let mut df = if def.sort_by.is_empty() || df.height() < 2 {
            df.clone()
        } else {
            df.sort(
                def.sort_by.iter().copied(),
                SortMultipleOptions::default().with_maintain_order(true),
            )?
        };
        let mut files = Vec::new();
        match def.partition_by {
            Some(ts_col) if df.height() > 0 => {
                let micros = df.column(ts_col)?.cast(&DataType::Int64)?;
                let micros = micros.i64()?;
                let mut groups: BTreeMap<String, Vec<IdxSize>> = BTreeMap::new();
                for (i, v) in micros.iter().enumerate() {
                    groups.entry(month_of(v, tz)).or_default().push(i as IdxSize);
                }
                for (month, idx) in groups {
                    let mut part = df.take(&IdxCa::from_vec("idx".into(), idx))?;
                    files.push(self.write_table_file(def, Some(&month), 0, &mut part)?);
                }
            }
            _ => files.push(self.write_table_file(def, None, 0, &mut df)?),
        }
        self.set_table(def, files)
    }

    /// Adds a file of quarantined rows for a table.
    pub fn write_quarantine(&mut self, table: &str, df: &mut DataFrame) -> Result<(), StoreError> {
        let part = self.next_quarantine_part(table);
        self.write_quarantine_part(table, part, df)
    }

    /// How many quarantine files this transaction already wrote for a table.
    fn next_quarantine_part(&self, table: &str) -> usize {
        let prefix = format!("quarantine/{table}/batch={:06}/", self.next.generation);
        self.next
            .quarantine
            .get(table)
            .map_or(0, |fs| fs.iter().filter(|f| f.path.starts_with(&prefix)).count())
    }

    /// Writes quarantine file `part-<part>` of this batch for a table.
    fn write_quarantine_part(&mut self, table: &str, part: usize, df: &mut DataFrame) -> Result<(), StoreError> {
        if df.height() == 0 {
            return Ok(());
        }
        let dir = format!("quarantine/{table}/batch={:06}", self.next.generation);
        let rel = format!("{dir}/part-{part}.parquet");
        let rows = write_parquet(&self.root.join(&rel), df)?;
        sync_dir_tree(&self.root.join(&dir))?;
        self.next
            .quarantine
            .entry(table.to_string())
            .or_default()
            .push(FileEntry { path: rel, rows });
        Ok(())
    }

    /// Quarantined rows of `table` from earlier batches whose `_file` is one of `files` (read
    /// again by this batch, whose own verdict on them now stands) leave the quarantine: each
    /// earlier quarantine file holding some is replaced by one of its other rows. Returns how
    /// many rows left.
    pub fn supersede_quarantine(&mut self, table: &str, files: &HashSet<String>) -> Result<u64, StoreError> {
        if files.is_empty() {
            return Ok(0);
        }
        let mine = format!("quarantine/{table}/batch={:06}/", self.next.generation);
        let entries: Vec<FileEntry> = self
            .next
            .quarantine
            .get(table)
            .map(|fs| fs.iter().filter(|f| !f.path.starts_with(&mine)).cloned().collect())
            .unwrap_or_default();
        let mut left = 0u64;
        for entry in entries {
            let path = self.root.join(&entry.path);
            let file = File::open(&path).map_err(io_err(&path, "opening a quarantine file"))?;
            let df = ParquetReader::new(file).finish()?;
            let Ok(f) = df.column("_file") else { continue };
            let keep: BooleanChunked = f.str()?.iter().map(|v| v.is_none_or(|v| !files.contains(v))).collect();
            let kept = keep.sum().unwrap_or(0) as usize;
            if kept == df.height() {
                continue;
            }
            left += (df.height() - kept) as u64;
            if let Some(list) = self.next.quarantine.get_mut(table) {
                list.retain(|f| f.path != entry.path);
            }
            if kept > 0 {
                let mut rest = df.filter(&keep)?;
                let part = self.next_quarantine_part(table);
                self.write_quarantine_part(table, part, &mut rest)?;
            }
        }
        Ok(left)
    }

    pub fn add_batch(&mut self, batch: Batch) {
        self.next.batches.push(batch);
    }

    /// Publishes everything written: the manifest swap is the commit point.
    pub fn commit(mut self) -> Result<Manifest, StoreError> {
        let tmp = self.root.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_string_pretty(&self.next).expect("manifest serializes");
        {
            use std::io::Write;
            let mut f = File::create(&tmp).map_err(io_err(&tmp, "writing the new manifest"))?;
            f.write_all(text.as_bytes())
                .map_err(io_err(&tmp, "writing the new manifest"))?;
            f.sync_all().map_err(io_err(&tmp, "syncing the new manifest"))?;
        }
        let dst = self.root.join(MANIFEST);
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst, "swapping in the new manifest"))?;
        // From here the new manifest is the store: nothing it names may be cleaned up.
        self.committed = true;
        sync_dir(&self.root)?;
        // Versions neither manifest references are removed; the previous generation stays
        // until the next write, so a reader that opened the old manifest can finish.
        if let Err(e) = self.collect_garbage(&[&self.base, &self.next]) {
            tracing::warn!("could not remove old table versions: {e}");
        }
        Ok(std::mem::take(&mut self.next))
    }

    /// Removes table versions and quarantine batches the given manifest does not reference.
    fn collect_garbage(&self, keep: &[&Manifest]) -> Result<(), StoreError> {
        let mut referenced: HashSet<PathBuf> = HashSet::new();
        // Versions live readers hold are kept too.
        let pinned = pin::pinned(&self.root)?;
        for m in keep.iter().copied().chain(pinned.iter()) {
            referenced.extend(m.tables.values().map(|t| self.root.join(&t.dir)));
            for files in m.quarantine.values() {
                for f in files {
                    if let Some(parent) = Path::new(&f.path).parent() {
                        referenced.insert(self.root.join(parent));
                    }
                }
            }
        }
        for top in ["tables", "quarantine"] {
            let top = self.root.join(top);
            let Ok(tables) = std::fs::read_dir(&top) else { continue };
            for table in tables.flatten() {
                let Ok(versions) = std::fs::read_dir(table.path()) else {
                    continue;
                };
                for v in versions.flatten() {
                    let p = v.path();
                    if !referenced.contains(&p) {
                        std::fs::remove_dir_all(&p).map_err(io_err(&p, "removing an unreferenced version"))?;
                    }
                }
            }
        }
        let tmp = self.root.join(format!("{MANIFEST}.tmp"));
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(io_err(&tmp, "removing a stale temporary manifest"))?;
        }
        let scratch = self.root.join(SCRATCH);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(io_err(&scratch, "removing scratch files"))?;
        }
        Ok(())
    }
}

/// Writes a Parquet file (zstd, statistics, no embedded Arrow schema) and fsyncs it. Returns
/// its row count.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<u64, StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent, "creating a directory"))?;
    }
    let mut file = File::create(path).map_err(io_err(path, "creating a Parquet file"))?;
    ParquetWriter::new(&mut file)
        .with_compression(ParquetCompression::Zstd(Some(ZstdLevel::try_new(3)?)))
        .with_statistics(StatisticsOptions::default())
        .finish(df)
        // A full disk surfaces here: name the file, and the store it was for.
        .map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            action: "writing a Parquet file".into(),
            source: std::io::Error::other(crate::error::first_line(&e.to_string())),
        })?;
    drop(file);
    // Without polars' embedded Arrow schema, pandas, pyarrow and Spark read plain UTF-8 strings
    // (not string_view) from the Parquet schema; polars reads the same types back. Fsyncs it.
    crate::output::strip_arrow_schema(path).map_err(io_err(path, "finishing a Parquet file"))?;
    Ok(df.height() as u64)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "syncing a directory"))
}

/// Fsyncs a directory, its subdirectories and its parent chain up to the store root's
/// children, so the new entries survive a power cut before the manifest points at them.
fn sync_dir_tree(dir: &Path) -> Result<(), StoreError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                sync_dir_tree(&e.path())?;
            }
        }
    }
    sync_dir(dir)?;
    let mut p = dir.parent();
    for _ in 0..2 {
        if let Some(parent) = p {
            sync_dir(parent)?;
            p = parent.parent();
        }
    }
    Ok(())
}

#[cfg(test)]
mod pipeline_tests {
    use crate::config::{Stage, Terminal};

    fn stage(name: &str, terminal: Option<Terminal>) -> Stage {
        Stage {
            name: name.into(),
            probability: None,
            terminal,
            pipeline: crate::config::DEFAULT_PIPELINE.into(),
        }
    }

    /// Pipedrive's shape: each pipeline's stages, then Won and Lost naming no pipeline.
    #[test]
    fn stages_naming_no_pipeline_belong_to_every_pipeline() {
        let rows = vec![
            (Some("Sales"), stage("Qualified", None)),
            (Some("Sales"), stage("Demo", None)),
            (Some("Renewals"), stage("Qualified", None)),
            (Some("Renewals"), stage("Quoted", None)),
            (None, stage("Won", Some(Terminal::Won))),
            (None, stage("Lost", Some(Terminal::Lost))),
        ];
        let got: Vec<String> = super::group_by_pipeline(rows)
            .iter()
            .map(|s| format!("{}/{}", s.pipeline, s.name))
            .collect();
        assert_eq!(
            got,
            [
                "Sales/Qualified",
                "Sales/Demo",
                "Sales/Won",
                "Sales/Lost",
                "Renewals/Qualified",
                "Renewals/Quoted",
                "Renewals/Won",
                "Renewals/Lost"
            ]
        );
        // No named pipeline: one, "default".
        let one = super::group_by_pipeline(vec![(None, stage("a", None)), (None, stage("a", None))]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].pipeline, "default");
    }
}
