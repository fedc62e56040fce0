//! One source's rows: its files read as text, unpivoted and filtered, then each canonical
//! column computed from its spec. Every value a spec drops, defaults or rewrites is counted.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;
use regex::Regex;

use super::spec::{ColumnSpec, Missing, Normalize, Origin, Pick, Source, salesforce_id18};
use super::{Counts, StagingError};
use crate::ingest::parse::ParseOptions;
use crate::ingest::read::{FILE, ROW, is_internal};

/// Pseudo-columns every source can read: the record number in its file, the position of the
/// row among the source's rows (after unpivot and filter), and the file's name.
pub const ROW_COLUMN: &str = "$row";
pub const INDEX_COLUMN: &str = "$index";
pub const FILE_COLUMN: &str = "$file";

/// Loose header matching: case, spaces, dashes, dots and underscores do not matter.
pub fn loose(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || *c == '$')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The column of `df` a spec's name refers to: exact, else loosely.
pub fn resolve(df: &DataFrame, name: &str) -> Option<String> {
    let names = df.get_column_names();
    if names.iter().any(|n| n.as_str() == name) {
        return Some(name.to_string());
    }
    let key = loose(name);
    names
        .iter()
        .find(|n| !is_internal(n) && loose(n) == key)
        .map(|n| n.to_string())
}

/// Whether the file has a column like `pattern` (loosely; `*` matches any run of characters).
pub fn has_column_like(df: &DataFrame, pattern: &str) -> bool {
    if pattern.contains('|') {
        return pattern.split('|').any(|p| has_column_like(df, p.trim()));
    }
    if !pattern.contains('*') {
        return resolve(df, pattern).is_some();
    }
    let p: String = pattern
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '*')
        .flat_map(char::to_lowercase)
        .collect();
    df.get_column_names()
        .iter()
        .any(|n| !is_internal(n) && super::spec::glob_match(&p, &loose(n)))
}

/// A source's rows before its columns are computed: text columns as read (unpivoted and
/// filtered), plus `FILE` and `ROW`.
pub struct Rows {
    pub df: DataFrame,
}

/// Adds `$index` (1-based position) and, as text, `$row` and `$file`.
fn with_pseudo_columns(df: DataFrame) -> PolarsResult<DataFrame> {
    let n = df.height();
    let file_names: StringChunked = df
        .column(FILE)?
        .str()?
        .iter()
        .map(|p| {
            p.map(|p| {
                std::path::Path::new(p)
                    .file_name()
                    .map_or(p.to_string(), |f| f.to_string_lossy().into_owned())
            })
        })
        .collect();
    let mut df = df;
    df.with_column(Column::new(
        INDEX_COLUMN.into(),
        (1..=n as u64).map(|i| i.to_string()).collect::<Vec<_>>(),
    ))?;
    df.with_column(df.column(ROW)?.cast(&DataType::String)?.with_name(ROW_COLUMN.into()))?;
    df.with_column(file_names.with_name(FILE_COLUMN.into()).into_column())?;
    Ok(df)
}

/// Makes every name a SQL expression refers to resolvable: a header written in another case
/// (Data Loader upper-cases them) gets an alias; a column the file does not have is all null
/// (a preset names columns some exports leave out), and is reported.
/// An expression naming only columns the file lacks is noted (a filter's is not: presets filter
/// on columns, like `IsDeleted`, that many exports leave out).
fn prepare_sql(df: &mut DataFrame, sql: &str, counts: &mut Counts, what: &str) -> Result<Expr, StagingError> {
    let expr = polars::sql::sql_expr(sql).map_err(|e| StagingError::Sql {
        what: what.to_string(),
        sql: sql.to_string(),
        message: crate::error::first_line(&e.to_string()),
    })?;
    let names: Vec<String> = expr.clone().meta().root_names().iter().map(|n| n.to_string()).collect();
    let mut missing = Vec::new();
    for name in &names {
        if df.get_column_index(name).is_some() {
            continue;
        }
        let n = df.height();
        let col = match resolve(df, name) {
            Some(actual) => df.column(&actual)?.clone().with_name(name.as_str().into()),
            None => {
                missing.push(format!("`{name}`"));
                Column::full_null(name.as_str().into(), n, &DataType::String)
            }
        };
        df.with_column(col)?;
    }
    if !names.is_empty() && missing.len() == names.len() && !what.ends_with("filter") {
        counts.note(format!(
            "{what}: none of {} is in the file; read as blank",
            missing.join(", ")
        ));
    }
    Ok(expr)
}

