//! `crm-kpi spark export` and `crm-kpi run --engine spark`, without Spark: the bundle's files,
//! its rendered SQL at every grain, and the submit command. The catalog's equality with Spark
//! itself is checked on real Spark by scripts/spark-conformance.sh (CI).

use crm_kpi::kpi::registry;

use crate::common::*;

#[test]
fn every_kpi_has_its_spark_sql() {
    // A statement, not only comments: a KPI without its SQL fails here.
    let missing: Vec<&str> = registry()
        .into_iter()
        .filter(|k| {
            !k.spark
                .sql
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with("--"))
        })
        .map(|k| k.name)
        .collect();
    assert!(missing.is_empty(), "KPIs without a Spark version: {missing:?}");
}

#[test]
fn export_renders_every_kpi_at_every_grain() {
    let kpis = registry().iter().map(|k| k.name).collect::<Vec<_>>().join(",");
    for grain in ["week", "month", "quarter", "year"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bundle");
        let o = run(&[
            "spark",
            "export",
            "--out",
            s(&out),
            "--as-of",
            "2026-06-30",
            "--grain",
            grain,
            "--kpi",
            &kpis,
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(
            stdout(&o).contains("crm_kpi_spark.py --store STORE --out OUT"),
            "{}",
            stdout(&o)
        );
        let bundle: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bundle.json")).unwrap()).unwrap();
        assert_eq!(bundle["as_of"], "2026-06-30");
        assert_eq!(bundle["grain"], grain);
        assert_eq!(bundle["spark_conf"]["spark.sql.session.timeZone"], "UTC");
        assert_eq!(
            bundle["spark_conf"]["spark.sql.parquet.outputTimestampType"],
            "TIMESTAMP_MICROS"
        );
        let steps = bundle["steps"].as_array().unwrap();
        // The shared views first; each family's views before its KPIs; every KPI once.
        assert_eq!(steps[0]["sql"], "sql/01_views.sql");
        let step_kpis: Vec<&str> = steps.iter().filter_map(|s| s["kpi"].as_str()).collect();
        assert_eq!(step_kpis.join(","), kpis);
        for s in steps {
            let text = std::fs::read_to_string(out.join(s["sql"].as_str().unwrap())).unwrap();
            assert!(!text.contains("{{"), "{}: an unrendered placeholder", s["sql"]);
            assert!(text.starts_with("-- crm-kpi "), "{}", s["sql"]);
            if grain != "month" && s["kpi"].is_string() {
                assert!(!text.contains("'MM'"), "{}: a month cut at grain {grain}", s["sql"]);
            }
        }
        let catalog = bundle["catalog"].as_array().unwrap();
        assert_eq!(catalog.len(), step_kpis.len());
        assert!(out.join("crm_kpi_spark.py").is_file());
        assert!(
            std::fs::read_to_string(out.join("requirements.txt"))
                .unwrap()
                .contains("pyspark")
        );
    }
}

#[test]
fn export_names_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["spark", "export", "--out", s(dir.path()), "--kpi", "win_rte"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("did you mean `win_rate`?"), "{}", stderr(&o));
    // A template with an unknown placeholder names its file and the placeholder.
    let t = dir.path().join("templates");
    std::fs::create_dir(&t).unwrap();
    for f in ["views.sql", "views_funnel.sql", "crm_kpi_spark.py"] {
        std::fs::write(t.join(f), "-- nothing\n").unwrap();
    }
    std::fs::write(t.join("win_rate.sql"), "-- win_rate\nSELECT {{as_of}}\n").unwrap();
    let o = run(&[
        "spark",
        "export",
        "--out",
        s(&dir.path().join("b")),
        "--kpi",
        "win_rate",
        "--templates",
        s(&t),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("win_rate.sql: unknown placeholder `{{as_of}}`"),
        "{}",
        stderr(&o)
    );
}

/// `run --engine spark` exports the bundle to a temporary folder, runs the submit command on
/// its entry point with absolute store and output paths, and removes the bundle afterwards; a
/// failing job fails the run.
#[test]
fn run_engine_spark_submits_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("args.txt");
    let fake = write(
        dir.path(),
        "fake-submit.sh",
        &format!(
            "#!/bin/sh\necho \"$@\" > '{}'\ntest -f \"$3\" && test -f \"$(dirname \"$3\")/bundle.json\" || exit 3\n",
            s(&log)
        ),
    );
    let kpi = "win_rate";
    let submit = format!("sh {} --master local[2]", s(&fake));
    let o = run(&[
        "run",
        "--engine",
        "spark",
        "--spark-submit",
        &submit,
        "--store",
        "data/store",
        "--out",
        s(&dir.path().join("out")),
        "--as-of",
        "2026-06-30",
        "--kpi",
        kpi,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let args = std::fs::read_to_string(&log).unwrap();
    let words: Vec<&str> = args.split_whitespace().collect();
    assert_eq!(words[0..2], ["--master", "local[2]"]);
    assert!(words[2].ends_with("/crm_kpi_spark.py"), "{args}");
    let store = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    assert_eq!(words[3..], ["--store", s(&store), "--out", s(&dir.path().join("out"))]);
    assert!(
        !std::path::Path::new(words[2]).exists(),
        "the temporary bundle is removed"
    );

    let failing = write(dir.path(), "failing-submit.sh", "#!/bin/sh\nexit 7\n");
    let o = run(&[
        "run",
        "--engine",
        "spark",
        "--spark-submit",
        &format!("sh {}", s(&failing)),
        "--out",
        s(&dir.path().join("out2")),
        "--as-of",
        "2026-06-30",
        "--kpi",
        kpi,
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("the Spark job failed"), "{}", stderr(&o));
}
