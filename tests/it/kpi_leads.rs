//! Lead KPIs on fixtures small enough to check on paper.
//!
//! Default configuration (UTC, `lead_converted_event = "won"`), monthly grain, as of the end of
//! 2024-03-31 unless a test says otherwise. Every timestamp is at midnight UTC, so days to
//! convert are whole days.
//!
//! | lead | created    | source | campaign | owner | region | qualified  | disqualified | converted_at field | account |
//! |------|------------|--------|----------|-------|--------|------------|--------------|--------------------|---------|
//! | l0   | 2023-11-20 | ads    | -        | r2    | -      |            | 2023-12-15   |                    |         |
//! | l1   | 2024-01-05 | web    | c1       | r1    | EU     | 2024-01-20 |              | 2024-01-25         | a1      |
//! | l2   | 2024-01-10 | web    | c1       | r2    | US     | 2024-02-05 |              |                    | a2      |
//! | l3   | 2024-01-15 | ads    | c2       | r1    | EU     |            | 2024-01-30   |                    |         |
//! | l4   | 2024-02-01 | ads    | -        | r2    | -      | 2024-02-10 |              | 2024-02-15         | a3      |
//! | l5   | 2024-02-20 | web    | c3 (*)   | r1    | US     | 2024-04-02 (after as_of) | | 2024-04-05 (after) |         |
//! | l6   | 2024-03-05 | ads    | c2       | r2    | EU     |            | 2024-03-06   |                    |         |
//! | l7   | 2024-03-10 | web    | c1       | r1    | EU     | 2024-03-12 |              |                    | a4      |
//! | l8   | 2024-04-03 (after as_of) | web | c1 | r1 | EU   | 2024-04-04 |              |                    |         |
//!
//! (*) c3 is not in the campaigns table.
//!
//! | deal | account | lead | campaign (own) | created    | amount | status / closed_at            |
//! |------|---------|------|----------------|------------|--------|-------------------------------|
//! | o1   | a1      | l1   | -  (-> c1)     | 2024-01-22 | 1000   | won 2024-02-10 (stage events) |
//! | o2   | a2      | l2   | c1             | 2024-02-08 | 500    | lost 2024-03-01               |
//! | o3   | a3      | l4   | c2 (lead: -)   | 2024-02-16 | 2000   | won 2024-03-20                |
//! | o4   | a4      | l7   | -  (-> c1)     | 2024-03-15 | 800    | won 2024-04-10 (after as_of)  |
//! | o5   | a1      | -    | c4 (*)         | 2024-03-01 | 300    | won 2024-03-25                |
//! | o6   | a2      | l2   | -  (-> c1)     | 2024-03-02 | 700    | won 2024-03-28                |
//! | o7   | a5      | -    | c7             | 2024-03-25 | 50     | open                          |
//!
//! (*) c4 is not in the campaigns table. Deals without stage events close from status/closed_at.
//!
//! Conversions at as_of (days from created):
//!
//! | lead | won (default)  | opportunity                          | paid_order                                |
//! |------|----------------|--------------------------------------|-------------------------------------------|
//! | l1   | 02-10 (o1), 36 | 01-22 (o1 before field 01-25), 17    | 02-25 (p7; p1 paid before l1 existed), 51 |
//! | l2   | 03-28 (o6; o2 lost), 78 | 02-08 (o2), 29              | - (p3 paid after as_of)                   |
//! | l4   | 03-20 (o3), 48 | 02-15 (field before o3 02-16), 14    | 03-10 (p5; p4 is a refund), 38            |
//! | l7   | - (o4 after as_of) | 03-15 (o4), 5                    | 03-10 (p6, same instant as created), 0    |
//!
//! Campaigns: c1 seo spend 1200 started 2023-12-01; c2 paid_search spend 0 started
//! 2024-01-01; c5 events spend 500 started 2024-05-01 (after as_of, unreferenced: no row); c6
//! email, no spend, no start; c7 partner spend 100 started 2024-06-01 (after as_of, but o7
//! refers to it).

use crm_kpi::config::{Config, ConvertedEvent};
use crm_kpi::kpi::inputs::{Inputs, Tables};
use crm_kpi::kpi::leads::lead_conversions;
use crm_kpi::kpi::{Grain, Params, parse_as_of};
use polars::prelude::*;