/// Evaluates a SQL expression over the rows, cast to `dtype` (one value per row).
fn eval_sql(
    df: &DataFrame,
    sql: &str,
    dtype: DataType,
    counts: &mut Counts,
    what: &str,
) -> Result<Column, StagingError> {
    let mut work = df.clone();
    let expr = prepare_sql(&mut work, sql, counts, what)?;
    let out = work
        .lazy()
        .select([expr.cast(dtype).alias("v")])
        .collect()
        .map_err(|e| StagingError::Sql {
            what: what.to_string(),
            sql: sql.to_string(),
            message: crate::error::first_line(&e.to_string()),
        })?;
    // A constant expression gives one value: every row has it.
    let v = out.column("v")?;
    Ok(if v.len() == 1 && df.height() != 1 {
        v.new_from_index(0, df.height())
    } else {
        v.clone()
    })
}

/// Evaluates a SQL predicate: true where it holds (null counts as false).
pub fn predicate(df: &DataFrame, sql: &str, counts: &mut Counts, what: &str) -> Result<BooleanChunked, StagingError> {
    let p = eval_sql(df, sql, DataType::Boolean, counts, what)?;
    Ok(p.bool()?.fill_null_with_values(false)?)
}

/// Evaluates a SQL expression to text.
fn sql_values(df: &DataFrame, sql: &str, counts: &mut Counts, what: &str) -> Result<Vec<Option<String>>, StagingError> {
    let v = eval_sql(df, sql, DataType::String, counts, what)?;
    Ok(v.str()?.iter().map(|s| s.map(str::to_string)).collect())
}

fn text_of(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    let c = df.column(name)?.cast(&DataType::String)?;
    Ok(c.str()?.iter().map(|s| s.map(str::to_string)).collect())
}

/// Unpivots the columns whose header matches `pattern`: one row per (row, matching column)
/// with a non-blank value; the pattern's named groups become columns, the value goes to
/// `value`. Rows come column by column, in header order.
pub fn unpivot(
    df: DataFrame,
    pattern: &str,
    value: &str,
    headers_only: bool,
    what: &str,
) -> Result<DataFrame, StagingError> {
    let re = Regex::new(pattern).map_err(|e| StagingError::Spec {
        what: what.to_string(),
        message: format!("`unpivot.columns` is not a valid regular expression: {e}"),
    })?;
    let groups: Vec<String> = re.capture_names().flatten().map(str::to_string).collect();
    let on: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !is_internal(n) && re.is_match(n))
        .collect();
    let index: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !on.contains(n))
        .collect();
    if headers_only {
        let file = df
            .column(FILE)
            .ok()
            .and_then(|c| c.str().ok()?.get(0).map(str::to_string));
        let mut cols: Vec<Column> = groups
            .iter()
            .map(|g| {
                let v: Vec<Option<String>> = on
                    .iter()
                    .map(|name| {
                        re.captures(name)
                            .and_then(|c| c.name(g))
                            .map(|m| m.as_str().trim().to_string())
                    })
                    .collect();
                Column::new(g.as_str().into(), v)
            })
            .collect();
        cols.push(Column::new(value.into(), on.clone()));
        cols.push(Column::new(FILE.into(), vec![file; on.len()]));
        cols.push(Column::new(ROW.into(), vec![0u64; on.len()]));
        return Ok(DataFrame::new(on.len(), cols)?);
    }
    let mut parts = Vec::new();
    for name in &on {
        let caps = re.captures(name).expect("matched above");
        let mut cols: Vec<Expr> = index.iter().map(|c| col(c.as_str())).collect();
        for g in &groups {
            let v = caps.name(g).map(|m| m.as_str().trim().to_string());
            cols.push(lit(v.unwrap_or_default()).alias(g.as_str()));
        }
        cols.push(col(name.as_str()).cast(DataType::String).alias(value));
        let part = df
            .clone()
            .lazy()
            .select(cols)
            .filter(col(value).str().strip_chars(lit(NULL)).str().len_chars().gt(lit(0)));
        parts.push(part);
    }
    if parts.is_empty() {
        let mut empty = df.clear();
        for g in groups.iter().chain(std::iter::once(&value.to_string())) {
            empty.with_column(Column::full_null(g.as_str().into(), 0, &DataType::String))?;
        }
        return Ok(empty);
    }
    Ok(concat(parts, UnionArgs::default())?.collect()?)
}

