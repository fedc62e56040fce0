//! Revenue, historical CLV and retention KPIs on a fixture small enough to check on paper.
//!
//! Default configuration (UTC), monthly grain, as of the end of 2024-03-31. Every timestamp is
//! at midnight UTC.
//!
//! | order | account | ordered_at | amount | paid_at         | due_at     | region | channel | note                                   |
//! |-------|---------|------------|--------|-----------------|------------|--------|---------|----------------------------------------|
//! | o1    | A1      | 2024-01-10 | 100    | 01-15           | 02-10      | EU     | online  |                                        |
//! | o2    | A1      | 2024-03-05 | 50     | -               | 03-20      | EU     | direct  | unpaid, overdue at as_of               |
//! | o3    | A2      | 2024-01-20 | 200    | 02-01           | 02-20      | US     | online  |                                        |
//! | o4    | A2      | 2024-02-10 | -200   | 02-10           | -          | US     | online  | refund (of o3)                         |
//! | o5    | A2      | 2024-03-15 | 80     | 04-05 (after)   | 04-15      | US     | direct  | unpaid at as_of, not overdue           |
//! | o6    | A3      | 2024-02-05 | 300    | 02-06           | 03-06      | EU     | partner |                                        |
//! | o7    | A3      | 2024-04-02 | 999    | 04-03           | -          | EU     | partner | after as_of: ignored                   |
//! | o8    | A4      | 2024-01-05 | 40     | 01-06           | -          | -      | online  |                                        |
//! | o9    | A4      | 2024-03-10 | 60     | 03-12           | -          | -      | online  | A4 returns after a gap in February     |
//! | o10   | A3      | 2024-03-20 | +30    | 03-20           | -          | EU     | partner | refund stored with a positive amount   |
//! | o11   | A5      | 2024-03-25 | 120    | 03-26           | 04-30      | US     | online  |                                        |
//! | o12   | A6      | 2024-01-25 | 70     | -               | 02-25      | EU     | direct  | unpaid, overdue; A6's first order      |
//! | o13   | A6      | 2024-02-20 | 90     | 02-22           | -          | EU     | online  | A6's first paid order                  |
//! | o14   | A7      | 2024-02-15 | -25    | 02-15           | -          | US     | online  | refund of an account without orders    |
//! | o15   | A1      | 2024-02-25 | 10     | 02-26           | -          | EU     | online  |                                        |
//!
//! First (non-refund) order period: A1, A2, A4, A6 January; A3 February; A5 March; A7 none.
//!
//! | period | orders          | revenue                        | paid             | unpaid        | overdue | refunds   | customers      | new            | recurring                  |
//! |--------|-----------------|--------------------------------|------------------|---------------|---------|-----------|----------------|----------------|----------------------------|
//! | Jan    | o1 o3 o8 o12: 4 | 100+200+40+70 = 410            | o1 o3 o8 = 340   | o12 = 70      | o12 70  | 0         | A1 A2 A4 A6: 4 | all 410        | 0                          |
//! | Feb    | o6 o13 o15: 3   | 300+90+10-200-25 = 175         | 400              | 0             | 0       | o4 o14 225| A1 A3 A6: 3    | A3 300         | 90+10-200-25 = -125        |
//! | Mar    | o2 o5 o9 o11: 4 | 50+80+60+120-30 = 280          | o9 o11 = 180     | o2 o5 = 130   | o2 50   | o10 30    | A1 A2 A4 A5: 4 | A5 120         | 50+80+60-30 = 160          |
//!
//! Leads: L1 A1 web converted 01-05; L2 A1 ads created earlier (2023-11-01) but converted 02-01;
//! L3 A2 events converted 04-10 (after as_of); L5 A3 events; L6 A4 ads; L7 A6 web; A5 has none.
//!
//! Retention: an account is acquired by its first paid non-refund order (cohort = that order's
//! month): January {A1, A2, A4}, February {A3, A6} (A6's January order is unpaid), March {A5}.
//! After that it is active in every month with a non-refund order, paid or not: A1 {Jan, Feb,
//! Mar}, A2 {Jan, Mar} (o5 unpaid at as_of), A3 {Feb}, A4 {Jan, Mar}, A5 {Mar}, A6 {Feb} (its
//! January order precedes its acquisition).

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::{Grain, Params, parse_as_of};
use polars::prelude::*;

