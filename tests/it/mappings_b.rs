//! Example mappings for Vtiger CRM, Insightly and Agile CRM (examples/mappings/<crm>.toml), each
//! over its fixture folder (tests/data/crm/<crm>/, whose README tells the story and works out
//! the numbers asserted here).

use crate::presets::*;

const AS_OF: &str = "2025-06-30";

/// win_rate of a close month, dimension all: (won, lost, won_amount, lost_amount, win_rate).
fn win_rate(run: &PresetRun, month: &str) -> Vec<String> {
    run.select(
        "win_rate",
        &[
            ("period_start", month),
            ("dimension", "all"),
            ("dimension_value", "null"),
        ],
        &["won", "lost", "won_amount", "lost_amount", "win_rate"],
    )
}

/// pipeline_snapshot at as_of: (open_deals, amount) of `stage`.
fn open_at_as_of(run: &PresetRun, stage: &str) -> Vec<String> {
    run.select(
        "pipeline_snapshot",
        &[("snapshot_at", AS_OF), ("stage", stage)],
        &["open_deals", "amount"],
    )
}

/// stage_duration, dimension all: (visits, completed, censored, median_days) of `stage`.
fn duration(run: &PresetRun, stage: &str) -> Vec<String> {
    run.select(
        "stage_duration",
        &[("stage", stage), ("dimension", "all")],
        &["visits", "completed", "censored", "median_days"],
    )
}

