//! Readers: CSV (delimiter sniffed), NDJSON (line by line, bad lines kept as rejected rows)
//! and Parquet, into a raw frame whose columns keep the input's names and values.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::IngestError;

/// No line of a CSV or NDJSON export may be longer than this.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Columns crm-kpi adds to what it reads start with this; an input column whose name starts
/// with it is renamed (see `reserve_names`).
pub const INTERNAL: &str = "__crm_kpi_";
/// Column of a raw frame holding a per-row read error (NDJSON lines that are not objects).
pub const READ_ERROR: &str = "__crm_kpi_read_error";
/// Column holding the original text of a line that could not be read.
pub const RAW_LINE: &str = "__crm_kpi_raw_line";
/// The 1-based record number of each row in its file (blank CSV lines count, as they are
/// records of the file, though no row is made of them).
pub const ROW: &str = "__crm_kpi_row";
/// The file a staged row was read from.
pub const FILE: &str = "__crm_kpi_file";

pub fn is_internal(name: &str) -> bool {
    name.starts_with(INTERNAL)
}

/// A column as text. Dates and times polars cannot print (out of chrono's range: a Parquet
/// date32 of 2^31 - 1, an int64 timestamp near its limits) are written as their integers
/// instead of panicking, so such a row can be quarantined with its value.
pub fn text_column(c: &Column) -> PolarsResult<Column> {
    let name = c.name().clone();
    match c.dtype() {
        DataType::Date => {
            let days = c.to_physical_repr();
            let out: StringChunked = days
                .i32()?
                .iter()
                .map(|d| {
                    d.map(|d| match crate::timefmt::day_in_range(d) {
                        true => crate::timefmt::date_from_days(d).to_string(),
                        false => d.to_string(),
                    })
                })
                .collect();
            Ok(out.with_name(name).into_column())
        }
        DataType::Datetime(unit, tz) => {
            // A zoned column holds UTC instants: written with `Z`; a naive one without.
            let suffix = if tz.is_some() { "Z" } else { "" };
            let per_us: i64 = match unit {
                TimeUnit::Nanoseconds => 1000,
                _ => 1,
            };
            let mult: i64 = if *unit == TimeUnit::Milliseconds { 1000 } else { 1 };
            let raw = c.to_physical_repr();
            let out: StringChunked = raw
                .i64()?
                .iter()
                .map(|v| {
                    v.map(|v| {
                        v.checked_mul(mult)
                            .map(|x| x / per_us)
                            .filter(|us| crate::timefmt::us_in_range(*us))
                            .and_then(chrono::DateTime::from_timestamp_micros)
                            .map_or_else(
                                || v.to_string(),
                                |t| format!("{}{suffix}", t.format("%Y-%m-%dT%H:%M:%S%.f")),
                            )
                    })
                })
                .collect();
            Ok(out.with_name(name).into_column())
        }
        _ => c.cast(&DataType::String),
    }
}

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

/// A file as read: one row per input record, columns named as in the file, plus `ROW`.
#[derive(Debug)]
pub struct RawFile {
    pub path: PathBuf,
    pub format: FileFormat,
    pub df: DataFrame,
    /// Blank lines of a CSV file, skipped (no row is made of them).
    pub blank_lines: u64,
}

/// Reads a whole file. `records` says where a JSON document keeps its records (see
/// `json_records`).
pub fn read_file_with(path: &Path, records: Option<&str>) -> Result<RawFile, IngestError> {
    let format = FileFormat::from_path(path)?;
    check_file_meta(path, format)?;
    let (df, blank_lines) = match format {
        FileFormat::Csv => read_csv(path)?,
        FileFormat::Ndjson => (read_json(path, records)?, 0),
        FileFormat::Parquet => (with_row_numbers(read_parquet(path)?, None)?, 0),
    };
    Ok(RawFile {
        path: path.to_path_buf(),
        format,
        df,
        blank_lines,
    })
}

pub fn read_file(path: &Path) -> Result<RawFile, IngestError> {
    read_file_with(path, None)
}