use crate::fixtures::{canonical, compute_on, kpi, rows};

type OrderRow = (
    &'static str,
    &'static str,
    &'static str,
    f64,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    bool,
);

#[rustfmt::skip]
const ORDERS: [OrderRow; 15] = [
    // id, account, ordered_at, amount, paid_at, due_at, region, channel, is_refund
    ("o1", "A1", "2024-01-10", 100.0, Some("2024-01-15"), Some("2024-02-10"), Some("EU"), "online", false),
    ("o2", "A1", "2024-03-05", 50.0, None, Some("2024-03-20"), Some("EU"), "direct", false),
    ("o3", "A2", "2024-01-20", 200.0, Some("2024-02-01"), Some("2024-02-20"), Some("US"), "online", false),
    ("o4", "A2", "2024-02-10", -200.0, Some("2024-02-10"), None, Some("US"), "online", true),
    ("o5", "A2", "2024-03-15", 80.0, Some("2024-04-05"), Some("2024-04-15"), Some("US"), "direct", false),
    ("o6", "A3", "2024-02-05", 300.0, Some("2024-02-06"), Some("2024-03-06"), Some("EU"), "partner", false),
    ("o7", "A3", "2024-04-02", 999.0, Some("2024-04-03"), None, Some("EU"), "partner", false),
    ("o8", "A4", "2024-01-05", 40.0, Some("2024-01-06"), None, None, "online", false),
    ("o9", "A4", "2024-03-10", 60.0, Some("2024-03-12"), None, None, "online", false),
    ("o10", "A3", "2024-03-20", 30.0, Some("2024-03-20"), None, Some("EU"), "partner", true),
    ("o11", "A5", "2024-03-25", 120.0, Some("2024-03-26"), Some("2024-04-30"), Some("US"), "online", false),
    ("o12", "A6", "2024-01-25", 70.0, None, Some("2024-02-25"), Some("EU"), "direct", false),
    ("o13", "A6", "2024-02-20", 90.0, Some("2024-02-22"), None, Some("EU"), "online", false),
    ("o14", "A7", "2024-02-15", -25.0, Some("2024-02-15"), None, Some("US"), "online", true),
    ("o15", "A1", "2024-02-25", 10.0, Some("2024-02-26"), None, Some("EU"), "online", false),
];

fn orders_frame(rows: &[OrderRow]) -> DataFrame {
    let amounts: Vec<f64> = rows.iter().map(|r| r.3).collect();
    let orders = df!(
        "order_id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "account_id" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "ordered_at" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "amount" => amounts.clone(),
        "amount_base" => amounts,
        "paid_at" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        "due_at" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        "region" => rows.iter().map(|r| r.6).collect::<Vec<_>>(),
        "channel" => rows.iter().map(|r| r.7).collect::<Vec<_>>(),
        "is_refund" => rows.iter().map(|r| r.8).collect::<Vec<_>>(),
    )
    .unwrap();
    canonical("orders", orders)
}

fn tables() -> Tables {
    let leads = df!(
        "lead_id" => ["L1", "L2", "L3", "L5", "L6", "L7"],
        "created_at" => ["2023-12-01", "2023-11-01", "2024-01-01", "2024-01-10", "2023-12-15", "2024-01-05"],
        "source" => ["web", "ads", "events", "events", "ads", "web"],
        "converted_at" => ["2024-01-05", "2024-02-01", "2024-04-10", "2024-01-31", "2024-01-02", "2024-01-20"],
        "account_id" => ["A1", "A1", "A2", "A3", "A4", "A6"],
    )
    .unwrap();
    Tables::from_frames(vec![
        ("orders", orders_frame(&ORDERS)),
        ("leads", canonical("leads", leads)),
    ])
}

