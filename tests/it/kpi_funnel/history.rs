//! Deals whose export and stage history disagree (docs/decisions.md, "When the export and the
//! history disagree"), through the real commands, at several as_of dates.
//!
//! Fixture (UTC, default pipeline; dates at midnight):
//! - D1: prospecting 01-10, closed_lost 03-05, qualification 09-02 (reopened); the export says
//!   won, closed_at 11-20, with no won event: the export's close wins from 11-20
//!   -> open until 03-05, lost from 03-05, open in qualification from 09-02, won from 11-20.
//! - D2: prospecting 01-15, closed_lost 03-10; the export says open in proposal, updated_at
//!   06-15: reopened without an event at 06-15, into proposal.
//! - D3: prospecting 01-20, qualification 02-01, closed_won 04-01; the export says open, with no
//!   stage and no updated_at: reopened one microsecond after the won event, into its last open
//!   stage (qualification).
//! - D4: prospecting 02-01, closed_won 05-10; the export says won, closed_at 05-31 (the close
//!   date moved): same outcome, the event's time (05-10) is the close.
//! - D5: prospecting 02-01, closed_won 05-20; the export says lost, closed_at 05-01: the later
//!   won event decides -> won 05-20.
//! - D6: no stage events; the export says won, closed_at 04-15: closed by the export (as
//!   before), no disagreement.
//! - D7: prospecting 02-15, closed_lost 03-01, qualification 05-01; the export says won,
//!   closed_at 04-01: the reopening logged after the export's close is the later word ->
//!   lost from 03-01, open in qualification from 05-01.

use polars::prelude::*;

use crate::common::*;
use crate::fixtures::{read_output, rows};

const OPPS: &str = "\
opportunity_id,account_id,created_at,owner_id,amount,status,closed_at,stage,updated_at
D1,A1,2024-01-10,R1,100,won,2024-11-20,closed_won,2024-11-20
D2,A1,2024-01-15,R1,200,open,,proposal,2024-06-15
D3,A2,2024-01-20,R2,300,open,,,
D4,A2,2024-02-01,R2,400,won,2024-05-31,closed_won,2024-05-31
D5,A3,2024-02-01,R1,500,lost,2024-05-01,closed_lost,2024-05-01
D6,A3,2024-02-10,R2,600,won,2024-04-15,,
D7,A3,2024-02-15,R1,700,won,2024-04-01,closed_won,2024-04-01
";

const EVENTS: &str = "\
opportunity_id,stage,entered_at
D1,prospecting,2024-01-10
D1,closed_lost,2024-03-05
D1,qualification,2024-09-02
D2,prospecting,2024-01-15
D2,closed_lost,2024-03-10
D3,prospecting,2024-01-20
D3,qualification,2024-02-01
D3,closed_won,2024-04-01
D4,prospecting,2024-02-01
D4,closed_won,2024-05-10
D5,prospecting,2024-02-01
D5,closed_won,2024-05-20
D7,prospecting,2024-02-15
D7,closed_lost,2024-03-01
D7,qualification,2024-05-01
";

fn store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "opportunities.csv", OPPS);
    write(d, "stage_events.csv", EVENTS);
    let store = d.join("store");
    let o = run_in(
        d,
        &["ingest", "--store", s(&store), "opportunities.csv", "stage_events.csv"],
    );
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    (dir, store)
}