use crate::fixtures::{self, big_stack, canonical, compute_on as compute_all, kpi, rows};

fn tables() -> Tables {
    let leads = df!(
        "lead_id" => ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8"],
        "created_at" => ["2023-11-20", "2024-01-05", "2024-01-10", "2024-01-15", "2024-02-01", "2024-02-20",
            "2024-03-05", "2024-03-10", "2024-04-03"],
        "source" => ["ads", "web", "web", "ads", "ads", "web", "ads", "web", "web"],
        "campaign_id" => [None, Some("c1"), Some("c1"), Some("c2"), None, Some("c3"), Some("c2"), Some("c1"),
            Some("c1")],
        "owner_id" => ["r2", "r1", "r2", "r1", "r2", "r1", "r2", "r1", "r1"],
        "region" => [None, Some("EU"), Some("US"), Some("EU"), None, Some("US"), Some("EU"), Some("EU"), Some("EU")],
        "qualified_at" => [None, Some("2024-01-20"), Some("2024-02-05"), None, Some("2024-02-10"),
            Some("2024-04-02"), None, Some("2024-03-12"), Some("2024-04-04")],
        "disqualified_at" => [Some("2023-12-15"), None, None, Some("2024-01-30"), None, None, Some("2024-03-06"),
            None, None],
        "converted_at" => [None, Some("2024-01-25"), None, None, Some("2024-02-15"), Some("2024-04-05"), None, None,
            None],
        "account_id" => [None, Some("a1"), Some("a2"), None, Some("a3"), None, None, Some("a4"), None],
    )
    .unwrap();
    let amounts = [1000.0, 500.0, 2000.0, 800.0, 300.0, 700.0, 50.0];
    let opportunities = df!(
        "opportunity_id" => ["o1", "o2", "o3", "o4", "o5", "o6", "o7"],
        "account_id" => ["a1", "a2", "a3", "a4", "a1", "a2", "a5"],
        "owner_id" => ["r1", "r2", "r2", "r1", "r1", "r2", "r2"],
        "lead_id" => [Some("l1"), Some("l2"), Some("l4"), Some("l7"), None, Some("l2"), None],
        "campaign_id" => [None, Some("c1"), Some("c2"), None, Some("c4"), None, Some("c7")],
        "created_at" => ["2024-01-22", "2024-02-08", "2024-02-16", "2024-03-15", "2024-03-01", "2024-03-02",
            "2024-03-25"],
        "amount" => amounts,
        "amount_base" => amounts,
        "status" => ["won", "lost", "won", "won", "won", "won", "open"],
        "closed_at" => [Some("2024-02-10"), Some("2024-03-01"), Some("2024-03-20"), Some("2024-04-10"),
            Some("2024-03-25"), Some("2024-03-28"), None],
    )
    .unwrap();
    let stage_events = df!(
        "opportunity_id" => ["o1", "o1"],
        "stage" => ["prospecting", "closed_won"],
        "entered_at" => ["2024-01-22", "2024-02-10"],
    )
    .unwrap();
    let orders = df!(
        "order_id" => ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"],
        "account_id" => ["a1", "a1", "a2", "a3", "a3", "a4", "a1", "a1"],
        "ordered_at" => ["2024-01-01", "2024-02-20", "2024-03-01", "2024-02-05", "2024-03-01", "2024-03-10",
            "2024-02-24", "2024-04-02"],
        "amount" => [100.0, 100.0, 100.0, -50.0, 100.0, 100.0, 100.0, 100.0],
        "amount_base" => [100.0, 100.0, 100.0, -50.0, 100.0, 100.0, 100.0, 100.0],
        "paid_at" => ["2024-01-03", "2024-03-01", "2024-04-05", "2024-02-06", "2024-03-10", "2024-03-10",
            "2024-02-25", "2024-04-03"],
        "is_refund" => [false, false, false, true, false, false, false, false],
    )
    .unwrap();
    let campaigns = df!(
        "campaign_id" => ["c1", "c2", "c5", "c6", "c7"],
        "name" => ["Web", "Ads", "Future", "No start", "Partners"],
        "channel" => ["seo", "paid_search", "events", "email", "partner"],
        "spend" => [Some(1200.0), Some(0.0), Some(500.0), None, Some(100.0)],
        "spend_base" => [Some(1200.0), Some(0.0), Some(500.0), None, Some(100.0)],
        "started_at" => [Some("2023-12-01"), Some("2024-01-01"), Some("2024-05-01"), None, Some("2024-06-01")],
    )
    .unwrap();
    Tables::from_frames(vec![
        ("leads", canonical("leads", leads)),
        ("opportunities", canonical("opportunities", opportunities)),
        ("stage_events", canonical("stage_events", stage_events)),
        ("orders", canonical("orders", orders)),
        ("campaigns", canonical("campaigns", campaigns)),
    ])
}