fn params_at(as_of: &str, grain: Grain) -> Params {
    let cfg = Config::default();
    Params::new(parse_as_of(as_of, cfg.tz()).unwrap(), grain, cfg)
}

fn params(grain: Grain) -> Params {
    params_at("2024-03-31", grain)
}

fn run_at(name: &str, p: Params, engine: Engine) -> DataFrame {
    compute_on(tables(), p, vec![kpi(name)], engine).remove(0)
}

fn run(name: &str) -> DataFrame {
    run_at(name, params(Grain::Month), Engine::InMemory)
}

const KPIS: [&str; 4] = ["revenue", "clv_historical", "clv_segments", "retention"];

const REVENUE_COLS: [&str; 14] = [
    "period_start",
    "dimension",
    "dimension_value",
    "orders",
    "revenue",
    "paid",
    "unpaid",
    "overdue",
    "refunds",
    "refunded",
    "customers",
    "revenue_per_customer",
    "new_customer_revenue",
    "recurring_revenue",
];

/// This file's fixture and parameters, for the catalog-wide properties (`catalog.rs`).
pub(crate) fn hand_fixture() -> (Tables, Params) {
    (tables(), params(Grain::Month))
}

#[test]
fn revenue_per_period_region_and_channel() {
    let df = run("revenue");
    assert!(rows(&df, &["as_of"]).iter().all(|r| r == "2024-03-31"));
    assert_eq!(
        rows(&df, &REVENUE_COLS),
        [
            // period|dim|value|orders|revenue|paid|unpaid|overdue|refunds|refunded|customers|per customer|new|recurring
            "2024-01-01|all|null|4|410.0000|340.0000|70.0000|70.0000|0|0.0000|4|102.5000|410.0000|0.0000",
            // o12, unpaid and due 02-25.
            "2024-01-01|channel|direct|1|70.0000|0.0000|70.0000|70.0000|0|0.0000|1|70.0000|70.0000|0.0000",
            "2024-01-01|channel|online|3|340.0000|340.0000|0.0000|0.0000|0|0.0000|3|113.3333|340.0000|0.0000",
            // o8 has no region: its own row, apart from `all`.
            "2024-01-01|region|null|1|40.0000|40.0000|0.0000|0.0000|0|0.0000|1|40.0000|40.0000|0.0000",
            "2024-01-01|region|EU|2|170.0000|100.0000|70.0000|70.0000|0|0.0000|2|85.0000|170.0000|0.0000",
            "2024-01-01|region|US|1|200.0000|200.0000|0.0000|0.0000|0|0.0000|1|200.0000|200.0000|0.0000",
            // Refunds o4 (-200) and o14 (-25) are not orders; only A3 (o6) is new in February.
            "2024-02-01|all|null|3|175.0000|400.0000|0.0000|0.0000|2|225.0000|3|58.3333|300.0000|-125.0000",
            "2024-02-01|channel|online|2|-125.0000|100.0000|0.0000|0.0000|2|225.0000|2|-62.5000|0.0000|-125.0000",
            "2024-02-01|channel|partner|1|300.0000|300.0000|0.0000|0.0000|0|0.0000|1|300.0000|300.0000|0.0000",
            "2024-02-01|region|EU|3|400.0000|400.0000|0.0000|0.0000|0|0.0000|3|133.3333|300.0000|100.0000",
            // Refunds only: no customer, so no revenue per customer (null, not inf).
            "2024-02-01|region|US|0|-225.0000|0.0000|0.0000|0.0000|2|225.0000|0|null|0.0000|-225.0000",
            // o2 overdue (due 03-20); o5 unpaid (paid 04-05, after as_of) but due 04-15.
            "2024-03-01|all|null|4|280.0000|180.0000|130.0000|50.0000|1|30.0000|4|70.0000|120.0000|160.0000",
            "2024-03-01|channel|direct|2|130.0000|0.0000|130.0000|50.0000|0|0.0000|2|65.0000|0.0000|130.0000",
            "2024-03-01|channel|online|2|180.0000|180.0000|0.0000|0.0000|0|0.0000|2|90.0000|120.0000|60.0000",
            // o10 is a refund stored as +30: it counts -30.
            "2024-03-01|channel|partner|0|-30.0000|0.0000|0.0000|0.0000|1|30.0000|0|null|0.0000|-30.0000",
            "2024-03-01|region|null|1|60.0000|60.0000|0.0000|0.0000|0|0.0000|1|60.0000|0.0000|60.0000",
            "2024-03-01|region|EU|1|20.0000|0.0000|50.0000|50.0000|1|30.0000|1|20.0000|0.0000|20.0000",
            "2024-03-01|region|US|2|200.0000|120.0000|80.0000|0.0000|0|0.0000|2|100.0000|120.0000|80.0000",
            // o7 (April, after as_of) has no row.
        ]
    );
}

