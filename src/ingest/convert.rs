//! Casting raw input columns to the canonical types, recording for every row the first rule
//! it breaks (missing required value, unparseable value, value outside its allowed set).

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::config::TableMapping;
use crate::ingest::mapping::{ColumnMap, map_value};
use crate::ingest::parse::ParseOptions;
use crate::schema::{Column as ColumnDef, Kind, Rule, TableDef};
use crate::timefmt;

/// Values an ingest changed without rejecting their row, by `<rule>:<column>` (e.g.
/// `lenient_null:duration_s`): the report lists them, so nothing is changed silently.
pub type Adjusted = BTreeMap<String, u64>;

pub fn count(adjusted: &mut Adjusted, rule: &str, column: &str, n: u64) {
    if n > 0 {
        *adjusted.entry(format!("{rule}:{column}")).or_default() += n;
    }
}

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
    opts: &ParseOptions,
    reasons: &mut Reasons,
    adjusted: &mut Adjusted,
) -> Result<DataFrame, (String, PolarsError)> {
    let n = raw.height();
    let mut out = Vec::new();
    for c in def.input_columns() {
        let series = match cmap.columns.get(c.name) {
            None => Series::full_null(c.name.into(), n, &c.kind.dtype()),
            Some(input) => {
                let values = mapping.and_then(|m| m.values.get(c.name));
                let column = raw.column(input).map_err(|e| (input.clone(), e))?;
                let label = cmap.labels.get(c.name).unwrap_or(input);
                let mut col = Conversion {
                    def: c,
                    where_: if label == c.name {
                        format!("`{}`", c.name)
                    } else {
                        format!("`{}` (input column `{label}`)", c.name)
                    },
                    values,
                    opts,
                    reasons,
                    lenient_nulls: 0,
                };
                let s = col.run(column).map_err(|e| (input.clone(), e))?;
                count(adjusted, "lenient_null", c.name, col.lenient_nulls);
                s
            }
        };
        out.push(series.into_column());
    }
    DataFrame::new(n, out).map_err(|e| (String::new(), e))
}

/// One input column on its way to a canonical column.
struct Conversion<'a> {
    def: &'a ColumnDef,
    /// The column as named in reasons: "`amount` (input column `Amount`)".
    where_: String,
    values: Option<&'a BTreeMap<String, String>>,
    opts: &'a ParseOptions,
    reasons: &'a mut Reasons,
    /// Unparseable optional values nulled under `lenient`.
    lenient_nulls: u64,
}

