//! Pipedrive, end to end: tests/data/crm/pipedrive/ holds one company's export as a Pipedrive
//! user makes it (list-view CSV exports in the exporting user's Europe/Berlin wall time, API v1
//! JSON in UTC: stages, users and one change log per deal). Its README tells the story of the 32
//! deals and works out every number asserted here; the comments give the short version.
//!
//! Users: Maria Keller = 21804517 (MK), Jonas Brandt = 21804533 (JB), Aylin Demir = 21804561
//! (AD). Pipelines: "Pipeline" (Pipedrive's default stages, deal probability off) and "Renewals"
//! (Renewal due 25 %, Renewal quoted 60 %, Signed off 90 %). USD→EUR: 0.9761 from 2025-02-03,
//! 0.9556 from 03-03, 0.9253 from 04-01, 0.8826 from 05-02, 0.8754 from 06-02.

use crate::presets::*;

const CONFIG: &str = "timezone = \"Europe/Berlin\"\nbase_currency = \"EUR\"\n";

/// The one row of `kpi` where `filter` holds, as `a|b|c` of `cols` (floats with 4 decimals).
fn one_row(r: &PresetRun, kpi: &str, filter: &[(&str, &str)], cols: &[&str]) -> String {
    let got = r.select(kpi, filter, cols);
    assert_eq!(got.len(), 1, "{kpi} {filter:?}: {} rows", got.len());
    got[0].clone()
}

/// Rows of a stored table as `a|b|c` strings of `cols` whose first column is `first`, sorted by
/// their third column (for stage events the time, `YYYY-MM-DD HH:MM` UTC, which sorts as text).
fn stored(r: &PresetRun, def: &crm_kpi::schema::TableDef, cols: &[&str], first: &str) -> Vec<String> {
    let mut rows: Vec<String> = crate::fixtures::rows(&r.table(def), cols)
        .into_iter()
        .filter(|row| row.split('|').next() == Some(first))
        .collect();
    rows.sort_by_key(|row| row.split('|').nth(2).unwrap_or("").to_string());
    rows
}

#[test]
fn pipedrive_export_folder_gives_the_hand_worked_kpis() {
    let r = run_preset("pipedrive", CONFIG, "2025-06-30", &[]);
    ingest_report(&r);
    stored_tables(&r);
    win_rate(&r);
    stage_funnel(&r);
    stage_duration(&r);
    pipeline_snapshot(&r);
    activity(&r);
}

fn ingest_report(r: &PresetRun) {
    // Nothing is quarantined: every stage event names a known stage, comes after its deal's
    // creation (CSV times read in Berlin, changelog times in UTC), every activity's deal exists.
    assert!(!r.report.contains("quarantined rows by rule"), "{}", r.report);
    // The persons export is no source's: listed, not read.
    assert!(
        r.report
            .lines()
            .any(|l| l.starts_with("note: not read:") && l.contains("persons-13427850-20250630.csv")),
        "{}",
        r.report
    );
    // 113 changelog rows, 58 of them stage_id: the 55 others (status, lost_reason, value,
    // label "3" / "3,5", expected_close_date, user_id, a custom field's 40-hex key) are left out.
    assert_eq!(r.count("pipedrive.changelog", "filtered"), 55, "{}", r.report);
    // 1050's re-entry into Proposal Made is logged twice, identical: one copy is dropped.
    assert_eq!(
        r.count("pipedrive.changelog", "duplicate_row_dropped"),
        1,
        "{}",
        r.report
    );
    // A first stage at creation for the 26 deals with a stage change (all but 1055, 1060, 1066,
    // 1067, 1070, 1072); every one of them is a known deal.
    assert_eq!(r.count("pipedrive.changelog", "initial_stage"), 26, "{}", r.report);
    assert_eq!(r.count("pipedrive.changelog", "initial_stage_of_unknown_deal"), 0);
    // Those 6 get their current stage at creation (1055 and 1060 have changelogs without a
    // stage change, 1066 only label and value rows, 1070 an empty page, 1067 and 1072 no file).
    assert_eq!(r.count("pipedrive.current_stage", "fallback_used"), 6, "{}", r.report);
    assert_eq!(
        r.count("pipedrive.current_stage", "fallback_not_needed"),
        26,
        "{}",
        r.report
    );
    // 21 deals are Won/Lost and get a close event; the 11 open ones are left out.
    assert_eq!(r.count("pipedrive.closes", "filtered"), 11, "{}", r.report);
    // The change logs' status rows: 23 of the 113 (the 21 closes, 1056's loss and its
    // reopening); the reopening enters the stage 1056 was in; the deals export's 21 closes are
    // the same instants as the change logs' and are kept once.
    assert_eq!(r.count("pipedrive.status_changes", "filtered"), 90, "{}", r.report);
    assert_eq!(
        r.count("pipedrive.status_changes", "reopened_into_last_stage"),
        1,
        "{}",
        r.report
    );
    assert_eq!(
        r.count("pipedrive.closes", "same_event_from_another_source"),
        21,
        "{}",
        r.report
    );
    // 1056 was lost, then reopened: `Open`, and its old `Deal - Lost time`, still exported, is
    // no close (only a won or lost deal's time is).
    assert_eq!(
        r.count("pipedrive.deals", "close_date_of_open_deal_as_expected"),
        0,
        "{}",
        r.report
    );
    // 3 activities are `To do`; 3 are of the custom type "Demo", counted as tasks.
    assert_eq!(r.count("pipedrive.activities", "filtered"), 3, "{}", r.report);
    assert_eq!(r.count("pipedrive.activities", "other_value:kind"), 3, "{}", r.report);
    // The default pipeline's five stages (probability off) have no probability.
    assert_eq!(
        r.count("pipedrive.stages", "stage_without_probability"),
        5,
        "{}",
        r.report
    );
}