#[test]
fn revenue_at_a_later_as_of_sees_the_payment_and_the_april_order() {
    let df = run_at("revenue", params_at("2024-04-30", Grain::Month), Engine::InMemory);
    let all = df.lazy().filter(col("dimension").eq(lit("all"))).collect().unwrap();
    assert_eq!(
        rows(&all, &REVENUE_COLS),
        [
            "2024-01-01|all|null|4|410.0000|340.0000|70.0000|70.0000|0|0.0000|4|102.5000|410.0000|0.0000",
            "2024-02-01|all|null|3|175.0000|400.0000|0.0000|0.0000|2|225.0000|3|58.3333|300.0000|-125.0000",
            // o5 is paid now (04-05); o2 is still unpaid and overdue.
            "2024-03-01|all|null|4|280.0000|260.0000|50.0000|50.0000|1|30.0000|4|70.0000|120.0000|160.0000",
            // o7: A3's first order was in February, so it is recurring revenue.
            "2024-04-01|all|null|1|999.0000|999.0000|0.0000|0.0000|0|0.0000|1|999.0000|0.0000|999.0000",
        ]
    );
}

#[test]
fn revenue_at_quarter_grain_types_accounts_by_their_first_quarter() {
    let df = run_at("revenue", params(Grain::Quarter), Engine::InMemory);
    let all = df.lazy().filter(col("dimension").eq(lit("all"))).collect().unwrap();
    // Every account's first order is in Q1: all of Q1's revenue (410 + 175 + 280) is new, and
    // the refund of A7 (no order at all) is the only recurring revenue. 6 customers (A1-A6).
    assert_eq!(
        rows(&all, &REVENUE_COLS),
        ["2024-01-01|all|null|11|865.0000|920.0000|200.0000|120.0000|3|255.0000|6|144.1667|890.0000|-25.0000"]
    );
}

