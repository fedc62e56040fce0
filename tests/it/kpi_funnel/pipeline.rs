//! Pipeline and forecast KPIs on a fixture of deals small enough to check on paper. The same
//! fixture checks open_deals_per_rep (`kpi_reps.rs`) and the customer-side deal KPIs
//! (`kpi_customers.rs`).
//!
//! Default configuration (UTC; stages prospecting 0.1, qualification 0.2, proposal 0.5,
//! negotiation 0.8, closed_won, closed_lost; buckets 10k / 50k; stale after 30 days;
//! re-engagement 90-180 days), monthly grain, as of the end of 2024-03-31. Every timestamp is
//! at midnight UTC, so ages are whole days counted to 2024-04-01.
//!
//! | deal | account | owner | created    | amount | at as_of                       | stage events                                  | expected   |
//! |------|---------|-------|------------|--------|--------------------------------|-----------------------------------------------|------------|
//! | d1   | a1      | r1    | 2024-01-05 | 5000   | won 2024-02-10                 | prospecting 01-05, proposal 01-20, won 02-10  | 2024-02-15 |
//! | d2   | a1      | r1    | 2024-02-15 | 20000  | open (negotiation)             | prospecting 02-15, negotiation 03-10          | 2024-03-20 |
//! | d3   | a2      | r2    | 2024-01-10 | 60000  | lost 2024-02-20 (price)        | prospecting 01-10, qualification 01-25, lost 02-20 | 2024-02-28 |
//! | d4   | a3      | r3    | 2024-02-01 | 12000  | open (won 02-25, reopened)     | prospecting 02-01, won 02-25, prospecting 03-05 | 2024-03-31 |
//! | d5   | a2      | r2    | 2024-02-20 | 8000   | lost 2024-03-15 (no events)    | none: closed by its closed_at                 | 2024-03-15 |
//! | d6   | a4      | r1    | 2023-12-20 | 30000  | open (qualification)           | prospecting 12-20, qualification 01-15        | 2024-03-10 |
//! | d7   | a3      | r2    | 2024-03-20 | 50000  | open (won after as_of)         | proposal 03-20, won 04-05                     | 2024-04-15 |
//! | d8   | a5      | r2    | 2023-09-01 | 4000   | lost 2023-11-15 (no_budget)    | prospecting 09-01, lost 11-15                 |            |
//! | d9   | a6      | r3    | 2023-10-01 | 2000   | lost 2024-01-05 (no reason)    | prospecting 10-01, lost 01-05                 |            |
//! | d10  | a1      | r2    | 2024-01-15 | 55000  | won 2024-03-05                 | prospecting 01-15, won 03-05                  | 2024-03-01 |
//! | d11  | a2      | r1    | 2024-03-02 | 10000  | won 2024-03-25                 | prospecting 03-02, won 03-25                  | 2024-03-31 |
//!
//! Reps: r1 and r2 in team east, r3 in team west. Orders: a2 paid 2023-12-05 (a customer before
//! its deals), a3 paid only after as_of, a4 a refund.

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::{Grain, Params, find, parse_as_of};
use polars::prelude::*;

use crate::fixtures::{canonical, compute_on, kpi, rows};

