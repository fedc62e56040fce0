//! Casting raw input columns to the canonical types, recording for every row the first rule
//! it breaks (missing required value, unparseable value, value outside its allowed set).

use chrono_tz::Tz;
use polars::prelude::*;

use crate::config::TableMapping;
use crate::ingest::mapping::{ColumnMap, map_value};
use crate::schema::{Column as ColumnDef, Kind, Rule, TableDef};
use crate::timefmt;

/// Per row: the first rule broken and a sentence naming the column and value.
#[derive(Debug, Clone, Default)]
pub struct Reasons(pub Vec<Option<(Rule, String)>>);

impl Reasons {
    pub fn new(n: usize) -> Reasons {
        Reasons(vec![None; n])
    }

    /// Records a reason unless the row already has one (the first broken rule is reported).
    pub fn set(&mut self, row: usize, rule: Rule, message: String) {
        if self.0[row].is_none() {
            self.0[row] = Some((rule, message));
        }
    }

    pub fn is_ok(&self, row: usize) -> bool {
        self.0[row].is_none()
    }

    pub fn ok_mask(&self) -> BooleanChunked {
        self.0
            .iter()
            .map(|r| r.is_none())
            .collect::<BooleanChunked>()
            .with_name("ok".into())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn shown(v: &str) -> String {
    let v = v.trim();
    if v.chars().count() > 60 {
        format!("'{}…'", v.chars().take(60).collect::<String>())
    } else {
        format!("'{v}'")
    }
}

/// Converts every input column of `def` present in the file; absent optional columns are
/// all null. Returns the typed frame (canonical input columns, schema order), or the input
/// column whose type cannot be converted at all (a list, a struct, binary non-UTF-8...).
pub fn convert(
    def: &TableDef,
    raw: &DataFrame,
    cmap: &ColumnMap,
    mapping: Option<&TableMapping>,
    tz: Tz,
    reasons: &mut Reasons,
) -> Result<DataFrame, (String, PolarsError)> {
    let n = raw.height();
    let mut out = Vec::new();
    for c in def.input_columns() {
        let series = match cmap.columns.get(c.name) {
            None => Series::full_null(c.name.into(), n, &c.kind.dtype()),
            Some(input) => {
                let values = mapping.and_then(|m| m.values.get(c.name));
                let column = raw.column(input).map_err(|e| (input.clone(), e))?;
                convert_column(column, c, input, values, tz, reasons).map_err(|e| (input.clone(), e))?
            }
        };
        out.push(series.into_column());
    }
    DataFrame::new(n, out).map_err(|e| (String::new(), e))
}

fn convert_column(
    input: &Column,
    def: &ColumnDef,
    input_name: &str,
    values: Option<&std::collections::BTreeMap<String, String>>,
    tz: Tz,
    reasons: &mut Reasons,
) -> PolarsResult<Series> {
    let name: PlSmallStr = def.name.into();
    let where_ = if input_name == def.name {
        format!("`{}`", def.name)
    } else {
        format!("`{}` (input column `{input_name}`)", def.name)
    };
    let dtype = input.dtype().clone();
    // Fast paths for typed (Parquet) input; everything else goes through text.
    let typed: Option<Series> = if values.is_some() {
        None
    } else {
        match (def.kind, &dtype) {
            (Kind::Float, d) if d.is_primitive_numeric() => {
                let s = input.as_materialized_series().cast(&DataType::Float64)?;
                for (i, v) in s.f64()?.iter().enumerate() {
                    if v.is_some_and(|x| !x.is_finite()) {
                        reasons.set(
                            i,
                            Rule::Unparseable,
                            format!("{} is not a finite number in {where_}", v.unwrap_or_default()),
                        );
                    }
                }
                Some(s.f64()?.apply(|v| v.filter(|x| x.is_finite())).into_series())
            }
            (Kind::Int, d) if d.is_integer() => Some(input.as_materialized_series().cast(&DataType::Int64)?),
            (Kind::Timestamp, DataType::Datetime(_, Some(_))) => {
                Some(input.as_materialized_series().cast(&def.kind.dtype())?)
            }
            (Kind::Date, DataType::Date) | (Kind::Bool, DataType::Boolean) => {
                Some(input.as_materialized_series().clone())
            }
            _ => None,
        }
    };
    let series = match typed {
        Some(s) => s,
        None => {
            let text = input.as_materialized_series().cast(&DataType::String)?;
            let text = text.str()?;
            parse_text(text, def, &where_, values, tz, reasons)?
        }
    };
    if def.required {
        for (i, missing) in series.is_null().iter().enumerate() {
            if missing == Some(true) {
                reasons.set(i, Rule::MissingRequired, format!("required field missing: {where_}"));
            }
        }
    }
    Ok(series.with_name(name))
}

fn parse_text(
    text: &StringChunked,
    def: &ColumnDef,
    where_: &str,
    values: Option<&std::collections::BTreeMap<String, String>>,
    tz: Tz,
    reasons: &mut Reasons,
) -> PolarsResult<Series> {
    let cell = |v: Option<&str>| -> Option<String> {
        let v = v?;
        let v = map_value(values, v).trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let mut fail = |i: usize, v: &str| {
        reasons.set(
            i,
            Rule::Unparseable,
            format!("unparseable {} in {where_}: {}", def.kind.name(), shown(v)),
        );
    };
    let s = match def.kind {
        Kind::Str => {
            let is_currency = def.name == "currency";
            let ca: StringChunked = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut v = cell(v)?;
                    if !def.allowed.is_empty() {
                        v = v.to_ascii_lowercase();
                        if !def.allowed.contains(&v.as_str()) {
                            reasons.set(
                                i,
                                Rule::InvalidValue,
                                format!(
                                    "invalid value in {where_}: {} (expected one of {})",
                                    shown(&v),
                                    def.allowed.join(", ")
                                ),
                            );
                        }
                    } else if is_currency {
                        v = v.to_ascii_uppercase();
                        if !crate::config::is_currency_code(&v) {
                            reasons.set(
                                i,
                                Rule::InvalidValue,
                                format!(
                                    "invalid currency in {where_}: {} (expected an ISO 4217 code like USD)",
                                    shown(&v)
                                ),
                            );
                        }
                    }
                    Some(v)
                })
                .collect();
            ca.into_series()
        }
        Kind::Float => {
            let ca: Float64Chunked = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = cell(v)?;
                    let p = timefmt::parse_f64(&v);
                    if p.is_none() {
                        fail(i, &v);
                    }
                    p
                })
                .collect();
            ca.into_series()
        }
        Kind::Int => {
            let ca: Int64Chunked = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = cell(v)?;
                    let p = timefmt::parse_i64(&v);
                    if p.is_none() {
                        fail(i, &v);
                    }
                    p
                })
                .collect();
            ca.into_series()
        }
        Kind::Bool => {
            let ca: BooleanChunked = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = cell(v)?;
                    let p = timefmt::parse_bool(&v);
                    if p.is_none() {
                        fail(i, &v);
                    }
                    p
                })
                .collect();
            ca.into_series()
        }
        Kind::Timestamp => {
            let ca: Int64Chunked = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = cell(v)?;
                    let p = timefmt::parse_timestamp_us(&v, tz);
                    if p.is_none() {
                        fail(i, &v);
                    }
                    p
                })
                .collect();
            ca.into_series().cast(&def.kind.dtype())?
        }
        Kind::Date => {
            let ca: Int32Chunked = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = cell(v)?;
                    let p = timefmt::parse_date_days(&v, tz);
                    if p.is_none() {
                        fail(i, &v);
                    }
                    p
                })
                .collect();
            ca.into_series().cast(&DataType::Date)?
        }
    };
    Ok(s)
}
