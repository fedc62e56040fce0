//! The merge of one table, in bounded memory: accepted rows are routed to spill files by
//! store partition as the batches are checked, while a compact index keeps, per accepted
//! row, a 128-bit hash of its primary key, its `updated_at` and its row number. Duplicates
//! are resolved on the sorted index (the same rule as a row-by-row merge: later
//! `updated_at` wins, else the later row read), the stored table is streamed against it, and
//! each partition is then sorted and written on its own.
//!
//! Two different keys share a 128-bit hash with a probability around n²/2¹²⁹ (10⁻²³ for
//! 60M rows); the merge treats equal hashes as equal keys.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use polars::prelude::*;

use crate::error::{Error, IngestError, StoreError};
use crate::schema::{TableDef, UPDATED_AT};
use crate::store::{Store, Transaction, month_of};

/// Position of an accepted row of this ingest (its index among the accepted rows).
const POS: &str = "__pos";
/// Sort tiebreak: stored rows first in stored order, then new rows in read order.
const ORD: &str = "__ord";
const NEW_ROWS: u64 = 1 << 62;
const NO_UPDATE: i64 = i64::MIN;

/// 128-bit hash of the primary key of every row.
pub fn key_hashes(df: &DataFrame, pk: &[&str]) -> PolarsResult<Vec<(u64, u64)>> {
    enum K {
        S(StringChunked),
        I(Int64Chunked),
    }
    let cols: Vec<K> = pk
        .iter()
        .map(|c| {
            let c = df.column(c)?.as_materialized_series().rechunk();
            Ok(match c.dtype() {
                DataType::String => K::S(c.str()?.clone()),
                _ => K::I(c.cast(&DataType::Int64)?.i64()?.clone()),
            })
        })
        .collect::<PolarsResult<_>>()?;
    Ok((0..df.height())
        .map(|i| {
            let mut a = std::hash::DefaultHasher::new();
            let mut b = std::hash::DefaultHasher::new();
            a.write_u8(0xa5);
            b.write_u8(0x5a);
            for c in &cols {
                match c {
                    K::S(ca) => match ca.get(i) {
                        Some(s) => {
                            for h in [&mut a, &mut b] {
                                h.write_u8(1);
                                h.write_usize(s.len());
                                h.write(s.as_bytes());
                            }
                        }
                        None => [&mut a, &mut b].into_iter().for_each(|h| h.write_u8(0)),
                    },
                    K::I(ca) => match ca.get(i) {
                        Some(v) => {
                            for h in [&mut a, &mut b] {
                                h.write_u8(2);
                                h.write_i64(v);
                            }
                        }
                        None => [&mut a, &mut b].into_iter().for_each(|h| h.write_u8(0)),
                    },
                }
            }
            (a.finish(), b.finish())
        })
        .collect())
}

