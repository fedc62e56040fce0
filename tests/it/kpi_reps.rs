//! `rep_scorecard` and `activity` on a fixture small enough to check on paper.
//!
//! Default configuration (UTC), monthly grain unless said otherwise, as of the end of
//! 2024-03-31. Every timestamp is at midnight UTC. Deals have no stage events: they close by
//! status/closed_at, and are open (stage null) until then.
//!
//! Reps: r1, r2 in team east; r3, r5 in team west; r4 is not in the reps table.
//!
//! | deal | owner | created    | at as_of                       | amount | cycle days |
//! |------|-------|------------|--------------------------------|--------|------------|
//! | A1   | r1    | 2024-02-01 | won 2024-03-10                 | 100    | 38         |
//! | A2   | r1    | 2024-03-01 | won 2024-03-21                 | 50     | 20         |
//! | A3   | r2    | 2024-01-01 | won 2024-03-01                 | 150    | 60         |
//! | A4   | r2    | 2024-02-10 | lost 2024-03-05                | 80     |            |
//! | A5   | r3    | 2024-02-15 | won 2024-03-15                 | 100    | 29         |
//! | A6   | r3    | 2024-02-20 | won 2024-03-20                 | 50     | 29         |
//! | A7   | r3    | 2024-03-25 | open                           | 400    |            |
//! | A8   | r4    | 2024-01-15 | won 2024-02-15                 | 70     | 31         |
//! | A9   | r1    | 2024-01-20 | open                           | 200    |            |
//! | A10  | r2    | 2024-03-30 | open (won 2024-04-02, after)   | 500    |            |
//!
//! Open at the end of January: A3 (r2), A8 (r4), A9 (r1). End of February: A1, A9 (r1: 300);
//! A3, A4 (r2: 230); A5, A6 (r3: 150). At as_of: A9 (r1), A10 (r2), A7 (r3).
//!
//! Targets (scope_kind rep unless said): revenue r1 Feb 100 (month), r1 Mar 300, r1 Apr 999
//! (after as_of's period), r3 Mar 100, r3 2024-01-01 900 (quarter), r5 Mar 200, team east Mar
//! 5000 (team: ignored); calls r1 Feb 0, r1 Mar 10, r3 Mar 5.
//!
//! March leaderboard: r1 (150, 2 won) and r3 (150, 2) rank 1; r2 (150, 1) rank 2; r5 (0, 0)
//! rank 3.

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::{Grain, Params, parse_as_of};
use polars::prelude::*;

use crate::fixtures::{assert_schema_and_key, canonical, compute_on, kpi, rows};

fn tables() -> Tables {
    let amounts = [100.0, 50.0, 150.0, 80.0, 100.0, 50.0, 400.0, 70.0, 200.0, 500.0];
    let opportunities = df!(
        "opportunity_id" => ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "A10"],
        "account_id" => ["c1"; 10],
        "owner_id" => ["r1", "r1", "r2", "r2", "r3", "r3", "r3", "r4", "r1", "r2"],
        "created_at" => ["2024-02-01", "2024-03-01", "2024-01-01", "2024-02-10", "2024-02-15", "2024-02-20",
            "2024-03-25", "2024-01-15", "2024-01-20", "2024-03-30"],
        "amount" => amounts,
        "amount_base" => amounts,
        "status" => ["won", "won", "won", "lost", "won", "won", "open", "won", "open", "won"],
        "closed_at" => [Some("2024-03-10"), Some("2024-03-21"), Some("2024-03-01"), Some("2024-03-05"),
            Some("2024-03-15"), Some("2024-03-20"), None, Some("2024-02-15"), None, Some("2024-04-02")],
    )
    .unwrap();
    let reps = df!(
        "rep_id" => ["r1", "r2", "r3", "r5"],
        "name" => ["Ann", "Bob", "Cid", "Eve"],
        "team" => ["east", "east", "west", "west"],
    )
    .unwrap();
    let targets = df!(
        "scope" => ["r1", "r1", "r1", "r3", "r3", "r5", "east", "r1", "r1", "r3"],
        "scope_kind" => ["rep", "rep", "rep", "rep", "rep", "rep", "team", "rep", "rep", "rep"],
        "period_start" => ["2024-02-01", "2024-03-01", "2024-04-01", "2024-03-01", "2024-01-01", "2024-03-01",
            "2024-03-01", "2024-02-01", "2024-03-01", "2024-03-01"],
        "grain" => ["month", "month", "month", "month", "quarter", "month", "month", "month", "month", "month"],
        "metric" => ["revenue", "revenue", "revenue", "revenue", "revenue", "revenue", "revenue", "calls", "calls",
            "calls"],
        "value" => [100.0, 300.0, 999.0, 100.0, 900.0, 200.0, 5000.0, 0.0, 10.0, 5.0],
    )
    .unwrap();
    Tables::from_frames(vec![
        ("opportunities", canonical("opportunities", opportunities)),
        ("reps", canonical("reps", reps)),
        ("targets", canonical("targets", targets)),
        ("activities", canonical("activities", activities())),
    ])
}

