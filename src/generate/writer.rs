//! Writing one table as CSV or Parquet, batch by batch in a fixed order, with the dirty
//! rows and duplicates appended at the end.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::io::csv::write::BatchedWriter as CsvBatched;
use polars::io::parquet::write::BatchedWriter as ParquetBatched;
use polars::prelude::*;

use super::Format;
use super::calendar::fmt_ts;
use crate::error::GenerateError;
use crate::schema::{Kind, TableDef, UPDATED_AT};
use crate::timefmt;

/// RFC 3339 UTC, as written to CSV.
pub const CSV_DATETIME: &str = "%Y-%m-%dT%H:%M:%SZ";
const ROW_GROUP: usize = 256 * 1024;

/// Output columns of a table: the schema's input columns, without `updated_at`.
pub fn output_columns(def: &TableDef) -> Vec<(&'static str, Kind)> {
    def.input_columns()
        .filter(|c| c.name != UPDATED_AT)
        .map(|c| (c.name, c.kind))
        .collect()
}

enum Sink {
    Csv(CsvBatched<File>),
    Parquet(Box<ParquetBatched<File>>),
}

pub struct TableWriter {
    pub table: &'static str,
    columns: Vec<(&'static str, Kind)>,
    /// Columns written as strings in Parquet because dirty rows hold unparseable values.
    stringify: Vec<&'static str>,
    format: Format,
    path: PathBuf,
    sink: Sink,
    pub rows: usize,
    /// Rows to copy from the first batch and append at the end as exact duplicates.
    dup_count: usize,
    dups: Option<DataFrame>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TableWriter {
    pub fn create(
        dir: &Path,
        def: &'static TableDef,
        format: Format,
        stringify: Vec<&'static str>,
        dup_count: usize,
    ) -> Result<TableWriter, GenerateError> {
        let columns = output_columns(def);
        let stringify = if format == Format::Parquet {
            stringify
        } else {
            Vec::new()
        };
        let ext = match format {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        };
        let path = dir.join(format!("{}.{ext}", def.name));
        let file = File::create(&path).map_err(io_err(&path))?;
        let schema: Schema = columns
            .iter()
            .map(|(n, k)| {
                let dt = if stringify.contains(n) {
                    DataType::String
                } else {
                    k.dtype()
                };
                (PlSmallStr::from(*n), dt)
            })
            .collect();
        let sink = match format {
            Format::Csv => Sink::Csv(
                CsvWriter::new(file)
                    .include_header(true)
                    .with_datetime_format(Some(CSV_DATETIME.into()))
                    .with_date_format(Some("%Y-%m-%d".into()))
                    .batched(&schema)?,
            ),
            Format::Parquet => Sink::Parquet(Box::new(
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Zstd(None))
                    .with_statistics(StatisticsOptions::default())
                    .batched(&schema)?,
            )),
        };
        Ok(TableWriter {
            table: def.name,
            columns,
            stringify,
            format,
            path,
            sink,
            rows: 0,
            dup_count,
            dups: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_columns(&self, df: &DataFrame) -> PolarsResult<()> {
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        let want: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        polars_ensure!(names == want, SchemaMismatch: "{}: generated columns {:?}, expected {:?}", self.table, names, want);
        Ok(())
    }

    /// Appends a batch of clean rows.
    pub fn write(&mut self, df: DataFrame) -> PolarsResult<()> {
        self.check_columns(&df)?;
        if self.dups.is_none() && self.dup_count > 0 && df.height() > 0 {
            let h = df.height();
            let k = self.dup_count.min(h);
            let idx: Vec<IdxSize> = (0..k).map(|j| ((j + 1) * h / (k + 1)) as IdxSize).collect();
            let idx = IdxCa::from_vec("idx".into(), idx);
            self.dups = Some(df.take(&idx)?);
        }
        self.write_raw(df)
    }

    fn write_raw(&mut self, df: DataFrame) -> PolarsResult<()> {
        self.rows += df.height();
        if df.height() == 0 {
            return Ok(());
        }
        match &mut self.sink {
            Sink::Csv(w) => w.write_batch(&df),
            Sink::Parquet(w) => {
                let mut df = stringify_frame(df, &self.stringify)?;
                df.rechunk_mut();
                let mut off = 0;
                while off < df.height() {
                    let len = ROW_GROUP.min(df.height() - off);
                    let mut part = df.slice(off as i64, len);
                    part.rechunk_mut();
                    w.write_batch(&part)?;
                    off += len;
                }
                Ok(())
            }
        }
    }

    /// Appends rows given as text cells (None = empty), in output column order. In CSV
    /// the text is written as is; in Parquet it is parsed into the column types (columns in
    /// `stringify` stay text).
    pub fn write_text_rows(&mut self, rows: &[Vec<Option<String>>]) -> PolarsResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let mut cols = Vec::with_capacity(self.columns.len());
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            let cells = rows.iter().map(|r| r[i].as_deref());
            let as_text = self.format == Format::Csv || self.stringify.contains(name);
            cols.push(if as_text {
                StringChunked::from_iter_options((*name).into(), cells)
                    .into_series()
                    .into_column()
            } else {
                typed_column(name, *kind, cells)?
            });
        }
        let df = DataFrame::new(n, cols)?;
        self.write_raw(df)
    }

    /// Writes the duplicates and closes the file; returns rows written.
    pub fn finish(mut self) -> PolarsResult<usize> {
        if let Some(d) = self.dups.take() {
            self.write_raw(d)?;
        }
        match &mut self.sink {
            Sink::Csv(w) => w.finish()?,
            Sink::Parquet(w) => {
                w.finish()?;
            }
        }
        Ok(self.rows)
    }

    pub fn duplicates(&self) -> usize {
        self.dups.as_ref().map_or(0, |d| d.height())
    }
}

fn bad_cell(name: &str, s: &str, kind: Kind) -> PolarsError {
    polars_err!(ComputeError: "generator bug: `{s}` in column {name} is not a {}", kind.name())
}

fn typed_column<'a>(name: &str, kind: Kind, cells: impl Iterator<Item = Option<&'a str>>) -> PolarsResult<Column> {
    let utc = chrono_tz::UTC;
    let cells: Vec<Option<&str>> = cells.collect();
    let s = match kind {
        Kind::Str => StringChunked::from_iter_options(name.into(), cells.into_iter()).into_series(),
        Kind::Float => {
            let v: PolarsResult<Vec<Option<f64>>> = cells
                .iter()
                .map(|c| {
                    c.map(|s| timefmt::parse_f64(s).ok_or_else(|| bad_cell(name, s, kind)))
                        .transpose()
                })
                .collect();
            Float64Chunked::from_iter_options(name.into(), v?.into_iter()).into_series()
        }
        Kind::Int | Kind::Duration => {
            let v: PolarsResult<Vec<Option<i64>>> = cells
                .iter()
                .map(|c| {
                    c.map(|s| timefmt::parse_i64(s).ok_or_else(|| bad_cell(name, s, kind)))
                        .transpose()
                })
                .collect();
            Int64Chunked::from_iter_options(name.into(), v?.into_iter()).into_series()
        }
        Kind::Bool => {
            let v: PolarsResult<Vec<Option<bool>>> = cells
                .iter()
                .map(|c| {
                    c.map(|s| timefmt::parse_bool(s).ok_or_else(|| bad_cell(name, s, kind)))
                        .transpose()
                })
                .collect();
            BooleanChunked::from_iter_options(name.into(), v?.into_iter()).into_series()
        }
        Kind::Timestamp => {
            let v: PolarsResult<Vec<Option<i64>>> = cells
                .iter()
                .map(|c| {
                    c.map(|s| timefmt::parse_timestamp_us(s, utc).ok_or_else(|| bad_cell(name, s, kind)))
                        .transpose()
                })
                .collect();
            Int64Chunked::from_iter_options(name.into(), v?.into_iter())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_series()
        }
        Kind::Date => {
            let v: PolarsResult<Vec<Option<i32>>> = cells
                .iter()
                .map(|c| {
                    c.map(|s| timefmt::parse_date_days(s, utc).ok_or_else(|| bad_cell(name, s, kind)))
                        .transpose()
                })
                .collect();
            Int32Chunked::from_iter_options(name.into(), v?.into_iter())
                .into_date()
                .into_series()
        }
    };
    Ok(s.into_column())
}

/// Rewrites the named columns as text, formatted as in CSV output.
fn stringify_frame(df: DataFrame, names: &[&str]) -> PolarsResult<DataFrame> {
    if names.is_empty() {
        return Ok(df);
    }
    let height = df.height();
    let cols = df
        .columns()
        .iter()
        .map(|c| {
            if names.contains(&c.name().as_str()) {
                stringify(c)
            } else {
                Ok(c.clone())
            }
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(height, cols)
}

fn stringify(c: &Column) -> PolarsResult<Column> {
    let s = c.as_materialized_series();
    let name = s.name().clone();
    let out: StringChunked = match s.dtype() {
        DataType::Datetime(TimeUnit::Microseconds, _) => {
            let phys = s.to_physical_repr();
            phys.i64()?
                .iter()
                .map(|v| v.map(|us| fmt_ts(us.div_euclid(1_000_000))))
                .collect()
        }
        DataType::Float64 => s.f64()?.iter().map(|v| v.map(|x| format!("{x}"))).collect(),
        DataType::String => s.str()?.clone(),
        _ => s.cast(&DataType::String)?.str()?.clone(),
    };
    Ok(out.with_name(name).into_series().into_column())
}
