//! `crm-kpi.toml`: pipeline stages, timezone, currency, calendar and mapping settings.
//!
//! The documented default lives in `crm-kpi.toml` at the repository root and is embedded
//! here, so the binary and the file can never disagree (a test checks they parse equal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::ingest::staging::{self, Source};
use crate::schema;

/// The documented default configuration, verbatim.
pub const DEFAULT_TOML: &str = include_str!("../crm-kpi.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_base_currency")]
    pub base_currency: String,
    #[serde(default = "default_fiscal_start")]
    pub fiscal_year_start_month: u32,
    #[serde(default)]
    pub week_start: WeekStart,
    #[serde(default)]
    pub lead_converted_event: ConvertedEvent,
    #[serde(default = "default_buckets")]
    pub deal_size_buckets: Vec<f64>,
    #[serde(default = "default_stale_days")]
    pub stale_after_days: u32,
    #[serde(default)]
    pub reengagement: Reengagement,
    /// Every pipeline's stages, pipeline after pipeline, each in its order: `[[stages]]` (one
    /// pipeline, named by each stage's `pipeline`, "default" when unset) or `[[pipelines]]`,
    /// flattened here at load.
    #[serde(default = "default_stages")]
    pub stages: Vec<Stage>,
    /// `[[pipelines]]`: several pipelines, each with its name and its stages. Read at load into
    /// `stages` (each stage carrying its pipeline) and then left empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<Pipeline>,
    /// Predictive CLV (BG/NBD + Gamma-Gamma).
    #[serde(default)]
    pub clv: Clv,
    /// Per canonical table: column renames and value rewrites.
    #[serde(default)]
    pub mapping: BTreeMap<String, TableMapping>,
    /// Built-in mapping sources for one CRM's exports: `salesforce`, `hubspot` or `pipedrive`
    /// (`crm-kpi preset show NAME` prints one).
    #[serde(default)]
    pub preset: Option<String>,
    /// CRMs rarely export orders: count each won deal without an order of its own as a paid
    /// order at its close (amount, currency, account), so revenue, CLV and retention are not
    /// empty. Applies to deals from mapping sources and presets.
    #[serde(default)]
    pub won_deals_as_orders: bool,
    /// Mapping sources: how files of any export become canonical rows (docs/mapping.md).
    /// They come before the preset's, so a source here can take files from it.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// The store when `--store` and `CRM_KPI_STORE` are not given (relative to the current
    /// folder). Not part of the config hash: where the data lives does not change a KPI.
    #[serde(default, skip_serializing)]
    pub store: Option<PathBuf>,
    /// The KPI output folder when `--out` and `CRM_KPI_OUT` are not given. Not hashed either.
    #[serde(default, skip_serializing)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeekStart {
    #[default]
    Monday,
    Sunday,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvertedEvent {
    Opportunity,
    #[default]
    Won,
    PaidOrder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reengagement {
    pub min_days: u32,
    pub max_days: u32,
}

impl Default for Reengagement {
    fn default() -> Self {
        Reengagement {
            min_days: 90,
            max_days: 180,
        }
    }
}

/// `[clv]`: the predictive CLV models' time unit, horizon, discounting and segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clv {
    #[serde(default)]
    pub time_unit: ClvTimeUnit,
    #[serde(default = "default_horizon_months")]
    pub horizon_months: u32,
    #[serde(default = "default_monthly_discount_rate")]
    pub monthly_discount_rate: f64,
    #[serde(default)]
    pub segment_by: ClvSegmentBy,
}

impl Default for Clv {
    fn default() -> Self {
        Clv {
            time_unit: ClvTimeUnit::default(),
            horizon_months: default_horizon_months(),
            monthly_discount_rate: default_monthly_discount_rate(),
            segment_by: ClvSegmentBy::default(),
        }
    }
}

/// The unit of recency, T and the fitted BG/NBD rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClvTimeUnit {
    #[default]
    Weeks,
    Days,
}

impl ClvTimeUnit {
    /// Days per unit.
    pub fn days(self) -> f64 {
        match self {
            ClvTimeUnit::Weeks => 7.0,
            ClvTimeUnit::Days => 1.0,
        }
    }
}

