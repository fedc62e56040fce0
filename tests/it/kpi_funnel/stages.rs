//! stage_funnel, stage_duration and stage_duration_survival on a fixture small enough to check
//! on paper, plus schema, key and property checks.

use crm_kpi::config::Config;
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::run::compute;
use crm_kpi::kpi::{self, Grain, Params};
use crm_kpi::schema;
use polars::prelude::*;
use proptest::prelude::*;

const DAY_US: i64 = 86_400_000_000;
/// 2024-01-01T00:00:00Z: day 0 of the fixture.
const BASE_US: i64 = 1_704_067_200_000_000;
/// as_of = 2024-04-01T00:00:00Z = day 91 (2024 is a leap year).
const AS_OF_DAY: i64 = 91;

fn at(day: i64) -> i64 {
    BASE_US + day * DAY_US
}

/// A canonical frame of `table` from some of its columns; timestamps may be given as µs since
/// the epoch (i64). The other columns are nulls of the canonical type.
fn canonical(table: &str, given: Vec<Column>) -> DataFrame {
    let def = schema::table(table).expect("canonical table");
    let height = given.first().map_or(0, |c| c.len());
    let cols = def
        .polars_schema()
        .iter()
        .map(|(name, dtype)| match given.iter().find(|c| c.name() == name) {
            Some(c) => c.strict_cast(dtype).expect("castable fixture column"),
            None => Column::full_null(name.clone(), height, dtype),
        })
        .collect();
    DataFrame::new(height, cols).expect("fixture frame")
}

/// A deal: (id, owner, campaign, created day, status, closed day).
type Deal<'a> = (&'a str, &'a str, Option<&'a str>, i64, &'a str, Option<i64>);