#[test]
fn revenue_periods_are_cut_in_the_configured_timezone() {
    // 2024-01-31T20:00Z is February 1 in Ho Chi Minh City (UTC+7); as of 2024-02-01 there, the
    // order was due at 2024-02-01T00:00Z, before as_of (2024-02-01T16:59:59.999999Z): overdue.
    let cfg = Config {
        timezone: "Asia/Ho_Chi_Minh".into(),
        ..Config::default()
    };
    let as_of = parse_as_of("2024-02-01", cfg.tz()).unwrap();
    let orders = df!(
        "order_id" => ["x1"],
        "account_id" => ["A1"],
        "ordered_at" => [1_706_731_200_000_000i64],
        "amount" => [10.0],
        "amount_base" => [10.0],
        "due_at" => [1_706_745_600_000_000i64],
    )
    .unwrap();
    let t = Tables::from_frames(vec![("orders", canonical("orders", orders))]);
    let out = compute_on(
        t,
        Params::new(as_of, Grain::Month, cfg),
        vec![kpi("revenue"), kpi("clv_historical")],
        Engine::InMemory,
    );
    assert_eq!(
        rows(
            &out[0],
            &[
                "as_of",
                "period_start",
                "dimension",
                "dimension_value",
                "orders",
                "overdue"
            ]
        ),
        [
            "2024-02-01|2024-02-01|all|null|1|10.0000",
            "2024-02-01|2024-02-01|channel|null|1|10.0000",
            "2024-02-01|2024-02-01|region|null|1|10.0000",
        ]
    );
    // Ordered 20:00Z, as_of 16:59:59.999999Z the next day: 20h59m59.999999s = 0.8750 days.
    assert_eq!(
        rows(&out[1], &["first_order_date", "cohort_start", "tenure_days", "source"]),
        ["2024-02-01|2024-02-01|0.8750|null"]
    );
}

#[test]
fn clv_historical_per_account() {
    let df = run("clv_historical");
    let cols = [
        "as_of",
        "account_id",
        "first_order_date",
        "last_order_date",
        "orders",
        "revenue",
        "mean_order_value",
        "tenure_days",
        "cohort_start",
        "source",
    ];
    assert_eq!(
        rows(&df, &cols),
        [
            // o1, o15, o2 = 160; tenure 01-10 -> 04-01 (the end of 03-31) = 82 days. L1 (web) was
            // converted before L2 (ads), although L2 was created first.
            "2024-03-31|A1|2024-01-10|2024-03-05|3|160.0000|53.3333|82.0000|2024-01-01|web",
            // o3 + o5 - o4 (refund) = 80, over 2 orders; L3 converted after as_of: no source.
            "2024-03-31|A2|2024-01-20|2024-03-15|2|80.0000|40.0000|72.0000|2024-01-01|null",
            // o7 (after as_of) is ignored; the +30 refund o10 counts -30; a refund is no order.
            "2024-03-31|A3|2024-02-05|2024-02-05|1|270.0000|270.0000|56.0000|2024-02-01|events",
            "2024-03-31|A4|2024-01-05|2024-03-10|2|100.0000|50.0000|87.0000|2024-01-01|ads",
            "2024-03-31|A5|2024-03-25|2024-03-25|1|120.0000|120.0000|7.0000|2024-03-01|null",
            // Its first order (o12) is unpaid, but it is its first order.
            "2024-03-31|A6|2024-01-25|2024-02-20|2|160.0000|80.0000|67.0000|2024-01-01|web",
            // A7 has only a refund: left out.
        ]
    );
}

#[test]
fn clv_source_ties_break_on_created_at_then_lead_id() {
    // B1: both leads converted at the same instant; Lz was created first. B2: same conversion
    // and creation; La has the smaller lead_id. Listed in the opposite order, in both engines.
    let leads = df!(
        "lead_id" => ["Ly", "Lz", "Lb", "La"],
        "created_at" => ["2024-01-10", "2024-01-05", "2024-01-05", "2024-01-05"],
        "source" => ["ads", "web", "ads", "events"],
        "converted_at" => ["2024-02-01", "2024-02-01", "2024-02-01", "2024-02-01"],
        "account_id" => ["B1", "B1", "B2", "B2"],
    )
    .unwrap();
    let orders = df!(
        "order_id" => ["x1", "x2"],
        "account_id" => ["B1", "B2"],
        "ordered_at" => ["2024-02-10", "2024-02-11"],
        "amount" => [10.0, 20.0],
        "amount_base" => [10.0, 20.0],
    )
    .unwrap();
    for engine in [Engine::InMemory, Engine::Streaming] {
        let t = Tables::from_frames(vec![
            ("orders", canonical("orders", orders.clone())),
            ("leads", canonical("leads", leads.clone())),
        ]);
        let out = compute_on(t, params(Grain::Month), vec![kpi("clv_historical")], engine);
        assert_eq!(
            rows(&out[0], &["account_id", "source"]),
            ["B1|web", "B2|events"],
            "{engine:?}"
        );
    }
}