fn config(event: ConvertedEvent) -> Config {
    Config {
        lead_converted_event: event,
        ..Config::default()
    }
}

fn params_at(as_of: &str, grain: Grain, cfg: Config) -> Params {
    let us = parse_as_of(as_of, cfg.tz()).unwrap();
    Params::new(us, grain, cfg)
}

fn compute_on(tables: Tables, params: Params, name: &str, engine: Engine) -> DataFrame {
    compute_all(tables, params, vec![kpi(name)], engine).remove(0)
}

fn run_at(name: &str, as_of: &str, grain: Grain, cfg: Config) -> DataFrame {
    compute_on(tables(), params_at(as_of, grain, cfg), name, Engine::InMemory)
}

fn run(name: &str) -> DataFrame {
    run_at(name, "2024-03-31", Grain::Month, Config::default())
}

fn filter(df: &DataFrame, e: Expr) -> DataFrame {
    df.clone().lazy().filter(e).collect().unwrap()
}

fn dim(df: &DataFrame, d: &str) -> DataFrame {
    filter(df, col("dimension").eq(lit(d)))
}

/// Asserts the declared schema, a unique key and the run's as_of.
fn assert_schema_and_key(name: &str, df: &DataFrame, as_of: &str) {
    fixtures::assert_schema_and_key(name, df);
    assert!(rows(df, &["as_of"]).iter().all(|r| r == as_of), "{name}");
}

// ---------------------------------------------------------------------------------------------
// The worked example of lead_conversion's definition (10 leads, one month).

/// 10 leads created in September 2024 (4 from events, 6 from ads); e1, e2 and a1 are won in
/// September. a2's deal is won on 2024-10-03 and x1 (events) is created and won in October:
/// both after an as_of of 2024-09-30.
fn worked_example() -> Tables {
    let ids = ["e1", "e2", "e3", "e4", "a1", "a2", "a3", "a4", "a5", "a6", "x1"];
    let leads = df!(
        "lead_id" => ids,
        "created_at" => ["2024-09-01", "2024-09-02", "2024-09-05", "2024-09-10", "2024-09-03", "2024-09-04",
            "2024-09-08", "2024-09-12", "2024-09-20", "2024-09-28", "2024-10-02"],
        "source" => ["events", "events", "events", "events", "ads", "ads", "ads", "ads", "ads", "ads", "events"],
    )
    .unwrap();
    let opportunities = df!(
        "opportunity_id" => ["d1", "d2", "d3", "d4", "d5", "d6", "d7"],
        "account_id" => ["A1", "A2", "A3", "A4", "A5", "A6", "A7"],
        "owner_id" => ["r1"; 7],
        "lead_id" => ["e1", "e2", "a1", "a2", "e3", "e4", "x1"],
        "created_at" => ["2024-09-05", "2024-09-03", "2024-09-03", "2024-09-20", "2024-09-10", "2024-09-15",
            "2024-10-02"],
        "amount" => [100.0; 7],
        "amount_base" => [100.0; 7],
        "status" => ["won", "won", "won", "won", "lost", "open", "won"],
        "closed_at" => [Some("2024-09-11"), Some("2024-09-06"), Some("2024-09-03"), Some("2024-10-03"),
            Some("2024-09-25"), None, Some("2024-10-05")],
    )
    .unwrap();
    Tables::from_frames(vec![
        ("leads", canonical("leads", leads)),
        ("opportunities", canonical("opportunities", opportunities)),
    ])
}

