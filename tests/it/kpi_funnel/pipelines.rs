//! Two pipelines with their own stages and probabilities, and a deal moving between them,
//! through the real commands (crm-kpi.toml `[[pipelines]]`, ingest, run), as of 2024-03-31
//! (month grain, UTC, dates at midnight; as_of ends at 2024-04-01 00:00).
//!
//! | pipeline | stages (probability)                                  |
//! |----------|-------------------------------------------------------|
//! | new      | lead 0.2, demo 0.5, won (won), lost (lost)            |
//! | renewal  | due 0.6, quoted 0.9, won (won), lost (lost)           |
//!
//! | deal | export pipeline | created | amount | stage events                      | at as_of            |
//! |------|-----------------|---------|--------|-----------------------------------|---------------------|
//! | N1   | new             | 01-01   | 1000   | lead 01-01, demo 01-11, won 02-01 | won 02-01           |
//! | N2   | new             | 01-05   | 2000   | lead 01-05, lost 01-25            | lost 01-25          |
//! | N3   | new             | 02-10   | 4000   | lead 02-10                        | open, new / lead    |
//! | R1   | renewal         | 01-10   | 3000   | due 01-10, quoted 02-09, won 03-10| won 03-10           |
//! | R2   | renewal         | 02-01   | 5000   | due 02-01                         | open, renewal / due |
//! | M1   | renewal         | 01-20   | 6000   | lead 01-20, demo 02-20, due 03-01 | open, renewal / due |
//!
//! M1 moved: its export names renewal, which has no `lead` or `demo`; those events are read as
//! the first pipeline that has them (new), so M1 is in new until 03-01, then in renewal.
//! "won" is a stage of both pipelines: each deal's won event is its own pipeline's.

use polars::prelude::*;

use crate::common::*;
use crate::fixtures::{read_output, rows};

const CONFIG: &str = r#"
stale_after_days = 40

[[pipelines]]
name = "new"
[[pipelines.stages]]
name = "lead"
probability = 0.2
[[pipelines.stages]]
name = "demo"
probability = 0.5
[[pipelines.stages]]
name = "won"
probability = 1.0
terminal = "won"
[[pipelines.stages]]
name = "lost"
probability = 0.0
terminal = "lost"

[[pipelines]]
name = "renewal"
[[pipelines.stages]]
name = "due"
probability = 0.6
[[pipelines.stages]]
name = "quoted"
probability = 0.9
[[pipelines.stages]]
name = "won"
probability = 1.0
terminal = "won"
[[pipelines.stages]]
name = "lost"
probability = 0.0
terminal = "lost"
"#;

const OPPS: &str = "\
opportunity_id,account_id,created_at,owner_id,amount,status,closed_at,stage,pipeline,expected_close_date
N1,A1,2024-01-01,R1,1000,won,2024-02-01,won,new,2024-02-15
N2,A1,2024-01-05,R1,2000,lost,2024-01-25,lost,new,
N3,A2,2024-02-10,R2,4000,open,,lead,new,2024-03-20
R1,A2,2024-01-10,R2,3000,won,2024-03-10,won,renewal,2024-03-31
R2,A3,2024-02-01,R1,5000,open,,due,renewal,2024-03-05
M1,A3,2024-01-20,R2,6000,open,,due,renewal,2024-03-25
";

/// Commit forecasts: R1's for February names no pipeline (all of them); R2's for March are per
/// pipeline, renewal revised on 03-02.
const FORECASTS: &str = "\
owner_id,period_start,grain,amount,category,submitted_at,pipeline
R1,2024-02-01,month,1200,commit,2024-02-01,
R2,2024-03-01,month,2000,commit,2024-03-01,renewal
R2,2024-03-01,month,2500,commit,2024-03-02,renewal
R2,2024-03-01,month,4000,commit,2024-03-01,new
";

const REPS: &str = "\
rep_id,name,team
R1,Rep One,east
R2,Rep Two,east
";

const EVENTS: &str = "\
opportunity_id,stage,entered_at
N1,lead,2024-01-01
N1,demo,2024-01-11
N1,won,2024-02-01
N2,lead,2024-01-05
N2,lost,2024-01-25
N3,lead,2024-02-10
R1,due,2024-01-10
R1,quoted,2024-02-09
R1,won,2024-03-10
R2,due,2024-02-01
M1,lead,2024-01-20
M1,demo,2024-02-20
M1,due,2024-03-01
";

struct Run {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
}

