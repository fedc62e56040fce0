//! Readers: CSV (delimiter sniffed), NDJSON (line by line, bad lines kept as rejected rows)
//! and Parquet, into a raw frame whose columns keep the input's names and values.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::IngestError;

/// No line of a CSV or NDJSON export may be longer than this.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Column of a raw frame holding a per-row read error (NDJSON lines that are not objects).
pub const READ_ERROR: &str = "__read_error";
/// Column holding the original text of a line that could not be read.
pub const RAW_LINE: &str = "__raw_line";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Ndjson,
    Parquet,
}

impl FileFormat {
    pub fn from_path(path: &Path) -> Result<FileFormat, IngestError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Ok(FileFormat::Csv),
            "ndjson" | "jsonl" | "json" => Ok(FileFormat::Ndjson),
            "parquet" | "pq" => Ok(FileFormat::Parquet),
            _ => Err(IngestError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV",
            FileFormat::Ndjson => "NDJSON",
            FileFormat::Parquet => "Parquet",
        }
    }
}

/// A file as read: one row per input record, columns named as in the file.
#[derive(Debug)]
pub struct RawFile {
    pub path: PathBuf,
    pub format: FileFormat,
    pub df: DataFrame,
}

pub fn read_file(path: &Path) -> Result<RawFile, IngestError> {
    let format = FileFormat::from_path(path)?;
    check_file_meta(path, format)?;
    let df = match format {
        FileFormat::Csv => read_csv(path)?,
        FileFormat::Ndjson => read_ndjson(path)?,
        FileFormat::Parquet => read_parquet(path)?,
    };
    Ok(RawFile {
        path: path.to_path_buf(),
        format,
        df,
    })
}

/// A file read in batches of rows: Parquet row groups are decoded a few at a time; CSV and
/// NDJSON are parsed whole and handed out in slices (their text is the smaller part of the
/// memory an ingest needs). Row offsets are file-relative.
pub struct RawBatches {
    pub path: PathBuf,
    pub format: FileFormat,
    source: Source,
    ranges: Vec<(usize, usize)>,
}

enum Source {
    Frame(DataFrame),
    Parquet {
        metadata: polars::io::parquet::metadata::FileMetadataRef,
        names: Vec<String>,
    },
}

/// Splits `0..n` into ranges of at most `batch_rows` rows.
fn even_ranges(n: usize, batch_rows: usize) -> Vec<(usize, usize)> {
    let b = batch_rows.max(1);
    (0..n).step_by(b).map(|o| (o, b.min(n - o))).collect()
}

impl RawBatches {
    pub fn open(path: &Path, batch_rows: usize) -> Result<RawBatches, IngestError> {
        let format = FileFormat::from_path(path)?;
        if format != FileFormat::Parquet {
            let raw = read_file(path)?;
            let ranges = even_ranges(raw.df.height(), batch_rows);
            return Ok(RawBatches {
                path: raw.path,
                format,
                source: Source::Frame(raw.df),
                ranges,
            });
        }
        check_file_meta(path, format)?;
        let (metadata, names) = parquet_metadata(path)?;
        // Batches follow row-group boundaries (a row group is decoded once), cut inside a
        // row group only when it alone is larger than a batch.
        let b = batch_rows.max(1);
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut offset = 0usize;
        let (mut start, mut len) = (0usize, 0usize);
        for rg in &metadata.row_groups {
            let n = rg.num_rows();
            if len > 0 && len + n > b {
                ranges.push((start, len));
                (start, len) = (offset, 0);
            }
            if n > b {
                ranges.extend(even_ranges(n, b).into_iter().map(|(o, l)| (offset + o, l)));
                start = offset + n;
            } else {
                len += n;
            }
            offset += n;
        }
        if len > 0 {
            ranges.push((start, len));
        }
        Ok(RawBatches {
            path: path.to_path_buf(),
            format,
            source: Source::Parquet { metadata, names },
            ranges,
        })
    }

    /// Column names as in the file (without the read-error columns).
    pub fn names(&self) -> Vec<String> {
        match &self.source {
            Source::Frame(df) => df
                .get_column_names()
                .iter()
                .map(|s| s.to_string())
                .filter(|s| s != READ_ERROR && s != RAW_LINE)
                .collect(),
            Source::Parquet { names, .. } => names.clone(),
        }
    }

    /// (offset, rows) of every batch, in file order.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    pub fn read(&self, offset: usize, len: usize) -> Result<DataFrame, IngestError> {
        match &self.source {
            Source::Frame(df) => Ok(df.slice(offset as i64, len)),
            Source::Parquet { metadata, .. } => {
                let path = &self.path;
                let file = open(path)?;
                parquet_guard(path, || {
                    let mut reader = ParquetReader::new(file).with_slice(Some((offset, len)));
                    reader.set_metadata(metadata.clone());
                    reader.finish().map_err(|e| IngestError::unreadable(path, "Parquet", e))
                })
            }
        }
    }
}