/// An input column named like one crm-kpi adds (`__crm_kpi_...`) is renamed `input.<name>`:
/// the namespace stays crm-kpi's, and the column is reported as one the schema does not know.
fn reserve_names(df: &mut DataFrame) -> PolarsResult<()> {
    let clashing: Vec<String> = df
        .get_column_names()
        .iter()
        .filter(|n| is_internal(n))
        .map(|n| n.to_string())
        .collect();
    for n in clashing {
        df.rename(&n, format!("input.{n}").into())?;
    }
    Ok(())
}

/// Adds `ROW`: 1-based record numbers, or the given ones.
fn with_row_numbers(mut df: DataFrame, rows: Option<Vec<u64>>) -> Result<DataFrame, IngestError> {
    reserve_names(&mut df).map_err(|e| IngestError::Unreadable {
        path: PathBuf::new(),
        format: "input",
        message: e.to_string(),
    })?;
    let rows = rows.unwrap_or_else(|| (1..=df.height() as u64).collect());
    df.with_column(Column::new(ROW.into(), rows))
        .map_err(|e| IngestError::Unreadable {
            path: PathBuf::new(),
            format: "input",
            message: e.to_string(),
        })?;
    Ok(df)
}

/// A file read in batches of rows: Parquet row groups are decoded a few at a time; CSV and
/// NDJSON are parsed whole and handed out in slices (their text is the smaller part of the
/// memory an ingest needs). Row offsets are file-relative.
pub struct RawBatches {
    pub path: PathBuf,
    pub format: FileFormat,
    source: Source,
    ranges: Vec<(usize, usize)>,
    /// Blank lines skipped (CSV).
    pub blank_lines: u64,
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
                blank_lines: raw.blank_lines,
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
            blank_lines: 0,
        })
    }

    /// Rows already in memory (a mapping source's output), labelled with `path`.
    pub fn from_frame(path: &Path, format: FileFormat, df: DataFrame, batch_rows: usize) -> RawBatches {
        let ranges = even_ranges(df.height(), batch_rows);
        RawBatches {
            path: path.to_path_buf(),
            format,
            source: Source::Frame(df),
            ranges,
            blank_lines: 0,
        }
    }

    /// Column names as in the file (without the read-error columns).
    pub fn names(&self) -> Vec<String> {
        match &self.source {
            Source::Frame(df) => df
                .get_column_names()
                .iter()
                .map(|s| s.to_string())
                .filter(|s| !is_internal(s))
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
                let df = parquet_guard(path, || {
                    let mut reader = ParquetReader::new(file).with_slice(Some((offset, len)));
                    reader.set_metadata(metadata.clone());
                    reader.finish().map_err(|e| IngestError::unreadable(path, "Parquet", e))
                })?;
                let rows = (offset as u64 + 1..=(offset + df.height()) as u64).collect();
                with_row_numbers(df, Some(rows))
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
    check_footer(path).map_err(|msg| IngestError::unreadable(path, "Parquet", msg))?;
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
        let metadata = reader
            .get_metadata()
            .map_err(|e| IngestError::unreadable(path, "Parquet", e))?
            .clone();
        check_declared_sizes(path, &metadata).map_err(|msg| IngestError::unreadable(path, "Parquet", msg))?;
        f(reader, names)
    })
}

/// Decodes the footer with a bounded budget before polars does: polars' footer decoder
/// allocates whatever length a list declares, and a footer claiming a list of 10^11 entries
/// aborts the process (found by `scripts/fuzz.sh`). The budget (16 bytes per footer byte plus
/// 1 MiB) is far above what a real footer needs and caps what a lying one can allocate.
fn check_footer(path: &Path) -> Result<(), String> {
    use polars_parquet_format::FileMetaData;
    use polars_parquet_format::thrift::protocol::TCompactInputProtocol;
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let (_, footer) = crate::output::read_footer(&mut f).map_err(|e| format!("corrupt file: {e}"))?;
    let budget = footer.len().saturating_mul(16).saturating_add(1 << 20);
    let mut prot = TCompactInputProtocol::new(footer.as_slice(), budget);
    FileMetaData::read_from_in_protocol(&mut prot).map_err(|e| format!("corrupt file: unreadable footer: {e}"))?;
    Ok(())
}