fn stored_tables(r: &PresetRun) {
    use crm_kpi::schema::{ACTIVITIES, OPPORTUNITIES, STAGE_EVENTS, STAGES};
    // Each deal's pipeline, from the export's `Deal - Pipeline`: 26 in "Pipeline", 6 in
    // "Renewals".
    assert_eq!(r.count_by(&OPPORTUNITIES, "pipeline"), ["Pipeline|26", "Renewals|6"]);
    // The stage list: pipeline 1 by order_nr, then pipeline 2, then the synthetic Won and Lost.
    // Pipeline 1 has deal probability switched off, so its stages' 100 % means "unknown".
    let mut stages = crate::fixtures::rows(
        &r.table(&STAGES),
        &["position", "stage", "probability", "terminal", "pipeline"],
    );
    stages.sort_by_key(|s| s.split('|').next().unwrap().parse::<i64>().unwrap());
    assert_eq!(
        stages,
        [
            "1|Qualified|null|null|Pipeline",
            "2|Contact Made|null|null|Pipeline",
            "3|Demo Scheduled|null|null|Pipeline",
            "4|Proposal Made|null|null|Pipeline",
            "5|Negotiations Started|null|null|Pipeline",
            "6|Renewal due|0.2500|null|Renewals",
            "7|Renewal quoted|0.6000|null|Renewals",
            "8|Signed off|0.9000|null|Renewals",
            "9|Won|1.0000|won|null",
            "10|Lost|0.0000|lost|null",
        ]
    );

    // 26 first stages + 57 distinct stage changes + 21 closes + 6 fallbacks, + 1056's loss and
    // reopening from its change log's status rows (the other status rows repeat the 21 closes).
    assert_eq!(r.table(&STAGE_EVENTS).height(), 112);
    let ev = ["opportunity_id", "stage", "entered_at"];
    // 1041 (times UTC): created in Qualified, back from Demo Scheduled to Contact Made and in
    // again, won while in Negotiations Started; its label "3" (= the id of Demo Scheduled) is no
    // stage.
    assert_eq!(
        stored(r, &STAGE_EVENTS, &ev, "1041"),
        [
            "1041|Qualified|2025-01-08 09:12",
            "1041|Contact Made|2025-01-10 08:31",
            "1041|Demo Scheduled|2025-01-20 13:05",
            "1041|Contact Made|2025-01-24 07:40",
            "1041|Demo Scheduled|2025-01-29 10:15",
            "1041|Proposal Made|2025-02-05 15:20",
            "1041|Negotiations Started|2025-02-12 09:02",
            "1041|Won|2025-02-20 14:39",
        ]
    );
    // 1056: lost on 04-10 and reopened on 05-06 (status rows): it enters Lost, then Contact
    // Made again (the stage it was in), then moves on; open at as_of.
    assert_eq!(
        stored(r, &STAGE_EVENTS, &ev, "1056"),
        [
            "1056|Qualified|2025-03-12 09:15",
            "1056|Contact Made|2025-03-20 08:40",
            "1056|Lost|2025-04-10 15:00",
            "1056|Contact Made|2025-05-06 07:15",
            "1056|Demo Scheduled|2025-05-14 09:00",
        ]
    );
    // 1066: created in Renewal quoted, never moved (changelog of label and value rows only).
    assert_eq!(
        stored(r, &STAGE_EVENTS, &ev, "1066"),
        ["1066|Renewal quoted|2025-05-15 13:00"]
    );
    // 1043: won at 2025-03-01 00:15:30 Berlin = 2025-02-28 23:15:30 UTC.
    assert_eq!(
        stored(r, &STAGE_EVENTS, &ev, "1043"),
        [
            "1043|Renewal due|2025-01-16 10:20",
            "1043|Renewal quoted|2025-02-04 12:10",
            "1043|Won|2025-02-28 23:15",
        ]
    );

    // Deals: owners by name -> user id; 1042 was reassigned from Maria to Jonas; 7200 USD lost on
    // 2025-02-26 at 0.9761. 1056 is open, without a close, its expected close date kept.
    let deal = [
        "opportunity_id",
        "owner_id",
        "status",
        "closed_at",
        "amount_base",
        "expected_close_date",
    ];
    assert_eq!(
        stored(r, &OPPORTUNITIES, &deal, "1042"),
        ["1042|21804533|lost|2025-02-26 09:22|7027.9200|2025-03-15"]
    );
    assert_eq!(
        stored(r, &OPPORTUNITIES, &deal, "1056"),
        ["1056|21804561|open|null|8900.0000|2025-07-31"]
    );
    assert_eq!(r.table(&OPPORTUNITIES).height(), 32);

    // Activities: 49 exported, 3 to do. Durations HH:MM -> seconds; "Demo" (custom) is a task,
    // Lunch a meeting; 7030 was marked done at 2025-05-01 00:20 Berlin.
    assert_eq!(r.table(&ACTIVITIES).height(), 46);
    let act = [
        "activity_id",
        "owner_id",
        "occurred_at",
        "kind",
        "duration_s",
        "opportunity_id",
    ];
    assert_eq!(
        stored(r, &ACTIVITIES, &act, "7043"),
        ["7043|21804517|2025-06-24 09:08|call|3900|1071"]
    );
    assert_eq!(
        stored(r, &ACTIVITIES, &act, "7030"),
        ["7030|21804517|2025-04-30 22:20|task|null|1051"]
    );
    assert_eq!(
        stored(r, &ACTIVITIES, &act, "7010"),
        ["7010|21804533|2025-02-11 17:05|task|3600|1046"]
    );
    assert_eq!(
        stored(r, &ACTIVITIES, &act, "7015"),
        ["7015|21804517|2025-03-04 13:05|meeting|5400|1048"]
    );
}

