//! Every file in queries/ runs, on the closed-deals fixture, with hand-checked results.

use crate::common::*;

fn query(dir: &std::path::Path, file: &str) -> String {
    let q = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("queries")
        .join(file);
    let o = run(&[
        "sql",
        "-f",
        s(&q),
        "--store",
        s(&dir.join("store")),
        "--out",
        s(&dir.join("out2")),
        "--format",
        "csv",
    ]);
    assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn example_queries_give_the_hand_checked_answers() {
    let (dir, ..) = crate::kpi_funnel::deals::fixture();
    let d = dir.path();
    assert_eq!(
        query(d, "win_rate_by_owner.sql"),
        "owner_id,won,lost,win_rate\nR2,2,1,0.6666666666666666\nR1,1,1,0.5\n"
    );
    assert_eq!(
        query(d, "open_pipeline_by_owner.sql"),
        "owner_id,open_deals,open_amount\nR1,1,70.0\n"
    );
    assert_eq!(
        query(d, "deals_by_status_and_currency.sql"),
        "status,currency,deals,amount_base\nlost,,2,700.0\nopen,,1,70.0\nwon,,4,850.0\n"
    );
    let listed: Vec<String> = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    assert_eq!(listed.len(), 3, "every query file is tested here: {listed:?}");
}

#[test]
fn bad_sql_is_a_usage_error() {
    let (dir, ..) = crate::kpi_funnel::deals::fixture();
    let o = run(&["sql", "SELEC nonsense", "--store", s(&dir.path().join("store"))]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("SQL"), "{}", stderr(&o));
}

/// Every run adds a (grain, as_of) partition: after a quarterly run and a run as of an earlier
/// date into the same OUT, the example query still counts each deal once (it used to sum every
/// partition: a rep had 108 wins instead of 57 after two runs).
#[test]
fn the_example_query_reads_one_partition_after_several_runs() {
    let (dir, ..) = crate::kpi_funnel::deals::fixture();
    let d = dir.path();
    for (as_of, grain) in [("2024-03-31", "quarter"), ("2024-03-30", "month")] {
        let store = d.join("store");
        let out = d.join("out2");
        let o = run(&[
            "run",
            "--store",
            s(&store),
            "--out",
            s(&out),
            "--as-of",
            as_of,
            "--grain",
            grain,
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let parts = std::fs::read_dir(d.join("out2/win_rate")).unwrap().count();
    assert_eq!(parts, 2, "grain=month and grain=quarter");
    assert_eq!(
        query(d, "win_rate_by_owner.sql"),
        "owner_id,won,lost,win_rate\nR2,2,1,0.6666666666666666\nR1,1,1,0.5\n"
    );
}