#[test]
fn vtiger_csv_exports_and_modtracker_history() {
    let run = run_mapping_example("vtiger", "timezone = \"Europe/Berlin\"\nbase_currency = \"USD\"", AS_OF);

    // Amounts are in Vtiger's base currency, EUR (defaultid -11); USD is 1.085 per EUR in
    // vtiger_currency_info, so one EUR is 1.085 USD.
    assert_eq!(win_rate(&run, "2025-01-01"), ["1|0|16275.0000|0.0000|1.0000"]);
    assert_eq!(win_rate(&run, "2025-03-01"), ["1|1|27125.0000|8680.0000|0.5000"]);
    assert_eq!(win_rate(&run, "2025-04-01"), ["0|1|0.0000|5425.0000|0.0000"]);
    assert_eq!(win_rate(&run, "2025-05-01"), ["1|0|43400.0000|0.0000|1.0000"]);
    assert!(win_rate(&run, "2025-02-01").is_empty());

    for (stage, n) in [
        ("Prospecting", "4"),
        ("Qualification", "4"),
        ("Needs Analysis", "3"),
        ("Value Proposition", "0"),
        ("Id. Decision Makers", "0"),
        ("Perception Analysis", "0"),
        ("Proposal/Price Quote", "4"),
        ("Negotiation/Review", "2"),
        ("Closed Won", "2"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    assert_eq!(open_at_as_of(&run, "Proposal/Price Quote"), ["2|16275.0000"]);
    assert_eq!(open_at_as_of(&run, "Needs Analysis"), ["1|19530.0000"]);
    assert_eq!(open_at_as_of(&run, "Prospecting"), ["0|0.0000"]);

    // Prospecting includes POT3's first stage, the prevalue of its first tracked change.
    assert_eq!(duration(&run, "Prospecting"), ["4|4|0|11.0990"]);
    assert_eq!(duration(&run, "Proposal/Price Quote"), ["5|3|2|14.0000"]);

    assert_eq!(
        run.select(
            "lead_volume",
            &[("period_start", "2025-01-01"), ("dimension", "all")],
            &["new_leads", "qualified_leads", "disqualified_leads"],
        ),
        ["2|0|1"]
    );
    assert_eq!(
        run.select(
            "lead_volume",
            &[("period_start", "2025-02-01"), ("dimension", "all")],
            &["new_leads", "qualified_leads", "disqualified_leads"],
        ),
        ["1|1|0"]
    );
    let activity = |month: &str, owner: &str| {
        run.select(
            "activity",
            &[("period_start", month), ("owner_id", owner)],
            &["calls", "meetings", "tasks"],
        )
    };
    assert_eq!(activity("2025-01-01", "jdoe"), ["1|0|0"]);
    assert_eq!(activity("2025-02-01", "jdoe"), ["0|0|1"]);
    assert_eq!(activity("2025-03-01", "msmith"), ["0|1|0"]);
}

#[test]
fn insightly_api_json_with_state_history() {
    let run = run_mapping_example("insightly", "timezone = \"UTC\"\nbase_currency = \"USD\"", AS_OF);

    // 5001 is EUR 25000 at 1.08 (fx_rates.csv); 5007 was lost in March and reopened in April.
    assert_eq!(win_rate(&run, "2025-03-01"), ["1|1|27000.0000|8000.0000|0.5000"]);
    assert_eq!(win_rate(&run, "2025-04-01"), ["0|1|0.0000|5000.0000|0.0000"]);
    assert_eq!(win_rate(&run, "2025-05-01"), ["1|0|40000.0000|0.0000|1.0000"]);

    for (stage, n) in [
        ("Qualify", "1"),
        ("Demo", "2"),
        ("Proposal", "2"),
        ("Negotiation", "2"),
        ("Won", "2"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    assert_eq!(open_at_as_of(&run, "Proposal"), ["2|15000.0000"]);
    assert_eq!(open_at_as_of(&run, "Demo"), ["1|18000.0000"]);
    assert_eq!(open_at_as_of(&run, "Negotiation"), ["0|0.0000"]);

    assert_eq!(duration(&run, "Negotiation"), ["2|2|0|60.1979"]);
    assert_eq!(duration(&run, "Proposal"), ["3|1|2|28.0000"]);

    assert_eq!(
        run.select("lead_conversion", &[("dimension", "all")], &["leads", "converted"]),
        ["3|1"]
    );
    let activity = |month: &str, owner: &str| {
        run.select(
            "activity",
            &[("period_start", month), ("owner_id", owner)],
            &["calls", "emails", "meetings"],
        )
    };
    assert_eq!(activity("2025-01-01", "901"), ["0|0|1"]);
    assert_eq!(activity("2025-02-01", "901"), ["1|0|0"]);
    assert_eq!(activity("2025-04-01", "902"), ["0|1|0"]);
}

#[test]
fn agile_api_json_activity_log_and_local_deals_csv() {
    let run = run_mapping_example("agile", "timezone = \"UTC\"\nbase_currency = \"USD\"", AS_OF);

    // The EUR deal converts at its own expected_value / currency_conversion_value = 1.08.
    assert_eq!(win_rate(&run, "2025-03-01"), ["1|1|27000.0000|8000.0000|0.5000"]);
    assert_eq!(win_rate(&run, "2025-04-01"), ["0|1|0.0000|5000.0000|0.0000"]);
    assert_eq!(win_rate(&run, "2025-05-01"), ["1|0|40000.0000|0.0000|1.0000"]);

    for (stage, n) in [
        ("Open", "3"),
        ("New", "3"),
        ("Prospect", "4"),
        ("Proposal", "3"),
        ("Won", "2"),
        ("Signed", "0"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    // Prospect: the deal only LocalDeals.csv has.
    assert_eq!(open_at_as_of(&run, "Prospect"), ["1|3000.0000"]);
    assert_eq!(open_at_as_of(&run, "Proposal"), ["1|12000.0000"]);
    assert_eq!(open_at_as_of(&run, "New"), ["1|18000.0000"]);
    assert_eq!(open_at_as_of(&run, "Open"), ["0|0.0000"]);

    // Open is each deal's first milestone, the old value of its first logged change.
    assert_eq!(duration(&run, "Open"), ["3|3|0|10.0000"]);
    assert_eq!(duration(&run, "Prospect"), ["4|3|1|17.0000"]);

    assert_eq!(
        run.select("lead_conversion", &[("dimension", "all")], &["leads", "converted"]),
        ["3|2"]
    );
    let activity = |month: &str, owner: &str| {
        run.select(
            "activity",
            &[("period_start", month), ("owner_id", owner)],
            &["calls", "emails", "meetings"],
        )
    };
    assert_eq!(activity("2025-02-01", "jdoe@example.com"), ["1|0|0"]);
    assert_eq!(activity("2025-02-01", "msmith@example.com"), ["0|1|0"]);
    assert_eq!(activity("2025-01-01", "(unassigned)"), ["0|0|1"]);
}