#[test]
fn clv_segments_by_cohort_and_source() {
    let df = run("clv_segments");
    let cols = [
        "as_of",
        "dimension",
        "dimension_value",
        "customers",
        "mean_clv",
        "median_clv",
        "total_revenue",
    ];
    // Revenues: A1 160, A2 80, A3 270, A4 100, A5 120, A6 160.
    assert_eq!(
        rows(&df, &cols),
        [
            // 890 / 6; median of 80 100 120 160 160 270 = (120 + 160) / 2.
            "2024-03-31|all|null|6|148.3333|140.0000|890.0000",
            // A1 A2 A4 A6: 500 / 4; median (100 + 160) / 2.
            "2024-03-31|cohort_start|2024-01-01|4|125.0000|130.0000|500.0000",
            "2024-03-31|cohort_start|2024-02-01|1|270.0000|270.0000|270.0000",
            "2024-03-31|cohort_start|2024-03-01|1|120.0000|120.0000|120.0000",
            // A2 and A5 have no converted lead at as_of.
            "2024-03-31|source|null|2|100.0000|100.0000|200.0000",
            "2024-03-31|source|ads|1|100.0000|100.0000|100.0000",
            "2024-03-31|source|events|1|270.0000|270.0000|270.0000",
            "2024-03-31|source|web|2|160.0000|160.0000|320.0000",
        ]
    );
}

const RETENTION_COLS: [&str; 9] = [
    "as_of",
    "cohort_start",
    "k",
    "period_start",
    "cohort_size",
    "active",
    "retention_rate",
    "churned",
    "churn_rate",
];

#[test]
fn retention_by_first_paid_order_cohort() {
    let df = run("retention");
    assert_eq!(
        rows(&df, &RETENTION_COLS),
        [
            // January: A1 A2 A4. February: only A1 (A2 and A4 churn, 2 of 3). March: A2 and A4
            // return after their gap (A2's order is not paid yet: it still counts as buying), A1
            // stays: 3 active, nobody churned (0 of the 1 active in February).
            "2024-03-31|2024-01-01|0|2024-01-01|3|3|1.0000|null|null",
            "2024-03-31|2024-01-01|1|2024-02-01|3|1|0.3333|2|0.6667",
            "2024-03-31|2024-01-01|2|2024-03-01|3|3|1.0000|0|0.0000",
            // February: A3, and A6 (its January order is unpaid). Neither pays in March (o10 is a
            // refund).
            "2024-03-31|2024-02-01|0|2024-02-01|2|2|1.0000|null|null",
            "2024-03-31|2024-02-01|1|2024-03-01|2|0|0.0000|2|1.0000",
            // March: A5. A2 is not acquired in March: it was in January.
            "2024-03-31|2024-03-01|0|2024-03-01|1|1|1.0000|null|null",
        ]
    );
}

