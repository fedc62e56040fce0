//! The mapping language: `[[sources]]` in crm-kpi.toml (and the built-in presets, written in
//! it). Each source is a staging model, as in dbt: it takes the files one CRM export writes
//! (recognised by name), renames, casts nothing, filters, unpivots and looks up, and yields
//! rows of one canonical table. `docs/mapping.md` is the reference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One staging source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Unique name; lookups refer to it and the ingest report counts by it.
    pub name: String,
    /// The canonical table it feeds; none for a source that only serves lookups.
    #[serde(default)]
    pub table: Option<String>,
    /// File-name patterns (`*`, `?`), matched case-insensitively against the file name.
    #[serde(default)]
    pub files: Vec<String>,
    /// Header columns a matching file must have (matched loosely): lets two sources share a
    /// file-name pattern, and tells a wrong export from the right one.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Header columns a matching file must not have (`*` matches any run of characters):
    /// tells an opportunities export from its history, a deals export from an activities one.
    #[serde(default)]
    pub without: Vec<String>,
    /// JSON documents: where the records are, as a dot path whose `[]` steps go through arrays
    /// (`results`, `data`, `results[].stages[]`). Default: a top-level array, or the first of
    /// `results`, `data`, `records`, `items` that holds one.
    #[serde(default)]
    pub records: Option<String>,
    /// Time zone of naive times in these files (default: the config's `timezone`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Locale of numbers, percents and dates (`en-US`, `de-DE`, ...).
    #[serde(default)]
    pub locale: Option<String>,
    /// strptime formats tried first for times and dates.
    #[serde(default)]
    pub formats: Vec<String>,
    /// An unparseable optional value becomes null (counted), instead of rejecting the row.
    #[serde(default)]
    pub lenient: bool,
    /// SQL predicate over the input columns: rows where it is not true are left out (counted).
    #[serde(default)]
    pub filter: Option<String>,
    /// Turns a group of columns into rows (HubSpot's `Date entered "<stage> (<pipeline>)"`).
    #[serde(default)]
    pub unpivot: Option<Unpivot>,
    /// stage_events: how the rows describe the history.
    #[serde(default)]
    pub history: History,
    /// stage_events: the stage a deal was in before its earliest row (a change log's old
    /// value): one more event, at the deal's creation.
    #[serde(default)]
    pub initial_stage: Option<ColumnSpec>,
    /// stage_events: a SQL predicate marking rows that reopen a closed deal (a change log's
    /// status back to open): such a row is an entry into the open stage the deal was last in
    /// before it.
    #[serde(default)]
    pub reopen: Option<String>,
    /// Fallback level (0: not a fallback; `true` = 1): the rows of an entity (a deal for stage
    /// events, a currency for fx rates, the primary key otherwise) are used only when no
    /// source of a lower level, nor the store for stage events, has rows for it.
    #[serde(default, deserialize_with = "level")]
    pub fallback: u8,
    /// stages: this source only fills what the earlier sources and the stored stages leave
    /// unknown (it ranks after the store).
    #[serde(default)]
    pub fill: bool,
    /// stages: whether this source may add stages no other source names.
    #[serde(default = "yes")]
    pub add: bool,
    /// fx_rates: the rates are units of the currency per one unit of the base (corporate)
    /// currency, as Salesforce writes them; crm-kpi inverts them.
    #[serde(default)]
    pub inverse: bool,
    /// Rows that are exact copies of an earlier row of this source (every canonical column
    /// equal) are dropped (counted): several files may repeat a row, or a rate.
    #[serde(default)]
    pub distinct: bool,
    /// Rows written here instead of read from files (a CRM's default pipeline, ids to names).
    #[serde(default)]
    pub rows: Vec<BTreeMap<String, toml::Value>>,
    /// canonical column -> where its value comes from.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnSpec>,
}

fn yes() -> bool {
    true
}