fn win_rate(r: &PresetRun) {
    let cols = ["won", "lost", "win_rate", "won_amount", "lost_amount"];
    let month = |m: &str| {
        one_row(
            r,
            "win_rate",
            &[("period_start", m), ("dimension", "all"), ("dimension_value", "null")],
            &cols,
        )
    };
    // February: won 1041 (18500) and 1044 (9800); lost 1042, 7200 USD x 0.9761 = 7027.92.
    assert_eq!(month("2025-02-01"), "2|1|0.6667|28300.0000|7027.9200");
    // March: won 1043 (8400, at 00:15 on March 1st in Berlin, still February in UTC), 1046
    // (23000 USD x 0.9556 = 21978.80), 1048 (12600); lost 1045 (4200), 1047 (3100).
    assert_eq!(month("2025-03-01"), "3|2|0.6000|42978.8000|7300.0000");
    // April: won 1050 (5400), 1052 (15000 USD x 0.9253 = 13879.50), 1055 (2750, straight from
    // Qualified); lost 1049 (3600). 1056's loss of April 10th was undone by its reopening.
    assert_eq!(month("2025-04-01"), "3|1|0.7500|22029.5000|3600.0000");
    // May: won 1051 (9900), 1058 (27500), 1059 (14200); lost 1053 (31000), 1057 (6400 USD x
    // 0.8826 = 5648.64), 1060 (3900).
    assert_eq!(month("2025-05-01"), "3|3|0.5000|51600.0000|40548.6400");
    // June: won 1062 (19500 USD x 0.8754 = 17070.30) and 1064 (11800 USD x 0.8754 = 10329.72);
    // lost 1063 (7300).
    assert_eq!(month("2025-06-01"), "2|1|0.6667|27400.0200|7300.0000");
    // Nothing closed in January.
    assert!(
        r.select(
            "win_rate",
            &[("period_start", "2025-01-01"), ("dimension", "all")],
            &["won"]
        )
        .is_empty()
    );
}