/// Which groups of customers get their own CLV models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClvSegmentBy {
    /// One model for every customer.
    #[default]
    None,
    /// The source of the account's first lead.
    Source,
    /// `accounts.segment`.
    Segment,
}

/// The most stages a pipeline may have (the deal history packs a stage's position in 10 bits:
/// `kpi::inputs::export_vs_history`).
pub const MAX_STAGES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    Won,
    Lost,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// Win probability 0-1. Required in crm-kpi.toml; a stage list from the store (a CRM's
    /// own) may not know it, and weighted amounts then leave that stage out.
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub terminal: Option<Terminal>,
    /// The pipeline the stage belongs to: a stage is known by (pipeline, name). Set from
    /// `[[pipelines]]`; "default" for a `[[stages]]` list that does not name it.
    #[serde(default = "default_pipeline", skip_serializing_if = "is_default_pipeline")]
    pub pipeline: String,
}

/// `[[pipelines]]`: one pipeline (a HubSpot pipeline, a Pipedrive pipeline, a Salesforce sales
/// process), its stages in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub stages: Vec<Stage>,
}

/// The name of the one pipeline of a `[[stages]]` list (and of a store's stage list) that does
/// not name its pipeline.
pub const DEFAULT_PIPELINE: &str = "default";

fn default_pipeline() -> String {
    DEFAULT_PIPELINE.into()
}

