//! Real CRM exports, end to end: a fixture folder per CRM in that CRM's own export shapes
//! (tests/data/crm/<crm>/, each with a README naming the documentation it follows and the
//! story of its deals), ingested with one `crm-kpi ingest --preset <crm>` over every file as
//! the CRM names it, then the catalog run as of a date. The expected numbers are worked out by
//! hand from the story, in each CRM's test module.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::common::*;
use crate::fixtures::rows_with_decimals;

/// A preset ingest of a fixture folder and a run of the catalog over the store it made.
pub struct PresetRun {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub out: PathBuf,
    pub as_of: String,
    /// What `ingest` printed (the report).
    pub report: String,
}

/// The fixture folder of a CRM.
pub fn fixture_dir(crm: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/crm").join(crm)
}

/// Every export file of a fixture folder (its README and expectations left out).
pub fn export_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

/// `crm-kpi --config C ingest --preset CRM --store S <every file>`, then `run --as-of`.
pub fn run_preset(crm: &str, config: &str, as_of: &str, extra: &[&str]) -> PresetRun {
    let mut args = vec!["--preset", crm];
    args.extend_from_slice(extra);
    run_export(&fixture_dir(crm), config, as_of, &args)
}

/// A mapping example (examples/mappings/<name>.toml, with `extra_config` appended: a time zone,
/// a base currency) over its fixture folder tests/data/crm/<name>/, then `run --as-of`.
pub fn run_mapping_example(name: &str, extra_config: &str, as_of: &str) -> PresetRun {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mappings")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&example).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    run_export(&fixture_dir(name), &format!("{extra_config}\n{text}"), as_of, &[])
}

/// `crm-kpi --config C ingest --store S [extra] <every file of dir>`, then `run --as-of`.
pub fn run_export(fixtures: &Path, config: &str, as_of: &str, extra: &[&str]) -> PresetRun {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "crm-kpi.toml", config);
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let files = export_files(fixtures);
    let mut args: Vec<String> = vec![
        "--config".into(),
        s(&cfg).into(),
        "ingest".into(),
        "--store".into(),
        s(&store).into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(files.iter().map(|f| s(f).to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ing = run_in(dir.path(), &argv);
    assert_eq!(code(&ing), 0, "ingest failed:\n{}\n{}", stdout(&ing), stderr(&ing));
    let ran = run_in(
        dir.path(),
        &[
            "--config",
            s(&cfg),
            "run",
            "--store",
            s(&store),
            "--out",
            s(&out),
            "--as-of",
            as_of,
        ],
    );
    assert_eq!(code(&ran), 0, "run failed:\n{}", stderr(&ran));
    PresetRun {
        report: stdout(&ing),
        dir,
        store,
        out,
        as_of: as_of.to_string(),
    }
}

impl PresetRun {
    /// Rows of a stored table per value of `column`, as `value|n` sorted by value.
    pub fn count_by(&self, def: &crm_kpi::schema::TableDef, column: &str) -> Vec<String> {
        let counts = self
            .table(def)
            .lazy()
            .group_by([col(column)])
            .agg([len().alias("n")])
            .sort([column], Default::default())
            .collect()
            .unwrap();
        rows_with_decimals(&counts, &[column, "n"], 4)
    }

    /// A KPI's output of this run.
    pub fn kpi(&self, name: &str) -> DataFrame {
        crate::fixtures::read_output(&self.out, name, "month", &self.as_of)
    }

    /// The rows of a KPI where every `(column, value)` holds (values as `rows` prints them:
    /// `null`, dates `YYYY-MM-DD`), as `a|b|c` strings of `cols` (floats with 4 decimals).
    pub fn select(&self, name: &str, filter: &[(&str, &str)], cols: &[&str]) -> Vec<String> {
        let df = self.kpi(name);
        let keys: Vec<&str> = filter.iter().map(|(c, _)| *c).collect();
        let key_rows = rows_with_decimals(&df, &keys, 4);
        let want: Vec<&str> = filter.iter().map(|(_, v)| *v).collect();
        let want = want.join("|");
        let idx: Vec<IdxSize> = key_rows
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == want)
            .map(|(i, _)| i as IdxSize)
            .collect();
        let taken = df.take(&IdxCa::from_vec("i".into(), idx)).unwrap();
        rows_with_decimals(&taken, cols, 4)
    }

    /// The one value of `col` in the one row where `filter` holds.
    pub fn one(&self, name: &str, filter: &[(&str, &str)], col: &str) -> String {
        let got = self.select(name, filter, &[col]);
        assert_eq!(got.len(), 1, "{name} {filter:?}: {} rows", got.len());
        got[0].clone()
    }

    /// A stored table, sorted by its first column.
    pub fn table(&self, def: &crm_kpi::schema::TableDef) -> DataFrame {
        crm_kpi::store::Store::open(&self.store)
            .unwrap()
            .read_table(def)
            .unwrap()
    }

    /// A count of the ingest report for a source's (or table's) rule, 0 when it did not fire.
    pub fn count(&self, source: &str, rule: &str) -> u64 {
        self.report_counts()
            .get(&(source.to_string(), rule.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Deals that reached a funnel stage (stage_funnel, mode any, dimension all).
    pub fn reached(&self, stage: &str) -> String {
        self.one(
            "stage_funnel",
            &[
                ("mode", "any"),
                ("dimension", "all"),
                ("dimension_value", "null"),
                ("stage", stage),
            ],
            "reached",
        )
    }

    /// Counts of the report's "by rule" lines, by (table or source, rule).
    pub fn report_counts(&self) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for line in self.report.lines().filter(|l| l.starts_with("  ")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 3
                && let Ok(n) = parts[2].parse()
            {
                out.insert((parts[0].to_string(), parts[1].to_string()), n);
            }
        }
        out
    }
}
