//! `trends` on a fixture small enough to check on paper.
//!
//! Default configuration (UTC), as of 2025-03-31T12:00Z (so March 2025 is not complete). Every
//! timestamp is at midnight UTC. Deals have no stage events: they close by status/closed_at.
//!
//! | lead | created    | qualified                | | deal | created    | at as_of                     | amount |
//! |------|------------|--------------------------| |------|------------|------------------------------|--------|
//! | L1   | 2024-01-10 | 2024-01-20               | | D1   | 2024-01-05 | won 2024-02-10               | 1000   |
//! | L2   | 2024-01-15 |                          | | D2   | 2024-01-06 | lost 2024-02-20              | 500    |
//! | L3   | 2024-03-05 | 2024-04-02               | | D3   | 2024-02-01 | won 2025-02-15               | 3000   |
//! | L4   | 2025-01-10 | 2025-02-01               | | D4   | 2024-03-01 | won 2025-02-25               | 5000   |
//! | L5   | 2025-03-20 | 2025-04-05 (after as_of) | | D5   | 2025-01-01 | lost 2025-03-10              | 700    |
//! | L6   | 2025-04-02 (after as_of: dropped)     | | D6   | 2025-01-01 | open (won 2025-04-02, after) | 9999   |
//! |      |            |                          | | D7   | 2024-06-01 | open                         | 100    |
//!
//! | order | account | ordered    | amount | refund | |
//! |-------|---------|------------|--------|--------|-|
//! | O1    | A1      | 2024-01-20 | 100    |        | |
//! | O2    | A2      | 2024-02-05 | 200    |        | |
//! | O3    | A1      | 2024-03-10 | 50     |        | |
//! | O4    | A1      | 2024-03-25 | -50    | yes    | refund of O3: net 0 in March, A1 still active |
//! | O5    | A3      | 2025-01-15 | 400    |        | |
//! | O6    | A2      | 2025-03-01 | 300    |        | |
//! | O7    | A1      | 2025-04-01 | 999    |        | after as_of |
//!
//! Monthly, the range is 2024-01 .. 2025-03 (15 periods); trailing_12 exists from 2024-12 on:
//!
//! | month   | new | qual | won | lost | won rev | order rev | active | t12 new | t12 won | t12 win rate | t12 order rev | t12 active     |
//! |---------|-----|------|-----|------|---------|-----------|--------|---------|---------|--------------|---------------|----------------|
//! | 2024-01 | 2   | 1    | 0   | 0    | 0       | 100       | 1      | null    | null    | null         | null          | null           |
//! | 2024-02 | 0   | 0    | 1   | 1    | 1000    | 200       | 1      | null    | null    | null         | null          | null           |
//! | 2024-03 | 1   | 0    | 0   | 0    | 0       | 0         | 1      | null    | ...     |              |               |                |
//! | 2024-04 | 0   | 1    | 0   | 0    | 0       | 0         | 0      |         |         |              |               |                |
//! | 2024-12 | 0   | 0    | 0   | 0    | 0       | 0         | 0      | 3       | 1       | 1/2          | 300           | 2 (A1, A2)     |
//! | 2025-01 | 1   | 0    | 0   | 0    | 0       | 400       | 1      | 2       | 1       | 1/2          | 600           | 3 (A2, A1, A3) |
//! | 2025-02 | 0   | 1    | 2   | 0    | 8000    | 0         | 0      | 2       | 2       | 2/2          | 400           | 2 (A1, A3)     |
//! | 2025-03 | 1   | 0    | 0   | 1    | 0       | 300       | 1      | 2       | 2       | 2/3          | 700           | 2 (A3, A2)     |

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::{Grain, Params, parse_as_of};
use polars::prelude::*;

use crate::fixtures::{assert_schema_and_key, canonical, compute_on, kpi, rows};

