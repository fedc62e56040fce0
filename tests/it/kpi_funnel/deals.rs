//! Engine and closed-deal KPIs on a fixture small enough to check by hand, through the real
//! commands (ingest, run), including the as-of guarantee: a run dated D gives the same
//! numbers after later data arrives.
//!
//! Fixture (as of 2024-03-31, UTC, default pipeline):
//! - O1 R1 100 web : prospecting 01-05, proposal 01-20, closed_won 02-10  -> won Feb, 36 days
//! - O2 R1 200 ads : prospecting 01-10, closed_lost 02-20 (price)          -> lost Feb, 41 days
//! - O3 R2 300 -   : prospecting 02-01, closed_won 03-02                   -> won Mar, 30 days
//! - O4 R2 400 -   : prospecting 02-15, closed_lost 03-15, later (after as_of) negotiation 04-10,
//!   closed_won 04-20; its current status is won                         -> lost Mar, 29 days
//! - O5 R1 500 -   : prospecting 03-01, closed_lost 04-05 (after as_of)   -> open at as_of
//! - O6 R2  50 -   : no stage events, status won, closed_at 03-20         -> won Mar, 15 days

use std::path::Path;

use polars::prelude::*;

use crate::common::*;

const LEADS: &str = "lead_id,created_at,source\nL1,2024-01-01,web\nL2,2024-01-02,ads\n";

const OPPS_BEFORE: &str = "\
opportunity_id,account_id,created_at,owner_id,amount,status,closed_at,lead_id,loss_reason
O1,A1,2024-01-05,R1,100,won,2024-02-10,L1,
O2,A1,2024-01-10,R1,200,lost,2024-02-20,L2,price
O3,A2,2024-02-01,R2,300,won,2024-03-02,,
O4,A2,2024-02-15,R2,400,lost,2024-03-15,,
O5,A3,2024-03-01,R1,500,open,,,
O6,A3,2024-03-05,R2,50,won,2024-03-20,,
";

const OPPS_AFTER: &str = "\
opportunity_id,account_id,created_at,owner_id,amount,status,closed_at,lead_id,loss_reason
O4,A2,2024-02-15,R2,400,won,2024-04-20,,
O5,A3,2024-03-01,R1,500,lost,2024-04-05,,timing
O7,A3,2024-04-02,R1,70,open,,,
";

const EVENTS_BEFORE: &str = "\
opportunity_id,stage,entered_at
O1,prospecting,2024-01-05
O1,proposal,2024-01-20
O1,closed_won,2024-02-10
O2,prospecting,2024-01-10
O2,closed_lost,2024-02-20
O3,prospecting,2024-02-01
O3,closed_won,2024-03-02
O4,prospecting,2024-02-15
O4,closed_lost,2024-03-15
O5,prospecting,2024-03-01
";

const EVENTS_AFTER: &str = "\
opportunity_id,stage,entered_at
O4,negotiation,2024-04-10
O4,closed_won,2024-04-20
O5,closed_lost,2024-04-05
O7,prospecting,2024-04-02
";