pub(crate) fn tables() -> Tables {
    let ids: Vec<String> = (1..=11).map(|i| format!("d{i}")).collect();
    let amounts = [
        5000.0, 20000.0, 60000.0, 12000.0, 8000.0, 30000.0, 50000.0, 4000.0, 2000.0, 55000.0, 10000.0,
    ];
    let opportunities = df!(
        "opportunity_id" => ids,
        "account_id" => ["a1", "a1", "a2", "a3", "a2", "a4", "a3", "a5", "a6", "a1", "a2"],
        "owner_id" => ["r1", "r1", "r2", "r3", "r2", "r1", "r2", "r2", "r3", "r2", "r1"],
        "created_at" => ["2024-01-05", "2024-02-15", "2024-01-10", "2024-02-01", "2024-02-20", "2023-12-20",
            "2024-03-20", "2023-09-01", "2023-10-01", "2024-01-15", "2024-03-02"],
        "amount" => amounts,
        "amount_base" => amounts,
        "currency" => ["USD"; 11],
        "status" => ["won", "open", "lost", "open", "lost", "open", "won", "lost", "lost", "won", "won"],
        "closed_at" => [Some("2024-02-10"), None, Some("2024-02-20"), None, Some("2024-03-15"), None,
            Some("2024-04-05"), Some("2023-11-15"), Some("2024-01-05"), Some("2024-03-05"), Some("2024-03-25")],
        "expected_close_date" => [Some("2024-02-15"), Some("2024-03-20"), Some("2024-02-28"), Some("2024-03-31"),
            Some("2024-03-15"), Some("2024-03-10"), Some("2024-04-15"), None, None, Some("2024-03-01"),
            Some("2024-03-31")],
        "loss_reason" => [None, None, Some("price"), None, Some("timing"), None, None, Some("no_budget"), None,
            None, None],
    )
    .unwrap();
    let events: [(&str, &str, &str); 23] = [
        ("d1", "prospecting", "2024-01-05"),
        ("d1", "proposal", "2024-01-20"),
        ("d1", "closed_won", "2024-02-10"),
        ("d2", "prospecting", "2024-02-15"),
        ("d2", "negotiation", "2024-03-10"),
        ("d3", "prospecting", "2024-01-10"),
        ("d3", "qualification", "2024-01-25"),
        ("d3", "closed_lost", "2024-02-20"),
        ("d4", "prospecting", "2024-02-01"),
        ("d4", "closed_won", "2024-02-25"),
        ("d4", "prospecting", "2024-03-05"),
        ("d6", "prospecting", "2023-12-20"),
        ("d6", "qualification", "2024-01-15"),
        ("d7", "proposal", "2024-03-20"),
        ("d7", "closed_won", "2024-04-05"),
        ("d8", "prospecting", "2023-09-01"),
        ("d8", "closed_lost", "2023-11-15"),
        ("d9", "prospecting", "2023-10-01"),
        ("d9", "closed_lost", "2024-01-05"),
        ("d10", "prospecting", "2024-01-15"),
        ("d10", "closed_won", "2024-03-05"),
        ("d11", "prospecting", "2024-03-02"),
        ("d11", "closed_won", "2024-03-25"),
    ];
    let stage_events = df!(
        "opportunity_id" => events.iter().map(|e| e.0).collect::<Vec<_>>(),
        "stage" => events.iter().map(|e| e.1).collect::<Vec<_>>(),
        "entered_at" => events.iter().map(|e| e.2).collect::<Vec<_>>(),
    )
    .unwrap();
    let reps = df!(
        "rep_id" => ["r1", "r2", "r3"],
        "name" => ["Ann", "Bob", "Cid"],
        "team" => ["east", "east", "west"],
    )
    .unwrap();
    let orders = df!(
        "order_id" => ["o1", "o2", "o3"],
        "account_id" => ["a2", "a3", "a4"],
        "ordered_at" => ["2023-12-01", "2024-03-01", "2023-12-01"],
        "amount" => [1000.0, 500.0, -100.0],
        "amount_base" => [1000.0, 500.0, -100.0],
        "paid_at" => ["2023-12-05", "2024-04-10", "2023-12-02"],
        "is_refund" => [false, false, true],
    )
    .unwrap();
    let forecasts = df!(
        "owner_id" => ["r1", "r1", "r1", "r1", "r2", "r2", "r3", "r3"],
        "period_start" => ["2024-02-01", "2024-02-01", "2024-03-01", "2024-03-01", "2024-03-01", "2024-01-01",
            "2024-04-01", "2024-03-01"],
        "grain" => ["month", "month", "month", "month", "month", "quarter", "month", "month"],
        "amount" => [8000.0, 6000.0, 12000.0, 15000.0, 50000.0, 100000.0, 9000.0, 0.0],
        "amount_base" => [8000.0, 6000.0, 12000.0, 15000.0, 50000.0, 100000.0, 9000.0, 0.0],
        "category" => ["commit", "commit", "best_case", "commit", "commit", "commit", "commit", "commit"],
        "submitted_at" => ["2024-01-25", "2024-02-05", "2024-02-28", "2024-04-02", "2024-02-27", "2023-12-15",
            "2024-03-28", "2024-03-01"],
    )
    .unwrap();
    Tables::from_frames(vec![
        ("opportunities", canonical("opportunities", opportunities)),
        ("stage_events", canonical("stage_events", stage_events)),
        ("reps", canonical("reps", reps)),
        ("orders", canonical("orders", orders)),
        ("forecasts", canonical("forecasts", forecasts)),
    ])
}

fn params(grain: Grain) -> Params {
    let cfg = Config::default();
    let as_of = parse_as_of("2024-03-31", cfg.tz()).unwrap();
    Params::new(as_of, grain, cfg)
}

fn run_with(name: &str, grain: Grain, engine: Engine) -> DataFrame {
    let kpi = find(name).unwrap_or_else(|| panic!("KPI {name} registered"));
    compute_on(tables(), params(grain), vec![kpi], engine).remove(0)
}