fn opportunities(deals: &[Deal]) -> DataFrame {
    canonical(
        "opportunities",
        vec![
            Column::new("opportunity_id".into(), deals.iter().map(|d| d.0).collect::<Vec<_>>()),
            Column::new(
                "account_id".into(),
                deals.iter().map(|d| format!("acc-{}", d.0)).collect::<Vec<_>>(),
            ),
            Column::new("owner_id".into(), deals.iter().map(|d| d.1).collect::<Vec<_>>()),
            Column::new("campaign_id".into(), deals.iter().map(|d| d.2).collect::<Vec<_>>()),
            Column::new("created_at".into(), deals.iter().map(|d| at(d.3)).collect::<Vec<_>>()),
            Column::new("amount".into(), vec![1000.0; deals.len()]),
            Column::new("amount_base".into(), vec![1000.0; deals.len()]),
            Column::new("currency".into(), vec!["USD"; deals.len()]),
            Column::new("status".into(), deals.iter().map(|d| d.4).collect::<Vec<_>>()),
            Column::new(
                "closed_at".into(),
                deals.iter().map(|d| d.5.map(at)).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// Stage events: (deal, stage, day).
fn stage_events(events: &[(&str, &str, i64)]) -> DataFrame {
    canonical(
        "stage_events",
        vec![
            Column::new("opportunity_id".into(), events.iter().map(|e| e.0).collect::<Vec<_>>()),
            Column::new("stage".into(), events.iter().map(|e| e.1).collect::<Vec<_>>()),
            Column::new("entered_at".into(), events.iter().map(|e| at(e.2)).collect::<Vec<_>>()),
        ],
    )
}

/// The fixture (days since 2024-01-01, as_of = day 91):
/// - d1 ann/c1: every stage in order, won on day 10;
/// - d2 ann/c1: skips qualification, lost on day 8;
/// - d3 bob/(no campaign): back from proposal to qualification (re-entry), won on day 25;
/// - d4 bob/c2 (created in February): still in qualification at as_of (censored);
/// - d5 ann/c2 (February): skips prospecting, won on day 50;
/// - d6 bob/c1 (created March 1): its only event is after as_of;
/// - d7 cid/c1: created after as_of.
fn fixture() -> Tables {
    let opps = opportunities(&[
        ("d1", "ann", Some("c1"), 0, "won", Some(10)),
        ("d2", "ann", Some("c1"), 1, "lost", Some(8)),
        ("d3", "bob", None, 3, "won", Some(25)),
        ("d4", "bob", Some("c2"), 31, "open", None),
        ("d5", "ann", Some("c2"), 35, "won", Some(50)),
        ("d6", "bob", Some("c1"), 60, "open", None),
        ("d7", "cid", Some("c1"), 100, "open", None),
    ]);
    let events = stage_events(&[
        ("d1", "prospecting", 0),
        ("d1", "qualification", 2),
        ("d1", "proposal", 5),
        ("d1", "negotiation", 9),
        ("d1", "closed_won", 10),
        ("d2", "prospecting", 1),
        ("d2", "proposal", 4),
        ("d2", "closed_lost", 8),
        ("d3", "prospecting", 3),
        ("d3", "qualification", 5),
        ("d3", "proposal", 7),
        ("d3", "qualification", 10),
        ("d3", "proposal", 14),
        ("d3", "negotiation", 20),
        ("d3", "closed_won", 25),
        ("d4", "prospecting", 31),
        ("d4", "qualification", 40),
        ("d5", "qualification", 35),
        ("d5", "negotiation", 45),
        ("d5", "closed_won", 50),
        ("d6", "prospecting", 95),
        ("d7", "prospecting", 100),
    ]);
    Tables::from_frames(vec![("opportunities", opps), ("stage_events", events)])
}

fn run(tables: &Tables, as_of_us: i64, name: &str) -> DataFrame {
    let kpi = kpi::find(name).expect("registered KPI");
    let params = Params::new(as_of_us, Grain::Month, Config::default());
    let (mut out, _) = compute(tables, &params, vec![kpi], Engine::InMemory).expect("KPI computes");
    out.remove(0).df
}

fn rows(df: &DataFrame, filter: Expr) -> DataFrame {
    df.clone().lazy().filter(filter).collect().unwrap()
}

fn dim(dimension: &str, value: Option<&str>) -> Expr {
    let d = col("dimension").eq(lit(dimension));
    match value {
        Some(v) => d.and(col("dimension_value").eq(lit(v))),
        None => d.and(col("dimension_value").is_null()),
    }
}

fn u32s(df: &DataFrame, c: &str) -> Vec<Option<u32>> {
    df.column(c)
        .unwrap()
        .cast(&DataType::UInt32)
        .unwrap()
        .u32()
        .unwrap()
        .to_vec()
}

fn f64s(df: &DataFrame, c: &str) -> Vec<Option<f64>> {
    df.column(c).unwrap().f64().unwrap().to_vec()
}

fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn assert_close(actual: &[Option<f64>], expected: &[Option<f64>]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        match (a, e) {
            (Some(a), Some(e)) => assert!((a - e).abs() < 1e-9, "{actual:?} vs {expected:?}"),
            _ => assert_eq!(a, e, "{actual:?} vs {expected:?}"),
        }
    }
}

const FUNNEL_STAGES: [&str; 5] = ["prospecting", "qualification", "proposal", "negotiation", "closed_won"];

/// reached, next_stage_rate and from_first_rate of one funnel (mode × dimension value), in
/// stage order.
type Funnel = (Vec<Option<u32>>, Vec<Option<f64>>, Vec<Option<f64>>);

fn funnel(df: &DataFrame, mode: &str, dimension: &str, value: Option<&str>) -> Funnel {
    let f = rows(df, col("mode").eq(lit(mode)).and(dim(dimension, value)));
    let stages: Vec<_> = strs(&f, "stage").into_iter().flatten().collect();
    assert_eq!(stages, FUNNEL_STAGES, "{mode} {dimension} {value:?}");
    assert_eq!(u32s(&f, "stage_index"), [0, 1, 2, 3, 4].map(Some));
    (
        u32s(&f, "reached"),
        f64s(&f, "next_stage_rate"),
        f64s(&f, "from_first_rate"),
    )
}

/// This file's fixture and parameters, for the catalog-wide properties (`catalog.rs`).
pub(crate) fn hand_fixture() -> (Tables, Params) {
    (fixture(), Params::new(at(AS_OF_DAY), Grain::Month, Config::default()))
}

#[test]
fn stage_funnel_by_hand() {
    let df = run(&fixture(), at(AS_OF_DAY), "stage_funnel");
    // any: prospecting d1 d2 d3 d4 | qualification d1 d3 d4 d5 | proposal d1 d2 d3 |
    // negotiation d1 d3 d5 | won d1 d3 d5. d6's event is after as_of, d7 is not created yet.
    let (reached, next, first) = funnel(&df, "any", "all", None);
    assert_eq!(reached, [4, 4, 3, 3, 3].map(Some));
    assert_close(&next, &[Some(1.0), Some(0.75), Some(1.0), Some(1.0), None]);
    assert_close(&first, &[Some(1.0), Some(1.0), Some(0.75), Some(0.75), Some(0.75)]);
    // ordered: d5 (no prospecting) and d2 (no qualification) drop out where they skipped.
    let (reached, next, first) = funnel(&df, "ordered", "all", None);
    assert_eq!(reached, [4, 3, 2, 2, 2].map(Some));
    assert_close(&next, &[Some(0.75), Some(2.0 / 3.0), Some(1.0), Some(1.0), None]);
    assert_close(&first, &[Some(1.0), Some(0.75), Some(0.5), Some(0.5), Some(0.5)]);

    assert_eq!(funnel(&df, "any", "owner_id", Some("ann")).0, [2, 2, 2, 2, 2].map(Some));
    assert_eq!(
        funnel(&df, "ordered", "owner_id", Some("ann")).0,
        [2, 1, 1, 1, 1].map(Some)
    );
    assert_eq!(
        funnel(&df, "ordered", "owner_id", Some("bob")).0,
        [2, 2, 1, 1, 1].map(Some)
    );
    assert_eq!(funnel(&df, "any", "campaign_id", None).0, [1, 1, 1, 1, 1].map(Some)); // d3
    assert_eq!(
        funnel(&df, "any", "campaign_id", Some("c2")).0,
        [1, 2, 0, 1, 1].map(Some)
    ); // d4 d5
    assert_eq!(
        funnel(&df, "any", "created_period", Some("2024-01-01")).0,
        [3, 2, 3, 2, 2].map(Some)
    );
    assert_eq!(
        funnel(&df, "ordered", "created_period", Some("2024-02-01")).0,
        [1, 1, 0, 0, 0].map(Some)
    );
    // March: d6 only, which reached nothing by as_of: zeros and null rates.
    let (reached, next, first) = funnel(&df, "any", "created_period", Some("2024-03-01"));
    assert_eq!(reached, [0; 5].map(Some));
    assert_eq!((next, first), (vec![None; 5], vec![None; 5]));
    assert!(rows(&df, col("dimension_value").eq(lit("cid"))).height() == 0);
    // 2 modes × (all + 2 owners + 3 campaigns incl. none + 3 created periods) × 5 stages.
    assert_eq!(df.height(), 2 * 9 * 5);
}

#[test]
fn stage_duration_by_hand() {
    let df = run(&fixture(), at(AS_OF_DAY), "stage_duration");
    let all = rows(&df, dim("all", None));
    assert_eq!(
        strs(&all, "stage").into_iter().flatten().collect::<Vec<_>>(),
        ["negotiation", "proposal", "prospecting", "qualification"]
    );
    // negotiation 1 5 5 | proposal 4 4 3 6 | prospecting 2 3 2 9 |
    // qualification 3, 2 and 4 (d3's two visits), 10, and d4's censored at 91 - 40 = 51 days.
    assert_eq!(u32s(&all, "visits"), [3, 4, 4, 5].map(Some));
    assert_eq!(u32s(&all, "completed"), [3, 4, 4, 4].map(Some));
    assert_eq!(u32s(&all, "censored"), [0, 0, 0, 1].map(Some));
    assert_close(
        &f64s(&all, "mean_days"),
        &[Some(11.0 / 3.0), Some(4.25), Some(4.0), Some(4.75)],
    );
    assert_close(
        &f64s(&all, "median_days"),
        &[Some(5.0), Some(4.0), Some(2.5), Some(3.5)],
    );
    // prospecting [2, 2, 3, 9]: linear p25 at 0.75 -> 2, p75 at 2.25 -> 4.5, p90 at 2.7 -> 7.2.
    assert_close(&f64s(&all, "p25_days")[2..3], &[Some(2.0)]);
    assert_close(&f64s(&all, "p75_days")[2..3], &[Some(4.5)]);
    assert_close(&f64s(&all, "p90_days")[2..3], &[Some(7.2)]);
    // KM (lifelines agrees): prospecting S = 0.5 at 2 -> median 2, CI (2, 9); qualification
    // S = .8 .6 .4 .2 at 2 3 4 10 -> median 4, CI (2, never).
    assert_close(
        &f64s(&all, "km_median_days"),
        &[Some(5.0), Some(4.0), Some(2.0), Some(4.0)],
    );
    assert_close(&f64s(&all, "km_median_ci_low")[2..], &[Some(2.0), Some(2.0)]);
    assert_close(&f64s(&all, "km_median_ci_high")[2..], &[Some(9.0), None]);

    let bob = rows(
        &df,
        dim("owner_id", Some("bob")).and(col("stage").eq(lit("qualification"))),
    );
    assert_eq!(
        (u32s(&bob, "visits"), u32s(&bob, "censored")),
        (vec![Some(3)], vec![Some(1)])
    );
    assert_close(&f64s(&bob, "mean_days"), &[Some(3.0)]);
    assert_close(&f64s(&bob, "km_median_days"), &[Some(4.0)]);
}

#[test]
fn stage_duration_survival_by_hand() {
    let df = run(&fixture(), at(AS_OF_DAY), "stage_duration_survival");
    let q = rows(&df, dim("all", None).and(col("stage").eq(lit("qualification"))));
    assert_close(&f64s(&q, "t_days"), &[2.0, 3.0, 4.0, 10.0, 51.0].map(Some));
    assert_eq!(u32s(&q, "at_risk"), [5, 4, 3, 2, 1].map(Some));
    assert_eq!(u32s(&q, "events"), [1, 1, 1, 1, 0].map(Some));
    assert_eq!(u32s(&q, "censored"), [0, 0, 0, 0, 1].map(Some));
    assert_close(&f64s(&q, "survival"), &[0.8, 0.6, 0.4, 0.2, 0.2].map(Some));
    // lifelines 0.30.3, KaplanMeierFitter().fit([3, 2, 4, 51, 10], [1, 1, 1, 0, 1]).
    let (lo, hi) = (f64s(&q, "ci_low"), f64s(&q, "ci_high"));
    assert!((lo[0].unwrap() - 0.20380926326763904).abs() < 1e-9 && (hi[0].unwrap() - 0.9691797888667427).abs() < 1e-9);
    assert!((lo[4].unwrap() - 0.008369039906653107).abs() < 1e-9 && (hi[4].unwrap() - 0.581853026048367).abs() < 1e-9);

    let p = rows(&df, dim("all", None).and(col("stage").eq(lit("prospecting"))));
    assert_close(&f64s(&p, "t_days"), &[2.0, 3.0, 9.0].map(Some));
    assert_eq!(u32s(&p, "events"), [2, 1, 1].map(Some));
    assert_close(&f64s(&p, "survival"), &[0.5, 0.25, 0.0].map(Some));
    let ann = rows(
        &df,
        dim("owner_id", Some("ann")).and(col("stage").eq(lit("negotiation"))),
    );
    assert_close(&f64s(&ann, "survival"), &[0.5, 0.0].map(Some)); // d1 1 day, d5 5 days
}

const STAGES: [&str; 6] = [
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random event sequences: the ordered funnel never increases down the stages and never
    /// exceeds the `any` funnel; KM survival is non-increasing, in [0, 1], inside its band.
    #[test]
    fn funnel_and_survival_invariants(
        deals in prop::collection::vec(
            (0usize..3, prop::collection::vec((0usize..6, 0i64..200), 0..7)),
            1..7,
        ),
        as_of_hours in 0i64..1500,
    ) {
        let owners = ["ann", "bob", "cid"];
        let ids: Vec<String> = (0..deals.len()).map(|i| format!("d{i}")).collect();
        let opps: Vec<_> = deals.iter().zip(&ids).map(|((o, _), id)| (id.as_str(), owners[*o], Some("c1"), 0, "open", None)).collect();
        let mut events = Vec::new();
        for ((_, evs), id) in deals.iter().zip(&ids) {
            let mut hours = 0;
            for (stage, gap) in evs {
                hours += gap;
                events.push((id.clone(), STAGES[*stage], hours));
            }
        }
        let ev = canonical(
            "stage_events",
            vec![
                Column::new("opportunity_id".into(), events.iter().map(|e| e.0.as_str()).collect::<Vec<_>>()),
                Column::new("stage".into(), events.iter().map(|e| e.1).collect::<Vec<_>>()),
                Column::new("entered_at".into(), events.iter().map(|e| BASE_US + e.2 * 3_600_000_000).collect::<Vec<_>>()),
            ],
        );
        let tables = Tables::from_frames(vec![("opportunities", opportunities(&opps)), ("stage_events", ev)]);
        let as_of = BASE_US + as_of_hours * 3_600_000_000;

        let f = run(&tables, as_of, "stage_funnel");
        let groups = f.clone().lazy()
            .group_by_stable([col("dimension"), col("dimension_value")])
            .agg([
                col("reached").filter(col("mode").eq(lit("ordered"))).alias("ordered"),
                col("reached").filter(col("mode").eq(lit("any"))).alias("any"),
            ])
            .collect().unwrap();
        for r in 0..groups.height() {
            let get = |c: &str| -> Vec<u32> {
                let s = groups.column(c).unwrap().list().unwrap().get_as_series(r).unwrap();
                let s = s.cast(&DataType::UInt32).unwrap();
                s.u32().unwrap().into_no_null_iter().collect()
            };
            let (ordered, any) = (get("ordered"), get("any"));
            prop_assert_eq!(ordered.len(), 5);
            prop_assert!(ordered.windows(2).all(|w| w[1] <= w[0]), "ordered funnel increases: {:?}", ordered);
            prop_assert!(ordered.iter().zip(&any).all(|(o, a)| o <= a), "{:?} > {:?}", ordered, any);
        }

        let s = run(&tables, as_of, "stage_duration_survival");
        let groups = s.clone().lazy()
            .group_by_stable([col("stage"), col("dimension"), col("dimension_value")])
            .agg([col("survival"), col("ci_low"), col("ci_high")])
            .collect().unwrap();
        for r in 0..groups.height() {
            let get = |c: &str| -> Vec<f64> {
                let s = groups.column(c).unwrap().list().unwrap().get_as_series(r).unwrap();
                s.f64().unwrap().into_no_null_iter().collect()
            };
            let (sv, lo, hi) = (get("survival"), get("ci_low"), get("ci_high"));
            prop_assert!(sv.windows(2).all(|w| w[1] <= w[0] + 1e-12), "survival increases: {:?}", sv);
            for i in 0..sv.len() {
                prop_assert!((0.0..=1.0).contains(&sv[i]));
                prop_assert!(lo[i] <= sv[i] + 1e-12 && sv[i] <= hi[i] + 1e-12, "{} not in [{}, {}]", sv[i], lo[i], hi[i]);
            }
        }
    }
}