/// Computes one canonical column of a source from its spec.
pub struct Evaluator<'a> {
    pub source: &'a Source,
    pub df: &'a DataFrame,
    /// Every source's filtered rows, for lookups.
    pub lookups: &'a BTreeMap<String, DataFrame>,
    pub opts: &'a ParseOptions,
}

impl Evaluator<'_> {
    pub fn prepare(df: DataFrame) -> PolarsResult<DataFrame> {
        with_pseudo_columns(df)
    }

    /// The column's values as text (null = blank).
    pub fn column(
        &self,
        canonical: &str,
        spec: &ColumnSpec,
        counts: &mut Counts,
    ) -> Result<Vec<Option<String>>, StagingError> {
        self.eval(canonical, spec, counts, false)
    }

    /// Whether any column a spec reads is in the file.
    pub fn present(&self, spec: &ColumnSpec) -> bool {
        match &spec.from {
            Origin::Column(name) => resolve(self.df, name).is_some(),
            Origin::First(specs) => specs.iter().any(|s| self.present(s)),
            Origin::Sql(_) | Origin::Value(_) => true,
        }
    }

    /// `quiet`: an alternative of a `first` list; a column it names that the file lacks is
    /// not worth a note (the list notes when none is there).
    fn eval(
        &self,
        canonical: &str,
        spec: &ColumnSpec,
        counts: &mut Counts,
        quiet: bool,
    ) -> Result<Vec<Option<String>>, StagingError> {
        // An alternative's misses (lookups, prefixes) are not data changes: the list goes on to
        // the next one. Only the list's own modifiers count.
        let mut scratch = Counts::default();
        let counts = if quiet { &mut scratch } else { counts };
        let what = format!("source `{}`, column `{canonical}`", self.source.name);
        let n = self.df.height();
        let mut v: Vec<Option<String>> = match &spec.from {
            Origin::Value(x) => vec![Some(x.clone()); n],
            Origin::Column(name) => match resolve(self.df, name) {
                Some(actual) => text_of(self.df, &actual)?,
                None => {
                    if !quiet {
                        counts.note(format!("{what}: column `{name}` is not in the file; read as blank"));
                    }
                    vec![None; n]
                }
            },
            Origin::Sql(sql) => sql_values(self.df, sql, counts, &what)?,
            Origin::First(specs) => {
                if !quiet && !specs.iter().any(|s| self.present(s)) {
                    counts.note(format!("{what}: none of its columns is in the file; read as blank"));
                }
                let mut out: Vec<Option<String>> = vec![None; n];
                for sub in specs {
                    let v = self.eval(canonical, sub, counts, true)?;
                    for (o, x) in out.iter_mut().zip(v) {
                        if o.is_none() {
                            *o = x;
                        }
                    }
                }
                out
            }
        };
        for x in v.iter_mut() {
            if x.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *x = None;
            } else if let Some(s) = x {
                let t = s.trim();
                if t.len() != s.len() {
                    *s = t.to_string();
                }
            }
        }
        if let Some(norm) = spec.normalize {
            for x in v.iter_mut().flatten() {
                *x = match norm {
                    Normalize::SalesforceId => salesforce_id18(x),
                    Normalize::Lower => x.to_lowercase(),
                    Normalize::Upper => x.to_uppercase(),
                };
            }
        }
        if let Some(pat) = &spec.pattern {
            let re = Regex::new(pat).map_err(|e| StagingError::Spec {
                what: what.clone(),
                message: format!("`pattern` is not a regular expression: {e}"),
            })?;
            let mut missed = 0u64;
            for x in v.iter_mut() {
                let Some(s) = x.as_deref() else { continue };
                let found = re
                    .captures(s)
                    .and_then(|c| c.get(1).or_else(|| c.get(0)))
                    .map(|m| m.as_str().to_string());
                if found.is_none() {
                    missed += 1;
                }
                *x = found;
            }
            counts.add(&format!("pattern_not_matched:{canonical}"), missed);
        }
        if let Some(sep) = &spec.split {
            let mut multi = 0u64;
            for x in v.iter_mut().flatten() {
                if x.contains(sep.as_str()) {
                    let first = x
                        .split(sep.as_str())
                        .map(str::trim)
                        .find(|p| !p.is_empty())
                        .map(str::to_string);
                    if x.split(sep.as_str()).filter(|p| !p.trim().is_empty()).count() > 1 {
                        multi += 1;
                    }
                    *x = first.unwrap_or_default();
                }
            }
            counts.add(&format!("first_of_several:{canonical}"), multi);
        }
        if !spec.prefix.is_empty() {
            let mut other = 0u64;
            for x in v.iter_mut() {
                if x.as_deref()
                    .is_some_and(|s| !spec.prefix.iter().any(|p| s.starts_with(p.as_str())))
                {
                    *x = None;
                    other += 1;
                }
            }
            counts.add(&format!("other_prefix_left_out:{canonical}"), other);
        }
        if let Some(when) = &spec.when {
            let keep = predicate(self.df, when, counts, &what)?;
            for (x, k) in v.iter_mut().zip(keep.iter()) {
                if k != Some(true) {
                    *x = None;
                }
            }
        }
        if !spec.values.is_empty() {
            let mut others = 0u64;
            for x in v.iter_mut().flatten() {
                let known = spec.values.contains_key(x.as_str())
                    || spec.values.keys().any(|k| k.trim().eq_ignore_ascii_case(x.trim()));
                if known {
                    *x = crate::ingest::mapping::map_value(Some(&spec.values), x).to_string();
                } else if let Some(o) = &spec.others {
                    *x = o.clone();
                    others += 1;
                }
            }
            counts.add(&format!("other_value:{canonical}"), others);
        }
        if let Some(l) = &spec.lookup {
            let table = self.lookups.get(&l.source).ok_or_else(|| StagingError::Spec {
                what: what.clone(),
                message: format!("`lookup.source` names no source `{}`", l.source),
            })?;
            let index = lookup_index(table, &l.key, &l.value, l.pick).map_err(|m| StagingError::Spec {
                what: what.clone(),
                message: m,
            })?;
            let mut missed = 0u64;
            for x in v.iter_mut() {
                let Some(key) = x.as_ref() else { continue };
                match index.get(key).or_else(|| index.get(&loose_key(key))) {
                    Some(found) => *x = found.clone(),
                    None => {
                        missed += 1;
                        if l.missing == Missing::Null {
                            *x = None;
                        }
                    }
                }
            }
            // A value kept as it was is no change; one made null is.
            if l.missing == Missing::Null {
                counts.add(&format!("lookup_null:{canonical}"), missed);
            }
        }
        if spec.percent || spec.scale.is_some() {
            let factor = spec.scale.unwrap_or(1.0) / if spec.percent { 100.0 } else { 1.0 };
            // A whole-number column (durations in seconds) takes the scaled value rounded.
            let whole = self
                .source
                .table
                .as_deref()
                .and_then(crate::schema::table)
                .and_then(|d| d.column(canonical))
                .is_some_and(|c| matches!(c.kind, crate::schema::Kind::Int | crate::schema::Kind::Duration));
            let mut rounded = 0u64;
            for x in v.iter_mut().flatten() {
                let t = x.trim_end_matches('%').trim();
                // `12%` with a locale parses to 0.12 already; strip the sign and apply the factor once.
                if let Some(num) = self.opts.f64(t) {
                    let mut out = num * factor;
                    if whole && out.fract() != 0.0 {
                        out = out.round();
                        rounded += 1;
                    }
                    let s = format!("{out}");
                    *x = match self.opts.locale {
                        Some(l) if l.decimal != '.' => s.replace('.', &l.decimal.to_string()),
                        _ => s,
                    };
                }
            }
            counts.add(&format!("rounded:{canonical}"), rounded);
        }
        // A rewrite to an empty value (`others = ""`) is a blank: the next alternative of a
        // `first` list, or the default, takes over.
        for x in v.iter_mut() {
            if x.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *x = None;
            }
        }
        if let Some(d) = &spec.default {
            let mut defaulted = 0u64;
            for x in v.iter_mut() {
                if x.is_none() {
                    *x = Some(d.clone());
                    defaulted += 1;
                }
            }
            counts.add(&format!("default:{canonical}"), defaulted);
        }
        Ok(v)
    }
}