#[test]
fn retention_cells_of_an_unfinished_period_are_null() {
    // As of 2024-03-28 March has not ended: its cells are only partly observable. A5's cohort
    // (March) exists, with its size so far, but nothing else is known yet.
    let df = run_at("retention", params_at("2024-03-28", Grain::Month), Engine::InMemory);
    assert_eq!(
        rows(&df, &RETENTION_COLS),
        [
            "2024-03-28|2024-01-01|0|2024-01-01|3|3|1.0000|null|null",
            "2024-03-28|2024-01-01|1|2024-02-01|3|1|0.3333|2|0.6667",
            "2024-03-28|2024-01-01|2|2024-03-01|3|null|null|null|null",
            "2024-03-28|2024-02-01|0|2024-02-01|2|2|1.0000|null|null",
            "2024-03-28|2024-02-01|1|2024-03-01|2|null|null|null|null",
            "2024-03-28|2024-03-01|0|2024-03-01|1|null|null|null|null",
        ]
    );
    // An RFC 3339 as_of one microsecond before April is still in March; at April's first
    // instant March is complete and April is not.
    let before = run_at(
        "retention",
        params_at("2024-03-31T23:59:59.999998Z", Grain::Month),
        Engine::InMemory,
    );
    let k0 = |df: &DataFrame| {
        rows(
            &df.clone()
                .lazy()
                .filter(col("cohort_start").cast(DataType::String).eq(lit("2024-03-01")))
                .collect()
                .unwrap(),
            &["k", "active"],
        )
    };
    assert_eq!(k0(&before), ["0|null"]);
    let after = run_at(
        "retention",
        params_at("2024-04-01T00:00:00Z", Grain::Month),
        Engine::InMemory,
    );
    assert_eq!(k0(&after), ["0|1", "1|null"]);
}

#[test]
fn retention_later_as_of_with_a_zero_churn_denominator() {
    // As of 2024-04-30, o5 (A2, March) is paid and o7 (A3, April) exists and is paid.
    // Activity: A1 {Jan, Feb, Mar}, A2 {Jan, Mar}, A3 {Feb, Apr}, A4 {Jan, Mar}, A5 {Mar},
    // A6 {Feb}. January cohort in April: nobody of the 3 active in March orders: 3 churn.
    let df = run_at("retention", params_at("2024-04-30", Grain::Month), Engine::InMemory);
    assert_eq!(
        rows(&df, &RETENTION_COLS),
        [
            "2024-04-30|2024-01-01|0|2024-01-01|3|3|1.0000|null|null",
            "2024-04-30|2024-01-01|1|2024-02-01|3|1|0.3333|2|0.6667",
            "2024-04-30|2024-01-01|2|2024-03-01|3|3|1.0000|0|0.0000",
            "2024-04-30|2024-01-01|3|2024-04-01|3|0|0.0000|3|1.0000",
            "2024-04-30|2024-02-01|0|2024-02-01|2|2|1.0000|null|null",
            "2024-04-30|2024-02-01|1|2024-03-01|2|0|0.0000|2|1.0000",
            // Nobody was active in March: A3's return churns nobody, churn rate 0 / 0 = null.
            "2024-04-30|2024-02-01|2|2024-04-01|2|1|0.5000|0|null",
            "2024-04-30|2024-03-01|0|2024-03-01|1|1|1.0000|null|null",
            "2024-04-30|2024-03-01|1|2024-04-01|1|0|0.0000|1|1.0000",
        ]
    );
}

#[test]
fn retention_at_quarter_grain() {
    // Q1: every account with a paid order (A1-A6) is acquired in it; Q2 has not ended on 04-30.
    let df = run_at("retention", params_at("2024-04-30", Grain::Quarter), Engine::InMemory);
    assert_eq!(
        rows(&df, &RETENTION_COLS),
        [
            "2024-04-30|2024-01-01|0|2024-01-01|6|6|1.0000|null|null",
            "2024-04-30|2024-01-01|1|2024-04-01|6|null|null|null|null",
        ]
    );
}