fn stage_funnel(r: &PresetRun) {
    // Steps, per pipeline: its stages by position, then Won (Pipedrive's Won and Lost name no
    // pipeline: each pipeline has them); Lost is no step. stage_index is the position in the
    // pipeline. reached = deals with an entry into the stage (README: "stage_funnel").
    let steps = [
        // 15 first stages + 1055, 1067, 1072 (current stage at creation).
        ("Pipeline", "Qualified", "0", "18"),
        // 4 created there + 15 moved in (1041's two entries count once) + 1070.
        ("Pipeline", "Contact Made", "1", "20"),
        // 1041 1042 1046 1048 1050 1052 1053 1056 1057 1058 1059 1062 1063 1065 1068.
        ("Pipeline", "Demo Scheduled", "2", "15"),
        // 1041 1044 1046 1048 1050 1052 1058 1062 1064 1065, and 1060 (created there).
        ("Pipeline", "Proposal Made", "3", "11"),
        // 1041 1046 1052 1058 1062 1068.
        ("Pipeline", "Negotiations Started", "4", "6"),
        // 11 of the 13 won deals (all but the renewals 1043 and 1051).
        ("Pipeline", "Won", "5", "11"),
        // 1043 1049 1051 1054 1061 (1066 was created in Renewal quoted).
        ("Renewals", "Renewal due", "0", "5"),
        // 1043 1049 1051 1054 1061 1066.
        ("Renewals", "Renewal quoted", "1", "6"),
        // 1051 1054.
        ("Renewals", "Signed off", "2", "2"),
        // 1043 (March) and 1051 (May).
        ("Renewals", "Won", "3", "2"),
    ];
    for (pipeline, stage, index, reached) in steps {
        let filter = [
            ("mode", "any"),
            ("dimension", "all"),
            ("pipeline", pipeline),
            ("stage", stage),
        ];
        assert_eq!(
            one_row(r, "stage_funnel", &filter, &["stage_index", "reached"]),
            format!("{index}|{reached}"),
            "{pipeline} {stage}"
        );
    }
    assert!(
        r.select(
            "stage_funnel",
            &[("mode", "any"), ("dimension", "all"), ("stage", "Lost")],
            &["reached"]
        )
        .is_empty()
    );
}

fn stage_duration(r: &PresetRun) {
    let cols = ["visits", "completed", "censored", "median_days"];
    let stage = |s: &str| one_row(r, "stage_duration", &[("stage", s), ("dimension", "all")], &cols);
    // Qualified: 18 visits, 1067 and 1072 still in it; of the 16 completed the middle two are
    // 1059 (04-02 08:30 -> 04-09 11:00, 7.1042 d) and 1050 (02-18 09:10 -> 02-25 14:00, 7.2014 d).
    assert_eq!(stage("Qualified"), "18|16|2|7.1528");
    // Contact Made: 22 visits (1041 twice, 1056 twice: its first visit ends at its loss on
    // 04-10 after 21.26 d, its second runs from its reopening 05-06 07:15 to 05-14 09:00,
    // 8.07 d), 1069, 1070 and 1071 still in it; of the 19 completed, 9 are shorter than 14 d 3 h
    // and the 10th is 1059's (1065 has the same 14 d 3 h).
    assert_eq!(stage("Contact Made"), "22|19|3|14.1250");
    // Demo Scheduled: 17 visits (1041 and 1050 twice), 1056 still in it; the middle two of the 16
    // completed: 1052 (13.8750 d) and 1046 (13.9444 d).
    assert_eq!(stage("Demo Scheduled"), "17|16|1|13.9097");
    // Renewal due: 6 visits (1049 twice), all completed; middle two 1043 (19.0767 d) and 1051
    // (31.7292 d).
    assert_eq!(stage("Renewal due"), "6|6|0|25.4029");
    // Renewal quoted: 7 visits, 1061 and 1066 still in it; middle of the 5 completed: 1043, from
    // 02-04 13:10:25 to its win at 03-01 00:15:30 Berlin (24.4619 d).
    assert_eq!(stage("Renewal quoted"), "7|5|2|24.4619");
}

