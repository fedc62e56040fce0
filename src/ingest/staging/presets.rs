//! Built-in presets: the mapping sources for one CRM's exports, written in the mapping language
//! itself (`presets/<name>.toml`, compiled into the binary). `crm-kpi preset show NAME` prints
//! one for a user to copy and adapt.

use serde::Deserialize;

use super::spec::Source;

/// (name, TOML text) of every built-in preset.
pub const PRESETS: &[(&str, &str)] = &[
    ("salesforce", include_str!("presets/salesforce.toml")),
    ("hubspot", include_str!("presets/hubspot.toml")),
    ("pipedrive", include_str!("presets/pipedrive.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    sources: Vec<Source>,
}

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// The preset's text, as printed by `crm-kpi preset show`.
pub fn text(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, t)| *t)
}

/// The preset's sources.
pub fn sources(name: &str) -> Result<Vec<Source>, String> {
    let t = text(name).ok_or_else(|| format!("no preset `{name}`; use one of: {}", names().join(", ")))?;
    let f: PresetFile = toml::from_str(t).map_err(|e| format!("preset `{name}`: {e}"))?;
    Ok(f.sources)
}