fn level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Level {
        Flag(bool),
        Level(u8),
    }
    Ok(match Level::deserialize(d)? {
        Level::Flag(b) => u8::from(b),
        Level::Level(n) => n,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// Each row is the entry of a deal into a stage.
    #[default]
    Rows,
    /// Rows are snapshots or edits of a deal (Salesforce OpportunityHistory): a row is an entry
    /// only when its stage differs from the deal's previous row.
    Changes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpivot {
    /// Regular expression over header names; its named groups become columns of each row.
    pub columns: String,
    /// Name of the column that holds the cell's value.
    pub value: String,
    /// One row per matching header (its named groups; no cell values), in header order,
    /// instead of one per non-blank cell: a stage list read from the columns themselves.
    #[serde(default)]
    pub headers_only: bool,
}

/// Where one canonical column's value comes from. In TOML either a header name
/// (`opportunity_id = "Id"`) or a table (`status = { sql = "..." }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Value", into = "toml::Value")]
pub struct ColumnSpec {
    pub from: Origin,
    /// Multi-valued cells (`a;b`): the first value is kept (rows with more are counted).
    pub split: Option<String>,
    /// Only values starting with one of these (an id's key prefix); others become null.
    pub prefix: Vec<String>,
    /// SQL predicate: the value is null where it is not true.
    pub when: Option<String>,
    /// Value rewrites: exact, then ignoring case and surrounding spaces.
    pub values: BTreeMap<String, String>,
    pub lookup: Option<Lookup>,
    /// A percentage: `10` or `10%` becomes 0.1.
    pub percent: bool,
    /// Multiplies a number (ms to s: 0.001; cents to units: 0.01).
    pub scale: Option<f64>,
    /// Used when the value is blank (counted).
    pub default: Option<String>,
    /// With `values`: what a value `values` does not name becomes (counted).
    pub others: Option<String>,
    /// `salesforce_id` (15-character ids to their 18-character form), `lower`, `upper`.
    pub normalize: Option<Normalize>,
    /// A regular expression: the value becomes its first group (or the whole match); a value
    /// it does not match becomes null (counted). E.g. a deal id out of a file name.
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    Column(String),
    Sql(String),
    Value(String),
    /// The first non-blank value of several specs (header aliases across CRM versions).
    First(Vec<ColumnSpec>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    SalesforceId,
    Lower,
    Upper,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The source whose rows are searched.
    pub source: String,
    /// Its column compared with the value.
    pub key: String,
    /// Its column that replaces the value.
    pub value: String,
    /// Several matching rows: `first` (in file order), `min` or `max` (as text: ISO times sort
    /// in time order).
    #[serde(default)]
    pub pick: Pick,
    /// No matching row: keep the value (default) or make it null. Counted either way.
    #[serde(default)]
    pub missing: Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    #[default]
    First,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    #[default]
    Keep,
    Null,
}

impl ColumnSpec {
    pub fn column(name: &str) -> ColumnSpec {
        ColumnSpec {
            from: Origin::Column(name.to_string()),
            split: None,
            prefix: Vec::new(),
            when: None,
            values: BTreeMap::new(),
            lookup: None,
            percent: false,
            scale: None,
            default: None,
            others: None,
            normalize: None,
            pattern: None,
        }
    }
}

const SPEC_KEYS: &[&str] = &[
    "column",
    "sql",
    "value",
    "first",
    "split",
    "prefix",
    "when",
    "values",
    "others",
    "lookup",
    "percent",
    "scale",
    "default",
    "normalize",
    "pattern",
];

fn text(v: &toml::Value, key: &str) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("`{key}` must be a string, not {}", other.type_str())),
    }
}