fn tables() -> Tables {
    let leads = df!(
        "lead_id" => ["L1", "L2", "L3", "L4", "L5", "L6"],
        "created_at" => ["2024-01-10", "2024-01-15", "2024-03-05", "2025-01-10", "2025-03-20", "2025-04-02"],
        "source" => ["ads"; 6],
        "qualified_at" => [Some("2024-01-20"), None, Some("2024-04-02"), Some("2025-02-01"), Some("2025-04-05"),
            None],
    )
    .unwrap();
    let amounts = [1000.0, 500.0, 3000.0, 5000.0, 700.0, 9999.0, 100.0];
    let opportunities = df!(
        "opportunity_id" => ["D1", "D2", "D3", "D4", "D5", "D6", "D7"],
        "account_id" => ["A1", "A2", "A1", "A3", "A2", "A3", "A1"],
        "owner_id" => ["r1"; 7],
        "created_at" => ["2024-01-05", "2024-01-06", "2024-02-01", "2024-03-01", "2025-01-01", "2025-01-01",
            "2024-06-01"],
        "amount" => amounts,
        "amount_base" => amounts,
        "status" => ["won", "lost", "won", "won", "lost", "won", "open"],
        "closed_at" => [Some("2024-02-10"), Some("2024-02-20"), Some("2025-02-15"), Some("2025-02-25"),
            Some("2025-03-10"), Some("2025-04-02"), None],
    )
    .unwrap();
    let order_amounts = [100.0, 200.0, 50.0, -50.0, 400.0, 300.0, 999.0];
    let orders = df!(
        "order_id" => ["O1", "O2", "O3", "O4", "O5", "O6", "O7"],
        "account_id" => ["A1", "A2", "A1", "A1", "A3", "A2", "A1"],
        "ordered_at" => ["2024-01-20", "2024-02-05", "2024-03-10", "2024-03-25", "2025-01-15", "2025-03-01",
            "2025-04-01"],
        "amount" => order_amounts,
        "amount_base" => order_amounts,
        "is_refund" => [None, Some(false), None, Some(true), None, None, None],
    )
    .unwrap();
    Tables::from_frames(vec![
        ("leads", canonical("leads", leads)),
        ("opportunities", canonical("opportunities", opportunities)),
        ("orders", canonical("orders", orders)),
    ])
}

fn params(grain: Grain, fiscal_year_start_month: u32) -> Params {
    let cfg = Config {
        fiscal_year_start_month,
        ..Config::default()
    };
    let as_of = parse_as_of("2025-03-31T12:00:00Z", cfg.tz()).unwrap();
    Params::new(as_of, grain, cfg)
}

fn run(grain: Grain, fiscal_year_start_month: u32) -> DataFrame {
    compute_on(
        tables(),
        params(grain, fiscal_year_start_month),
        vec![kpi("trends")],
        Engine::InMemory,
    )
    .remove(0)
}

fn series(df: &DataFrame, name: &str) -> DataFrame {
    df.clone()
        .lazy()
        .filter(col("series").eq(lit(name.to_string())))
        .collect()
        .unwrap()
}

const COLS: [&str; 8] = [
    "period_start",
    "complete",
    "value",
    "prev_value",
    "prev_year_value",
    "pop_change",
    "yoy_change",
    "trailing_12",
];

/// The rows of one series from `from` (a YYYY-MM-DD period start) on.
fn tail(df: &DataFrame, name: &str, from: &str) -> Vec<String> {
    rows(&series(df, name), &COLS)
        .into_iter()
        .filter(|r| r[..10] >= *from)
        .collect()
}

/// This file's fixture and parameters, for the catalog-wide properties (`catalog.rs`).
pub(crate) fn hand_fixture() -> (Tables, Params) {
    (tables(), params(Grain::Month, 1))
}

#[test]
fn trends_monthly_range_is_dense_and_carries_as_of() {
    let df = run(Grain::Month, 1);
    assert_schema_and_key("trends", &df);
    // 8 series x 15 months (2024-01 .. 2025-03), whatever month a series has data in.
    assert_eq!(df.height(), 8 * 15);
    for s in crm_kpi::kpi::trends::SERIES {
        let one = series(&df, s);
        assert_eq!(one.height(), 15, "{s}");
        assert_eq!(rows(&one, &["period_start"])[0], "2024-01-01", "{s}");
        assert_eq!(rows(&one, &["period_start"])[14], "2025-03-01", "{s}");
    }
    assert!(rows(&df, &["as_of"]).iter().all(|r| r == "2025-03-31"));
    // Only March 2025 is still running at 2025-03-31T12:00Z.
    let incomplete: Vec<String> = rows(&df, &["series", "period_start", "complete"])
        .into_iter()
        .filter(|r| r.ends_with("false"))
        .collect();
    assert_eq!(incomplete.len(), 8);
    assert!(incomplete.iter().all(|r| r.contains("2025-03-01")));
}

#[test]
fn trends_new_leads_monthly() {
    let df = run(Grain::Month, 1);
    let all = rows(&series(&df, "new_leads"), &COLS);
    // First period: no previous period, no prior year, fewer than 12 periods.
    assert_eq!(all[0], "2024-01-01|true|2.0000|null|null|null|null|null");
    // 2 -> 0: -100 %.
    assert_eq!(all[1], "2024-02-01|true|0.0000|2.0000|null|-1.0000|null|null");
    // 0 -> 1: the change over a zero previous value is null.
    assert_eq!(all[2], "2024-03-01|true|1.0000|0.0000|null|null|null|null");
    // 11 periods exist at 2024-11: still null; the 12th (2024-12) sums L1, L2, L3.
    assert_eq!(all[10], "2024-11-01|true|0.0000|0.0000|null|null|null|null");
    assert_eq!(
        tail(&df, "new_leads", "2024-12-01"),
        [
            "2024-12-01|true|0.0000|0.0000|null|null|null|3.0000",
            // Same month a year earlier: 2024-01 (2 leads): -50 %. The window drops 2024-01.
            "2025-01-01|true|1.0000|0.0000|2.0000|null|-0.5000|2.0000",
            // A year earlier 0: yoy null.
            "2025-02-01|true|0.0000|1.0000|0.0000|-1.0000|null|2.0000",
            // L6 (created after as_of) is not counted.
            "2025-03-01|false|1.0000|0.0000|1.0000|null|0.0000|2.0000",
        ]
    );
}