/// The most bytes a page may declare once uncompressed.
const MAX_PAGE_BYTES: i64 = 1 << 30;

/// Refuses a file whose footer or page headers declare more rows, values or bytes than the
/// file can hold. polars' decoder allocates what a page header declares before it checks it,
/// and a header claiming 2^61 values aborts the process (found by `scripts/fuzz.sh`): so every
/// page header is read first (the compressed pages are skipped, not decoded). Declared rows
/// are bounded by 64 per byte of the file (plus a million): a unique id column alone takes
/// more room than that.
fn check_declared_sizes(path: &Path, metadata: &polars::io::parquet::metadata::FileMetadataRef) -> Result<(), String> {
    use polars_parquet_format::PageHeader;
    use polars_parquet_format::thrift::protocol::TCompactInputProtocol;
    use std::io::{Read, Seek, SeekFrom};

    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let max_rows = len
        .saturating_mul(64)
        .saturating_add(1_000_000)
        .min(u64::from(u32::MAX));
    let rows: u64 = metadata.row_groups.iter().map(|rg| rg.num_rows() as u64).sum();
    if rows > max_rows {
        return Err(format!(
            "corrupt file: the footer declares {rows} rows, more than its {len} bytes can hold"
        ));
    }
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    for (g, rg) in metadata.row_groups.iter().enumerate() {
        for chunk in rg.parquet_columns() {
            let name = chunk.descriptor().path_in_schema.join(".");
            let corrupt = |what: String| format!("corrupt file: row group {g}, column {name}: {what}");
            let range = chunk.byte_range();
            if range.start > range.end || range.end > len {
                return Err(corrupt(format!(
                    "bytes {}..{} outside the file ({len} bytes)",
                    range.start, range.end
                )));
            }
            let values = chunk.num_values();
            let flat = chunk.descriptor().descriptor.max_rep_level == 0;
            if values < 0 || (flat && values as u64 > rg.num_rows() as u64) || values as u64 > max_rows {
                return Err(corrupt(format!("{values} values in {} rows", rg.num_rows())));
            }
            let mut bytes = vec![0u8; (range.end - range.start) as usize];
            file.seek(SeekFrom::Start(range.start)).map_err(|e| e.to_string())?;
            file.read_exact(&mut bytes).map_err(|e| e.to_string())?;
            let mut pos = 0usize;
            while pos < bytes.len() {
                let mut cursor = std::io::Cursor::new(&bytes[pos..]);
                let header = {
                    let mut prot = TCompactInputProtocol::new(&mut cursor, bytes.len() - pos);
                    PageHeader::read_from_in_protocol(&mut prot).map_err(|e| {
                        corrupt(format!(
                            "unreadable page header at byte {}: {e}",
                            range.start as usize + pos
                        ))
                    })?
                };
                pos += cursor.position() as usize;
                let declared = [
                    header.data_page_header.as_ref().map(|h| h.num_values),
                    header.data_page_header_v2.as_ref().map(|h| h.num_values),
                    header.dictionary_page_header.as_ref().map(|h| h.num_values),
                ];
                for n in declared.into_iter().flatten() {
                    if n < 0 || i64::from(n) > values.max(rg.num_rows() as i64) {
                        return Err(corrupt(format!("a page declares {n} values of the column's {values}")));
                    }
                }
                let (compressed, uncompressed) = (header.compressed_page_size, header.uncompressed_page_size);
                if compressed < 0 || compressed as usize > bytes.len() - pos {
                    return Err(corrupt(format!(
                        "a page declares {compressed} bytes past the column's end"
                    )));
                }
                if !(0..=MAX_PAGE_BYTES).contains(&i64::from(uncompressed)) {
                    return Err(corrupt(format!("a page declares {uncompressed} bytes uncompressed")));
                }
                pos += compressed as usize;
            }
        }
    }
    Ok(())
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

fn read_csv(path: &Path) -> Result<(DataFrame, u64), IngestError> {
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
    if let Some(msg) = report_export(path)? {
        return Err(IngestError::unreadable(path, "CSV", msg));
    }
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
    let mut df = df;
    // polars keeps a quoted header's doubled quotes (`"Date entered ""Won (Sales)"""` reads
    // as `Date entered ""Won (Sales)""`); RFC 4180 makes them one quote.
    let renames: Vec<(String, String)> = df
        .get_column_names()
        .iter()
        .filter(|n| n.contains("\"\""))
        .map(|n| (n.to_string(), n.replace("\"\"", "\"")))
        .collect();
    for (from, to) in renames {
        df.rename(&from, to.into())
            .map_err(|e| IngestError::unreadable(path, "CSV", e))?;
    }
    // Excel and HubSpot write a UTF-8 byte-order mark before the first header.
    if let Some(first) = df.get_column_names().first().map(|n| n.to_string())
        && let Some(clean) = first.strip_prefix('\u{feff}')
    {
        df.rename(&first, clean.into())
            .map_err(|e| IngestError::unreadable(path, "CSV", e))?;
    }
    // A blank line is no record: skipped, and counted in the report.
    let blank = blank_rows(&df).map_err(|e| IngestError::unreadable(path, "CSV", e))?;
    let n_blank = blank.sum().unwrap_or(0) as u64;
    let rows: Vec<u64> = (1..=df.height() as u64).collect();
    let mut df = with_row_numbers(df, Some(rows))?;
    if n_blank > 0 {
        df = df
            .filter(&!&blank)
            .map_err(|e| IngestError::unreadable(path, "CSV", e))?;
    }
    Ok((df, n_blank))
}

/// A CRM *report* export (labels for headers, values formatted for the reader's locale, a
/// footer of totals and notices) is not a record export; says what to export instead.
pub fn report_export(path: &Path) -> Result<Option<String>, IngestError> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut f = open(path)?;
    let tail_len = len.min(4096);
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-(tail_len as i64))).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let tail = String::from_utf8_lossy(&tail);
    let salesforce = [
        "Confidential Information - Do Not Distribute",
        "salesforce.com, inc. All rights reserved",
        "Generated By:",
    ];
    if salesforce.iter().filter(|m| tail.contains(*m)).count() >= 1 && tail.contains("salesforce.com") {
        return Ok(Some(
            "this is a Salesforce report export (label headers, locale-formatted values, a footer); crm-kpi reads object \
             exports instead: use Setup > Data Export, or Data Loader / the Bulk API (`sf data export bulk`), for \
             Opportunity, OpportunityHistory, OpportunityStage, Lead, LeadHistory, Account, User, Task, Event, \
             CurrencyType, DatedConversionRate (and Order, Campaign if you use them), and pass them with --preset salesforce"
                .into(),
        ));
    }
    Ok(None)
}