/// This file's fixture and parameters, for the catalog-wide properties (`catalog.rs`).
pub(crate) fn hand_fixture() -> (Tables, Params) {
    (tables(), params_at("2024-03-31", Grain::Month, Config::default()))
}

#[test]
fn lead_conversion_worked_example_of_the_spec() {
    let p = params_at("2024-09-30", Grain::Month, Config::default());
    let df = compute_on(worked_example(), p, "lead_conversion", Engine::InMemory);
    assert_schema_and_key("lead_conversion", &df, "2024-09-30");
    let cols = [
        "dimension",
        "dimension_value",
        "leads",
        "converted",
        "conversion_rate",
        "median_days_to_convert",
        "mean_days_to_convert",
    ];
    let sep = filter(
        &df,
        col("dimension").is_in(
            lit(Series::new("d".into(), ["all", "source", "period"])).implode(false),
            false,
        ),
    );
    assert_eq!(
        rows(&sep, &cols),
        [
            // Days to convert: e1 10, e2 4, a1 0 (won the day it was created); median 4.
            "all|null|10|3|0.3000|4.0000|4.6667",
            "period|2024-09-01|10|3|0.3000|4.0000|4.6667",
            // median of 4 and 10 (even count: linear interpolation).
            "source|ads|6|1|0.1667|0.0000|0.0000",
            "source|events|4|2|0.5000|7.0000|7.0000",
        ]
    );
    // A month later x1 (October) and a2's October win count; September's cohort is 4 of 10.
    let p = params_at("2024-10-31", Grain::Month, Config::default());
    let df = compute_on(worked_example(), p, "lead_conversion", Engine::InMemory);
    let later = filter(
        &df,
        col("dimension").is_in(lit(Series::new("d".into(), ["all", "period"])).implode(false), false),
    );
    assert_eq!(
        rows(&later, &cols),
        [
            // a2: 09-04 -> 10-03 = 29 days; x1: 3 days. Days 0, 3, 4, 10, 29.
            "all|null|11|5|0.4545|4.0000|9.2000",
            "period|2024-09-01|10|4|0.4000|7.0000|10.7500",
            "period|2024-10-01|1|1|1.0000|3.0000|3.0000",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The conversion rule, directly.

fn conversions(cfg: Config) -> Vec<String> {
    let p = params_at("2024-03-31", Grain::Month, cfg);
    let df = big_stack(move || {
        let inputs = Inputs::new(&tables(), &p);
        lead_conversions(&inputs, &p)
            .unwrap()
            .sort(["lead_id"], SortMultipleOptions::default())
            .collect()
            .unwrap()
    });
    assert_eq!(df.get_column_names(), ["lead_id", "converted_at"]);
    rows(&df, &["lead_id", "converted_at"])
}

#[test]
fn lead_conversions_follow_the_configured_event() {
    // won: the first close among the lead's deals won at as_of (o2 lost, o4 won after as_of).
    assert_eq!(
        conversions(config(ConvertedEvent::Won)),
        ["l1|2024-02-10 00:00", "l2|2024-03-28 00:00", "l4|2024-03-20 00:00"]
    );
    // opportunity: the earlier of the lead's converted_at and its first deal's creation; l5's
    // converted_at after as_of does not count.
    assert_eq!(
        conversions(config(ConvertedEvent::Opportunity)),
        [
            "l1|2024-01-22 00:00",
            "l2|2024-02-08 00:00",
            "l4|2024-02-15 00:00",
            "l7|2024-03-15 00:00"
        ]
    );
    // paid_order: the account's first non-refund payment at or after the lead's creation
    // (l1: p1 paid before it existed, p7 on 02-25 before p2 on 03-01; l2: paid after as_of;
    // l4: the refund p4 is skipped; l7: paid the instant it was created).
    assert_eq!(
        conversions(config(ConvertedEvent::PaidOrder)),
        ["l1|2024-02-25 00:00", "l4|2024-03-10 00:00", "l7|2024-03-10 00:00"]
    );
}

// ---------------------------------------------------------------------------------------------
// lead_conversion

const CONVERSION_COLS: [&str; 7] = [
    "dimension",
    "dimension_value",
    "leads",
    "converted",
    "conversion_rate",
    "median_days_to_convert",
    "mean_days_to_convert",
];

#[test]
fn lead_conversion_by_every_dimension_when_won() {
    let df = run("lead_conversion");
    assert_schema_and_key("lead_conversion", &df, "2024-03-31");
    // Converted: l1 (36 days), l2 (78), l4 (48). l8 (created after as_of) is not a lead yet.
    assert_eq!(
        rows(&df, &CONVERSION_COLS),
        [
            "all|null|8|3|0.3750|48.0000|54.0000",
            "campaign_id|null|2|1|0.5000|48.0000|48.0000",
            "campaign_id|c1|3|2|0.6667|57.0000|57.0000",
            "campaign_id|c2|2|0|0.0000|null|null",
            "campaign_id|c3|1|0|0.0000|null|null",
            "owner_id|r1|4|1|0.2500|36.0000|36.0000",
            "owner_id|r2|4|2|0.5000|63.0000|63.0000",
            "period|2023-11-01|1|0|0.0000|null|null",
            "period|2024-01-01|3|2|0.6667|57.0000|57.0000",
            "period|2024-02-01|2|1|0.5000|48.0000|48.0000",
            "period|2024-03-01|2|0|0.0000|null|null",
            "region|null|2|1|0.5000|48.0000|48.0000",
            "region|EU|4|1|0.2500|36.0000|36.0000",
            "region|US|2|1|0.5000|78.0000|78.0000",
            "source|ads|4|1|0.2500|48.0000|48.0000",
            "source|web|4|2|0.5000|57.0000|57.0000",
        ]
    );
}

#[test]
fn lead_conversion_with_opportunity_and_paid_order_events() {
    let pick = |df: &DataFrame| {
        rows(
            &filter(
                df,
                col("dimension").eq(lit("all")).or(col("dimension").eq(lit("source"))),
            ),
            &CONVERSION_COLS,
        )
    };
    // opportunity: l1 17, l2 29, l4 14, l7 5 days; median (14 + 17) / 2.
    let df = run_at(
        "lead_conversion",
        "2024-03-31",
        Grain::Month,
        config(ConvertedEvent::Opportunity),
    );
    assert_eq!(
        pick(&df),
        [
            "all|null|8|4|0.5000|15.5000|16.2500",
            "source|ads|4|1|0.2500|14.0000|14.0000",
            "source|web|4|3|0.7500|17.0000|17.0000",
        ]
    );
    // paid_order: l1 51, l4 38, l7 0 days.
    let df = run_at(
        "lead_conversion",
        "2024-03-31",
        Grain::Month,
        config(ConvertedEvent::PaidOrder),
    );
    assert_eq!(
        pick(&df),
        [
            "all|null|8|3|0.3750|38.0000|29.6667",
            "source|ads|4|1|0.2500|38.0000|38.0000",
            "source|web|4|2|0.5000|25.5000|25.5000",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// lead_volume

#[test]
fn lead_volume_counts_each_milestone_in_its_own_period() {
    let df = run("lead_volume");
    assert_schema_and_key("lead_volume", &df, "2024-03-31");
    let cols = [
        "period_start",
        "dimension",
        "dimension_value",
        "new_leads",
        "qualified_leads",
        "disqualified_leads",
    ];
    // l5's qualification (04-02) and l8 (created 04-03) are after as_of.
    assert_eq!(
        rows(&dim(&df, "all"), &cols),
        [
            "2023-11-01|all|null|1|0|0",
            "2023-12-01|all|null|0|0|1",
            "2024-01-01|all|null|3|1|1",
            "2024-02-01|all|null|2|2|0",
            "2024-03-01|all|null|2|1|1",
        ]
    );
    assert_eq!(
        rows(&dim(&df, "source"), &cols),
        [
            "2023-11-01|source|ads|1|0|0",
            "2023-12-01|source|ads|0|0|1",
            "2024-01-01|source|ads|1|0|1",
            "2024-01-01|source|web|2|1|0",
            "2024-02-01|source|ads|1|1|0",
            "2024-02-01|source|web|1|1|0",
            "2024-03-01|source|ads|1|0|1",
            "2024-03-01|source|web|1|1|0",
        ]
    );
    // Leads without a campaign keep their own row (null value).
    assert_eq!(
        rows(&dim(&df, "campaign_id"), &cols),
        [
            "2023-11-01|campaign_id|null|1|0|0",
            "2023-12-01|campaign_id|null|0|0|1",
            "2024-01-01|campaign_id|c1|2|1|0",
            "2024-01-01|campaign_id|c2|1|0|1",
            "2024-02-01|campaign_id|null|1|1|0",
            "2024-02-01|campaign_id|c1|0|1|0",
            "2024-02-01|campaign_id|c3|1|0|0",
            "2024-03-01|campaign_id|c1|1|1|0",
            "2024-03-01|campaign_id|c2|1|0|1",
        ]
    );
    assert_eq!(
        rows(&dim(&df, "region"), &cols),
        [
            "2023-11-01|region|null|1|0|0",
            "2023-12-01|region|null|0|0|1",
            "2024-01-01|region|EU|2|1|1",
            "2024-01-01|region|US|1|0|0",
            "2024-02-01|region|null|1|1|0",
            "2024-02-01|region|US|1|1|0",
            "2024-03-01|region|EU|2|1|1",
        ]
    );
    assert_eq!(
        rows(&dim(&df, "owner_id"), &cols),
        [
            "2023-11-01|owner_id|r2|1|0|0",
            "2023-12-01|owner_id|r2|0|0|1",
            "2024-01-01|owner_id|r1|2|1|1",
            "2024-01-01|owner_id|r2|1|0|0",
            "2024-02-01|owner_id|r1|1|0|0",
            "2024-02-01|owner_id|r2|1|2|0",
            "2024-03-01|owner_id|r1|1|1|0",
            "2024-03-01|owner_id|r2|1|0|1",
        ]
    );
}

#[test]
fn lead_volume_periods_are_local() {
    // 2024-01-31T20:00Z is already February 1 in Ho Chi Minh City (UTC+7).
    let leads = df!(
        "lead_id" => ["h1", "h2"],
        "created_at" => [1_706_731_200_000_000i64, 1_706_644_800_000_000], // 01-31T20:00Z, 01-30T20:00Z
        "source" => ["web", "web"],
    )
    .unwrap();
    let t = Tables::from_frames(vec![("leads", canonical("leads", leads))]);
    let cfg = Config {
        timezone: "Asia/Ho_Chi_Minh".into(),
        ..Config::default()
    };
    let df = compute_on(
        t,
        params_at("2024-02-29", Grain::Month, cfg),
        "lead_volume",
        Engine::InMemory,
    );
    assert_eq!(
        rows(&dim(&df, "all"), &["period_start", "new_leads"]),
        ["2024-01-01|1", "2024-02-01|1"]
    );
}

// ---------------------------------------------------------------------------------------------
// lead_velocity_rate

const LVR_COLS: [&str; 5] = [
    "period_start",
    "qualified_leads",
    "prev_qualified_leads",
    "lvr",
    "complete",
];

#[test]
fn lead_velocity_rate_is_dense_with_null_over_zero() {
    let df = run("lead_velocity_rate");
    assert_schema_and_key("lead_velocity_rate", &df, "2024-03-31");
    assert_eq!(
        rows(&df, &LVR_COLS),
        [
            // The first period has no observed previous one.
            "2023-11-01|0|null|null|true",
            // December has no lead at all: 0, not missing; its previous is 0, so no rate.
            "2023-12-01|0|0|null|true",
            "2024-01-01|1|0|null|true",
            "2024-02-01|2|1|1.0000|true",
            // l5's qualification on 04-02 is after as_of. March ends with as_of.
            "2024-03-01|1|2|-0.5000|true",
        ]
    );
}

#[test]
fn lead_velocity_rate_marks_the_partial_period() {
    // Mid-March: l7's qualification (03-12) counts, March is not over.
    let df = run_at("lead_velocity_rate", "2024-03-15", Grain::Month, Config::default());
    assert_eq!(
        rows(&df, &LVR_COLS)[3..],
        ["2024-02-01|2|1|1.0000|true", "2024-03-01|1|2|-0.5000|false"]
    );
}

#[test]
fn lead_velocity_rate_on_fiscal_quarters() {
    // Fiscal year from February: quarters Nov-Jan, Feb-Apr. Nov-Jan: l1; Feb-Apr: l2, l4, l7.
    let cfg = Config {
        fiscal_year_start_month: 2,
        ..Config::default()
    };
    let df = run_at("lead_velocity_rate", "2024-03-31", Grain::Quarter, cfg);
    assert_eq!(
        rows(&df, &LVR_COLS),
        ["2023-11-01|1|null|null|true", "2024-02-01|3|1|2.0000|false"]
    );
}

// ---------------------------------------------------------------------------------------------
// cohort_conversion

const COHORT_COLS: [&str; 7] = [
    "cohort_start",
    "dimension",
    "dimension_value",
    "cohort_size",
    "k",
    "converted_cum",
    "conversion_rate_cum",
];

#[test]
fn cohort_conversion_cumulates_by_period_since_creation() {
    let df = run("cohort_conversion");
    assert_schema_and_key("cohort_conversion", &df, "2024-03-31");
    // Won: l1 (Jan cohort) in Feb = k 1; l2 (Jan) in Mar = k 2; l4 (Feb) in Mar = k 1. December
    // has no lead, so no cohort. Every period up to March has ended at as_of.
    assert_eq!(
        rows(&dim(&df, "all"), &COHORT_COLS),
        [
            "2023-11-01|all|null|1|0|0|0.0000",
            "2023-11-01|all|null|1|1|0|0.0000",
            "2023-11-01|all|null|1|2|0|0.0000",
            "2023-11-01|all|null|1|3|0|0.0000",
            "2023-11-01|all|null|1|4|0|0.0000",
            "2024-01-01|all|null|3|0|0|0.0000",
            "2024-01-01|all|null|3|1|1|0.3333",
            "2024-01-01|all|null|3|2|2|0.6667",
            "2024-02-01|all|null|2|0|0|0.0000",
            "2024-02-01|all|null|2|1|1|0.5000",
            "2024-03-01|all|null|2|0|0|0.0000",
        ]
    );
    let src = filter(
        &dim(&df, "source"),
        col("cohort_start").gt_eq(lit("2024-01-01").str().to_date(StrptimeOptions::default())),
    );
    assert_eq!(
        rows(&src, &COHORT_COLS),
        [
            "2024-01-01|source|ads|1|0|0|0.0000",
            "2024-01-01|source|ads|1|1|0|0.0000",
            "2024-01-01|source|ads|1|2|0|0.0000",
            "2024-01-01|source|web|2|0|0|0.0000",
            "2024-01-01|source|web|2|1|1|0.5000",
            "2024-01-01|source|web|2|2|2|1.0000",
            "2024-02-01|source|ads|1|0|0|0.0000",
            "2024-02-01|source|ads|1|1|1|1.0000",
            "2024-02-01|source|web|1|0|0|0.0000",
            "2024-02-01|source|web|1|1|0|0.0000",
            "2024-03-01|source|ads|1|0|0|0.0000",
            "2024-03-01|source|web|1|0|0|0.0000",
        ]
    );
    assert_eq!(dim(&df, "source").height(), 17);
}

#[test]
fn cohort_conversion_cells_not_yet_observable_are_null() {
    // Mid-March: March has not ended, so every cell of k landing on March is null (the row is
    // still there); l2's and l4's March wins are after this as_of anyway.
    let df = run_at("cohort_conversion", "2024-03-15", Grain::Month, Config::default());
    assert_eq!(
        rows(&dim(&df, "all"), &COHORT_COLS),
        [
            "2023-11-01|all|null|1|0|0|0.0000",
            "2023-11-01|all|null|1|1|0|0.0000",
            "2023-11-01|all|null|1|2|0|0.0000",
            "2023-11-01|all|null|1|3|0|0.0000",
            "2023-11-01|all|null|1|4|null|null",
            "2024-01-01|all|null|3|0|0|0.0000",
            "2024-01-01|all|null|3|1|1|0.3333",
            "2024-01-01|all|null|3|2|null|null",
            "2024-02-01|all|null|2|0|0|0.0000",
            "2024-02-01|all|null|2|1|null|null",
            "2024-03-01|all|null|2|0|null|null",
        ]
    );
}

#[test]
fn cohort_conversion_on_fiscal_quarters_and_weeks() {
    // Fiscal year from February: cohort Nov-Jan = l0..l3 (l1 and l2 won in Feb-Apr, k 1);
    // cohort Feb-Apr = l4..l7 (l4 won in March, k 0). Feb-Apr has not ended at as_of.
    let cfg = Config {
        fiscal_year_start_month: 2,
        ..Config::default()
    };
    let df = run_at("cohort_conversion", "2024-03-31", Grain::Quarter, cfg);
    assert_eq!(
        rows(&dim(&df, "all"), &COHORT_COLS),
        [
            "2023-11-01|all|null|4|0|0|0.0000",
            "2023-11-01|all|null|4|1|null|null",
            "2024-02-01|all|null|4|0|null|null",
        ]
    );
    // Weeks from Monday: l2 (Wednesday 01-10) is alone in the week of 01-08 and won on Thursday
    // 03-28, 77 days = 11 weeks later; as_of (Sunday 03-31, end of day) closes that week.
    let df = run_at("cohort_conversion", "2024-03-31", Grain::Week, Config::default());
    let week = filter(
        &dim(&df, "all"),
        col("cohort_start").eq(lit("2024-01-08").str().to_date(StrptimeOptions::default())),
    );
    let r = rows(&week, &COHORT_COLS);
    assert_eq!(r.len(), 12);
    assert_eq!(
        r[10..],
        ["2024-01-08|all|null|1|10|0|0.0000", "2024-01-08|all|null|1|11|1|1.0000"]
    );
}

#[test]
fn cohort_conversion_with_the_opportunity_event() {
    // opportunity: l1 Jan 22 (k 0), l2 Feb 08 (k 1), l4 Feb 15 (Feb cohort, k 0), l7 Mar 15 (k 0).
    let df = run_at(
        "cohort_conversion",
        "2024-03-31",
        Grain::Month,
        config(ConvertedEvent::Opportunity),
    );
    let recent = filter(
        &dim(&df, "all"),
        col("cohort_start").gt_eq(lit("2024-01-01").str().to_date(StrptimeOptions::default())),
    );
    assert_eq!(
        rows(&recent, &COHORT_COLS),
        [
            "2024-01-01|all|null|3|0|1|0.3333",
            "2024-01-01|all|null|3|1|2|0.6667",
            "2024-01-01|all|null|3|2|2|0.6667",
            "2024-02-01|all|null|2|0|1|0.5000",
            "2024-02-01|all|null|2|1|1|0.5000",
            "2024-03-01|all|null|2|0|1|0.5000",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// campaign_performance

#[test]
fn campaign_performance_with_zero_spend_zero_wins_and_unknown_campaigns() {
    let df = run("campaign_performance");
    assert_schema_and_key("campaign_performance", &df, "2024-03-31");
    let cols = [
        "campaign_id",
        "channel",
        "leads",
        "qualified",
        "deals",
        "won_deals",
        "won_revenue",
        "spend",
        "cost_per_lead",
        "cost_per_acquisition",
        "roi",
    ];
    assert_eq!(
        rows(&df, &cols),
        [
            // l1, l2, l7 (l8 after as_of); deals o1, o4, o6 by their lead, o2 by its own
            // campaign; won o1 + o6 (o2 lost, o4 won after as_of). roi = (1700 - 1200) / 1200.
            "c1|seo|3|3|4|2|1700.0000|1200.0000|400.0000|600.0000|0.4167",
            // Zero spend: costs are 0, roi has no denominator. o3 counts here by its own
            // campaign although its lead l4 has none.
            "c2|paid_search|2|0|1|1|2000.0000|0.0000|0.0000|0.0000|null",
            // Not in the campaigns table, referenced by l5 (qualified after as_of).
            "c3|null|1|0|0|0|0.0000|null|null|null|null",
            // Not in the table, referenced by the deal o5 only.
            "c4|null|0|0|1|1|300.0000|null|null|null|null",
            // c5 starts after as_of and nothing refers to it: no row. c6 has no start and no spend.
            "c6|email|0|0|0|0|0.0000|null|null|null|null",
            // Starts after as_of but o7 refers to it: zero wins, no leads.
            "c7|partner|0|0|1|0|0.0000|100.0000|null|null|-1.0000",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Every lead KPI