/// | id  | owner | kind    | occurred   | outcome   | lead | account | new contact?                          |
/// |-----|-------|---------|------------|-----------|------|---------|---------------------------------------|
/// | a01 | r1    | call    | 2024-03-01 | connected | L1   |         | yes: first touch of L1                |
/// | a02 | r2    | call    | 2024-03-05 | no_answer | L1   |         | no: r1 touched L1 first               |
/// | a03 | r2    | email   | 2024-03-05 | completed | L2   |         | yes: first touch of L2                |
/// | a04 | r1    | meeting | 2024-03-10 | completed |      | C1      | yes: first of C1 (tie won by its id)  |
/// | a05 | r2    | visit   | 2024-03-10 | completed |      | C1      | no: same instant as a04, larger id    |
/// | a06 | r1    | call    | 2024-03-12 | connected | L2   | C2      | yes (once): not first of L2, first of C2 |
/// | a07 | r1    | call    | 2024-03-15 | voicemail |      |         | no: touches nothing                   |
/// | a08 | r1    | task    | 2024-02-20 | completed |      | C3      | yes: first of C3 (February)           |
/// | a09 | r1    | call    | 2024-04-02 | connected | L3   |         | after as_of: ignored                  |
/// | a10 | r1    | call    | 2024-03-20 | (null)    |      | C1      | no                                    |
fn activities() -> DataFrame {
    df!(
        "activity_id" => ["a01", "a02", "a03", "a04", "a05", "a06", "a07", "a08", "a09", "a10"],
        "owner_id" => ["r1", "r2", "r2", "r1", "r2", "r1", "r1", "r1", "r1", "r1"],
        "kind" => ["call", "call", "email", "meeting", "visit", "call", "call", "task", "call", "call"],
        "occurred_at" => ["2024-03-01", "2024-03-05", "2024-03-05", "2024-03-10", "2024-03-10", "2024-03-12",
            "2024-03-15", "2024-02-20", "2024-04-02", "2024-03-20"],
        "outcome" => [Some("connected"), Some("no_answer"), Some("completed"), Some("completed"), Some("completed"),
            Some("connected"), Some("voicemail"), Some("completed"), Some("connected"), None],
        "lead_id" => [Some("L1"), Some("L1"), Some("L2"), None, None, Some("L2"), None, None, Some("L3"), None],
        "account_id" => [None, None, None, Some("C1"), Some("C1"), Some("C2"), None, Some("C3"), None, Some("C1")],
    )
    .unwrap()
}

fn params(grain: Grain) -> Params {
    let cfg = Config::default();
    let as_of = parse_as_of("2024-03-31", cfg.tz()).unwrap();
    Params::new(as_of, grain, cfg)
}

fn run(name: &str, grain: Grain) -> DataFrame {
    compute_on(tables(), params(grain), vec![kpi(name)], Engine::InMemory).remove(0)
}

const SCORE: [&str; 16] = [
    "period_start",
    "owner_id",
    "team",
    "won_amount",
    "won_deals",
    "lost_deals",
    "win_rate",
    "mean_deal_size",
    "median_cycle_days",
    "open_deals",
    "open_pipeline",
    "target",
    "attainment",
    "rank",
    "team_won_amount",
    "share_of_team",
];

/// This file's fixture and parameters, for the catalog-wide properties (`catalog.rs`).
pub(crate) fn hand_fixture() -> (Tables, Params) {
    (tables(), params(Grain::Month))
}