fn run_at(store: &std::path::Path, out: &std::path::Path, as_of: &str, kpis: &str) {
    let o = run(&[
        "run",
        "--store",
        s(store),
        "--out",
        s(out),
        "--as-of",
        as_of,
        "--kpi",
        kpis,
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

/// Each deal's status, stage, closed_at and stage_entered_at at six as_of dates.
#[test]
fn deal_state_follows_the_export_where_it_is_later_than_the_history() {
    let (dir, store) = store();
    let out = dir.path().join("out");
    let expected: [(&str, [&str; 7]); 6] = [
        (
            "2024-02-29",
            [
                "D1|open|prospecting|null|2024-01-10 00:00",
                "D2|open|prospecting|null|2024-01-15 00:00",
                "D3|open|qualification|null|2024-02-01 00:00",
                "D4|open|prospecting|null|2024-02-01 00:00",
                "D5|open|prospecting|null|2024-02-01 00:00",
                "D6|open|null|null|null",
                "D7|open|prospecting|null|2024-02-15 00:00",
            ],
        ),
        (
            "2024-03-31",
            [
                "D1|lost|closed_lost|2024-03-05 00:00|2024-03-05 00:00",
                "D2|lost|closed_lost|2024-03-10 00:00|2024-03-10 00:00",
                "D3|open|qualification|null|2024-02-01 00:00",
                "D4|open|prospecting|null|2024-02-01 00:00",
                "D5|open|prospecting|null|2024-02-01 00:00",
                "D6|open|null|null|null",
                "D7|lost|closed_lost|2024-03-01 00:00|2024-03-01 00:00",
            ],
        ),
        (
            "2024-04-30",
            [
                "D1|lost|closed_lost|2024-03-05 00:00|2024-03-05 00:00",
                "D2|lost|closed_lost|2024-03-10 00:00|2024-03-10 00:00",
                // Reopened 1 µs after the won event of 04-01.
                "D3|open|qualification|null|2024-04-01 00:00",
                "D4|open|prospecting|null|2024-02-01 00:00",
                "D5|open|prospecting|null|2024-02-01 00:00",
                "D6|won|null|2024-04-15 00:00|null",
                "D7|lost|closed_lost|2024-03-01 00:00|2024-03-01 00:00",
            ],
        ),
        (
            "2024-06-30",
            [
                "D1|lost|closed_lost|2024-03-05 00:00|2024-03-05 00:00",
                "D2|open|proposal|null|2024-06-15 00:00",
                "D3|open|qualification|null|2024-04-01 00:00",
                "D4|won|closed_won|2024-05-10 00:00|2024-05-10 00:00",
                "D5|won|closed_won|2024-05-20 00:00|2024-05-20 00:00",
                "D6|won|null|2024-04-15 00:00|null",
                "D7|open|qualification|null|2024-05-01 00:00",
            ],
        ),
        (
            "2024-09-30",
            [
                "D1|open|qualification|null|2024-09-02 00:00",
                "D2|open|proposal|null|2024-06-15 00:00",
                "D3|open|qualification|null|2024-04-01 00:00",
                "D4|won|closed_won|2024-05-10 00:00|2024-05-10 00:00",
                "D5|won|closed_won|2024-05-20 00:00|2024-05-20 00:00",
                "D6|won|null|2024-04-15 00:00|null",
                "D7|open|qualification|null|2024-05-01 00:00",
            ],
        ),
        (
            "2024-11-30",
            [
                "D1|won|qualification|2024-11-20 00:00|2024-09-02 00:00",
                "D2|open|proposal|null|2024-06-15 00:00",
                "D3|open|qualification|null|2024-04-01 00:00",
                "D4|won|closed_won|2024-05-10 00:00|2024-05-10 00:00",
                "D5|won|closed_won|2024-05-20 00:00|2024-05-20 00:00",
                "D6|won|null|2024-04-15 00:00|null",
                "D7|open|qualification|null|2024-05-01 00:00",
            ],
        ),
    ];
    for (as_of, want) in expected {
        run_at(&store, &out, as_of, "deal_snapshot");
        let df = read_output(&out, "deal_snapshot", "month", as_of)
            .sort(["opportunity_id"], Default::default())
            .unwrap();
        assert_eq!(
            rows(
                &df,
                &["opportunity_id", "status", "stage", "closed_at", "stage_entered_at"]
            ),
            want,
            "as of {as_of}"
        );
        // stage_events counts the logged events only, not the reopening.
        let n: Vec<String> = rows(&df, &["opportunity_id", "stage_events"]);
        if as_of == "2024-11-30" {
            assert_eq!(n, ["D1|3", "D2|2", "D3|3", "D4|2", "D5|2", "D6|0", "D7|3"]);
        }
        if as_of >= "2024-04-30" {
            let d3 = df.column("stage_entered_at").unwrap().datetime().unwrap().phys.get(2);
            let won_at = 1_711_929_600_000_000i64; // 2024-04-01T00:00:00Z
            assert_eq!(d3, Some(won_at + 1), "D3 reopened 1 µs after its won event");
        }
    }
}

/// Deals open at each month end (pipeline_snapshot's open_deals summed over stages), as of
/// 2024-11-30, from the intervals of the fixture's comment.
#[test]
fn open_pipeline_at_month_ends_follows_the_reopenings_and_export_closes() {
    let (dir, store) = store();
    let out = dir.path().join("out");
    run_at(&store, &out, "2024-11-30", "pipeline_snapshot");
    let df = read_output(&out, "pipeline_snapshot", "month", "2024-11-30")
        .lazy()
        .group_by([col("snapshot_at")])
        .agg([col("open_deals").sum()])
        .sort(["snapshot_at"], Default::default())
        .collect()
        .unwrap();
    assert_eq!(
        rows(&df, &["snapshot_at", "open_deals"]),
        [
            "2024-01-31|3",
            "2024-02-29|7",
            "2024-03-31|4",
            "2024-04-30|3",
            "2024-05-31|2",
            "2024-06-30|3",
            "2024-07-31|3",
            "2024-08-31|3",
            "2024-09-30|4",
            "2024-10-31|4",
            "2024-11-30|3",
        ]
    );
}

/// `validate` counts each kind of disagreement, with the deals as examples.
#[test]
fn validate_counts_export_and_history_disagreements() {
    let (_dir, store) = store();
    let o = run(&["validate", "--store", s(&store)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let section = text
        .split("export and history disagree")
        .nth(1)
        .expect("a disagreement section");
    let counts: Vec<String> = section
        .lines()
        .skip(1)
        .take(4)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let eg = l.split("(e.g. ").nth(1).unwrap_or(")").trim_end_matches(')');
            format!("{} {} {eg}", w[0], w[1])
        })
        .collect();
    assert_eq!(
        counts,
        [
            "export_close 1 D1",
            "reopened 2 D2, D3",
            "history_close 2 D5, D7",
            "close_date 1 D4",
        ]
    );
}
