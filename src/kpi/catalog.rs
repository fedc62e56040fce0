//! The catalog as documents, all made from the registry: `crm-kpi list --json`, the KPI
//! reference `docs/kpis.md` and the catalog table of the README. `tests/it/catalog.rs` fails
//! when a checked-in copy differs from what the registry gives; `scripts/update-docs.sh`
//! writes them anew.

use polars::prelude::DataType;
use serde_json::{Value, json};

use crate::kpi::{Family, Kpi, registry};

/// Where the README's generated catalog table starts and ends.
pub const README_START: &str = "<!-- catalog: generated from the registry by scripts/update-docs.sh; do not edit -->";
pub const README_END: &str = "<!-- catalog end -->";

/// A column type as warehouses name it (Arrow's names).
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::String => "string".into(),
        DataType::Date => "date".into(),
        DataType::Datetime(_, Some(tz)) => format!("timestamp[us, {tz}]"),
        DataType::Datetime(_, None) => "timestamp[us]".into(),
        DataType::List(inner) => format!("list<{}>", type_name(inner)),
        other => other.to_string(),
    }
}

/// `crm-kpi list`: a line per KPI (name, grain); `long` adds the version, family, definition,
/// key and columns.
pub fn text(long: bool) -> String {
    let mut s = String::new();
    for k in registry() {
        if long {
            s.push_str(&format!(
                "{} (v{}, {})\n  grain: {}\n  {}\n  key: {}\n  columns:",
                k.name,
                k.version,
                k.family,
                k.grain,
                k.definition,
                k.key.join(", ")
            ));
            for (c, t) in (k.columns)() {
                s.push_str(&format!(" {c}:{t}"));
            }
            s.push_str("\n\n");
        } else {
            s.push_str(&format!("{:<24} {}\n", k.name, k.grain));
        }
    }
    s
}

/// One KPI as JSON: name, family (slug and title), grain, definition, version, key, columns.
pub fn kpi_json(k: &Kpi) -> Value {
    json!({
        "name": k.name,
        "family": k.family.slug(),
        "family_title": k.family.title(),
        "grain": k.grain,
        "definition": k.definition,
        "version": k.version,
        "key": k.key,
        "columns": (k.columns)()
            .iter()
            .map(|(n, t)| json!({"name": n, "type": type_name(t)}))
            .collect::<Vec<_>>(),
    })
}

/// `crm-kpi list --json`: the catalog as a JSON array, in catalog order.
pub fn json() -> Value {
    Value::Array(registry().iter().map(kpi_json).collect())
}

/// The README's catalog table (between [`README_START`] and [`README_END`]).
pub fn readme_table() -> String {
    let mut s = String::from("| KPI | grain |\n|---|---|\n");
    for f in Family::ALL {
        s.push_str(&format!("| **{}** | |\n", f.title()));
        for k in f.kpis() {
            s.push_str(&format!("| [`{0}`](docs/kpis.md#{0}) | {1} |\n", k.name, k.grain));
        }
    }
    s
}

/// `docs/kpis.md`: every KPI with its definition, key and columns, family by family.
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# KPI reference\n\n\
         <!-- Generated from the registry (src/kpi/<family>.rs) by scripts/update-docs.sh; do not edit. -->\n\n\
         Every KPI is written to `OUT/<kpi>/grain=<grain>/as_of=<date>/part-0.parquet` (`grain` and \
         `as_of` are columns of the folder names, not of the file), one row per key, sorted by \
         its key. Sliced KPIs use one long format: `dimension` (`all`, `owner_id`, `source`, ...) and \
         `dimension_value` (null for `all`). Durations are days; quantiles interpolate linearly; \
         ratios over zero are null. The same text is in each output's Parquet metadata \
         (`crm_kpi.definition`, `crm_kpi.grain`, `crm_kpi.key`) and in `crm-kpi list --long` / `--json`. \
         Counts are int64.\n",
    );
    for f in Family::ALL {
        s.push_str(&format!(
            "\n## {}\n\nDefined in `src/kpi/{}.rs`.\n",
            capitalized(f.title()),
            f.slug()
        ));
        for k in f.kpis() {
            s.push_str(&format!(
                "\n### {}\n\n{} (version {}).\n\n{}\n\nKey: {}.\n\n| column | type |\n|---|---|\n",
                k.name,
                capitalized(k.grain),
                k.version,
                k.definition,
                if k.key.is_empty() {
                    "none".to_string()
                } else {
                    k.key.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                }
            ));
            for (c, t) in (k.columns)() {
                s.push_str(&format!("| `{c}` | {} |\n", type_name(&t)));
            }
        }
    }
    s
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|h| h.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `text` with the part between the README markers replaced by `table`; None without markers.
pub fn with_readme_table(text: &str, table: &str) -> Option<String> {
    let start = text.find(README_START)? + README_START.len();
    let end = start + text[start..].find(README_END)?;
    Some(format!("{}\n{}{}", &text[..start], table, &text[end..]))
}