fn is_default_pipeline(p: &str) -> bool {
    p == DEFAULT_PIPELINE
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// input column name -> canonical column name
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// canonical column -> (input value -> canonical value)
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// An unparseable optional value becomes null (counted in the report) instead of
    /// rejecting its row; required values still reject it.
    #[serde(default)]
    pub lenient: bool,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_base_currency() -> String {
    "USD".into()
}
fn default_fiscal_start() -> u32 {
    1
}
fn default_buckets() -> Vec<f64> {
    vec![10_000.0, 50_000.0]
}
fn default_stale_days() -> u32 {
    30
}
fn default_horizon_months() -> u32 {
    12
}
fn default_monthly_discount_rate() -> f64 {
    0.01
}
fn default_stages() -> Vec<Stage> {
    let s = |name: &str, probability, terminal| Stage {
        name: name.into(),
        probability: Some(probability),
        terminal,
        pipeline: default_pipeline(),
    };
    vec![
        s("prospecting", 0.1, None),
        s("qualification", 0.2, None),
        s("proposal", 0.5, None),
        s("negotiation", 0.8, None),
        s("closed_won", 1.0, Some(Terminal::Won)),
        s("closed_lost", 0.0, Some(Terminal::Lost)),
    ]
}

impl Default for Config {
    fn default() -> Self {
        Config::from_toml_str(DEFAULT_TOML, Path::new("<default crm-kpi.toml>"))
            .expect("the embedded default configuration is valid")
    }
}

impl Config {
    /// Loads `path`, or `./crm-kpi.toml` if present, or the default.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path: Option<PathBuf> = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("crm-kpi.toml")).filter(|p| p.is_file()),
        };
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Config::from_toml_str(&text, &p)
            }
        }
    }

    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        };
        let mut cfg: Config = toml::from_str(text).map_err(parse_error)?;
        if !cfg.pipelines.is_empty() {
            let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
            cfg.flatten_pipelines(table.contains_key("stages"), path)?;
        }
        cfg.check(path)?;
        Ok(cfg)
    }

    /// Moves `[[pipelines]]` into `stages`, each stage carrying its pipeline's name.
    fn flatten_pipelines(&mut self, has_stages: bool, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, problem: String, fix: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
            fix: fix.to_string(),
        };
        if has_stages {
            return Err(bad(
                "stages".into(),
                "both [[stages]] and [[pipelines]] are given".into(),
                "declare the stages inside each [[pipelines]] entry ([[pipelines.stages]])",
            ));
        }
        let mut stages = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, p) in std::mem::take(&mut self.pipelines).into_iter().enumerate() {
            if p.name.trim().is_empty() || !names.insert(p.name.clone()) {
                return Err(bad(
                    format!("pipelines[{i}].name"),
                    format!("pipeline name `{}` is empty or repeated", p.name),
                    "give each pipeline a unique, non-empty name",
                ));
            }
            if p.stages.is_empty() {
                return Err(bad(
                    format!("pipelines[{i}].stages"),
                    format!("pipeline `{}` has no stages", p.name),
                    "list its stages in order with [[pipelines.stages]] entries",
                ));
            }
            for (j, mut s) in p.stages.into_iter().enumerate() {
                if s.pipeline != DEFAULT_PIPELINE && s.pipeline != p.name {
                    return Err(bad(
                        format!("pipelines[{i}].stages[{j}].pipeline"),
                        format!("stage `{}` names pipeline `{}` inside `{}`", s.name, s.pipeline, p.name),
                        "remove the stage's `pipeline` key: it belongs to the pipeline it is listed in",
                    ));
                }
                s.pipeline = p.name.clone();
                stages.push(s);
            }
        }
        self.stages = stages;
        Ok(())
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String, fix: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem,
            fix: fix.to_string(),
        };
        if self.timezone.parse::<Tz>().is_err() {
            return Err(bad(
                "timezone",
                format!("`{}` is not an IANA time zone", self.timezone),
                "use a name like \"UTC\", \"Europe/Paris\" or \"America/New_York\"",
            ));
        }
        if !is_currency_code(&self.base_currency) {
            return Err(bad(
                "base_currency",
                format!("`{}` is not an ISO 4217 code", self.base_currency),
                "use three upper-case letters, e.g. \"USD\" or \"EUR\"",
            ));
        }
        if !(1..=12).contains(&self.fiscal_year_start_month) {
            return Err(bad(
                "fiscal_year_start_month",
                format!("{} is not a month", self.fiscal_year_start_month),
                "use a month number from 1 (January) to 12",
            ));
        }
        let b = &self.deal_size_buckets;
        if b.is_empty() || b.iter().any(|x| !x.is_finite() || *x <= 0.0) || b.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(
                "deal_size_buckets",
                format!("{b:?} is not a list of increasing positive thresholds"),
                "list increasing amounts, e.g. [10000.0, 50000.0]",
            ));
        }
        if self.reengagement.min_days > self.reengagement.max_days {
            return Err(bad(
                "reengagement.min_days",
                format!(
                    "min_days {} is after max_days {}",
                    self.reengagement.min_days, self.reengagement.max_days
                ),
                "make min_days <= max_days",
            ));
        }
        if !(1..=1200).contains(&self.clv.horizon_months) {
            return Err(bad(
                "clv.horizon_months",
                format!("{} is not a horizon of 1 to 1200 months", self.clv.horizon_months),
                "use a number of months, e.g. 12",
            ));
        }
        let d = self.clv.monthly_discount_rate;
        if !(d.is_finite() && (0.0..1.0).contains(&d)) {
            return Err(bad(
                "clv.monthly_discount_rate",
                format!("{d} is not a rate in [0, 1)"),
                "write the monthly rate as a fraction, e.g. 0.01 for 1% a month",
            ));
        }
        if self.stages.is_empty() {
            return Err(bad(
                "stages",
                "no stages".into(),
                "declare the pipeline with [[stages]] entries",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.stages.iter().enumerate() {
            let key = format!("stages[{i}]");
            if s.name.trim().is_empty() {
                return Err(bad(
                    &format!("{key}.name"),
                    "empty stage name".into(),
                    "give every stage a name",
                ));
            }
            if !seen.insert((s.pipeline.as_str(), s.name.as_str())) {
                return Err(bad(
                    &format!("{key}.name"),
                    format!("stage `{}` is declared twice in pipeline `{}`", s.name, s.pipeline),
                    "give each stage of a pipeline a unique name",
                ));
            }
            if i > 0
                && self.stages[i - 1].pipeline != s.pipeline
                && self.stages[..i].iter().any(|o| o.pipeline == s.pipeline)
            {
                return Err(bad(
                    &format!("{key}.pipeline"),
                    format!("the stages of pipeline `{}` are not listed together", s.pipeline),
                    "list each pipeline's stages one after the other, in order (or use [[pipelines]])",
                ));
            }
            let Some(p) = s.probability else {
                return Err(bad(
                    &format!("{key}.probability"),
                    format!("stage `{}` has no probability", s.name),
                    "write probabilities as fractions, e.g. probability = 0.25 for 25%",
                ));
            };
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(
                    &format!("{key}.probability"),
                    format!("{p} for stage `{}` is outside 0-1", s.name),
                    "write probabilities as fractions, e.g. 0.25 for 25%",
                ));
            }
        }
        if self.stages.len() > MAX_STAGES {
            return Err(bad(
                "stages",
                format!("{} stages; at most {MAX_STAGES} are supported", self.stages.len()),
                "merge stages, or keep only those deals pass through",
            ));
        }
        for pipeline in self.pipeline_names() {
            for (t, label) in [(Terminal::Won, "won"), (Terminal::Lost, "lost")] {
                if !self
                    .stages
                    .iter()
                    .any(|s| s.pipeline == pipeline && s.terminal == Some(t))
                {
                    let problem = match self.pipeline_names().len() {
                        1 => format!("no stage is terminal = \"{label}\""),
                        _ => format!("no stage of pipeline `{pipeline}` is terminal = \"{label}\""),
                    };
                    return Err(bad(
                        "stages",
                        problem,
                        "mark the stage that closes a deal with terminal = \"won\" (and one with \"lost\"), in every pipeline",
                    ));
                }
            }
        }
        self.check_sources(path)?;
        for (table, m) in &self.mapping {
            let Some(def) = schema::table(table) else {
                return Err(bad(
                    &format!("mapping.{table}"),
                    format!("`{table}` is not a canonical table"),
                    &format!("use one of: {}", schema::table_names().join(", ")),
                ));
            };
            for (from, to) in &m.columns {
                if def.column(to).is_none_or(|c| c.derived) {
                    return Err(bad(
                        &format!("mapping.{table}.columns.\"{from}\""),
                        format!("`{to}` is not a column of {table}"),
                        &format!("map to one of: {}", input_column_names(def)),
                    ));
                }
            }
            for col in m.values.keys() {
                if def.column(col).is_none_or(|c| c.derived) {
                    return Err(bad(
                        &format!("mapping.{table}.values.{col}"),
                        format!("`{col}` is not a column of {table}"),
                        &format!("use one of: {}", input_column_names(def)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the mapping sources (the config's and its preset's): names, tables, columns,
    /// lookups, zones, locales, patterns and SQL, so a typo fails at load with its key.
    fn check_sources(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, problem: String, fix: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
            fix: fix.to_string(),
        };
        if let Some(p) = &self.preset
            && staging::presets::text(p).is_none()
        {
            return Err(bad(
                "preset".into(),
                format!("`{p}` is not a built-in preset"),
                &format!("use one of: {}", staging::presets::names().join(", ")),
            ));
        }
        let all = staging::sources(self);
        let mut names = std::collections::HashSet::new();
        for (i, s) in all.iter().enumerate() {
            let key = if i < self.sources.len() {
                format!("sources[{i}] ({})", s.name)
            } else {
                format!("preset {} source {}", self.preset.as_deref().unwrap_or(""), s.name)
            };
            let key = |k: &str| format!("{key}.{k}");
            if i < self.sources.len() && !names.insert(s.name.as_str()) {
                return Err(bad(
                    key("name"),
                    format!("source `{}` is declared twice", s.name),
                    "give each source a unique name",
                ));
            }
            let def = match s.table.as_deref() {
                None => None,
                Some(t) => Some(schema::table(t).ok_or_else(|| {
                    bad(
                        key("table"),
                        format!("`{t}` is not a canonical table"),
                        &format!("use one of: {}", schema::table_names().join(", ")),
                    )
                })?),
            };
            if s.files.is_empty() && s.rows.is_empty() {
                return Err(bad(
                    key("files"),
                    "no file-name patterns and no rows".into(),
                    "add files = [\"export*.csv\"] or rows = [...]",
                ));
            }
            if let Some(tz) = &s.timezone
                && tz.parse::<Tz>().is_err()
            {
                return Err(bad(
                    key("timezone"),
                    format!("`{tz}` is not an IANA time zone"),
                    "use a name like \"UTC\" or \"Europe/Berlin\"",
                ));
            }
            if let Some(l) = &s.locale
                && crate::ingest::parse::Locale::parse(l).is_none()
            {
                return Err(bad(
                    key("locale"),
                    format!("`{l}` is not a locale crm-kpi knows"),
                    &format!("use one of: {}", crate::ingest::parse::Locale::known()),
                ));
            }
            if let Some(u) = &s.unpivot
                && let Err(e) = regex::Regex::new(&u.columns)
            {
                return Err(bad(
                    key("unpivot.columns"),
                    format!("not a regular expression: {e}"),
                    "fix the pattern",
                ));
            }
            let sql_ok = |sql: &str, k: String| -> Result<(), ConfigError> {
                polars::sql::sql_expr(sql).map(|_| ()).map_err(|e| {
                    bad(
                        k,
                        format!(
                            "`{sql}` is not a SQL expression: {}",
                            crate::error::first_line(&e.to_string())
                        ),
                        "write a SQL expression over the file's columns; quote names with spaces in double quotes",
                    )
                })
            };
            if let Some(f) = &s.filter {
                sql_ok(f, key("filter"))?;
            }
            if let Some(r) = &s.reopen {
                sql_ok(r, key("reopen"))?;
            }
            let specs = s
                .columns
                .iter()
                .map(|(c, spec)| (c.as_str(), spec))
                .chain(s.initial_stage.iter().map(|spec| ("initial_stage", spec)));
            for (c, spec) in specs {
                if c != "initial_stage"
                    && let Some(def) = def
                    && def.column(c).is_none_or(|col| col.derived)
                {
                    return Err(bad(
                        key(&format!("columns.{c}")),
                        format!("`{c}` is not a column of {}", def.name),
                        &format!("map to one of: {}", input_column_names(def)),
                    ));
                }
                check_spec(spec, &key(&format!("columns.{c}")), &all, &sql_ok, &bad)?;
            }
            if def.is_some_and(|d| d.name != "stage_events")
                && (s.history != staging::History::Rows || s.initial_stage.is_some() || s.reopen.is_some())
            {
                return Err(bad(
                    key("history"),
                    "`history` and `initial_stage` apply to stage_events sources only".into(),
                    "remove them or set table = \"stage_events\"",
                ));
            }
            if s.inverse && def.is_none_or(|d| d.name != "fx_rates") {
                return Err(bad(
                    key("inverse"),
                    "`inverse` applies to fx_rates sources only".into(),
                    "remove it or set table = \"fx_rates\"",
                ));
            }
        }
        Ok(())
    }

    /// The config a run uses on a store: the store's own stage list, when it holds one (a
    /// CRM's pipeline, ingested by a preset), replaces `[[stages]]`.
    pub fn for_store(mut self, store: &crate::store::Store) -> Result<Config, crate::error::StoreError> {
        if let Some(stages) = store.stages()? {
            if stages.len() > MAX_STAGES {
                return Err(crate::error::StoreError::BadTable {
                    path: store.root().to_path_buf(),
                    table: "stages".into(),
                    message: format!("{} stages; at most {MAX_STAGES} are supported", stages.len()),
                });
            }
            self.stages = stages;
        }
        Ok(self)
    }

    pub fn tz(&self) -> Tz {
        self.timezone.parse().expect("timezone checked at load")
    }

    /// The first stage named `name` (in pipeline order: the first pipeline that has it).
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The pipelines' names, in order (one, "default", for a `[[stages]]` list).
    pub fn pipeline_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for s in &self.stages {
            if names.last() != Some(&s.pipeline.as_str()) {
                names.push(&s.pipeline);
            }
        }
        names
    }

    /// The pipeline of a deal that names none, or one that is not configured: the first.
    pub fn default_pipeline(&self) -> &str {
        self.stages.first().map_or(DEFAULT_PIPELINE, |s| s.pipeline.as_str())
    }

    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn mapping(&self, table: &str) -> Option<&TableMapping> {
        self.mapping.get(table)
    }

    /// A stable hash of the effective configuration (recorded in manifests and KPI outputs).
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("config serializes");
        let digest = Sha256::digest(json.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Checks a column spec and the alternatives of its `first` list.
fn check_spec(
    spec: &staging::ColumnSpec,
    key: &str,
    all: &[Source],
    sql_ok: &dyn Fn(&str, String) -> Result<(), ConfigError>,
    bad: &dyn Fn(String, String, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    match &spec.from {
        staging::Origin::Sql(sql) => sql_ok(sql, format!("{key}.sql"))?,
        staging::Origin::First(specs) => {
            for (i, s) in specs.iter().enumerate() {
                check_spec(s, &format!("{key}.first[{i}]"), all, sql_ok, bad)?;
            }
        }
        _ => {}
    }
    if let Some(w) = &spec.when {
        sql_ok(w, format!("{key}.when"))?;
    }
    if let Some(p) = &spec.pattern
        && let Err(e) = regex::Regex::new(p)
    {
        return Err(bad(
            format!("{key}.pattern"),
            format!("not a regular expression: {e}"),
            "fix the pattern",
        ));
    }
    if let Some(l) = &spec.lookup
        && !all.iter().any(|o| o.name == l.source)
    {
        return Err(bad(
            format!("{key}.lookup.source"),
            format!("no source is named `{}`", l.source),
            "name a source declared here or in the preset",
        ));
    }
    Ok(())
}

fn input_column_names(def: &schema::TableDef) -> String {
    def.input_columns().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("t.toml"))
    }

    #[test]
    fn documented_default_equals_built_in_defaults() {
        let empty = parse("").unwrap();
        assert_eq!(Config::default(), empty);
        assert_eq!(empty.stage_names().len(), 6);
        assert_eq!(empty.tz(), chrono_tz::UTC);
    }

    #[test]
    fn pipelines_flatten_into_stages_each_with_its_pipeline() {
        let two = "[[pipelines]]\nname = \"new\"\n\
            [[pipelines.stages]]\nname = \"a\"\nprobability = 0.5\n\
            [[pipelines.stages]]\nname = \"won\"\nprobability = 1.0\nterminal = \"won\"\n\
            [[pipelines.stages]]\nname = \"lost\"\nprobability = 0.0\nterminal = \"lost\"\n\
            [[pipelines]]\nname = \"renewal\"\n\
            [[pipelines.stages]]\nname = \"a\"\nprobability = 0.7\n\
            [[pipelines.stages]]\nname = \"won\"\nprobability = 1.0\nterminal = \"won\"\n\
            [[pipelines.stages]]\nname = \"lost\"\nprobability = 0.0\nterminal = \"lost\"\n";
        let c = parse(two).unwrap();
        assert_eq!(c.pipeline_names(), ["new", "renewal"]);
        assert_eq!(c.default_pipeline(), "new");
        let got: Vec<(String, String, Option<f64>)> = c
            .stages
            .iter()
            .map(|s| (s.pipeline.clone(), s.name.clone(), s.probability))
            .collect();
        assert_eq!(got[3], ("renewal".into(), "a".into(), Some(0.7)));
        assert_eq!(got.len(), 6);
        assert!(c.pipelines.is_empty());
        // A `[[stages]]` list is one pipeline, "default".
        assert_eq!(parse("").unwrap().pipeline_names(), [DEFAULT_PIPELINE]);
        // Errors: both forms; a repeated name; a pipeline without a won stage.
        let cases = [
            (
                format!("[[stages]]\nname = \"x\"\nprobability = 0.1\n{two}"),
                "`stages`",
                "both",
            ),
            (two.replace("\"renewal\"", "\"new\""), "`pipelines[1].name`", "unique"),
            (
                {
                    let (head, tail) = two.split_at(two.find("renewal").unwrap());
                    format!("{head}{}", tail.replacen("terminal = \"won\"", "", 1))
                },
                "`stages`",
                "pipeline `renewal` is terminal",
            ),
        ];
        for (text, key, what) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("timezon = \"UTC\"").unwrap_err().to_string();
        assert!(e.contains("timezon"), "{e}");
        assert!(e.contains("t.toml"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_fix() {
        let cases = [
            ("timezone = \"Mars/Olympus\"", "timezone", "IANA"),
            ("base_currency = \"usd\"", "base_currency", "upper-case"),
            ("fiscal_year_start_month = 13", "fiscal_year_start_month", "1 (January)"),
            ("deal_size_buckets = [5.0, 1.0]", "deal_size_buckets", "increasing"),
            (
                "[reengagement]\nmin_days = 10\nmax_days = 5",
                "reengagement.min_days",
                "min_days <=",
            ),
            (
                "[[stages]]\nname = \"a\"\nprobability = 50.0",
                "stages[0].probability",
                "fractions",
            ),
            ("[[stages]]\nname = \"a\"\nprobability = 0.5", "stages", "terminal"),
            ("[mapping.deals.columns]\nx = \"y\"", "mapping.deals", "opportunities"),
            ("[clv]\nhorizon_months = 0", "clv.horizon_months", "e.g. 12"),
            (
                "[clv]\nmonthly_discount_rate = 1.5",
                "clv.monthly_discount_rate",
                "0.01 for 1%",
            ),
            (
                "[mapping.leads.columns]\n\"Lead\" = \"nope\"",
                "mapping.leads.columns.\"Lead\"",
                "lead_id",
            ),
        ];
        for (text, key, fix) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
            assert!(e.contains(fix), "{text}: {e}");
        }
    }

    #[test]
    fn clv_section_parses_and_rejects_unknown_values() {
        let c = parse("[clv]\ntime_unit = \"days\"\nhorizon_months = 24\nsegment_by = \"source\"").unwrap();
        assert_eq!(c.clv.time_unit, ClvTimeUnit::Days);
        assert_eq!(c.clv.horizon_months, 24);
        assert_eq!(c.clv.monthly_discount_rate, 0.01);
        assert_eq!(c.clv.segment_by, ClvSegmentBy::Source);
        assert_eq!(Config::default().clv, Clv::default());
        for text in [
            "[clv]\ntime_unit = \"months\"",
            "[clv]\nsegment_by = \"region\"",
            "[clv]\nhorizon = 3",
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("t.toml"), "{text}: {e}");
        }
    }

    #[test]
    fn every_preset_loads_and_checks() {
        for name in staging::presets::names() {
            let c = parse(&format!("preset = \"{name}\"")).unwrap_or_else(|e| panic!("{name}: {e}"));
            let sources = staging::sources(&c);
            assert!(sources.len() > 5, "{name}");
            for s in &sources {
                assert!(
                    s.name.starts_with(name),
                    "{name}: source {} is not named after its preset",
                    s.name
                );
            }
        }
        let e = parse("preset = \"zoho\"").unwrap_err().to_string();
        assert!(e.contains("salesforce, hubspot, pipedrive"), "{e}");
    }

    #[test]
    fn source_mistakes_fail_at_load_with_their_key() {
        let head = "[[sources]]\nname = \"a\"\ntable = \"leads\"\nfiles = [\"x.csv\"]\n";
        let cases = [
            (
                "[[sources]]\nname = \"a\"\ntable = \"deals\"\nfiles = [\"x.csv\"]".to_string(),
                "sources[0] (a).table",
                "opportunities",
            ),
            (
                "[[sources]]\nname = \"a\"\ntable = \"leads\"".to_string(),
                "sources[0] (a).files",
                "rows",
            ),
            (
                format!("{head}[sources.columns]\nlead = \"Id\""),
                "sources[0] (a).columns.lead",
                "lead_id",
            ),
            (
                format!("{head}[sources.columns]\nsource = {{ first = [{{ sql = \")(\" }}] }}"),
                "sources[0] (a).columns.source.first[0].sql",
                "SQL",
            ),
            (
                format!(
                    "{head}[sources.columns]\nsource = {{ column = \"S\", lookup = {{ source = \"nope\", key = \"k\", value = \"v\" }} }}"
                ),
                "sources[0] (a).columns.source.lookup.source",
                "no source",
            ),
            (format!("{head}timezone = \"Mars\""), "sources[0] (a).timezone", "IANA"),
            (format!("{head}locale = \"xx\""), "sources[0] (a).locale", "de"),
        ];
        for (text, key, fix) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
            assert!(e.contains(fix), "{text}: {e}");
        }
    }

    #[test]
    fn hash_changes_with_content() {
        let a = Config::default();
        let mut b = a.clone();
        b.timezone = "Europe/Paris".into();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), Config::default().hash());
    }
}