#[test]
fn rep_scorecard_monthly_leaderboard() {
    let df = run("rep_scorecard", Grain::Month);
    assert_schema_and_key("rep_scorecard", &df);
    assert!(rows(&df, &["as_of"]).iter().all(|r| r == "2024-03-31"));
    assert_eq!(
        rows(&df, &SCORE),
        [
            // January: only open pipeline; nothing won, so everyone ranks 1 and the team's share
            // is null (the team won nothing). r4 is not a rep: no team.
            "2024-01-01|r1|east|0.0000|0|0|null|null|null|1|200.0000|null|null|1|0.0000|null",
            "2024-01-01|r2|east|0.0000|0|0|null|null|null|1|150.0000|null|null|1|0.0000|null",
            "2024-01-01|r4|null|0.0000|0|0|null|null|null|1|70.0000|null|null|1|null|null",
            // February: r1's target of 100 with nothing won: attainment 0.
            "2024-02-01|r1|east|0.0000|0|0|null|null|null|2|300.0000|100.0000|0.0000|2|0.0000|null",
            "2024-02-01|r2|east|0.0000|0|0|null|null|null|2|230.0000|null|null|2|0.0000|null",
            "2024-02-01|r3|west|0.0000|0|0|null|null|null|2|150.0000|null|null|2|0.0000|null",
            "2024-02-01|r4|null|70.0000|1|0|1.0000|70.0000|31.0000|0|0.0000|null|null|1|null|null",
            // March: r1 and r3 tie on amount and won deals (rank 1), r2 ties on amount with one
            // deal fewer (rank 2, dense), r5 has only a target (rank 3).
            // r1: median of 38 and 20 days; the April target is after as_of's period.
            "2024-03-01|r1|east|150.0000|2|0|1.0000|75.0000|29.0000|1|200.0000|300.0000|0.5000|1|300.0000|0.5000",
            // r2 has no target: attainment null. A10 (won after as_of) is still open pipeline.
            "2024-03-01|r2|east|150.0000|1|1|0.5000|150.0000|60.0000|1|500.0000|null|null|2|300.0000|0.5000",
            // r3: the quarterly target spans three months and is left out of a monthly run.
            "2024-03-01|r3|west|150.0000|2|0|1.0000|75.0000|29.0000|1|400.0000|100.0000|1.5000|1|150.0000|1.0000",
            "2024-03-01|r5|west|0.0000|0|0|null|null|null|0|0.0000|200.0000|0.0000|3|150.0000|0.0000",
        ]
    );
}

#[test]
fn rep_scorecard_quarterly_sums_monthly_targets_and_prefers_the_quarterly_one() {
    let df = run("rep_scorecard", Grain::Quarter);
    assert_schema_and_key("rep_scorecard", &df);
    assert_eq!(
        rows(
            &df,
            &[
                "period_start",
                "owner_id",
                "won_amount",
                "won_deals",
                "lost_deals",
                "open_pipeline",
                "target",
                "attainment",
                "rank"
            ]
        ),
        [
            // r1: February 100 + March 300.
            "2024-01-01|r1|150.0000|2|0|200.0000|400.0000|0.3750|1",
            "2024-01-01|r2|150.0000|1|1|500.0000|null|null|2",
            // r3: the quarterly 900 wins over the March monthly 100 (no double count).
            "2024-01-01|r3|150.0000|2|0|400.0000|900.0000|0.1667|1",
            "2024-01-01|r4|70.0000|1|0|0.0000|null|null|3",
            "2024-01-01|r5|0.0000|0|0|0.0000|200.0000|0.0000|4",
        ]
    );
}

#[test]
fn rep_scorecard_weekly_runs_have_no_monthly_targets() {
    let df = run("rep_scorecard", Grain::Week);
    assert_schema_and_key("rep_scorecard", &df);
    assert_eq!(df.column("target").unwrap().null_count(), df.height());
    // r5 only had a target: no weekly row.
    assert!(!rows(&df, &["owner_id"]).contains(&"r5".to_string()));
}

const ACT: [&str; 13] = [
    "period_start",
    "owner_id",
    "calls",
    "connected_calls",
    "connect_rate",
    "emails",
    "meetings",
    "visits",
    "tasks",
    "new_contacts",
    "calls_target",
    "calls_attainment",
    "as_of",
];

#[test]
fn activity_counts_first_touches_and_calls_against_target() {
    let df = run("activity", Grain::Month);
    assert_schema_and_key("activity", &df);
    assert_eq!(
        rows(&df, &ACT),
        [
            // a08, a task, is C3's first touch. A zero calls target: attainment null.
            "2024-02-01|r1|0|0|null|0|0|0|1|1|0.0000|null|2024-03-31",
            // Calls a01, a06, a07, a10 (a09 is after as_of); a01 and a06 connected. New: a01
            // (L1), a04 (C1), a06 (C2). 4 calls of a target of 10.
            "2024-03-01|r1|4|2|0.5000|0|1|0|0|3|10.0000|0.4000|2024-03-31",
            // L1 was first touched by r1; a05 ties a04 on C1 and loses on activity_id. No target.
            "2024-03-01|r2|1|0|0.0000|1|0|1|0|1|null|null|2024-03-31",
            // r3 logged nothing but has a target: a row of zeros.
            "2024-03-01|r3|0|0|null|0|0|0|0|0|5.0000|0.0000|2024-03-31",
        ]
    );
}