impl TryFrom<toml::Value> for ColumnSpec {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<ColumnSpec, String> {
        let t = match v {
            toml::Value::String(s) => return Ok(ColumnSpec::column(&s)),
            toml::Value::Table(t) => t,
            other => {
                return Err(format!(
                    "a column is a header name (\"Id\") or a table ({{ sql = \"...\" }}), not {}",
                    other.type_str()
                ));
            }
        };
        if let Some(k) = t.keys().find(|k| !SPEC_KEYS.contains(&k.as_str())) {
            return Err(format!("unknown key `{k}` in a column; use: {}", SPEC_KEYS.join(", ")));
        }
        let get = |k: &str| t.get(k).map(|v| text(v, k)).transpose();
        let first = match t.get("first") {
            None => None,
            Some(toml::Value::Array(a)) => Some(
                a.iter()
                    .map(|v| ColumnSpec::try_from(v.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("`first`: {e}"))?,
            ),
            Some(_) => return Err("`first` must be a list of columns".into()),
        };
        let from = match (get("column")?, get("sql")?, get("value")?, first) {
            (Some(c), None, None, None) => Origin::Column(c),
            (None, Some(s), None, None) => Origin::Sql(s),
            (None, None, Some(v), None) => Origin::Value(v),
            (None, None, None, Some(f)) => Origin::First(f),
            _ => return Err("a column takes exactly one of `column`, `sql`, `value` or `first`".into()),
        };
        let normalize = match get("normalize")?.as_deref() {
            None => None,
            Some("salesforce_id") => Some(Normalize::SalesforceId),
            Some("lower") => Some(Normalize::Lower),
            Some("upper") => Some(Normalize::Upper),
            Some(o) => return Err(format!("`normalize` = `{o}`: use salesforce_id, lower or upper")),
        };
        let prefix = match t.get("prefix") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a.iter().map(|v| text(v, "prefix")).collect::<Result<_, _>>()?,
            Some(v) => vec![text(v, "prefix")?],
        };
        let values = match t.get("values") {
            None => BTreeMap::new(),
            Some(toml::Value::Table(m)) => m
                .iter()
                .map(|(k, v)| Ok((k.clone(), text(v, "values")?)))
                .collect::<Result<_, String>>()?,
            Some(_) => return Err("`values` must be a table of \"input\" = \"canonical\"".into()),
        };
        let lookup = match t.get("lookup") {
            None => None,
            Some(v) => Some(Lookup::deserialize(v.clone()).map_err(|e| format!("`lookup`: {}", e.to_string().trim()))?),
        };
        let percent = match t.get("percent") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err("`percent` must be true or false".into()),
        };
        let scale = match t.get("scale") {
            None => None,
            Some(toml::Value::Float(f)) => Some(*f),
            Some(toml::Value::Integer(i)) => Some(*i as f64),
            Some(_) => return Err("`scale` must be a number".into()),
        };
        Ok(ColumnSpec {
            from,
            split: get("split")?,
            prefix,
            when: get("when")?,
            values,
            lookup,
            percent,
            scale,
            default: get("default")?,
            others: get("others")?,
            normalize,
            pattern: get("pattern")?,
        })
    }
}

impl From<ColumnSpec> for toml::Value {
    fn from(c: ColumnSpec) -> toml::Value {
        let mut t = toml::map::Map::new();
        let s = |v: String| toml::Value::String(v);
        match c.from {
            Origin::Column(v) => t.insert("column".into(), s(v)),
            Origin::Sql(v) => t.insert("sql".into(), s(v)),
            Origin::Value(v) => t.insert("value".into(), s(v)),
            Origin::First(specs) => t.insert(
                "first".into(),
                toml::Value::Array(specs.into_iter().map(toml::Value::from).collect()),
            ),
        };
        if let Some(v) = c.split {
            t.insert("split".into(), s(v));
        }
        if !c.prefix.is_empty() {
            t.insert(
                "prefix".into(),
                toml::Value::Array(c.prefix.into_iter().map(s).collect()),
            );
        }
        if let Some(v) = c.when {
            t.insert("when".into(), s(v));
        }
        if !c.values.is_empty() {
            t.insert(
                "values".into(),
                toml::Value::Table(c.values.into_iter().map(|(k, v)| (k, s(v))).collect()),
            );
        }
        if let Some(l) = c.lookup {
            t.insert("lookup".into(), toml::Value::try_from(l).expect("a lookup serializes"));
        }
        if c.percent {
            t.insert("percent".into(), toml::Value::Boolean(true));
        }
        if let Some(v) = c.scale {
            t.insert("scale".into(), toml::Value::Float(v));
        }
        if let Some(v) = c.default {
            t.insert("default".into(), s(v));
        }
        if let Some(v) = c.others {
            t.insert("others".into(), s(v));
        }
        if let Some(v) = c.pattern {
            t.insert("pattern".into(), s(v));
        }
        if let Some(n) = c.normalize {
            let name = match n {
                Normalize::SalesforceId => "salesforce_id",
                Normalize::Lower => "lower",
                Normalize::Upper => "upper",
            };
            t.insert("normalize".into(), s(name.into()));
        }
        toml::Value::Table(t)
    }
}