pub(crate) fn run(name: &str) -> DataFrame {
    run_with(name, Grain::Month, Engine::InMemory)
}

/// This file's fixture and parameters, for the catalog-wide properties (`catalog.rs`).
pub(crate) fn hand_fixture() -> (Tables, Params) {
    (tables(), params(Grain::Month))
}

#[test]
fn pipeline_snapshot_is_rebuilt_from_stage_events() {
    let df = run("pipeline_snapshot");
    // 7 snapshots (Sep..Feb period ends, as_of) x 4 open stages, plus d5's stage-less row.
    assert_eq!(df.height(), 29);
    assert!(rows(&df, &["as_of"]).iter().all(|r| r == "2024-03-31"));
    let open = df
        .clone()
        .lazy()
        .filter(col("open_deals").gt(lit(0)))
        .collect()
        .unwrap();
    let cols = [
        "snapshot_at",
        "stage",
        "open_deals",
        "amount",
        "weighted_amount",
        "mean_age_days",
    ];
    assert_eq!(
        rows(&open, &cols),
        [
            "2023-09-30|prospecting|1|4000.0000|400.0000|30.0000",
            "2023-10-31|prospecting|2|6000.0000|600.0000|46.0000",
            // d8 lost on 11-15.
            "2023-11-30|prospecting|1|2000.0000|200.0000|61.0000",
            "2023-12-31|prospecting|2|32000.0000|3200.0000|52.0000",
            "2024-01-31|proposal|1|5000.0000|2500.0000|27.0000",
            "2024-01-31|prospecting|1|55000.0000|5500.0000|17.0000",
            "2024-01-31|qualification|2|90000.0000|18000.0000|32.5000",
            // d5 has no stage event: null stage, unknown probability. d4 is won at this date
            // (reopened later), so it is not open although it is open at as_of.
            "2024-02-29|null|1|8000.0000|null|10.0000",
            "2024-02-29|prospecting|2|75000.0000|7500.0000|30.5000",
            "2024-02-29|qualification|1|30000.0000|6000.0000|72.0000",
            // d7's win after as_of is not seen.
            "2024-03-31|negotiation|1|20000.0000|16000.0000|46.0000",
            "2024-03-31|proposal|1|50000.0000|25000.0000|12.0000",
            "2024-03-31|prospecting|1|12000.0000|1200.0000|60.0000",
            "2024-03-31|qualification|1|30000.0000|6000.0000|103.0000",
        ]
    );
    let empty = df
        .clone()
        .lazy()
        .filter(col("open_deals").eq(lit(0)))
        .collect()
        .unwrap();
    assert_eq!(empty.height(), 15);
    assert!(
        rows(&empty, &["amount", "weighted_amount", "mean_age_days"])
            .iter()
            .all(|r| r == "0.0000|0.0000|null")
    );
}

#[test]
fn pipeline_snapshot_dates_follow_the_grain() {
    let df = run_with("pipeline_snapshot", Grain::Quarter, Engine::InMemory);
    let dates = df.column("snapshot_at").unwrap().unique_stable().unwrap().into_frame();
    assert_eq!(
        rows(&dates, &["snapshot_at"]),
        ["2023-09-30", "2023-12-31", "2024-03-31"]
    );
    let dec = df
        .clone()
        .lazy()
        .filter(col("open_deals").gt(lit(0)))
        .collect()
        .unwrap();
    assert_eq!(
        rows(&dec, &["snapshot_at", "stage", "open_deals"]),
        [
            "2023-09-30|prospecting|1",
            "2023-12-31|prospecting|2",
            "2024-03-31|negotiation|1",
            "2024-03-31|proposal|1",
            "2024-03-31|prospecting|1",
            "2024-03-31|qualification|1",
        ]
    );
}