fn loose_key(s: &str) -> String {
    s.trim().to_lowercase()
}

/// key -> value of a lookup source (keys also indexed trimmed and lower-cased).
fn lookup_index(df: &DataFrame, key: &str, value: &str, pick: Pick) -> Result<HashMap<String, Option<String>>, String> {
    // A lookup source whose files are not in this ingest finds nothing.
    if df.height() == 0 {
        return Ok(HashMap::new());
    }
    let k = resolve(df, key).ok_or_else(|| format!("the lookup source has no column `{key}`"))?;
    let v = resolve(df, value).ok_or_else(|| format!("the lookup source has no column `{value}`"))?;
    let keys = text_of(df, &k).map_err(|e| e.to_string())?;
    let values = text_of(df, &v).map_err(|e| e.to_string())?;
    let mut out: HashMap<String, Option<String>> = HashMap::new();
    for (k, v) in keys.into_iter().zip(values) {
        let Some(k) = k.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) else {
            continue;
        };
        let v = v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        for key in [k.clone(), loose_key(&k)] {
            match out.get_mut(&key) {
                None => {
                    out.insert(key, v.clone());
                }
                Some(cur) => {
                    let better = match (pick, cur.as_ref(), v.as_ref()) {
                        (Pick::First, _, _) => false,
                        (_, None, Some(_)) => true,
                        (Pick::Min, Some(c), Some(n)) => n < c,
                        (Pick::Max, Some(c), Some(n)) => n > c,
                        _ => false,
                    };
                    if better {
                        *cur = v.clone();
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_names_ignore_case_and_punctuation() {
        assert_eq!(loose("ACCOUNTID"), loose("AccountId"));
        assert_eq!(loose("Deal - Owner"), "dealowner");
        assert_eq!(loose("properties.dealname"), "propertiesdealname");
        assert_eq!(loose("$row"), "$row");
    }

    #[test]
    fn unpivot_turns_matching_headers_into_rows_in_header_order() {
        let df = df!(
            "Record ID" => ["1", "2"],
            "Date entered \"Appointment (Sales)\"" => [Some("2024-01-01 10:00"), None],
            "Date entered 'Won (Sales)'" => [Some("2024-02-01 10:00"), Some("2024-03-01 09:00")],
            ROW => [1u64, 2],
        )
        .unwrap();
        let out = unpivot(
            df.clone(),
            r#"^Date entered ["'](?P<stage>.+) \((?P<pipeline>[^()]+)\)["']$"#,
            "entered",
            false,
            "t",
        )
        .unwrap();
        let s = |c: &str| text_of(&out, c).unwrap();
        assert_eq!(s("Record ID"), [Some("1".into()), Some("1".into()), Some("2".into())]);
        assert_eq!(
            s("stage"),
            [Some("Appointment".into()), Some("Won".into()), Some("Won".into())]
        );
        assert_eq!(s("pipeline"), vec![Some("Sales".to_string()); 3]);
        assert_eq!(s("entered").len(), 3);
        let headers = unpivot(
            df,
            r#"^Date entered ["'](?P<stage>.+) \((?P<pipeline>[^()]+)\)["']$"#,
            "h",
            true,
            "t",
        )
        .unwrap();
        assert_eq!(
            text_of(&headers, "stage").unwrap(),
            [Some("Appointment".into()), Some("Won".into())]
        );
    }
}