fn check_file_meta(path: &Path, format: FileFormat) -> Result<(), IngestError> {
    let meta = std::fs::metadata(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(IngestError::unreadable(path, format.name(), "is a directory"));
    }
    if meta.len() == 0 {
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The footer of a Parquet file and its column names, refusing types crm-kpi does not read.
fn parquet_metadata(path: &Path) -> Result<(polars::io::parquet::metadata::FileMetadataRef, Vec<String>), IngestError> {
    with_parquet(path, |mut reader, names| {
        let metadata = reader
            .get_metadata()
            .map_err(|e| IngestError::unreadable(path, "Parquet", e))?
            .clone();
        Ok((metadata, names))
    })
}

/// Opens a Parquet file for `f` with its column names, once it has the PAR1 magic bytes and no
/// column of a type crm-kpi does not read (Decimal). A corrupt file can trip assertions inside
/// the decoder: those panics become errors.
fn with_parquet<T>(
    path: &Path,
    f: impl FnOnce(ParquetReader<File>, Vec<String>) -> Result<T, IngestError>,
) -> Result<T, IngestError> {
    let start = head(path, 4)?;
    if start != b"PAR1" {
        return Err(IngestError::unreadable(
            path,
            "Parquet",
            "no PAR1 magic bytes; this is not a Parquet file",
        ));
    }
    let file = open(path)?;
    parquet_guard(path, || {
        let mut reader = ParquetReader::new(file);
        let schema = reader
            .schema()
            .map_err(|e| IngestError::unreadable(path, "Parquet", e))?;
        let mut names = Vec::new();
        for (name, field) in schema.iter() {
            let dtype = format!("{:?}", field.dtype);
            if dtype.starts_with("Decimal") {
                let msg = format!("column `{name}` is {dtype}, which crm-kpi does not read; export it as a double");
                return Err(IngestError::unreadable(path, "Parquet", msg));
            }
            names.push(name.to_string());
        }
        f(reader, names)
    })
}

/// Runs `f` on a Parquet file's decoder: a corrupt file can trip assertions inside it, and
/// those panics become errors naming the file.
fn parquet_guard<T>(path: &Path, f: impl FnOnce() -> Result<T, IngestError>) -> Result<T, IngestError> {
    match crate::panic_guard::guard(f) {
        Ok(r) => r,
        Err(panic) => Err(IngestError::unreadable(
            path,
            "Parquet",
            format!("corrupt file ({panic})"),
        )),
    }
}

fn open(path: &Path) -> Result<File, IngestError> {
    File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks that no line exceeds the limit, without holding the file in memory.
fn check_line_lengths(path: &Path) -> Result<(), IngestError> {
    let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let (mut line, mut len) = (1usize, 0usize);
    loop {
        let n = reader.read(&mut buf).map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            return Ok(());
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                line += 1;
                len = 0;
            } else {
                len += 1;
                if len > MAX_LINE_BYTES {
                    return Err(IngestError::LineTooLong {
                        path: path.to_path_buf(),
                        line,
                        limit: MAX_LINE_BYTES,
                    });
                }
            }
        }
    }
}

fn head(path: &Path, n: usize) -> Result<Vec<u8>, IngestError> {
    let mut buf = Vec::with_capacity(n);
    open(path)?
        .take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
}

/// The delimiter that occurs most often in the header line, among `, ; TAB |`.
pub fn sniff_delimiter(header: &[u8]) -> u8 {
    let line = header.split(|&b| b == b'\n').next().unwrap_or(header);
    let mut best = (b',', 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let n = line.iter().filter(|&&b| b == d).count();
        if n > best.1 {
            best = (d, n);
        }
    }
    best.0
}

fn read_csv(path: &Path) -> Result<DataFrame, IngestError> {
    let start = head(path, 64 * 1024)?;
    if start.contains(&0) {
        return Err(IngestError::unreadable(
            path,
            "CSV",
            "binary data (NUL bytes); this is not a text export",
        ));
    }
    if start.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    if start.contains(&b'\r') && !start.contains(&b'\n') && start.iter().filter(|&&b| b == b'\r').count() > 1 {
        return Err(IngestError::unreadable(
            path,
            "CSV",
            "lines end with a bare carriage return (classic Mac); convert the file to LF or CRLF line endings",
        ));
    }
    check_line_lengths(path)?;
    let delimiter = sniff_delimiter(&start);
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0)) // every column as text; ingest parses and validates
        .with_raise_if_empty(true)
        .map_parse_options(|p| p.with_separator(delimiter).with_missing_is_null(true))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| IngestError::Unreadable {
            path: path.to_path_buf(),
            format: "CSV",
            message: one_line(&e.to_string()),
        })?;
    // polars renames a repeated header to `<name>_duplicated_<n>`: two columns claim one name.
    if let Some(dup) = df.get_column_names().iter().find(|n| n.contains("_duplicated_")) {
        let base = dup.split("_duplicated_").next().unwrap_or(dup).to_string();
        return Err(IngestError::unreadable(
            path,
            "CSV",
            format!("the header names column `{base}` more than once"),
        ));
    }
    Ok(df)
}