impl Run {
    fn new(as_of: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "crm-kpi.toml", CONFIG);
        write(d, "opportunities.csv", OPPS);
        write(d, "stage_events.csv", EVENTS);
        write(d, "forecasts.csv", FORECASTS);
        write(d, "reps.csv", REPS);
        let (store, out) = (d.join("store"), d.join("out"));
        let o = run_in(
            d,
            &[
                "ingest",
                "--store",
                s(&store),
                "opportunities.csv",
                "stage_events.csv",
                "forecasts.csv",
                "reps.csv",
            ],
        );
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        let kpis = "stage_funnel,stage_duration,pipeline_snapshot,win_rate,deal_snapshot,\
            forecast_vs_actual,open_deals_per_rep";
        let o = run_in(
            d,
            &[
                "run",
                "--store",
                s(&store),
                "--out",
                s(&out),
                "--as-of",
                as_of,
                "--kpi",
                kpis,
            ],
        );
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        Run { _dir: dir, out }
    }

    fn read(&self, kpi: &str, as_of: &str, filter: Expr, cols: &[&str]) -> Vec<String> {
        let df = read_output(&self.out, kpi, "month", as_of)
            .lazy()
            .filter(filter)
            .collect()
            .unwrap();
        rows(&df, cols)
    }
}

#[test]
fn each_pipeline_has_its_funnel_durations_and_weighted_snapshot() {
    let r = Run::new("2024-03-31");
    let all = |mode: &str| col("dimension").eq(lit("all")).and(col("mode").eq(lit(mode)));
    let cols = [
        "pipeline",
        "stage",
        "stage_index",
        "reached",
        "next_stage_rate",
        "from_first_rate",
    ];
    // new: lead N1 N2 N3 M1; demo N1 M1; won N1. renewal: due R1 R2 M1; quoted R1; won R1.
    let any = [
        "new|lead|0|4|0.5000|1.0000",
        "new|demo|1|2|0.5000|0.5000",
        "new|won|2|1|null|0.2500",
        "renewal|due|0|3|0.3333|1.0000",
        "renewal|quoted|1|1|1.0000|0.3333",
        "renewal|won|2|1|null|0.3333",
    ];
    assert_eq!(r.read("stage_funnel", "2024-03-31", all("any"), &cols), any);
    // Ordered: the same here (N1 and M1 entered lead before demo; R1 due before quoted).
    assert_eq!(r.read("stage_funnel", "2024-03-31", all("ordered"), &cols), any);

    // Visits: new/lead N1 10 d, N2 20 d, M1 31 d, N3 censored (51 d): Kaplan-Meier S(10) =
    // 3/4, S(20) = 3/4 x 2/3 = 1/2 -> median 20. new/demo N1 21 d, M1 10 d. renewal/due R1 30 d,
    // R2 censored (60 d), M1 censored (31 d): S(30) = 2/3, never 1/2. renewal/quoted R1 30 d.
    let cols = [
        "pipeline",
        "stage",
        "visits",
        "completed",
        "censored",
        "mean_days",
        "median_days",
        "km_median_days",
    ];
    assert_eq!(
        r.read("stage_duration", "2024-03-31", col("dimension").eq(lit("all")), &cols),
        [
            "new|demo|2|2|0|15.5000|15.5000|10.0000",
            "new|lead|4|3|1|20.3333|20.0000|20.0000",
            "renewal|due|3|1|2|30.0000|30.0000|null",
            "renewal|quoted|1|1|0|30.0000|30.0000|30.0000",
        ]
    );

    // Open deals at each month end, in the pipeline of their stage then, weighted by that
    // pipeline's probabilities. 01-31: M1 new/lead 6000 x 0.2, N1 new/demo 1000 x 0.5, R1
    // renewal/due 3000 x 0.6. 02-29: N3 new/lead, M1 new/demo, R2 renewal/due, R1 quoted 3000 x
    // 0.9. 03-31: N3 new/lead; R2 and M1 renewal/due 11000 x 0.6.
    let cols = [
        "snapshot_at",
        "pipeline",
        "stage",
        "open_deals",
        "amount",
        "weighted_amount",
    ];
    assert_eq!(
        r.read("pipeline_snapshot", "2024-03-31", lit(true), &cols),
        [
            "2024-01-31|new|demo|1|1000.0000|500.0000",
            "2024-01-31|new|lead|1|6000.0000|1200.0000",
            "2024-01-31|renewal|due|1|3000.0000|1800.0000",
            "2024-01-31|renewal|quoted|0|0.0000|0.0000",
            "2024-02-29|new|demo|1|6000.0000|3000.0000",
            "2024-02-29|new|lead|1|4000.0000|800.0000",
            "2024-02-29|renewal|due|1|5000.0000|3000.0000",
            "2024-02-29|renewal|quoted|1|3000.0000|2700.0000",
            "2024-03-31|new|demo|0|0.0000|0.0000",
            "2024-03-31|new|lead|1|4000.0000|800.0000",
            "2024-03-31|renewal|due|2|11000.0000|6600.0000",
            "2024-03-31|renewal|quoted|0|0.0000|0.0000",
        ]
    );

    // Closed deals by pipeline: N2 lost in January, N1 won in February (new), R1 won in March
    // (renewal).
    let cols = ["period_start", "dimension_value", "won", "lost"];
    assert_eq!(
        r.read("win_rate", "2024-03-31", col("dimension").eq(lit("pipeline")), &cols),
        ["2024-01-01|new|0|1", "2024-02-01|new|1|0", "2024-03-01|renewal|1|0"]
    );
    assert_eq!(
        r.read(
            "deal_snapshot",
            "2024-03-31",
            lit(true),
            &["opportunity_id", "pipeline", "stage", "status"]
        ),
        [
            "M1|renewal|due|open",
            "N1|new|won|won",
            "N2|new|lost|lost",
            "N3|new|lead|open",
            "R1|renewal|won|won",
            "R2|renewal|due|open",
        ]
    );
}

