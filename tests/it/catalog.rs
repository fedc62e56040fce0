//! Properties of the whole catalog, checked once over `registry()`: on the sample store and on
//! every family's hand-checked fixture, every KPI runs at every grain, matches its declared
//! schema, has a unique key, and gives the same rows on polars' streaming engine; an empty store
//! gives every KPI empty; `run` writes every KPI and a run manifest; the generated docs follow
//! the registry.

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

/// Every family's hand fixture with its parameters, and the sample store as of 2026-06-30.
fn fixtures() -> Vec<(&'static str, Tables, Params)> {
    let cfg = Config::default();
    let sample_params = Params::new(parse_as_of("2026-06-30", cfg.tz()).unwrap(), Grain::Month, cfg);
    let sample_tables = Tables::from_store(&Store::open(&sample()).unwrap()).unwrap();
    let mut v: Vec<(&'static str, Tables, Params)> = vec![("sample store", sample_tables, sample_params)];
    for (name, (t, p)) in [
        ("kpi_leads", crate::kpi_leads::hand_fixture()),
        ("kpi_funnel/stages", crate::kpi_funnel::stages::hand_fixture()),
        ("kpi_funnel/pipeline", crate::kpi_funnel::pipeline::hand_fixture()),
        ("kpi_reps", crate::kpi_reps::hand_fixture()),
        ("kpi_customers/revenue", crate::kpi_customers::revenue::hand_fixture()),
        ("kpi_customers/clv", crate::kpi_customers::clv::hand_fixture()),
        ("kpi_trends", crate::kpi_trends::hand_fixture()),
    ] {
        v.push((name, t, p));
    }
    v
}

#[test]
fn every_kpi_on_every_fixture_has_its_schema_a_unique_key_and_streams_alike() {
    crate::fixtures::big_stack(|| {
        for (fixture, tables, params) in fixtures() {
            for grain in [Grain::Week, Grain::Month, Grain::Quarter, Grain::Year] {
                let p = Params::new(params.as_of_us, grain, params.config.clone());
                let (mem, _) = crm_kpi::kpi::run::compute(&tables, &p, registry(), Engine::InMemory).unwrap();
                assert_eq!(mem.len(), registry().len());
                for c in &mem {
                    crate::fixtures::assert_schema_and_key(c.kpi.name, &c.df);
                }
                if grain == Grain::Month {
                    let (streamed, _) = crm_kpi::kpi::run::compute(&tables, &p, registry(), Engine::Streaming).unwrap();
                    for (a, b) in mem.iter().zip(&streamed) {
                        if let Err(e) = crate::fixtures::agree(&a.df, &b.df, 1e-12) {
                            panic!("{} on {fixture}: the streaming engine differs: {e}", a.kpi.name);
                        }
                    }
                }
            }
        }
    })
}

/// An empty store: every KPI has its declared schema and no rows, except pipeline_snapshot,
/// whose dense grid has the as_of snapshot of every open stage with 0 deals, and clv_model,
/// which lists the parameters of the "all" segment's models with null values.
#[test]
fn an_empty_store_gives_every_kpi_empty() {
    crate::fixtures::big_stack(|| {
        let cfg = Config::default();
        let p = Params::new(parse_as_of("2024-03-31", cfg.tz()).unwrap(), Grain::Month, cfg);
        let (out, _) =
            crm_kpi::kpi::run::compute(&Tables::from_frames(vec![]), &p, registry(), Engine::InMemory).unwrap();
        for c in out {
            crate::fixtures::assert_schema_and_key(c.kpi.name, &c.df);
            if c.kpi.name == "clv_model" {
                // One row per parameter of each model, null: nothing to fit.
                assert!(c.df.column("value").unwrap().null_count() == c.df.height(), "{}", c.df);
            } else if c.kpi.name == "pipeline_snapshot" {
                let open = c.df.column("open_deals").unwrap().i64().unwrap();
                assert!(open.iter().all(|v| v == Some(0)), "{}", c.df);
                assert_eq!(c.df.height(), 4, "{}", c.df);
            } else {
                assert_eq!(c.df.height(), 0, "{}: {}", c.kpi.name, c.df);
            }
        }
    })
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
        let part = out.join(k.name).join("grain=month/as_of=2026-06-30");
        let mut files: Vec<_> = std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        assert_eq!(files, ["_SUCCESS", "part-0.parquet"], "{}", k.name);
    }
    let latest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_runs/latest.json")).unwrap()).unwrap();
    assert_eq!(latest["status"], "succeeded");
    assert!(latest["finished_at"].as_str().unwrap() >= latest["started_at"].as_str().unwrap());
    let runs: Vec<_> = std::fs::read_dir(out.join("_runs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "latest.json")
        .collect();
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
    let all: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(all[0]["as_of"], "2026-06-30");
    let o = run(&["show", "loss_reasons", "--as-of", "2026-06-30", "--format", "ndjson"]);
    let first: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first, all[0]);
    assert_eq!(stdout(&o).lines().count(), all.as_array().unwrap().len());
    let o = run(&["show", "nope"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("invalid value 'nope'"), "{}", stderr(&o));
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

/// The as-of filters of the inputs reach the Parquet scans (predicate pushdown), so a run as of
/// an early date reads only the row groups it needs. polars' `optimization_checks.rs` pattern:
/// a refactor that puts a step between the scan and the filter fails here, not in a benchmark.
#[test]
fn as_of_filters_reach_the_scans() {
    crate::fixtures::big_stack(|| {
        let cfg = Config::default();
        let p = Params::new(parse_as_of("2026-06-30", cfg.tz()).unwrap(), Grain::Month, cfg);
        let tables = Tables::from_store(&Store::open(&sample()).unwrap()).unwrap();
        let i = crm_kpi::kpi::Inputs::new(&tables, &p);
        for (table, lf, column) in [
            ("leads", i.leads.clone(), "created_at"),
            ("opportunities", i.opportunities.clone(), "created_at"),
            ("stage_events", i.stage_events.clone(), "entered_at"),
            ("orders", i.orders.clone(), "ordered_at"),
            ("activities", i.activities.clone(), "occurred_at"),
            ("accounts", i.accounts.clone(), "created_at"),
            ("forecasts", i.forecasts.clone(), "submitted_at"),
        ] {
            let plan = lf.explain(true).unwrap();
            let scan = plan
                .lines()
                .skip_while(|l| !l.contains("SCAN"))
                .take(4)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                scan.contains("SELECTION") && scan.contains(&format!("col(\"{column}\")")),
                "{table}: the as-of filter on {column} is not pushed into the scan:\n{plan}"
            );
        }
    })
}