fn read_parquet(path: &Path) -> Result<DataFrame, IngestError> {
    with_parquet(path, |reader, _| {
        reader.finish().map_err(|e| IngestError::unreadable(path, "Parquet", e))
    })
}

/// A multi-line message (polars quotes the offending field, which may span lines) as one line.
fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

/// NDJSON: one JSON object per line. A line that is not an object becomes a row with a
/// read error, so it is quarantined with its text instead of failing the file.
fn read_ndjson(path: &Path) -> Result<DataFrame, IngestError> {
    if head(path, 64 * 1024)?.contains(&0) {
        return Err(IngestError::unreadable(
            path,
            "NDJSON",
            "binary data (NUL bytes); this is not a text export",
        ));
    }
    let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
    let mut names: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut cols: Vec<Vec<Option<String>>> = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut raw: Vec<Option<String>> = Vec::new();
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| IngestError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() > MAX_LINE_BYTES {
            return Err(IngestError::LineTooLong {
                path: path.to_path_buf(),
                line: line_no,
                limit: MAX_LINE_BYTES,
            });
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let row = errors.len();
        let parsed: Result<serde_json::Map<String, serde_json::Value>, String> =
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(m)) => Ok(m),
                Ok(other) => Err(format!("line {line_no} is JSON but not an object: {}", kind_of(&other))),
                Err(e) => Err(format!("line {line_no} is not valid JSON: {e}")),
            };
        match parsed {
            Ok(map) => {
                for (k, v) in map {
                    let i = *index.entry(k.clone()).or_insert_with(|| {
                        names.push(k);
                        cols.push(vec![None; row]);
                        cols.len() - 1
                    });
                    cols[i].push(json_text(v));
                }
                errors.push(None);
                raw.push(None);
            }
            Err(msg) => {
                errors.push(Some(msg));
                raw.push(Some(text.to_string()));
            }
        }
        let height = errors.len();
        for c in &mut cols {
            c.resize(height, None);
        }
    }
    if errors.is_empty() {
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    if names.is_empty() {
        let first = errors.iter().flatten().next().cloned().unwrap_or_default();
        return Err(IngestError::unreadable(
            path,
            "NDJSON",
            format!("no line is a JSON object ({first})"),
        ));
    }
    let mut columns: Vec<Column> = names
        .iter()
        .zip(cols)
        .map(|(n, v)| Column::new(n.as_str().into(), v))
        .collect();
    if errors.iter().any(Option::is_some) {
        columns.push(Column::new(READ_ERROR.into(), errors));
        columns.push(Column::new(RAW_LINE.into(), raw));
    }
    let height = columns.first().map_or(0, |c| c.len());
    DataFrame::new(height, columns).map_err(|e| IngestError::unreadable(path, "NDJSON", e))
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn json_text(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_common_delimiters() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1,2,3"), b',');
        assert_eq!(sniff_delimiter(b"a;b;c\n1,5;2;3"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"a|b"), b'|');
        assert_eq!(sniff_delimiter(b"single"), b',');
    }

    #[test]
    fn ndjson_bad_lines_become_rows_with_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leads.ndjson");
        std::fs::write(
            &p,
            "{\"lead_id\":\"L1\",\"n\":5}\n\nnot json\n[1]\n{\"lead_id\":\"L2\",\"x\":true}\n",
        )
        .unwrap();
        let df = read_file(&p).unwrap().df;
        assert_eq!(df.height(), 4);
        let ids: Vec<_> = df.column("lead_id").unwrap().str().unwrap().iter().collect();
        assert_eq!(ids, [Some("L1"), None, None, Some("L2")]);
        let errs: Vec<_> = df
            .column(READ_ERROR)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|e| e.is_some())
            .collect();
        assert_eq!(errs, [false, true, true, false]);
        let n: Vec<_> = df.column("n").unwrap().str().unwrap().iter().collect();
        assert_eq!(n, [Some("5"), None, None, None]);
        let raw = df.column(RAW_LINE).unwrap().str().unwrap().get(1);
        assert_eq!(raw, Some("not json"));
    }

    #[test]
    fn unreadable_inputs_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert!(matches!(
            read_file(&w("leads.csv", b"")),
            Err(IngestError::Empty { .. })
        ));
        assert!(matches!(
            read_file(&w("leads.csv", b"\x00\x01\x02garbage")),
            Err(IngestError::Unreadable { .. })
        ));
        assert!(matches!(
            read_file(&w("leads.parquet", b"PAR1 nope")),
            Err(IngestError::Unreadable { .. })
        ));
        assert!(matches!(
            read_file(&w("leads.parquet", b"hello")),
            Err(IngestError::Unreadable { .. })
        ));
        assert!(matches!(
            read_file(&w("leads.xlsx", b"x")),
            Err(IngestError::UnknownFormat { .. })
        ));
    }
}