#[test]
fn activity_first_touch_tie_is_broken_by_activity_id() {
    // Swap the ids of a04 (r1) and a05 (r2): now r2's visit is C1's first touch.
    let acts = activities()
        .lazy()
        .with_column(
            when(col("activity_id").eq(lit("a04")))
                .then(lit("a05"))
                .when(col("activity_id").eq(lit("a05")))
                .then(lit("a04"))
                .otherwise(col("activity_id"))
                .alias("activity_id"),
        )
        .collect()
        .unwrap();
    let t = Tables::from_frames(vec![("activities", canonical("activities", acts))]);
    let df = compute_on(t, params(Grain::Month), vec![kpi("activity")], Engine::InMemory).remove(0);
    assert_eq!(
        rows(&df, &["period_start", "owner_id", "new_contacts"]),
        ["2024-02-01|r1|1", "2024-03-01|r1|2", "2024-03-01|r2|2"]
    );
}

/// Team east won 1e16 (r1), 1 (r2) and 1 (r3) in March: in floating point, (1e16 + 1) + 1 is
/// 1e16 but 1e16 + (1 + 1) is 1e16 + 2, so a team total summed in row order changes with the
/// order of the rows. Given in either order, the totals are the same to the bit.
#[test]
fn rep_scorecard_team_total_does_not_depend_on_row_order() {
    let team_totals = |order: [usize; 3]| {
        let ids = ["B1", "B2", "B3"];
        let owners = ["r1", "r2", "r3"];
        let amounts = [1e16, 1.0, 1.0];
        let pick = |v: [&'static str; 3]| order.map(|i| v[i]);
        let amount = order.map(|i| amounts[i]);
        let opportunities = df!(
            "opportunity_id" => pick(ids),
            "account_id" => ["c1"; 3],
            "owner_id" => pick(owners),
            "created_at" => ["2024-03-01"; 3],
            "amount" => amount,
            "amount_base" => amount,
            "status" => ["won"; 3],
            "closed_at" => ["2024-03-10"; 3],
        )
        .unwrap();
        let reps = df!(
            "rep_id" => pick(owners),
            "name" => pick(["Ann", "Bob", "Cid"]),
            "team" => ["east"; 3],
        )
        .unwrap();
        let tables = Tables::from_frames(vec![
            ("opportunities", canonical("opportunities", opportunities)),
            ("reps", canonical("reps", reps)),
        ]);
        let df = compute_on(
            tables,
            params(Grain::Month),
            vec![kpi("rep_scorecard")],
            Engine::InMemory,
        )
        .remove(0);
        let col = df.column("team_won_amount").unwrap().f64().unwrap().clone();
        col.iter().map(|v| v.unwrap().to_bits()).collect::<Vec<_>>()
    };
    let forward = team_totals([0, 1, 2]);
    assert_eq!(forward.len(), 3);
    assert!(forward.iter().all(|&b| b == forward[0]));
    assert_eq!(team_totals([2, 1, 0]), forward);
    assert_eq!(team_totals([1, 0, 2]), forward);
}

// open_deals_per_rep on the deals fixture of `kpi_funnel/pipeline.rs` (its table is there).

#[test]
fn open_deals_per_rep_with_stale_deals_and_team_share() {
    let df = crate::kpi_funnel::pipeline::run("open_deals_per_rep");
    assert_eq!(
        rows(
            &df,
            &[
                "as_of",
                "owner_id",
                "team",
                "open_deals",
                "amount",
                "mean_age_days",
                "stale_deals",
                "team_share"
            ]
        ),
        [
            // d2 (46 days old, idle 22) and d6 (103 days, idle 76 since 01-15: stale).
            "2024-03-31|r1|east|2|50000.0000|74.5000|1|0.6667",
            "2024-03-31|r2|east|1|50000.0000|12.0000|0|0.3333",
            // d4 idle since its reopening on 03-05 (27 days).
            "2024-03-31|r3|west|1|12000.0000|60.0000|0|1.0000",
        ]
    );
}