#[test]
fn trends_qualified_leads_ignore_qualifications_after_as_of() {
    let df = run(Grain::Month, 1);
    let s = series(&df, "qualified_leads");
    let values = rows(&s, &["period_start", "value"]);
    let nonzero: Vec<&String> = values.iter().filter(|r| !r.ends_with("|0.0000")).collect();
    // L5's qualification (2025-04-05) is after as_of.
    assert_eq!(nonzero, ["2024-01-01|1.0000", "2024-04-01|1.0000", "2025-02-01|1.0000"]);
    assert_eq!(
        tail(&df, "qualified_leads", "2025-03-01"),
        ["2025-03-01|false|0.0000|1.0000|0.0000|-1.0000|null|2.0000"]
    );
}

#[test]
fn trends_deals_and_ratios_monthly() {
    let df = run(Grain::Month, 1);
    assert_eq!(
        tail(&df, "deals_won", "2025-01-01"),
        [
            "2025-01-01|true|0.0000|0.0000|0.0000|null|null|1.0000",
            // D3 and D4; D6's win after as_of is not seen. prev 0 -> null; 2024-02 had D1: +100 %.
            "2025-02-01|true|2.0000|0.0000|1.0000|null|1.0000|2.0000",
            "2025-03-01|false|0.0000|2.0000|0.0000|-1.0000|null|2.0000",
        ]
    );
    assert_eq!(
        tail(&df, "won_revenue", "2025-02-01"),
        [
            "2025-02-01|true|8000.0000|0.0000|1000.0000|null|7.0000|8000.0000",
            "2025-03-01|false|0.0000|8000.0000|0.0000|-1.0000|null|8000.0000",
        ]
    );
    let wr = rows(&series(&df, "win_rate"), &COLS);
    // Nothing closed in 2024-01: null, not 0.
    assert_eq!(wr[0], "2024-01-01|true|null|null|null|null|null|null");
    assert_eq!(wr[1], "2024-02-01|true|0.5000|null|null|null|null|null");
    assert_eq!(
        tail(&df, "win_rate", "2024-12-01"),
        [
            // Trailing: D1 won, D2 lost.
            "2024-12-01|true|null|null|null|null|null|0.5000",
            "2025-01-01|true|null|null|null|null|null|0.5000",
            // Trailing window 2024-03 .. 2025-02: D3, D4 won. yoy vs 2024-02's 0.5.
            "2025-02-01|true|1.0000|null|0.5000|null|1.0000|1.0000",
            // D5 lost: 0 this month; trailing 2 / 3.
            "2025-03-01|false|0.0000|1.0000|null|-1.0000|null|0.6667",
        ]
    );
    assert_eq!(
        tail(&df, "mean_deal_size", "2025-01-01"),
        [
            "2025-01-01|true|null|null|null|null|null|1000.0000",
            "2025-02-01|true|4000.0000|null|1000.0000|null|3.0000|4000.0000",
            "2025-03-01|false|null|4000.0000|null|null|null|4000.0000",
        ]
    );
}

#[test]
fn trends_orders_net_of_refunds_and_distinct_trailing_customers() {
    let df = run(Grain::Month, 1);
    let or = rows(&series(&df, "order_revenue"), &["period_start", "value"]);
    // March 2024: O3 50 and its refund O4 -50 net to 0.
    assert_eq!(
        or[..3],
        ["2024-01-01|100.0000", "2024-02-01|200.0000", "2024-03-01|0.0000"]
    );
    assert_eq!(
        tail(&df, "order_revenue", "2024-12-01"),
        [
            "2024-12-01|true|0.0000|0.0000|null|null|null|300.0000",
            "2025-01-01|true|400.0000|0.0000|100.0000|null|3.0000|600.0000",
            "2025-02-01|true|0.0000|400.0000|200.0000|-1.0000|-1.0000|400.0000",
            // A year earlier the net was 0: yoy null. O7 (after as_of) is not counted.
            "2025-03-01|false|300.0000|0.0000|0.0000|null|null|700.0000",
        ]
    );
    let ac = rows(&series(&df, "active_customers"), &["period_start", "value"]);
    // A1 is active in March 2024 through O3 although its refund nets the month to 0.
    assert_eq!(
        ac[..4],
        [
            "2024-01-01|1.0000",
            "2024-02-01|1.0000",
            "2024-03-01|1.0000",
            "2024-04-01|0.0000"
        ]
    );
    assert_eq!(
        tail(&df, "active_customers", "2024-11-01"),
        [
            "2024-11-01|true|0.0000|0.0000|null|null|null|null",
            // Distinct accounts, not a sum of the monthly counts (which would give 3).
            "2024-12-01|true|0.0000|0.0000|null|null|null|2.0000",
            "2025-01-01|true|1.0000|0.0000|1.0000|null|0.0000|3.0000",
            "2025-02-01|true|0.0000|1.0000|1.0000|-1.0000|-1.0000|2.0000",
            "2025-03-01|false|1.0000|0.0000|1.0000|null|0.0000|2.0000",
        ]
    );
}