#[test]
fn pipeline_snapshot_period_ends_are_local_days() {
    // In Ho Chi Minh City (UTC+7) September 30 ends at 2023-09-30T17:00Z: x2, created at
    // 20:00Z (October 1 locally), is not open yet then.
    let cfg = Config {
        timezone: "Asia/Ho_Chi_Minh".into(),
        ..Config::default()
    };
    let as_of = parse_as_of("2023-10-15", cfg.tz()).unwrap();
    let opp = df!(
        "opportunity_id" => ["x1", "x2"],
        "account_id" => ["a1", "a1"],
        "owner_id" => ["r1", "r1"],
        "created_at" => [1_693_526_400_000_000i64, 1_696_104_000_000_000], // 2023-09-01T00:00Z, 2023-09-30T20:00Z
        "amount" => [100.0, 200.0],
        "amount_base" => [100.0, 200.0],
        "status" => ["open", "open"],
    )
    .unwrap();
    let events = df!(
        "opportunity_id" => ["x1", "x2"],
        "stage" => ["prospecting", "prospecting"],
        "entered_at" => [1_693_526_400_000_000i64, 1_696_104_000_000_000],
    )
    .unwrap();
    let t = Tables::from_frames(vec![
        ("opportunities", canonical("opportunities", opp)),
        ("stage_events", canonical("stage_events", events)),
    ]);
    let out = compute_on(
        t,
        Params::new(as_of, Grain::Month, cfg),
        vec![kpi("pipeline_snapshot")],
        Engine::InMemory,
    );
    let df = out[0]
        .clone()
        .lazy()
        .filter(col("open_deals").gt(lit(0)))
        .collect()
        .unwrap();
    // x1 is 29 days 17 hours old on Sep 30; at as_of (2023-10-15T17:00Z) x1 is 44d17h and x2
    // 14d21h old.
    assert_eq!(
        rows(&df, &["snapshot_at", "stage", "open_deals", "amount", "mean_age_days"]),
        [
            "2023-09-30|prospecting|1|100.0000|29.7083",
            "2023-10-15|prospecting|2|300.0000|29.7917"
        ]
    );
}

/// With one pipeline, the `pipeline` dimension's rows (the implicit pipeline, "default") are
/// the `all` rows; the rest of the frame is returned without them.
fn one_pipeline_rows_are_all(df: DataFrame, columns: &[&str]) -> DataFrame {
    let dim = |d: &str| {
        df.clone()
            .lazy()
            .filter(col("dimension").eq(lit(d)))
            .drop(cols(["dimension", "dimension_value"]))
            .collect()
            .unwrap()
    };
    let value_cols: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| !["dimension", "dimension_value"].contains(c))
        .collect();
    assert_eq!(rows(&dim("pipeline"), &value_cols), rows(&dim("all"), &value_cols));
    let values = df
        .clone()
        .lazy()
        .filter(col("dimension").eq(lit("pipeline")))
        .collect()
        .unwrap();
    assert!(rows(&values, &["dimension_value"]).iter().all(|v| v == "default"));
    df.lazy()
        .filter(col("dimension").neq(lit("pipeline")))
        .collect()
        .unwrap()
}

#[test]
fn deal_size_buckets_won_deals() {
    let cols = [
        "as_of",
        "period_start",
        "dimension",
        "dimension_value",
        "won_deals",
        "mean_amount",
        "median_amount",
        "small",
        "medium",
        "large",
    ];
    let df = one_pipeline_rows_are_all(run("deal_size"), &cols);
    assert_eq!(
        rows(
            &df,
            &[
                "as_of",
                "period_start",
                "dimension",
                "dimension_value",
                "won_deals",
                "mean_amount",
                "median_amount",
                "small",
                "medium",
                "large"
            ]
        ),
        [
            "2024-03-31|2024-02-01|all|null|1|5000.0000|5000.0000|1|0|0",
            "2024-03-31|2024-02-01|owner_id|r1|1|5000.0000|5000.0000|1|0|0",
            // d11 = 10000 is medium (the lower bound is inclusive), d10 = 55000 large.
            "2024-03-31|2024-03-01|all|null|2|32500.0000|32500.0000|0|1|1",
            "2024-03-31|2024-03-01|owner_id|r1|1|10000.0000|10000.0000|0|1|0",
            "2024-03-31|2024-03-01|owner_id|r2|1|55000.0000|55000.0000|0|0|1",
        ]
    );
}