/// Forecasts per pipeline, and for all pipelines (pipeline null) where a forecast names none.
/// Pipeline forecast of a month: the deals expected to close in it, open at the previous month
/// end, in the pipeline of their stage then (the 02-29 snapshot above): February N1 new/demo
/// 1000 x 0.5; March N3 new/lead 4000 x 0.2 and M1 new/demo 6000 x 0.5 (R2), R1
/// renewal/quoted 3000 x 0.9 (R2), R2 renewal/due 5000 x 0.6 (R1). Won: N1 1000 in February
/// (R1, new), R1 3000 in March (R2, renewal).
#[test]
fn forecasts_are_compared_per_pipeline_and_for_all_pipelines() {
    let r = Run::new("2024-03-31");
    let cols = [
        "period_start",
        "owner_id",
        "pipeline",
        "submitted_forecast",
        "pipeline_forecast",
        "actual",
        "attainment",
        "error",
    ];
    assert_eq!(
        r.read("forecast_vs_actual", "2024-03-31", lit(true), &cols),
        [
            "2024-02-01|R1|null|1200.0000|500.0000|1000.0000|0.8333|-200.0000",
            "2024-02-01|R1|new|null|500.0000|1000.0000|null|null",
            "2024-03-01|R1|null|null|3000.0000|0.0000|null|null",
            "2024-03-01|R1|renewal|null|3000.0000|0.0000|null|null",
            "2024-03-01|R2|null|null|6500.0000|3000.0000|null|null",
            "2024-03-01|R2|new|4000.0000|3800.0000|0.0000|0.0000|-4000.0000",
            // The later of R2's two renewal commits.
            "2024-03-01|R2|renewal|2500.0000|2700.0000|3000.0000|1.2000|500.0000",
        ]
    );
}

/// Open deals at 2024-03-31 (as_of ends 04-01 00:00) per owner and pipeline: R2 (R1, renewal,
/// created and in due since 02-01: 60 days, stale after 40), N3 (R2, new, lead since 02-10: 51
/// days, stale), M1 (R2, renewal, created 01-20: 72 days, in due since 03-01: 31 days, not
/// stale). Team east's renewal deals: R2 and M1, one each.
#[test]
fn open_deals_per_rep_per_pipeline() {
    let r = Run::new("2024-03-31");
    let cols = [
        "owner_id",
        "pipeline",
        "team",
        "open_deals",
        "amount",
        "mean_age_days",
        "stale_deals",
        "team_share",
    ];
    assert_eq!(
        r.read("open_deals_per_rep", "2024-03-31", lit(true), &cols),
        [
            "R1|renewal|east|1|5000.0000|60.0000|1|0.5000",
            "R2|new|east|1|4000.0000|51.0000|1|1.0000",
            "R2|renewal|east|1|6000.0000|72.0000|0|0.5000",
        ]
    );
}

/// Before its move (as of 2024-02-29), M1 is in new, in demo.
#[test]
fn a_deal_is_in_the_pipeline_of_its_stage_at_as_of() {
    let r = Run::new("2024-02-29");
    assert_eq!(
        r.read(
            "deal_snapshot",
            "2024-02-29",
            col("opportunity_id").eq(lit("M1")),
            &["pipeline", "stage", "status"]
        ),
        ["new|demo|open"]
    );
}

/// `validate` names the deal read in another pipeline than its export's.
#[test]
fn validate_counts_deals_read_in_another_pipeline() {
    let r = Run::new("2024-03-31");
    let d = r._dir.path();
    let o = run_in(d, &["validate", "--store", s(&d.join("store"))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let section = text.split("deals and pipelines").nth(1).expect("a pipelines section");
    let lines: Vec<String> = section
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines, ["no_pipeline 0", "unknown_pipeline 0", "moved 1"]);
    assert!(section.contains("(e.g. M1)"), "{section}");
}