/// Rows whose every value is null or only whitespace.
fn blank_rows(df: &DataFrame) -> PolarsResult<BooleanChunked> {
    let mut blank = BooleanChunked::full("blank".into(), true, df.height());
    for c in df.columns() {
        let s = c.as_materialized_series();
        let empty: BooleanChunked = s.str()?.iter().map(|v| v.is_none_or(|v| v.trim().is_empty())).collect();
        blank = &blank & &empty;
    }
    Ok(blank)
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

/// JSON input: NDJSON (one object per line; a line holding a page of records, as a CRM API
/// returns them, gives its records), or one JSON document: an array of records, or an object
/// whose records are at `records` (see `RecordPath`) or under `results`, `data`, `records` or
/// `items`. Nested objects become columns named with dots (`properties.dealname`); arrays of
/// values are joined with `;` (arrays of objects with an `id`, their ids). A line that is not
/// a JSON object becomes a row with a read error, so it is quarantined with its text.
fn read_json(path: &Path, records: Option<&str>) -> Result<DataFrame, IngestError> {
    let start = head(path, 64 * 1024)?;
    if start.contains(&0) {
        return Err(IngestError::unreadable(
            path,
            "JSON",
            "binary data (NUL bytes); this is not a text export",
        ));
    }
    let path_spec = records.map(RecordPath::parse);
    let text_start = String::from_utf8_lossy(&start);
    let trimmed = text_start.trim_start_matches('\u{feff}').trim_start();
    let first_line = trimmed.lines().next().unwrap_or("");
    // `.ndjson` and `.jsonl` are lines; a `.json` file is one document unless its first line
    // is a whole JSON value.
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let document = ext == "json"
        && (trimmed.starts_with('[')
            || (trimmed.starts_with('{') && serde_json::from_str::<serde_json::Value>(first_line).is_err()));
    let mut rows = Rows::default();
    if document {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > MAX_JSON_DOCUMENT_BYTES {
            return Err(IngestError::unreadable(
                path,
                "JSON",
                format!(
                    "a single JSON document of {len} bytes is over the {MAX_JSON_DOCUMENT_BYTES}-byte limit; export NDJSON (one record per line) instead"
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let doc: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| IngestError::unreadable(path, "JSON", format!("not valid JSON: {e}")))?;
        let records = extract_records(doc, path_spec.as_ref());
        if records.is_empty() {
            // A valid page with no records (`"data": []`, an API's last page): no rows.
            return DataFrame::new(0, vec![Column::new(ROW.into(), Vec::<u64>::new())])
                .map_err(|e| IngestError::unreadable(path, "JSON", e));
        }
        for rec in records {
            rows.push_record(rec);
        }
    } else {
        let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
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
            let text = text.trim().trim_start_matches('\u{feff}');
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v @ serde_json::Value::Object(_)) => {
                    for rec in extract_records(v, path_spec.as_ref()) {
                        rows.push_record(rec);
                    }
                }
                Ok(other) => rows.push_error(
                    format!("line {line_no} is JSON but not an object: {}", kind_of(&other)),
                    text,
                ),
                Err(e) => rows.push_error(format!("line {line_no} is not valid JSON: {e}"), text),
            }
        }
    }
    rows.into_frame(path)
}

/// A JSON document larger than this must be given as NDJSON (it is parsed whole).
pub const MAX_JSON_DOCUMENT_BYTES: u64 = 2 << 30;

/// Where a JSON document keeps its records: dot-separated keys, `[]` after a key to go through
/// each element of the array it holds (`results[].stages[]`: every stage of every result; the
/// result's own fields come along as `results.<field>`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPath(Vec<(String, bool)>);

impl RecordPath {
    pub fn parse(s: &str) -> RecordPath {
        RecordPath(
            s.split('.')
                .filter(|p| !p.is_empty())
                .map(|p| match p.strip_suffix("[]") {
                    Some(k) => (k.to_string(), true),
                    None => (p.to_string(), false),
                })
                .collect(),
        )
    }
}

type Record = Vec<(String, Option<String>)>;

/// The records of a JSON value: by `path`, else a top-level array, else the first array under
/// `results`, `data`, `records` or `items`, else the object itself.
fn extract_records(v: serde_json::Value, path: Option<&RecordPath>) -> Vec<Record> {
    use serde_json::Value;
    let mut out = Vec::new();
    match path {
        Some(p) => walk(v, &p.0, "", Vec::new(), &mut out),
        None => match v {
            Value::Array(items) => items.into_iter().for_each(|i| out.push(flatten_record(i, Vec::new()))),
            Value::Object(mut m) => {
                let key = ["results", "data", "records", "items"]
                    .into_iter()
                    .find(|k| matches!(m.get(*k), Some(Value::Array(_))));
                match key.and_then(|k| m.remove(k)) {
                    Some(Value::Array(items)) => {
                        items.into_iter().for_each(|i| out.push(flatten_record(i, Vec::new())))
                    }
                    _ => out.push(flatten_record(Value::Object(m), Vec::new())),
                }
            }
            other => out.push(flatten_record(other, Vec::new())),
        },
    }
    out
}

/// `from` is the key of the array `v` is an element of: when the walk goes deeper, `v`'s other
/// fields come along, prefixed with it (`results.label` for a stage of a result).
fn walk(v: serde_json::Value, steps: &[(String, bool)], from: &str, inherited: Record, out: &mut Vec<Record>) {
    use serde_json::Value;
    let Some(((key, each), rest)) = steps.split_first() else {
        out.push(flatten_record(v, inherited));
        return;
    };
    let Value::Object(mut m) = v else { return };
    let Some(next) = m.remove(key) else { return };
    let mut carried = inherited;
    if !from.is_empty() {
        let mut parent = Vec::new();
        flatten_into(Value::Object(m), from, &mut parent);
        carried.extend(parent);
    }
    match (next, each) {
        (Value::Array(items), true) => {
            for item in items {
                walk(item, rest, key, carried.clone(), out);
            }
        }
        (other, _) => walk(other, rest, from, carried, out),
    }
}

fn flatten_record(v: serde_json::Value, inherited: Record) -> Record {
    let mut out = inherited;
    match v {
        serde_json::Value::Object(_) => flatten_into(v, "", &mut out),
        other => out.push(("value".to_string(), json_text(other))),
    }
    out
}

fn flatten_into(v: serde_json::Value, prefix: &str, out: &mut Record) {
    use serde_json::Value;
    let name = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(_) => flatten_into(v, &name(&k), out),
                    other => out.push((name(&k), json_text(other))),
                }
            }
        }
        other => out.push((prefix.to_string(), json_text(other))),
    }
}