/// Primary-key text of every row, as the messages show it (null as `null`).
fn key_texts(df: &DataFrame, pk: &[&str]) -> PolarsResult<Vec<String>> {
    let cols: Vec<StringChunked> = pk
        .iter()
        .map(|c| Ok(df.column(c)?.cast(&DataType::String)?.str()?.clone()))
        .collect::<PolarsResult<_>>()?;
    Ok((0..df.height())
        .map(|i| {
            cols.iter()
                .map(|c| c.get(i).unwrap_or("null"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect())
}

fn updated(df: &DataFrame) -> PolarsResult<Vec<i64>> {
    Ok(df
        .column(UPDATED_AT)?
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or(NO_UPDATE))
        .collect())
}

/// Later `updated_at` wins; without both, the later-read row wins.
fn newer(candidate: i64, incumbent: i64) -> bool {
    if candidate == NO_UPDATE || incumbent == NO_UPDATE {
        true
    } else {
        candidate >= incumbent
    }
}

/// Rows grouped by store partition (local month, or one group), buffered in memory and
/// spilled to scratch Parquet files when the buffers grow past a limit.
struct Buckets {
    def: &'static TableDef,
    tz: Tz,
    dir: PathBuf,
    buffered: BTreeMap<String, Vec<DataFrame>>,
    spilled: BTreeMap<String, Vec<PathBuf>>,
    buffered_rows: usize,
    limit: usize,
    files: usize,
}

impl Buckets {
    fn route(&mut self, df: DataFrame) -> Result<(), Error> {
        if df.height() == 0 {
            return Ok(());
        }
        let n = df.height();
        match self.def.partition_by {
            None => self.buffered.entry(String::new()).or_default().push(df),
            Some(ts) => {
                let us = df.column(ts)?.cast(&DataType::Int64)?;
                let mut groups: BTreeMap<String, Vec<IdxSize>> = BTreeMap::new();
                for (i, v) in us.i64()?.iter().enumerate() {
                    groups.entry(month_of(v, self.tz)).or_default().push(i as IdxSize);
                }
                if groups.len() == 1 {
                    let month = groups.into_keys().next().expect("one group");
                    self.buffered.entry(month).or_default().push(df);
                } else {
                    for (month, idx) in groups {
                        let part = df.take(&IdxCa::from_vec("idx".into(), idx))?;
                        self.buffered.entry(month).or_default().push(part);
                    }
                }
            }
        }
        self.buffered_rows += n;
        if self.buffered_rows >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), Error> {
        for (key, frames) in std::mem::take(&mut self.buffered) {
            let mut df = vstack(frames)?;
            let path = self.dir.join(format!("{}-{}.parquet", self.def.name, self.files));
            self.files += 1;
            let mut file = std::fs::File::create(&path).map_err(|source| IngestError::Io {
                path: path.clone(),
                source,
            })?;
            ParquetWriter::new(&mut file)
                .with_compression(ParquetCompression::Lz4Raw)
                .with_statistics(StatisticsOptions::empty())
                .finish(&mut df)?;
            self.spilled.entry(key).or_default().push(path);
        }
        self.buffered_rows = 0;
        Ok(())
    }

    fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.buffered.keys().chain(self.spilled.keys()).cloned().collect();
        k.sort();
        k.dedup();
        k
    }

    /// All rows of one partition, removing its spill files.
    fn take(&mut self, key: &str) -> Result<Option<DataFrame>, Error> {
        let mut frames = Vec::new();
        for path in self.spilled.remove(key).unwrap_or_default() {
            let file = std::fs::File::open(&path).map_err(|source| IngestError::Io {
                path: path.clone(),
                source,
            })?;
            frames.push(ParquetReader::new(file).finish()?);
            let _ = std::fs::remove_file(&path);
        }
        frames.extend(self.buffered.remove(key).unwrap_or_default());
        if frames.is_empty() {
            return Ok(None);
        }
        Ok(Some(vstack(frames)?))
    }
}

fn vstack(mut frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut out = frames.remove(0);
    for f in frames {
        out.vstack_mut_owned(f)?;
    }
    out.rechunk_mut();
    Ok(out)
}

/// Why a new row lost to another row with its key.
#[derive(Debug, Clone, Copy)]
enum Lost {
    /// To another row of this ingest (its position).
    InBatch(u32),
    /// Append mode keeps the stored row.
    Append,
    /// The stored row has a later `updated_at`.
    StoredLater,
}

/// A duplicate to quarantine: the losing new row, why, and the order the merge reports it in.
#[derive(Debug, Clone, Copy)]
pub struct Loser {
    order: (u8, u32),
    pos: u32,
    lost: Lost,
}

/// Accepted rows of one table in this ingest, checked batch by batch.
pub struct TableMerge {
    def: &'static TableDef,
    /// (key hash, position) of every accepted row; sorted in `resolve`.
    index: Vec<(u64, u64, u32)>,
    /// `updated_at` (µs, or NO_UPDATE) and file-relative row number (1-based) by position.
    upd: Vec<i64>,
    row: Vec<u32>,
    /// First position of each file.
    file_start: Vec<u32>,
    buckets: Buckets,
}

/// What the merge of one table did.
pub struct MergeOutcome {
    pub accepted: u64,
    pub stored: u64,
    /// (accepted, duplicates) per file.
    pub per_file: Vec<(u64, u64)>,
    /// Duplicate losers in the order they are reported, with their quarantine reason.
    pub losers: Vec<(usize, u32, String)>,
}

impl TableMerge {
    pub fn new(def: &'static TableDef, tz: Tz, scratch: &Path, buffer_rows: usize) -> Result<TableMerge, Error> {
        std::fs::create_dir_all(scratch).map_err(|source| IngestError::Io {
            path: scratch.to_path_buf(),
            source,
        })?;
        Ok(TableMerge {
            def,
            index: Vec::new(),
            upd: Vec::new(),
            row: Vec::new(),
            file_start: Vec::new(),
            buckets: Buckets {
                def,
                tz,
                dir: scratch.to_path_buf(),
                buffered: BTreeMap::new(),
                spilled: BTreeMap::new(),
                buffered_rows: 0,
                limit: buffer_rows.max(1),
                files: 0,
            },
        })
    }

    /// Starts the rows of the next file.
    pub fn start_file(&mut self) {
        self.file_start.push(self.upd.len() as u32);
    }

    fn file_of(&self, pos: u32) -> usize {
        self.file_start.partition_point(|s| *s <= pos) - 1
    }

    /// Adds the accepted rows of a batch; `rows` are their file-relative row numbers (1-based).
    pub fn add(&mut self, mut accepted: DataFrame, rows: &[u32]) -> Result<(), Error> {
        let n = accepted.height();
        let first = self.upd.len();
        if first + n > u32::MAX as usize {
            return Err(Error::Usage(format!(
                "more than {} accepted rows of {} in one ingest; split the input into several ingests",
                u32::MAX,
                self.def.name
            )));
        }
        let hashes = key_hashes(&accepted, self.def.primary_key)?;
        self.index.extend(
            hashes
                .into_iter()
                .enumerate()
                .map(|(i, (a, b))| (a, b, (first + i) as u32)),
        );
        self.upd.extend(updated(&accepted)?);
        self.row.extend_from_slice(rows);
        let pos: Vec<u32> = (first as u32..(first + n) as u32).collect();
        let ord: Vec<u64> = pos.iter().map(|p| NEW_ROWS | *p as u64).collect();
        accepted.with_column(Column::new(POS.into(), pos))?;
        accepted.with_column(Column::new(ORD.into(), ord))?;
        self.buckets.route(accepted)
    }

    /// Resolves duplicates, merges with the stored table (None in replace mode), writes the new
    /// version of the table. `files` names the inputs (for messages).
    pub fn finish(
        mut self,
        stored: Option<&Store>,
        mode: super::Mode,
        files: &[String],
        batch_rows: usize,
        tx: &mut Transaction,
    ) -> Result<MergeOutcome, Error> {
        let n = self.upd.len();
        let mut lost: Vec<bool> = vec![false; n];
        let mut losers: Vec<Loser> = Vec::new();
        self.index.sort_unstable();
        // In-batch duplicates: equal hashes are adjacent, in read order.
        let mut group_winner: HashMap<(u64, u64), u32> = HashMap::new();
        let mut i = 0;
        while i < self.index.len() {
            let (a, b, first) = self.index[i];
            let mut j = i + 1;
            if j < self.index.len() && (self.index[j].0, self.index[j].1) == (a, b) {
                let mut w = first;
                while j < self.index.len() && (self.index[j].0, self.index[j].1) == (a, b) {
                    let c = self.index[j].2;
                    let (lose, win) = if newer(self.upd[c as usize], self.upd[w as usize]) {
                        (w, c)
                    } else {
                        (c, w)
                    };
                    w = win;
                    lost[lose as usize] = true;
                    losers.push(Loser {
                        order: (0, c),
                        pos: lose,
                        lost: Lost::InBatch(win),
                    });
                    j += 1;
                }
                group_winner.insert((a, b), w);
            }
            i = j;
        }
        // Against the stored table, streamed; its surviving rows join the partitions.
        if let Some(store) = stored
            && let Some(entry) = store.manifest().tables.get(self.def.name)
        {
            let schema = self.def.polars_schema();
            let names: Vec<PlSmallStr> = schema.iter_names().cloned().collect();
            let mut ord = 0u64;
            for f in &entry.files {
                let path = store.root().join(&f.path);
                let bad = |e: &dyn std::fmt::Display| StoreError::BadTable {
                    path: store.root().to_path_buf(),
                    table: self.def.name.to_string(),
                    message: format!("{}: {}", f.path, crate::error::first_line(&e.to_string())),
                };
                let open = || std::fs::File::open(&path).map_err(|e| bad(&e));
                let rows = ParquetReader::new(open()?).num_rows().map_err(|e| bad(&e))?;
                let mut offset = 0;
                while offset < rows {
                    let len = batch_rows.max(1).min(rows - offset);
                    let df = ParquetReader::new(open()?)
                        .with_slice(Some((offset, len)))
                        .finish()
                        .map_err(|e| bad(&e))?;
                    offset += len;
                    let mut df = df.select(names.iter().cloned()).map_err(|e| bad(&e))?;
                    let hashes = key_hashes(&df, self.def.primary_key)?;
                    let supd = updated(&df)?;
                    let mut keep = Vec::with_capacity(df.height());
                    for (k, (a, b)) in hashes.into_iter().enumerate() {
                        let at = self.index.partition_point(|e| (e.0, e.1) < (a, b));
                        let found = self.index.get(at).filter(|e| (e.0, e.1) == (a, b));
                        let Some(e) = found else {
                            keep.push(true);
                            continue;
                        };
                        let w = group_winner.get(&(a, b)).copied().unwrap_or(e.2);
                        if lost[w as usize] {
                            keep.push(true);
                            continue;
                        }
                        let why = if mode == super::Mode::Append {
                            Some(Lost::Append)
                        } else if newer(self.upd[w as usize], supd[k]) {
                            None
                        } else {
                            Some(Lost::StoredLater)
                        };
                        match why {
                            None => keep.push(false),
                            Some(why) => {
                                lost[w as usize] = true;
                                losers.push(Loser {
                                    order: (1, w),
                                    pos: w,
                                    lost: why,
                                });
                                keep.push(true);
                            }
                        }
                    }
                    let mask: BooleanChunked = keep.into_iter().collect();
                    df = df.filter(&mask)?;
                    let k = df.height() as u64;
                    df.with_column(Column::new(POS.into(), vec![None::<u32>; k as usize]))?;
                    df.with_column(Column::new(ORD.into(), (ord..ord + k).collect::<Vec<u64>>()))?;
                    ord += k;
                    self.buckets.route(df)?;
                }
            }
        }
        // Each partition: drop the losers, sort, write.
        let names: Vec<PlSmallStr> = self.def.polars_schema().iter_names().cloned().collect();
        let mut sort_by: Vec<PlSmallStr> = self.def.sort_by.iter().map(|s| (*s).into()).collect();
        sort_by.push(ORD.into());
        let mut key_text: HashMap<u32, String> = HashMap::new();
        let mut written = Vec::new();
        let mut stored_rows = 0u64;
        for key in self.buckets.keys() {
            let Some(df) = self.buckets.take(&key)? else { continue };
            let pos = df.column(POS)?.u32()?.clone();
            let keep: BooleanChunked = pos.iter().map(|p| p.is_none_or(|p| !lost[p as usize])).collect();
            if keep.sum().unwrap_or(0) as usize != df.height() {
                let gone = df.filter(&!&keep)?;
                let texts = key_texts(&gone, self.def.primary_key)?;
                for (p, t) in gone.column(POS)?.u32()?.iter().zip(texts) {
                    if let Some(p) = p {
                        key_text.insert(p, t);
                    }
                }
            }
            let df = df.filter(&keep)?;
            if df.height() == 0 {
                continue;
            }
            let df = df.sort(
                sort_by.clone(),
                SortMultipleOptions::default().with_maintain_order(true),
            )?;
            let mut df = df.select(names.iter().cloned())?;
            let month = self.def.partition_by.map(|_| key.as_str());
            stored_rows += df.height() as u64;
            written.push(tx.write_table_file(self.def, month, 0, &mut df)?);
        }
        if written.is_empty() {
            let mut empty = DataFrame::empty_with_schema(&self.def.polars_schema());
            written.push(tx.write_table_file(self.def, None, 0, &mut empty)?);
        }
        tx.set_table(self.def, written)?;
        // Counts and messages.
        let mut per_file = vec![(0u64, 0u64); self.file_start.len()];
        for (p, l) in lost.iter().enumerate() {
            let f = self.file_of(p as u32);
            if *l {
                per_file[f].1 += 1;
            } else {
                per_file[f].0 += 1;
            }
        }
        losers.sort_by_key(|l| l.order);
        let pk = self.def.primary_key.join(", ");
        let out_losers = losers
            .iter()
            .map(|l| {
                let k = key_text.get(&l.pos).map_or("?", String::as_str);
                let msg = match l.lost {
                    Lost::InBatch(w) => format!(
                        "duplicate primary key ({pk}) = ({k}); row {} of {} wins",
                        self.row[w as usize],
                        files[self.file_of(w)]
                    ),
                    Lost::Append => format!(
                        "duplicate primary key ({pk}) = ({k}): already stored (append mode keeps the stored row)"
                    ),
                    Lost::StoredLater => {
                        format!("duplicate primary key ({pk}) = ({k}): the stored row has a later updated_at")
                    }
                };
                (self.file_of(l.pos), self.row[l.pos as usize], msg)
            })
            .collect();
        Ok(MergeOutcome {
            accepted: lost.iter().filter(|l| !**l).count() as u64,
            stored: stored_rows,
            per_file,
            losers: out_losers,
        })
    }
}

/// Writes quarantine frames in parts of bounded size.
pub struct QuarantineWriter {
    table: &'static str,
    frames: Vec<DataFrame>,
    rows: usize,
    limit: usize,
}

impl QuarantineWriter {
    pub fn new(table: &'static str, limit: usize) -> QuarantineWriter {
        QuarantineWriter {
            table,
            frames: Vec::new(),
            rows: 0,
            limit: limit.max(1),
        }
    }

    pub fn push(&mut self, df: DataFrame, tx: &mut Transaction) -> Result<(), Error> {
        self.rows += df.height();
        self.frames.push(df);
        if self.rows >= self.limit {
            self.flush(tx)?;
        }
        Ok(())
    }

    pub fn flush(&mut self, tx: &mut Transaction) -> Result<(), Error> {
        if self.frames.is_empty() {
            return Ok(());
        }
        let lfs: Vec<LazyFrame> = self.frames.drain(..).map(|d| d.lazy()).collect();
        let mut q = concat_lf_diagonal(lfs, UnionArgs::default())?.collect()?;
        self.rows = 0;
        tx.write_quarantine(self.table, &mut q)?;
        Ok(())
    }
}