fn pipeline_snapshot(r: &PresetRun) {
    let cols = ["open_deals", "amount", "weighted_amount"];
    let stage = |s: &str| {
        one_row(
            r,
            "pipeline_snapshot",
            &[("snapshot_at", "2025-06-30"), ("stage", s)],
            &cols,
        )
    };
    // Default pipeline: probability off, so a stage with deals has no weighted amount.
    // 1067 (4500) and 1072 (5200), never moved.
    assert_eq!(stage("Qualified"), "2|9700.0000|null");
    // 1069 (9200 USD x 0.8754 = 8053.68), 1070 (6100), 1071 (38000).
    assert_eq!(stage("Contact Made"), "3|52153.6800|null");
    // 1056, reopened and moved on to Demo Scheduled.
    assert_eq!(stage("Demo Scheduled"), "1|8900.0000|null");
    // 1065.
    assert_eq!(stage("Proposal Made"), "1|16800.0000|null");
    // 1068, created in Demo Scheduled, jumped to Negotiations Started.
    assert_eq!(stage("Negotiations Started"), "1|22000.0000|null");
    // Renewals: probabilities on. No deal in Renewal due: 0 and a zero weighted amount.
    assert_eq!(stage("Renewal due"), "0|0.0000|0.0000");
    // 1061 (12000 USD x 0.8754 = 10504.80) and 1066 (5000 USD x 0.8754 = 4377.00), x 0.6.
    assert_eq!(stage("Renewal quoted"), "2|14881.8000|8929.0800");
    // 1054 (16000) x 0.9.
    assert_eq!(stage("Signed off"), "1|16000.0000|14400.0000");
    // No open deal without a stage event.
    assert!(
        r.select(
            "pipeline_snapshot",
            &[("snapshot_at", "2025-06-30"), ("stage", "null")],
            &["open_deals"]
        )
        .is_empty()
    );
}

fn activity(r: &PresetRun) {
    let cols = ["calls", "meetings", "tasks", "emails"];
    let row = |month: &str, owner: &str| one_row(r, "activity", &[("period_start", month), ("owner_id", owner)], &cols);
    // Maria, March: call 7016; Lunch 7015 and Meeting 7020; email 7019.
    assert_eq!(row("2025-03-01", "21804517"), "1|2|0|1");
    // Maria, April: calls 7024 and 7029 only: task 7030 was done at 00:20 on May 1st in Berlin.
    assert_eq!(row("2025-04-01", "21804517"), "2|0|0|0");
    // Maria, May: call 7034, task 7030, email 7035.
    assert_eq!(row("2025-05-01", "21804517"), "1|0|1|1");
    // Jonas, February: calls 7008 and 7014; 7010 is a "Demo" (custom type): a task.
    assert_eq!(row("2025-02-01", "21804533"), "2|0|1|0");
    // Jonas, June: call 7041, meeting 7042, Deadline 7046 (a task); call 7049 is still to do.
    assert_eq!(row("2025-06-01", "21804533"), "1|1|1|0");
    // Aylin, February: meetings 7009 and 7012.
    assert_eq!(row("2025-02-01", "21804561"), "0|2|0|0");
    // Aylin, March: calls 7018 and 7023; "Demo" 7017 (a task).
    assert_eq!(row("2025-03-01", "21804561"), "2|0|1|0");
    // The to-do lunch 7048 (due July 3rd) makes no row.
    assert!(
        r.select(
            "activity",
            &[("period_start", "2025-07-01"), ("owner_id", "21804517")],
            &["calls"]
        )
        .is_empty()
    );
}

/// Pipedrive exports no orders: with `--won-deals-as-orders` each of the 13 won deals becomes a
/// paid order at its close, for its amount in base currency (the monthly won amounts above:
/// 28300 + 42978.8 + 22029.5 + 51600 + 27400.02 = 172308.32 EUR), so revenue is not empty.
#[test]
fn pipedrive_won_deals_as_orders() {
    let r = run_preset("pipedrive", CONFIG, "2025-06-30", &["--won-deals-as-orders"]);
    assert_eq!(r.count("pipedrive.deals", "won_deal_as_order"), 13, "{}", r.report);
    let orders = r.table(&crm_kpi::schema::ORDERS);
    assert_eq!(orders.height(), 13);
    let total: f64 = orders
        .column("amount_base")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .sum();
    assert_eq!(format!("{total:.2}"), "172308.32");
    let paid = orders.column("paid_at").unwrap().null_count();
    assert_eq!(paid, 0, "every won deal's order is paid at its close");
    // Without the option, the report says what to do.
    let plain = run_preset("pipedrive", CONFIG, "2025-06-30", &[]);
    assert!(plain.report.contains("--won-deals-as-orders"), "{}", plain.report);
    assert_eq!(plain.table(&crm_kpi::schema::ORDERS).height(), 0);
}