/// Rows being built from JSON records, with a read error per row.
#[derive(Default)]
struct Rows {
    names: Vec<String>,
    index: std::collections::HashMap<String, usize>,
    cols: Vec<Vec<Option<String>>>,
    errors: Vec<Option<String>>,
    raw: Vec<Option<String>>,
}

impl Rows {
    fn push_record(&mut self, rec: Record) {
        let row = self.errors.len();
        for (k, v) in rec {
            let i = match self.index.get(&k) {
                Some(i) => *i,
                None => {
                    self.names.push(k.clone());
                    self.cols.push(vec![None; row]);
                    self.index.insert(k, self.cols.len() - 1);
                    self.cols.len() - 1
                }
            };
            if self.cols[i].len() == row {
                self.cols[i].push(v);
            } else {
                // A key repeated within one record: the last value wins, as in JSON parsers.
                self.cols[i][row] = v;
            }
        }
        self.errors.push(None);
        self.raw.push(None);
        self.pad();
    }

    fn push_error(&mut self, msg: String, text: &str) {
        self.errors.push(Some(msg));
        self.raw.push(Some(text.to_string()));
        self.pad();
    }

    fn pad(&mut self) {
        let height = self.errors.len();
        for c in &mut self.cols {
            c.resize(height, None);
        }
    }