impl Conversion<'_> {
    /// Records an unparseable (or out of range) value: the row is rejected, or under
    /// `lenient` an optional value becomes null (counted).
    fn bad(&mut self, i: usize, message: String) {
        if self.opts.lenient && !self.def.required {
            self.lenient_nulls += 1;
        } else {
            self.reasons.set(i, Rule::Unparseable, message);
        }
    }

    fn unparseable(&mut self, i: usize, v: &str) {
        let m = format!("unparseable {} in {}: {}", self.def.kind.name(), self.where_, shown(v));
        self.bad(i, m);
    }

    fn out_of_range(&mut self, i: usize, v: &str) {
        let m = format!(
            "unparseable {} in {}: {} is outside the range crm-kpi stores ({})",
            self.def.kind.name(),
            self.where_,
            shown(v),
            timefmt::RANGE_TEXT
        );
        self.bad(i, m);
    }

    fn run(&mut self, input: &Column) -> PolarsResult<Series> {
        let def = self.def;
        let name: PlSmallStr = def.name.into();
        let dtype = input.dtype().clone();
        // Fast paths for typed (Parquet) input; everything else goes through text.
        let typed: Option<Series> = if self.values.is_some() {
            None
        } else {
            match (def.kind, &dtype) {
                (Kind::Float, d) if d.is_primitive_numeric() => {
                    let s = input.as_materialized_series().cast(&DataType::Float64)?;
                    for (i, v) in s.f64()?.iter().enumerate() {
                        if let Some(x) = v.filter(|x| !x.is_finite()) {
                            let m = format!("{x} is not a finite number in {}", self.where_);
                            self.bad(i, m);
                        }
                    }
                    Some(s.f64()?.apply(|v| v.filter(|x| x.is_finite())).into_series())
                }
                (Kind::Int | Kind::Duration, d) if d.is_integer() => {
                    Some(input.as_materialized_series().cast(&DataType::Int64)?)
                }
                (Kind::Timestamp, DataType::Datetime(unit, Some(_))) => {
                    // Checked on the stored unit's integers: casting an extreme value to
                    // µs overflows, and decoding it into a date panics inside polars.
                    let raw = input.as_materialized_series().to_physical_repr().into_owned();
                    let per_us: i64 = match unit {
                        TimeUnit::Nanoseconds => 1000,
                        _ => 1,
                    };
                    let mult: i64 = if *unit == TimeUnit::Milliseconds { 1000 } else { 1 };
                    let ca: Int64Chunked = raw
                        .i64()?
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let us = v?.checked_mul(mult).map(|x| x / per_us);
                            match us.filter(|us| timefmt::us_in_range(*us)) {
                                Some(us) => Some(us),
                                None => {
                                    self.out_of_range(i, &format!("{} ({unit:?} since 1970)", v.unwrap_or_default()));
                                    None
                                }
                            }
                        })
                        .collect();
                    Some(ca.into_series().cast(&def.kind.dtype())?)
                }
                (Kind::Date, DataType::Date) => {
                    let raw = input.as_materialized_series().to_physical_repr().into_owned();
                    let ca: Int32Chunked = raw
                        .i32()?
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match v? {
                            d if timefmt::day_in_range(d) => Some(d),
                            d => {
                                self.out_of_range(i, &format!("{d} (days since 1970)"));
                                None
                            }
                        })
                        .collect();
                    Some(ca.into_series().cast(&DataType::Date)?)
                }
                (Kind::Bool, DataType::Boolean) => Some(input.as_materialized_series().clone()),
                _ => None,
            }
        };
        let series = match typed {
            Some(s) => s,
            None => {
                let text = crate::ingest::read::text_column(input)?;
                let text = text.as_materialized_series();
                self.parse_text(text.str()?)?
            }
        };
        if def.required {
            for (i, missing) in series.is_null().iter().enumerate() {
                if missing == Some(true) {
                    self.reasons.set(
                        i,
                        Rule::MissingRequired,
                        format!("required field missing: {}", self.where_),
                    );
                }
            }
        }
        Ok(series.with_name(name))
    }

    fn parse_text(&mut self, text: &StringChunked) -> PolarsResult<Series> {
        let def = self.def;
        let values = self.values;
        let cell = |v: Option<&str>| -> Option<String> {
            let v = v?;
            let v = map_value(values, v).trim();
            (!v.is_empty()).then(|| v.to_string())
        };
        let opts = self.opts;
        let s = match def.kind {
            Kind::Str => {
                let is_currency = def.name == "currency";
                let where_ = self.where_.clone();
                let ca: StringChunked = text
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let mut v = cell(v)?;
                        if !def.allowed.is_empty() {
                            v = v.to_ascii_lowercase();
                            if !def.allowed.contains(&v.as_str()) {
                                self.reasons.set(
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
                                self.reasons.set(
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
                        let p = opts.f64(&v);
                        if p.is_none() {
                            self.unparseable(i, &v);
                        }
                        p
                    })
                    .collect();
                ca.into_series()
            }
            Kind::Int | Kind::Duration => {
                let duration = def.kind == Kind::Duration;
                let ca: Int64Chunked = text
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let v = cell(v)?;
                        let p = if duration { opts.duration_s(&v) } else { opts.i64(&v) };
                        if p.is_none() {
                            self.unparseable(i, &v);
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
                        let p = opts.bool(&v);
                        if p.is_none() {
                            self.unparseable(i, &v);
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
                        match opts.timestamp_us(&v) {
                            None => {
                                self.unparseable(i, &v);
                                None
                            }
                            Some(us) if !timefmt::us_in_range(us) => {
                                self.out_of_range(i, &v);
                                None
                            }
                            p => p,
                        }
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
                        match opts.date_days(&v) {
                            None => {
                                self.unparseable(i, &v);
                                None
                            }
                            Some(d) if !timefmt::day_in_range(d) => {
                                self.out_of_range(i, &v);
                                None
                            }
                            p => p,
                        }
                    })
                    .collect();
                ca.into_series().cast(&DataType::Date)?
            }
        };
        Ok(s)
    }
}
