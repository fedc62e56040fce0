//! The whole catalog on the sample store: every KPI runs, matches its declared schema, has a
//! unique key, and carries the run's as_of; `run` writes every KPI and a run manifest.

use crm_kpi::Config;
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::{Grain, Params, parse_as_of, registry};
use crm_kpi::store::Store;
use polars::prelude::*;

use crate::common::*;

fn sample() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store")
}

#[test]
fn every_kpi_matches_its_schema_and_key_on_the_sample_store() {
    // polars' plan conversion recurses deeply in debug builds: give it a main-sized stack.
    std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(|| {
            let cfg = Config::default();
            let as_of = parse_as_of("2026-06-30", cfg.tz()).unwrap();
            let tables = Tables::from_store(&Store::open(&sample()).unwrap()).unwrap();
            for grain in [Grain::Month, Grain::Quarter] {
                let params = Params::new(as_of, grain, cfg.clone());
                let (out, _) = crm_kpi::kpi::run::compute(&tables, &params, registry(), Engine::InMemory).unwrap();
                assert_eq!(out.len(), registry().len());
                for c in out {
                    let k = &c.kpi;
                    let declared: Vec<(String, DataType)> =
                        (k.columns)().into_iter().map(|(n, t)| (n.to_string(), t)).collect();
                    let got: Vec<(String, DataType)> =
                        c.df.columns()
                            .iter()
                            .map(|c| (c.name().to_string(), c.dtype().clone()))
                            .collect();
                    assert_eq!(got, declared, "{}", k.name);
                    assert!(c.df.height() > 0, "{} is empty on the sample store", k.name);
                    let keys = c.df.select(k.key.iter().copied()).unwrap();
                    let unique = keys
                        .unique_stable(None, UniqueKeepStrategy::First, None)
                        .unwrap()
                        .height();
                    assert_eq!(unique, c.df.height(), "{}: duplicate keys", k.name);
                    let as_of = c.df.column("as_of").unwrap().cast(&DataType::String).unwrap();
                    assert!(
                        as_of.str().unwrap().iter().all(|v| v == Some("2026-06-30")),
                        "{}",
                        k.name
                    );
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn run_writes_every_kpi_and_a_manifest_and_rerun_replaces_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for _ in 0..2 {
        let o = run(&[
            "run",
            "--store",
            s(&sample()),
            "--out",
            s(&out),
            "--as-of",
            "2026-06-30",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    for k in registry() {
        let part = out.join(k.name).join("as_of=2026-06-30");
        let files: Vec<_> = std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["part-0.parquet"], "{}", k.name);
    }
    let runs: Vec<_> = std::fs::read_dir(out.join("_runs")).unwrap().collect();
    assert_eq!(runs.len(), 2);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].as_ref().unwrap().path()).unwrap()).unwrap();
    assert_eq!(m["as_of"], "2026-06-30");
    assert_eq!(m["kpis"].as_array().unwrap().len(), registry().len());
}

#[test]
fn show_filters_by_dimension_and_prints_csv_and_json() {
    let o = run(&[
        "show",
        "win_rate",
        "--by",
        "owner_id",
        "--as-of",
        "2026-06-30",
        "--format",
        "csv",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("as_of,period_start,dimension,dimension_value,won,lost,win_rate"),
        "{text}"
    );
    assert!(text.lines().skip(1).all(|l| l.split(',').nth(2) == Some("owner_id")));
    let o = run(&["show", "loss_reasons", "--as-of", "2026-06-30", "--format", "json"]);
    assert_eq!(code(&o), 0);
    let first: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first["as_of"], "2026-06-30");
    let o = run(&["show", "nope"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("unknown KPI `nope`"), "{}", stderr(&o));
}

/// The KPI reference (`docs/kpis.md`) and the README's catalog table are generated from the
/// registry: this fails when a checked-in copy differs from it. `scripts/update-docs.sh` (or
/// `CRM_KPI_BLESS=1` on this test) writes them anew.
#[test]
fn generated_docs_match_the_registry() {
    use crm_kpi::kpi::catalog;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("CRM_KPI_BLESS").is_some();
    let docs = root.join("docs/kpis.md");
    let want = catalog::reference_markdown();
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let want_readme =
        catalog::with_readme_table(&readme, &catalog::readme_table()).expect("README.md has the catalog markers");
    if bless {
        std::fs::write(&docs, &want).unwrap();
        std::fs::write(&readme_path, &want_readme).unwrap();
    }
    let have = std::fs::read_to_string(&docs).unwrap_or_default();
    assert!(
        have == want,
        "docs/kpis.md differs from the registry: run scripts/update-docs.sh"
    );
    assert!(
        readme == want_readme || bless,
        "README.md's catalog table differs from the registry: run scripts/update-docs.sh"
    );
    // Every KPI's reference section is linked from the README table.
    for k in registry() {
        assert!(
            want_readme.contains(&format!("(docs/kpis.md#{})", k.name)),
            "{}",
            k.name
        );
        assert!(want.contains(&format!("\n### {}\n", k.name)), "{}", k.name);
    }
}

/// `crm-kpi list --long`, as a snapshot: a change to any KPI's text shows in review.
#[test]
fn list_long_snapshot() {
    let out = run(&["list", "--long"]);
    assert_eq!(code(&out), 0);
    insta::assert_snapshot!("list_long", stdout(&out));
}

/// `crm-kpi list --json` is the registry: every KPI with its family, key and columns.
#[test]
fn list_json_is_the_registry() {
    let out = run(&["list", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = v.as_array().unwrap();
    let reg = registry();
    assert_eq!(items.len(), reg.len());
    for (j, k) in items.iter().zip(&reg) {
        assert_eq!(j["name"], k.name);
        assert_eq!(j["family"], k.family.slug());
        assert_eq!(j["grain"], k.grain);
        let key: Vec<&str> = j["key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(key, k.key);
        let cols: Vec<&str> = j["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = (k.columns)().into_iter().map(|(c, _)| c).collect();
        assert_eq!(cols, want, "{}", k.name);
    }
    assert_eq!(items[0]["columns"][0]["type"], "date");
}