    fn into_frame(self, path: &Path) -> Result<DataFrame, IngestError> {
        if self.errors.is_empty() {
            return Err(IngestError::Empty {
                path: path.to_path_buf(),
            });
        }
        if self.names.is_empty() {
            let first = self.errors.iter().flatten().next().cloned().unwrap_or_default();
            return Err(IngestError::unreadable(
                path,
                "JSON",
                format!("no record is a JSON object ({first})"),
            ));
        }
        let height = self.errors.len();
        let mut columns: Vec<Column> = self
            .names
            .iter()
            .zip(self.cols)
            .map(|(n, v)| match is_internal(n) {
                // See `reserve_names`.
                true => Column::new(format!("input.{n}").into(), v),
                false => Column::new(n.as_str().into(), v),
            })
            .collect();
        if self.errors.iter().any(Option::is_some) {
            columns.push(Column::new(READ_ERROR.into(), self.errors));
            columns.push(Column::new(RAW_LINE.into(), self.raw));
        }
        columns.push(Column::new(ROW.into(), (1..=height as u64).collect::<Vec<_>>()));
        DataFrame::new(height, columns).map_err(|e| IngestError::unreadable(path, "JSON", e))
    }
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
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) if items.is_empty() => None,
        // A list of values, or of objects with an id (API associations): `a;b`.
        Value::Array(items) if items.iter().all(|i| !matches!(i, Value::Array(_) | Value::Object(_))) => {
            let parts: Vec<String> = items.into_iter().filter_map(json_text).collect();
            Some(parts.join(";"))
        }
        Value::Array(items)
            if items
                .iter()
                .all(|i| i.get("id").is_some_and(|id| !id.is_object() && !id.is_array())) =>
        {
            let ids: Vec<String> = items
                .into_iter()
                .filter_map(|mut i| i.as_object_mut().and_then(|o| o.remove("id")).and_then(json_text))
                .collect();
            Some(ids.join(";"))
        }
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
        let rows: Vec<_> = df.column(ROW).unwrap().u64().unwrap().into_no_null_iter().collect();
        assert_eq!(rows, [1, 2, 3, 4]);
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

    fn col_text(df: &DataFrame, c: &str) -> Vec<Option<String>> {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn csv_byte_order_mark_and_blank_lines_are_not_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deals.csv");
        std::fs::write(
            &p,
            "\u{feff}Record ID,\"Date entered \"\"Won (Sales)\"\"\"\r\n1,a\r\n\r\n2,b\r\n , \r\n",
        )
        .unwrap();
        let raw = read_file(&p).unwrap();
        assert!(
            raw.df.column("Date entered \"Won (Sales)\"").is_ok(),
            "{:?}",
            raw.df.get_column_names()
        );
        assert_eq!(raw.blank_lines, 2);
        assert_eq!(col_text(&raw.df, "Record ID"), [Some("1".into()), Some("2".into())]);
        let rows: Vec<_> = raw.df.column(ROW).unwrap().u64().unwrap().into_no_null_iter().collect();
        assert_eq!(rows, [1, 3]);
    }

    #[test]
    fn json_documents_pages_and_record_paths() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        // A HubSpot API page, pretty-printed: records under `results`, nested properties.
        let page = w(
            "deals.json",
            r#"{
  "results": [
    {"id": "1", "properties": {"dealname": "A", "amount": "10"},
     "associations": {"companies": {"results": [{"id": "7", "type": "deal_to_company"}, {"id": "7", "type": "x"}]}}},
    {"id": "2", "properties": {"dealname": "B", "amount": null}, "archived": false}
  ],
  "paging": {"next": {"after": "2"}}
}"#,
        );
        let df = read_file(&page).unwrap().df;
        assert_eq!(col_text(&df, "id"), [Some("1".into()), Some("2".into())]);
        assert_eq!(
            col_text(&df, "properties.dealname"),
            [Some("A".into()), Some("B".into())]
        );
        assert_eq!(col_text(&df, "properties.amount"), [Some("10".into()), None]);
        assert_eq!(
            col_text(&df, "associations.companies.results"),
            [Some("7;7".into()), None]
        );
        assert_eq!(col_text(&df, "archived"), [None, Some("false".into())]);
        // Pages as NDJSON lines, and a top-level array.
        let lines = w(
            "deals.ndjson",
            "{\"results\": [{\"id\": \"1\"}, {\"id\": \"2\"}]}\n{\"results\": [{\"id\": \"3\"}]}\n",
        );
        assert_eq!(read_file(&lines).unwrap().df.height(), 3);
        let arr = w("a.json", "[{\"x\": 1}, {\"x\": [1, 2]}]");
        assert_eq!(
            col_text(&read_file(&arr).unwrap().df, "x"),
            [Some("1".into()), Some("1;2".into())]
        );
        // A record path through nested arrays brings the parents' fields along.
        let pipelines = w(
            "pipelines.json",
            r#"{"results": [{"id": "default", "label": "Sales Pipeline", "stages": [
                {"id": "a", "label": "Appointment", "metadata": {"probability": "0.2"}},
                {"id": "w", "label": "Won", "metadata": {"probability": "1.0", "isClosed": "true"}}]}]}"#,
        );
        let df = read_file_with(&pipelines, Some("results[].stages[]")).unwrap().df;
        assert_eq!(col_text(&df, "label"), [Some("Appointment".into()), Some("Won".into())]);
        assert_eq!(
            col_text(&df, "metadata.probability"),
            [Some("0.2".into()), Some("1.0".into())]
        );
        assert_eq!(
            col_text(&df, "results.label"),
            [Some("Sales Pipeline".into()), Some("Sales Pipeline".into())]
        );
        assert!(matches!(
            read_file(&w("bad.json", "[{\"x\": 1},")),
            Err(IngestError::Unreadable { .. })
        ));
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