/// The 18-character, case-insensitive form of a 15-character Salesforce id (the 3 added
/// characters encode which of the 15 are upper-case letters); other values unchanged.
pub fn salesforce_id18(id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    if id.len() != 15 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    let mut out = id.to_string();
    for chunk in id.as_bytes().chunks(5) {
        let mut v = 0usize;
        for (i, b) in chunk.iter().enumerate() {
            if b.is_ascii_uppercase() {
                v |= 1 << i;
            }
        }
        out.push(ALPHABET[v] as char);
    }
    out
}

/// Whether a file name matches a pattern with `*` (any run of characters) and `?` (one
/// character), ignoring case.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_ids_get_their_18_character_form() {
        // Published examples (github walling/sfid, hynekcer's gist).
        assert_eq!(salesforce_id18("003G000001SUbc4"), "003G000001SUbc4IAD");
        assert_eq!(salesforce_id18("70130000001tcyI"), "70130000001tcyIAAQ");
        assert_eq!(salesforce_id18("003G000001SUbc4IAD"), "003G000001SUbc4IAD");
        assert_eq!(salesforce_id18("not an id"), "not an id");
    }

    #[test]
    fn globs_match_whole_names_ignoring_case() {
        assert!(glob_match("Opportunity.csv", "opportunity.CSV"));
        assert!(glob_match(
            "hubspot-crm-exports-*deals*.csv",
            "hubspot-crm-exports-all-deals-2025-06-30.csv"
        ));
        assert!(glob_match("deals-*.csv", "deals-13427850-20250630.csv"));
        assert!(!glob_match("deals-*.csv", "old-deals-1.csv"));
        assert!(glob_match("Opportunity*.csv", "OpportunityHistory.csv"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "ac"));
        assert!(glob_match("*", "anything.json"));
    }

    #[test]
    fn column_specs_read_from_toml_with_clear_errors() {
        #[derive(Deserialize)]
        struct T {
            columns: BTreeMap<String, ColumnSpec>,
        }
        let t: T = toml::from_str(
            r#"
            [columns]
            a = "Id"
            b = { sql = "CASE WHEN IsWon = 'true' THEN 'won' END" }
            c = { column = "WhatId", prefix = ["006", "001"], default = "x" }
            d = { column = "Probability", percent = true }
            e = { column = "Stage", lookup = { source = "stages", key = "id", value = "name", missing = "null" } }
            "#,
        )
        .unwrap();
        assert_eq!(t.columns["a"], ColumnSpec::column("Id"));
        assert!(matches!(t.columns["b"].from, Origin::Sql(_)));
        assert_eq!(t.columns["c"].prefix, ["006", "001"]);
        assert!(t.columns["d"].percent);
        assert_eq!(t.columns["e"].lookup.as_ref().unwrap().missing, Missing::Null);
        // Round trip through TOML (presets are printed for users to copy).
        let back: ColumnSpec = toml::Value::from(t.columns["c"].clone()).try_into().unwrap();
        assert_eq!(back, t.columns["c"]);
        for (bad, want) in [
            ("a = { column = \"x\", sql = \"y\" }", "exactly one"),
            ("a = { colum = \"x\" }", "unknown key `colum`"),
            ("a = 5", "header name"),
            ("a = { column = \"x\", lookup = { source = \"s\" } }", "lookup"),
        ] {
            let e = toml::from_str::<T>(&format!("[columns]\n{bad}"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