#[test]
fn sales_velocity_per_period_and_owner() {
    let cols = [
        "period_start",
        "dimension",
        "dimension_value",
        "open_deals",
        "win_rate",
        "mean_won_amount",
        "mean_cycle_days",
        "velocity",
    ];
    let df = one_pipeline_rows_are_all(run("sales_velocity"), &cols);
    assert_eq!(
        rows(&df, &cols),
        [
            "2023-09-01|all|null|1|null|null|null|null",
            "2023-09-01|owner_id|r2|1|null|null|null|null",
            "2023-10-01|all|null|2|null|null|null|null",
            "2023-10-01|owner_id|r2|1|null|null|null|null",
            "2023-10-01|owner_id|r3|1|null|null|null|null",
            "2023-11-01|all|null|1|0.0000|null|null|null",
            // r2 has no open deal at the end of November but lost d8 in it.
            "2023-11-01|owner_id|r2|0|0.0000|null|null|null",
            "2023-11-01|owner_id|r3|1|null|null|null|null",
            "2023-12-01|all|null|2|null|null|null|null",
            "2023-12-01|owner_id|r1|1|null|null|null|null",
            "2023-12-01|owner_id|r3|1|null|null|null|null",
            "2024-01-01|all|null|4|0.0000|null|null|null",
            "2024-01-01|owner_id|r1|2|null|null|null|null",
            "2024-01-01|owner_id|r2|2|null|null|null|null",
            "2024-01-01|owner_id|r3|0|0.0000|null|null|null",
            // 4 open x 1/2 x 5000 / 36 days (d1: 01-05 -> 02-10).
            "2024-02-01|all|null|4|0.5000|5000.0000|36.0000|277.7778",
            "2024-02-01|owner_id|r1|2|1.0000|5000.0000|36.0000|277.7778",
            "2024-02-01|owner_id|r2|2|0.0000|null|null|null",
            // 4 open x 2/3 x 32500 / 36.5 days (d10: 50, d11: 23).
            "2024-03-01|all|null|4|0.6667|32500.0000|36.5000|2374.4292",
            "2024-03-01|owner_id|r1|2|1.0000|10000.0000|23.0000|869.5652",
            "2024-03-01|owner_id|r2|1|0.5000|55000.0000|50.0000|550.0000",
            "2024-03-01|owner_id|r3|1|null|null|null|null",
        ]
    );
}

#[test]
fn forecast_vs_actual_per_period_and_owner() {
    let df = run("forecast_vs_actual");
    let cols = [
        "as_of",
        "period_start",
        "owner_id",
        "submitted_forecast",
        "pipeline_forecast",
        "actual",
        "attainment",
        "error",
    ];
    assert_eq!(
        rows(&df, &cols),
        [
            // Latest commit (6000, not 8000); pipeline: d1 in proposal on Jan 31 = 5000 x 0.5.
            "2024-03-31|2024-02-01|r1|6000.0000|2500.0000|5000.0000|0.8333|-1000.0000",
            // No forecast; d3 in qualification on Jan 31 = 60000 x 0.2.
            "2024-03-31|2024-02-01|r2|null|12000.0000|0.0000|null|null",
            // best_case and a commit submitted after as_of are ignored; d2 20000 x 0.1 + d6 30000 x 0.2.
            "2024-03-31|2024-03-01|r1|null|8000.0000|10000.0000|null|null",
            // d10 55000 x 0.1; d5 (no stage event) counts 0; the quarterly forecast is not monthly.
            "2024-03-31|2024-03-01|r2|50000.0000|5500.0000|55000.0000|1.1000|5000.0000",
            // A zero forecast: attainment null, error defined. April is after as_of's period.
            "2024-03-31|2024-03-01|r3|0.0000|0.0000|0.0000|null|0.0000",
        ]
    );
}

/// deal_snapshot as of the end of 2024-03-31 (ages counted to 2024-04-01, less 1 µs, so they
/// print as whole days): d1 won on 02-10 after 36 days; d2 open in negotiation since 03-10 (22
/// days), 46 days old; d4 won on 02-25 and reopened into prospecting on 03-05 (27 days), 60
/// days old, 3 events; d5 lost by its closed_at (03-15) with no stage event; d7's win on 04-05
/// is after as_of: open in proposal since 03-20.
#[test]
fn deal_snapshot_rebuilds_each_deal_as_of() {
    let df = run("deal_snapshot");
    let cols = [
        "opportunity_id",
        "status",
        "stage",
        "age_days",
        "days_in_stage",
        "stage_events",
        "first_stage_at",
    ];
    let all = rows(&df, &cols);
    let pick = |id: &str| all.iter().find(|r| r.starts_with(&format!("{id}|"))).cloned().unwrap();
    assert_eq!(df.height(), 11);
    assert_eq!(pick("d1"), "d1|won|closed_won|36.0000|null|3|2024-01-05 00:00");
    assert_eq!(pick("d2"), "d2|open|negotiation|46.0000|22.0000|2|2024-02-15 00:00");
    assert_eq!(pick("d4"), "d4|open|prospecting|60.0000|27.0000|3|2024-02-01 00:00");
    assert_eq!(pick("d5"), "d5|lost|null|24.0000|null|0|null");
    assert_eq!(pick("d7"), "d7|open|proposal|12.0000|12.0000|1|2024-03-20 00:00");
}