#[test]
fn trends_fiscal_quarters_compare_with_the_same_fiscal_quarter_a_year_earlier() {
    // Fiscal year from April: Q4 of FY2024 is Jan-Mar 2025, compared with Jan-Mar 2024 (Q4 of
    // FY2023). 5 quarters: 2024-01, 2024-04, 2024-07, 2024-10, 2025-01.
    let df = run(Grain::Quarter, 4);
    assert_schema_and_key("trends", &df);
    assert_eq!(df.height(), 8 * 5);
    assert_eq!(
        rows(&series(&df, "new_leads"), &COLS),
        [
            "2024-01-01|true|3.0000|null|null|null|null|null",
            // No quarter a year earlier in the range: prev_year_value and yoy null.
            "2024-04-01|true|0.0000|3.0000|null|-1.0000|null|null",
            "2024-07-01|true|0.0000|0.0000|null|null|null|null",
            "2024-10-01|true|0.0000|0.0000|null|null|null|null",
            // L4 and L5 vs L1, L2, L3; the quarter runs until the end of March: incomplete.
            "2025-01-01|false|2.0000|0.0000|3.0000|null|-0.3333|null",
        ]
    );
    let last = |name: &str| tail(&df, name, "2025-01-01");
    assert_eq!(
        last("deals_won"),
        ["2025-01-01|false|2.0000|0.0000|1.0000|null|1.0000|null"]
    );
    assert_eq!(
        last("won_revenue"),
        ["2025-01-01|false|8000.0000|0.0000|1000.0000|null|7.0000|null"]
    );
    // 2/3 now vs 1/2 a year earlier: +33.3 %.
    assert_eq!(
        last("win_rate"),
        ["2025-01-01|false|0.6667|null|0.5000|null|0.3333|null"]
    );
    // 400 + 300 vs 100 + 200 + 50 - 50.
    assert_eq!(
        last("order_revenue"),
        ["2025-01-01|false|700.0000|0.0000|300.0000|null|1.3333|null"]
    );
    // {A3, A2} vs {A1, A2}.
    assert_eq!(
        last("active_customers"),
        ["2025-01-01|false|2.0000|0.0000|2.0000|null|0.0000|null"]
    );
}

#[test]
fn trends_fiscal_years_start_in_april() {
    // FY2023 = 2023-04-01 .. 2024-03-31, FY2024 = 2024-04-01 .. 2025-03-31. L3 was created in
    // FY2023 but qualified in FY2024.
    let df = run(Grain::Year, 4);
    assert_eq!(
        rows(&series(&df, "new_leads"), &COLS),
        [
            "2023-04-01|true|3.0000|null|null|null|null|null",
            "2024-04-01|false|2.0000|3.0000|3.0000|-0.3333|-0.3333|null",
        ]
    );
    assert_eq!(
        rows(
            &series(&df, "qualified_leads"),
            &["period_start", "value", "pop_change"]
        ),
        ["2023-04-01|1.0000|null", "2024-04-01|2.0000|1.0000"]
    );
}

#[test]
fn trends_weekly_prior_year_is_52_weeks_back() {
    let df = run(Grain::Week, 1);
    assert_schema_and_key("trends", &df);
    let nl = series(&df, "new_leads");
    // The earliest data is L1 (Wednesday 2024-01-10, week of Monday 2024-01-08); as_of falls in
    // the week of Monday 2025-03-31: 52 + 12 weeks later, 65 periods.
    let weeks = rows(&nl, &["period_start"]);
    assert_eq!(weeks.first().unwrap(), "2024-01-08");
    assert_eq!(weeks.last().unwrap(), "2025-03-31");
    assert_eq!(weeks.len(), 65);
    // L4 (Friday 2025-01-10) is in the week of 2025-01-06, 52 weeks after 2024-01-08 (L1).
    assert_eq!(
        tail(&df, "new_leads", "2025-01-06")[0],
        "2025-01-06|true|1.0000|0.0000|1.0000|null|0.0000|1.0000"
    );
}
