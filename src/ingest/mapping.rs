//! Column and value mapping: input header names to canonical columns (config mapping first,
//! then the canonical name itself, case-insensitively, with spaces and dashes as `_`).
//! The Salesforce / HubSpot / Pipedrive presets are mappings too: data, not code.

use std::collections::BTreeMap;

use crate::config::TableMapping;
use crate::schema::TableDef;

fn normalize(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' || c == '.' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// How the columns of one input file map onto a canonical table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnMap {
    /// canonical column -> input column
    pub columns: BTreeMap<&'static str, String>,
    /// input columns that map to nothing (kept in quarantine rows, not stored)
    pub ignored: Vec<String>,
    /// input columns that map to a canonical column already taken by an earlier one
    pub conflicts: Vec<(String, &'static str)>,
    /// canonical column -> how reasons name its origin, where that is not the input column
    /// (a mapping source's header or expression)
    pub labels: BTreeMap<&'static str, String>,
}

pub fn map_columns(def: &TableDef, input: &[String], mapping: Option<&TableMapping>) -> ColumnMap {
    let mut out = ColumnMap::default();
    for name in input {
        let key = normalize(name);
        let target = mapping
            .and_then(|m| m.columns.iter().find(|(from, _)| normalize(from) == key))
            .and_then(|(_, to)| def.column(to))
            .or_else(|| def.column(&key))
            .filter(|c| !c.derived);
        match target {
            Some(c) if out.columns.contains_key(c.name) => out.conflicts.push((name.clone(), c.name)),
            Some(c) => {
                out.columns.insert(c.name, name.clone());
            }
            None => out.ignored.push(name.clone()),
        }
    }
    out
}

/// Rewrites a value through the configured value mapping of a column (exact match first,
/// then case-insensitive).
pub fn map_value<'a>(values: Option<&'a BTreeMap<String, String>>, v: &'a str) -> &'a str {
    let Some(values) = values else { return v };
    if let Some(to) = values.get(v) {
        return to;
    }
    let t = v.trim();
    values
        .iter()
        .find(|(from, _)| from.trim().eq_ignore_ascii_case(t))
        .map_or(v, |(_, to)| to.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::OPPORTUNITIES;

    #[test]
    fn canonical_names_match_loosely_and_config_wins() {
        let mut m = TableMapping::default();
        m.columns.insert("Opportunity ID".into(), "opportunity_id".into());
        m.columns.insert("Close Date".into(), "closed_at".into());
        let input: Vec<String> = [
            "opportunity id",
            "Account-ID",
            "CLOSE DATE",
            "Amount",
            "Secret",
            "amount",
        ]
        .map(String::from)
        .into();
        let cm = map_columns(&OPPORTUNITIES, &input, Some(&m));
        assert_eq!(cm.columns["opportunity_id"], "opportunity id");
        assert_eq!(cm.columns["account_id"], "Account-ID");
        assert_eq!(cm.columns["closed_at"], "CLOSE DATE");
        assert_eq!(cm.columns["amount"], "Amount");
        assert_eq!(cm.ignored, ["Secret"]);
        assert_eq!(cm.conflicts, [("amount".to_string(), "amount")]);
    }

    #[test]
    fn derived_columns_are_never_read_from_input() {
        let cm = map_columns(&OPPORTUNITIES, &["amount_base".to_string()], None);
        assert!(cm.columns.is_empty());
        assert_eq!(cm.ignored, ["amount_base"]);
    }

    #[test]
    fn values_map_exactly_then_case_insensitively() {
        let mut v = BTreeMap::new();
        v.insert("Closed Won".to_string(), "won".to_string());
        assert_eq!(map_value(Some(&v), "Closed Won"), "won");
        assert_eq!(map_value(Some(&v), " closed won "), "won");
        assert_eq!(map_value(Some(&v), "Open"), "Open");
        assert_eq!(map_value(None, "Open"), "Open");
    }
}
