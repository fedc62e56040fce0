//! The generator against ingest: a clean history is accepted whole; a dirty one has exactly
//! the bad rows `generate` reports quarantined, under the rule it names, and every good row
//! arrives.

use std::collections::BTreeMap;

use crm_kpi::generate::{Format, GenerateOptions, Scale, generate};
use crm_kpi::store::Store;
use crm_kpi::{Config, schema};

use crate::common::*;

fn gen_opts(out: &std::path::Path, format: Format, dirty: bool) -> GenerateOptions {
    GenerateOptions {
        scale: Scale::Tiny,
        seed: 7,
        out: out.to_path_buf(),
        format,
        dirty,
        pipelines: 1,
    }
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn same_seed_same_bytes_and_all_eleven_tables() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["csv", "parquet"] {
        let a = dir.path().join(format!("a-{format}"));
        let b = dir.path().join(format!("b-{format}"));
        for out in [&a, &b] {
            let o = run(&[
                "generate",
                "--scale",
                "tiny",
                "--seed",
                "7",
                "--format",
                format,
                "--out",
                s(out),
            ]);
            assert_eq!(code(&o), 0, "{}", stderr(&o));
        }
        let fa = files(&a);
        assert_eq!(fa.len(), 11, "{fa:?}");
        for t in schema::DATA_TABLES {
            let p = a.join(format!("{}.{format}", t.name));
            assert!(p.exists(), "{}", p.display());
            let q = b.join(format!("{}.{format}", t.name));
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&q).unwrap(),
                "{}",
                p.display()
            );
        }
    }
}

fn check_dirty(format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    let report = generate(&gen_opts(&out, format, true), &Config::default()).unwrap();
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    for ((t, _), n) in &report.dirty {
        *injected.entry(t.clone()).or_default() += *n as u64;
    }
    // Every ingest rule (README, "What gets rejected") that the generator can inject appears.
    let rules: std::collections::BTreeSet<&str> = report.dirty.keys().map(|(_, r)| r.as_str()).collect();
    for r in [
        "missing_required",
        "unparseable",
        "invalid_value",
        "negative_amount",
        "closed_without_date",
        "closed_before_created",
        "unknown_stage",
        "event_before_created",
        "unknown_deal",
        "duplicate_key",
    ] {
        assert!(rules.contains(r), "{r} not injected");
    }
    let store = dir.path().join("store");
    let fs = files(&out);
    let mut args = vec!["ingest", "--store", s(&store)];
    args.extend(fs.iter().map(String::as_str));
    let o = run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let st = Store::open(&store).unwrap();
    let mut quarantined: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in schema::DATA_TABLES {
        if let Some(q) = st.read_quarantine(t.name).unwrap() {
            for r in q.column("_rule").unwrap().str().unwrap().iter() {
                *quarantined
                    .entry((t.name.to_string(), r.unwrap().to_string()))
                    .or_default() += 1;
            }
            for reason in q.column("_reason").unwrap().str().unwrap().iter() {
                let reason = reason.unwrap();
                assert!(
                    schema::Rule::ALL
                        .iter()
                        .any(|r| reason.starts_with(&format!("{}: ", r.code()))),
                    "{reason}"
                );
            }
        }
        // Good rows all arrive: everything written minus the bad rows.
        let written = report.rows[t.name] as u64;
        assert_eq!(
            st.manifest().rows(t.name),
            written - injected.get(t.name).copied().unwrap_or(0),
            "{}",
            t.name
        );
    }
    assert_eq!(quarantined, report.dirty);
    // The printed counts match too.
    let printed = stdout(&o);
    for ((t, r), n) in &report.dirty {
        assert!(
            printed
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [t.as_str(), r.as_str(), &n.to_string()]),
            "{t} {r} {n} not printed:\n{printed}"
        );
    }
}

#[test]
fn dirty_rows_are_quarantined_exactly_csv() {
    check_dirty(Format::Csv);
}

#[test]
fn dirty_rows_are_quarantined_exactly_parquet() {
    check_dirty(Format::Parquet);
}

#[test]
fn clean_history_is_accepted_whole_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    let report = generate(&gen_opts(&out, Format::Csv, false), &Config::default()).unwrap();
    assert!(report.dirty.is_empty());
    let store = dir.path().join("store");
    let fs = files(&out);
    let mut args = vec!["ingest", "--store", s(&store), "--strict"];
    args.extend(fs.iter().map(String::as_str));
    let o = run(&args);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let v = run(&["validate", "--store", s(&store)]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    // Deal references are all resolvable in clean data.
    assert!(stdout(&v).contains("stage_events.opportunity_id -> opportunities.opportunity_id: 0"));
}