#[test]
fn keys_are_unique_and_retention_periods_are_consecutive() {
    for grain in [Grain::Week, Grain::Month, Grain::Quarter, Grain::Year] {
        for name in KPIS {
            let df = run_at(name, params_at("2024-04-30", grain), Engine::InMemory);
            let key: Vec<String> = kpi(name).key.iter().map(|k| k.to_string()).collect();
            let distinct = df
                .unique_stable(Some(&key), UniqueKeepStrategy::Any, None)
                .unwrap()
                .height();
            assert_eq!(distinct, df.height(), "{name} at grain {grain:?}");
            if name == "retention" {
                // Per cohort: k = 0..n-1, k = 0 is the cohort's own period, and the last period
                // is as_of's (2024-04-30's week, month, quarter or year).
                let per = df
                    .clone()
                    .lazy()
                    .group_by([col("cohort_start")])
                    .agg([
                        len().alias("n"),
                        col("k").max().cast(DataType::UInt32).alias("max_k"),
                        col("period_start")
                            .filter(col("k").eq(lit(0u32)))
                            .first()
                            .eq(col("cohort_start").first())
                            .alias("k0_is_cohort"),
                        col("period_start").max().alias("last"),
                    ])
                    .collect()
                    .unwrap();
                let last = match grain {
                    Grain::Week => "2024-04-29",
                    Grain::Month | Grain::Quarter => "2024-04-01",
                    Grain::Year => "2024-01-01",
                };
                for r in rows(&per, &["n", "max_k", "k0_is_cohort", "last"]) {
                    let v: Vec<&str> = r.split('|').collect();
                    assert_eq!(
                        v[0].parse::<u32>().unwrap(),
                        v[1].parse::<u32>().unwrap() + 1,
                        "{grain:?}: {r}"
                    );
                    assert_eq!(v[2], "true", "{grain:?}: {r}");
                    assert_eq!(v[3], last, "{grain:?}: {r}");
                }
            }
        }
    }
}

#[test]
fn revenue_rows_add_up() {
    // new + recurring = revenue and paid + unpaid = revenue + refunded on every row, at every
    // grain (an invariant of the definitions, on top of the hand-computed numbers above).
    for grain in [Grain::Week, Grain::Month, Grain::Quarter, Grain::Year] {
        let df = run_at("revenue", params_at("2024-04-30", grain), Engine::InMemory);
        let bad = df
            .lazy()
            .filter(
                (col("new_customer_revenue") + col("recurring_revenue") - col("revenue"))
                    .abs()
                    .gt(lit(1e-9))
                    .or((col("paid") + col("unpaid") - col("revenue") - col("refunded"))
                        .abs()
                        .gt(lit(1e-9))),
            )
            .collect()
            .unwrap();
        assert_eq!(bad.height(), 0, "{grain:?}: {bad}");
    }
}

/// Accounts X1, X2 and X3 have revenues 1e16, 1 and 1: in floating point the total depends on
/// the order of the additions ((1e16 + 1) + 1 is 1e16, 1e16 + (1 + 1) is 1e16 + 2). Given in
/// any row order, the segments' totals and means are the same to the bit.
#[test]
fn clv_segments_do_not_depend_on_row_order() {
    let segments = |order: [usize; 3]| {
        #[rustfmt::skip]
        let all: [OrderRow; 3] = [
            ("x1", "X1", "2024-01-10", 1e16, None, None, None, "online", false),
            ("x2", "X2", "2024-01-11", 1.0, None, None, None, "online", false),
            ("x3", "X3", "2024-01-12", 1.0, None, None, None, "online", false),
        ];
        let tables = Tables::from_frames(vec![("orders", orders_frame(&order.map(|i| all[i])))]);
        let df = compute_on(
            tables,
            params(Grain::Month),
            vec![kpi("clv_segments")],
            Engine::InMemory,
        )
        .remove(0);
        ["mean_clv", "total_revenue"]
            .iter()
            .flat_map(|c| {
                df.column(c)
                    .unwrap()
                    .f64()
                    .unwrap()
                    .iter()
                    .map(|v| v.map(f64::to_bits))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let forward = segments([0, 1, 2]);
    assert!(!forward.is_empty());
    assert_eq!(segments([2, 1, 0]), forward);
    assert_eq!(segments([1, 2, 0]), forward);
    assert_eq!(segments([1, 0, 2]), forward);
}