fn ingest(d: &Path, store: &Path, files: &[&str]) {
    let mut args = vec!["ingest", "--store", s(store)];
    args.extend_from_slice(files);
    let o = run_in(d, &args);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

fn run_kpis(store: &Path, out: &Path) {
    let o = run(&[
        "run",
        "--store",
        s(store),
        "--out",
        s(out),
        "--as-of",
        "2024-03-31",
        "--kpi",
        "win_rate,loss_reasons,sales_cycle",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

fn read(out: &Path, kpi: &str) -> DataFrame {
    crate::fixtures::read_output(out, kpi, "month", "2024-03-31")
}

/// Store after both batches, and the outputs of a run as of 2024-03-31 before and after the second.
pub(crate) fn fixture() -> (
    tempfile::TempDir,
    DataFrame,
    DataFrame,
    DataFrame,
    DataFrame,
    DataFrame,
    DataFrame,
) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "leads.csv", LEADS);
    write(d, "opportunities.csv", OPPS_BEFORE);
    write(d, "stage_events.csv", EVENTS_BEFORE);
    write(d, "opportunities-2.csv", OPPS_AFTER);
    write(d, "stage_events-2.csv", EVENTS_AFTER);
    let store = d.join("store");
    ingest(d, &store, &["leads.csv", "opportunities.csv", "stage_events.csv"]);
    run_kpis(&store, &d.join("out1"));
    ingest(d, &store, &["opportunities-2.csv", "stage_events-2.csv"]);
    run_kpis(&store, &d.join("out2"));
    let (o1, o2) = (d.join("out1"), d.join("out2"));
    let r = (
        read(&o1, "win_rate"),
        read(&o1, "loss_reasons"),
        read(&o1, "sales_cycle"),
        read(&o2, "win_rate"),
        read(&o2, "loss_reasons"),
        read(&o2, "sales_cycle"),
    );
    (dir, r.0, r.1, r.2, r.3, r.4, r.5)
}

fn rows(df: &DataFrame, dim: &str) -> Vec<String> {
    let df = df
        .filter(
            &df.column("dimension")
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|v| v == Some(dim))
                .collect(),
        )
        .unwrap();
    (0..df.height())
        .map(|i| {
            df.columns()
                .iter()
                .filter(|c| c.name() != "as_of" && c.name() != "dimension")
                .map(|c| match c.get(i).unwrap() {
                    AnyValue::Float64(f) => format!("{f:.4}"),
                    AnyValue::Null => "null".into(),
                    v => v.to_string().trim_matches('"').to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn closed_deal_kpis_by_hand_and_reproducible_as_of() {
    let (_dir, win1, loss1, cycle1, win2, loss2, cycle2) = fixture();
    // As of a date, later data changes nothing.
    assert!(win1.equals_missing(&win2), "{win1}\n{win2}");
    assert!(loss1.equals_missing(&loss2), "{loss1}\n{loss2}");
    assert!(cycle1.equals_missing(&cycle2), "{cycle1}\n{cycle2}");

    // period_start dimension_value won lost win_rate won_amount lost_amount amount_win_rate
    assert_eq!(
        rows(&win2, "all"),
        [
            "2024-02-01 null 1 1 0.5000 100.0000 200.0000 0.3333",
            "2024-03-01 null 2 1 0.6667 350.0000 400.0000 0.4667",
        ]
    );
    assert_eq!(
        rows(&win2, "owner_id"),
        [
            "2024-02-01 R1 1 1 0.5000 100.0000 200.0000 0.3333",
            "2024-03-01 R2 2 1 0.6667 350.0000 400.0000 0.4667"
        ]
    );
    assert_eq!(
        rows(&win2, "source"),
        [
            "2024-02-01 ads 0 1 0.0000 0.0000 200.0000 0.0000",
            "2024-02-01 web 1 0 1.0000 100.0000 0.0000 1.0000",
            "2024-03-01 null 2 1 0.6667 350.0000 400.0000 0.4667",
        ]
    );
    let d = win2.column("as_of").unwrap().cast(&DataType::String).unwrap();
    assert_eq!(d.str().unwrap().get(0), Some("2024-03-31"));

    // period_start loss_reason lost lost_amount share
    let lr: Vec<String> = (0..loss2.height())
        .map(|i| {
            format!(
                "{} {} {} {}",
                loss2.column("period_start").unwrap().get(i).unwrap(),
                loss2.column("loss_reason").unwrap().get(i).unwrap(),
                loss2.column("lost").unwrap().get(i).unwrap(),
                loss2.column("share").unwrap().get(i).unwrap()
            )
        })
        .collect();
    assert_eq!(lr, ["2024-02-01 \"price\" 1 1.0", "2024-03-01 \"unspecified\" 1 1.0"]);

    // period_start outcome dimension_value deals mean median p90
    assert_eq!(
        rows(&cycle2, "all"),
        [
            "2024-02-01 lost null 1 41.0000 41.0000 41.0000",
            "2024-02-01 won null 1 36.0000 36.0000 36.0000",
            "2024-03-01 lost null 1 29.0000 29.0000 29.0000",
            "2024-03-01 won null 2 22.5000 22.5000 28.5000",
        ]
    );
}

#[test]
fn parquet_outputs_carry_kpi_metadata() {
    let (dir, ..) = fixture();
    let p = dir
        .path()
        .join("out2/win_rate/grain=month/as_of=2024-03-31/part-0.parquet");
    let md = ParquetReader::new(std::fs::File::open(&p).unwrap())
        .get_metadata()
        .unwrap()
        .clone();
    let kv: Vec<(String, String)> = md
        .key_value_metadata()
        .iter()
        .flatten()
        .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
        .collect();
    let get = |k: &str| {
        kv.iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("crm_kpi.kpi"), "win_rate");
    assert_eq!(get("crm_kpi.version"), "2");
    assert_eq!(get("crm_kpi.as_of"), "2024-03-31");
    assert_eq!(get("crm_kpi.period_grain"), "month");
    assert_eq!(get("crm_kpi.key"), "period_start,dimension,dimension_value");
    assert_eq!(get("crm_kpi.family"), "funnel");
    // No embedded Arrow schema: readers take plain UTF-8 strings and int64 from the Parquet schema.
    assert!(kv.iter().all(|(k, _)| k != "ARROW:schema"), "{kv:?}");
    // as_of is the folder's: the file does not repeat it.
    let df = ParquetReader::new(std::fs::File::open(&p).unwrap()).finish().unwrap();
    assert!(df.column("as_of").is_err());
    assert_eq!(df.column("won").unwrap().dtype(), &DataType::Int64);
    assert!(p.with_file_name("_SUCCESS").exists());
    assert!(get("crm_kpi.definition").contains("won / (won + lost)"));
    assert_eq!(get("crm_kpi.config_hash").len(), 16);
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("out2/_runs")).unwrap().collect();
    assert_eq!(runs.len(), 2, "the run's manifest and latest.json");
}
