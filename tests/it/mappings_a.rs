//! The example mappings of examples/mappings/ for Zoho CRM, Close, Bitrix24 and SugarCRM, each
//! over its fixture folder tests/data/crm/<crm>/ (invented data in the CRM's documented export
//! or API shapes). Every expected number is worked out by hand in the fixture's README.md.

use crate::presets::*;

const AS_OF: &str = "2025-06-30";

/// win_rate of a close month, dimension all.
fn month(run: &PresetRun, period_start: &str, col: &str) -> String {
    run.one(
        "win_rate",
        &[
            ("period_start", period_start),
            ("dimension", "all"),
            ("dimension_value", "null"),
        ],
        col,
    )
}

/// pipeline_snapshot at as_of.
fn pipeline(run: &PresetRun, stage: &str, col: &str) -> String {
    run.one("pipeline_snapshot", &[("snapshot_at", AS_OF), ("stage", stage)], col)
}

/// stage_duration, dimension all.
fn duration(run: &PresetRun, stage: &str, col: &str) -> String {
    run.one(
        "stage_duration",
        &[("stage", stage), ("dimension", "all"), ("dimension_value", "null")],
        col,
    )
}

fn activity(run: &PresetRun, period_start: &str, owner: &str, col: &str) -> String {
    run.one("activity", &[("period_start", period_start), ("owner_id", owner)], col)
}

fn lead_volume(run: &PresetRun, period_start: &str, col: &str) -> String {
    run.one(
        "lead_volume",
        &[
            ("period_start", period_start),
            ("dimension", "all"),
            ("dimension_value", "null"),
        ],
        col,
    )
}

fn lead_conversion(run: &PresetRun, col: &str) -> String {
    run.one(
        "lead_conversion",
        &[("dimension", "all"), ("dimension_value", "null")],
        col,
    )
}

/// Every row of the fixture is good: nothing quarantined.
fn nothing_quarantined(run: &PresetRun) {
    assert!(
        !run.report.contains("quarantined rows by rule"),
        "rows were quarantined:\n{}",
        run.report
    );
}

#[test]
fn zoho_bulk_read_and_settings_apis() {
    let run = run_mapping_example(
        "zoho",
        "timezone = \"UTC\"\nbase_currency = \"USD\"\nlead_converted_event = \"opportunity\"",
        AS_OF,
    );
    nothing_quarantined(&run);

    // Won and lost by the stage's forecast_type; EUR at 1 / 0.8 (org currencies, inverted).
    assert_eq!(month(&run, "2025-02-01", "won"), "1");
    assert_eq!(month(&run, "2025-02-01", "lost"), "0");
    assert_eq!(month(&run, "2025-02-01", "won_amount"), "7000.0000");
    assert_eq!(month(&run, "2025-03-01", "won"), "1");
    assert_eq!(month(&run, "2025-03-01", "lost"), "1");
    assert_eq!(month(&run, "2025-03-01", "win_rate"), "0.5000");
    assert_eq!(month(&run, "2025-03-01", "won_amount"), "15000.0000");
    assert_eq!(month(&run, "2025-03-01", "lost_amount"), "30000.0000");
    assert_eq!(month(&run, "2025-06-01", "won"), "1");
    assert_eq!(month(&run, "2025-06-01", "lost"), "1");
    assert_eq!(month(&run, "2025-06-01", "won_amount"), "20000.0000");
    assert_eq!(month(&run, "2025-06-01", "lost_amount"), "5000.0000");

    // Stage History rows, the related list of D4 (API values rewritten to display values),
    // D5's current stage; D8 (no history, closing stage) reaches nothing.
    for (stage, n) in [
        ("Qualification", "6"),
        ("Needs Analysis", "2"),
        ("Value Proposition", "1"),
        ("Identify Decision Makers", "1"),
        ("Proposal/Price Quote", "3"),
        ("Negotiation/Review", "2"),
        ("Closed Won", "2"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    assert_eq!(pipeline(&run, "Negotiation/Review", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Negotiation/Review", "amount"), "4800.5000");
    assert_eq!(pipeline(&run, "Negotiation/Review", "weighted_amount"), "4320.4500");
    assert_eq!(pipeline(&run, "Identify Decision Makers", "open_deals"), "1");
    assert_eq!(
        pipeline(&run, "Identify Decision Makers", "weighted_amount"),
        "5400.0000"
    );
    assert_eq!(pipeline(&run, "Proposal/Price Quote", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Proposal/Price Quote", "amount"), "10000.0000");
    assert_eq!(pipeline(&run, "Proposal/Price Quote", "weighted_amount"), "7500.0000");
    assert_eq!(pipeline(&run, "Qualification", "open_deals"), "0");

    assert_eq!(duration(&run, "Qualification", "completed"), "6");
    assert_eq!(duration(&run, "Qualification", "median_days"), "32.6042");
    assert_eq!(duration(&run, "Needs Analysis", "visits"), "3");
    assert_eq!(duration(&run, "Needs Analysis", "median_days"), "21.2222");

    // Calls ("mm:ss" durations, Missed = not connected), events, completed tasks.
    let (ana, bo) = ("5725767000000321001", "5725767000000321009");
    assert_eq!(activity(&run, "2025-01-01", ana, "calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", ana, "connected_calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", ana, "meetings"), "1");
    assert_eq!(activity(&run, "2025-02-01", ana, "tasks"), "1");
    assert_eq!(activity(&run, "2025-02-01", bo, "connected_calls"), "1");
    assert_eq!(activity(&run, "2025-03-01", bo, "calls"), "1");
    assert_eq!(activity(&run, "2025-03-01", bo, "connected_calls"), "0");

    assert_eq!(lead_volume(&run, "2025-04-01", "new_leads"), "1");
    assert_eq!(lead_volume(&run, "2025-04-01", "disqualified_leads"), "1");
    assert_eq!(lead_volume(&run, "2025-05-01", "qualified_leads"), "1");
    assert_eq!(lead_conversion(&run, "leads"), "4");
    assert_eq!(lead_conversion(&run, "converted"), "1");

    assert_eq!(run.count("zoho.deal_history", "not_a_stage_change"), 1);
    assert_eq!(run.count("zoho.stage_history_related_list", "fallback_used"), 2);
    assert_eq!(run.count("zoho.current_stage", "fallback_used"), 1);
    assert_eq!(run.count("zoho.current_stage", "fallback_closing_stage_left_out"), 1);
}

#[test]
fn close_api_json_in_cents() {
    let run = run_mapping_example("close", "timezone = \"UTC\"\nbase_currency = \"USD\"", AS_OF);
    nothing_quarantined(&run);

    // Cents to units; EUR at the user's own fx_rates.csv (1.10, then 1.05 from April).
    assert_eq!(month(&run, "2025-02-01", "won"), "1");
    assert_eq!(month(&run, "2025-02-01", "won_amount"), "7000.0000");
    assert_eq!(month(&run, "2025-03-01", "won"), "1");
    assert_eq!(month(&run, "2025-03-01", "lost"), "1");
    assert_eq!(month(&run, "2025-03-01", "won_amount"), "13200.0000");
    assert_eq!(month(&run, "2025-03-01", "lost_amount"), "30000.0000");
    assert_eq!(month(&run, "2025-06-01", "won"), "1");
    assert_eq!(month(&run, "2025-06-01", "lost"), "1");
    assert_eq!(month(&run, "2025-06-01", "win_rate"), "0.5000");
    assert_eq!(month(&run, "2025-06-01", "won_amount"), "5250.0000");
    assert_eq!(month(&run, "2025-06-01", "lost_amount"), "15000.0000");

    for (stage, n) in [
        ("Demo Completed", "5"),
        ("Proposal Sent", "3"),
        ("Negotiation", "2"),
        ("Closed/Won", "2"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    assert_eq!(pipeline(&run, "Demo Completed", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Proposal Sent", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Negotiation", "open_deals"), "1");
    // A monthly value at its annualized value.
    assert_eq!(pipeline(&run, "Negotiation", "amount"), "4800.0000");

    assert_eq!(duration(&run, "Demo Completed", "completed"), "4");
    assert_eq!(duration(&run, "Demo Completed", "censored"), "1");
    assert_eq!(duration(&run, "Demo Completed", "median_days"), "32.5702");
    assert_eq!(duration(&run, "Proposal Sent", "median_days"), "40.4730");

    assert_eq!(lead_conversion(&run, "leads"), "6");
    assert_eq!(lead_conversion(&run, "converted"), "2");
    assert_eq!(lead_volume(&run, "2025-01-01", "qualified_leads"), "1");
    assert_eq!(lead_volume(&run, "2025-03-01", "disqualified_leads"), "1");

    assert_eq!(activity(&run, "2025-01-01", "user_U1", "calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", "user_U1", "connected_calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", "user_U1", "meetings"), "1");
    assert_eq!(activity(&run, "2025-02-01", "user_U1", "emails"), "1");
    assert_eq!(activity(&run, "2025-02-01", "user_U1", "tasks"), "1");
    assert_eq!(activity(&run, "2025-02-01", "user_U2", "calls"), "2");
    assert_eq!(activity(&run, "2025-02-01", "user_U2", "connected_calls"), "0");

    assert_eq!(run.count("close.status_changes", "duplicate_row_dropped"), 1);
    assert_eq!(run.count("close.status_changes", "initial_stage"), 2);
    assert_eq!(run.count("close.current_status", "fallback_used"), 1);
    assert_eq!(run.count("close.current_status", "fallback_closing_stage_left_out"), 1);
}

#[test]
fn bitrix24_rest_json_with_two_pipelines() {
    let run = run_mapping_example("bitrix24", "timezone = \"UTC\"\nbase_currency = \"EUR\"", AS_OF);
    nothing_quarantined(&run);

    // Semantics S / F; USD at AMOUNT / AMOUNT_CNT = 0.92 EUR.
    assert_eq!(month(&run, "2025-02-01", "won"), "0");
    assert_eq!(month(&run, "2025-02-01", "lost"), "1");
    assert_eq!(month(&run, "2025-02-01", "win_rate"), "0.0000");
    assert_eq!(month(&run, "2025-02-01", "lost_amount"), "6440.0000");
    assert_eq!(month(&run, "2025-03-01", "won"), "1");
    assert_eq!(month(&run, "2025-03-01", "lost"), "1");
    assert_eq!(month(&run, "2025-03-01", "won_amount"), "12000.0000");
    assert_eq!(month(&run, "2025-03-01", "lost_amount"), "27600.0000");
    assert_eq!(month(&run, "2025-06-01", "won"), "1");
    assert_eq!(month(&run, "2025-06-01", "lost"), "1");
    assert_eq!(month(&run, "2025-06-01", "won_amount"), "20000.0000");
    assert_eq!(month(&run, "2025-06-01", "lost_amount"), "4600.0000");

    for (stage, n) in [
        ("New", "4"),
        ("Document preparation", "2"),
        ("Prepayment invoice", "1"),
        ("In progress", "1"),
        ("Final invoice", "1"),
        ("New (C1)", "2"),
        ("In progress (C1)", "2"),
        ("Deal successful", "1"),
        ("Deal successful (C1)", "1"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    assert_eq!(pipeline(&run, "In progress (C1)", "open_deals"), "1");
    assert_eq!(pipeline(&run, "In progress (C1)", "amount"), "4416.4600");
    assert_eq!(pipeline(&run, "Final invoice", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Document preparation", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Document preparation", "amount"), "8000.0000");
    assert_eq!(pipeline(&run, "New", "open_deals"), "0");

    assert_eq!(duration(&run, "New", "completed"), "4");
    assert_eq!(duration(&run, "New", "median_days"), "32.6042");
    assert_eq!(duration(&run, "Document preparation", "censored"), "1");
    assert_eq!(duration(&run, "Document preparation", "median_days"), "27.7577");

    assert_eq!(lead_conversion(&run, "leads"), "4");
    assert_eq!(lead_conversion(&run, "converted"), "1");
    assert_eq!(lead_volume(&run, "2025-04-01", "disqualified_leads"), "1");
    assert_eq!(lead_volume(&run, "2025-05-01", "qualified_leads"), "1");

    // Call duration and outcome from the telephony statistics.
    assert_eq!(activity(&run, "2025-01-01", "1", "calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", "1", "connected_calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", "1", "meetings"), "1");
    assert_eq!(activity(&run, "2025-02-01", "1", "emails"), "1");
    assert_eq!(activity(&run, "2025-02-01", "6", "calls"), "1");
    assert_eq!(activity(&run, "2025-02-01", "6", "connected_calls"), "0");
    assert_eq!(activity(&run, "2025-03-01", "6", "tasks"), "1");

    assert_eq!(run.count("bitrix24.current_stage", "fallback_used"), 1);
    assert_eq!(
        run.count("bitrix24.current_stage", "fallback_closing_stage_left_out"),
        1
    );
}

#[test]
fn sugarcrm_database_export_with_audit() {
    let run = run_mapping_example("sugarcrm", "timezone = \"UTC\"\nbase_currency = \"USD\"", AS_OF);
    nothing_quarantined(&run);

    // EUR at 1 / conversion_rate 0.8.
    assert_eq!(month(&run, "2025-02-01", "won"), "1");
    assert_eq!(month(&run, "2025-02-01", "won_amount"), "7000.0000");
    assert_eq!(month(&run, "2025-03-01", "won"), "1");
    assert_eq!(month(&run, "2025-03-01", "lost"), "1");
    assert_eq!(month(&run, "2025-03-01", "won_amount"), "15000.0000");
    assert_eq!(month(&run, "2025-03-01", "lost_amount"), "30000.0000");
    assert_eq!(month(&run, "2025-06-01", "won"), "1");
    assert_eq!(month(&run, "2025-06-01", "lost"), "1");
    assert_eq!(month(&run, "2025-06-01", "win_rate"), "0.5000");
    assert_eq!(month(&run, "2025-06-01", "won_amount"), "20000.0000");
    assert_eq!(month(&run, "2025-06-01", "lost_amount"), "5000.0000");
    // The deal's lead (leads.opportunity_id) and account country (accounts_opportunities).
    let by = |dim: &str, value: &str, period: &str| {
        run.one(
            "win_rate",
            &[("period_start", period), ("dimension", dim), ("dimension_value", value)],
            "won",
        )
    };
    assert_eq!(by("source", "Partner", "2025-02-01"), "1");
    assert_eq!(by("region", "Germany", "2025-03-01"), "1");

    for (stage, n) in [
        ("Prospecting", "5"),
        ("Qualification", "2"),
        ("Needs Analysis", "1"),
        ("Value Proposition", "1"),
        ("Id. Decision Makers", "1"),
        ("Perception Analysis", "0"),
        ("Proposal/Price Quote", "2"),
        ("Negotiation/Review", "2"),
        ("Closed Won", "2"),
    ] {
        assert_eq!(run.reached(stage), n, "{stage}");
    }

    assert_eq!(pipeline(&run, "Negotiation/Review", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Negotiation/Review", "weighted_amount"), "3840.4000");
    assert_eq!(pipeline(&run, "Id. Decision Makers", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Id. Decision Makers", "weighted_amount"), "3600.0000");
    assert_eq!(pipeline(&run, "Proposal/Price Quote", "open_deals"), "1");
    assert_eq!(pipeline(&run, "Proposal/Price Quote", "amount"), "10000.0000");
    assert_eq!(pipeline(&run, "Proposal/Price Quote", "weighted_amount"), "6500.0000");
    assert_eq!(pipeline(&run, "Prospecting", "open_deals"), "0");

    assert_eq!(duration(&run, "Prospecting", "completed"), "5");
    assert_eq!(duration(&run, "Prospecting", "median_days"), "8.1875");
    assert_eq!(duration(&run, "Qualification", "median_days"), "24.6528");

    assert_eq!(lead_conversion(&run, "leads"), "4");
    assert_eq!(lead_conversion(&run, "converted"), "2");
    assert_eq!(lead_conversion(&run, "conversion_rate"), "0.5000");
    assert_eq!(lead_volume(&run, "2025-01-01", "qualified_leads"), "2");
    assert_eq!(lead_volume(&run, "2025-04-01", "disqualified_leads"), "1");

    assert_eq!(activity(&run, "2025-01-01", "u-0001", "calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", "u-0001", "connected_calls"), "1");
    assert_eq!(activity(&run, "2025-01-01", "u-0001", "meetings"), "1");
    assert_eq!(activity(&run, "2025-02-01", "u-0001", "tasks"), "1");
    assert_eq!(activity(&run, "2025-02-01", "u-0006", "connected_calls"), "0");
    assert_eq!(activity(&run, "2025-03-01", "u-0006", "connected_calls"), "1");
    assert_eq!(activity(&run, "2025-05-01", "u-0006", "meetings"), "1");

    assert_eq!(run.count("sugarcrm.audit", "initial_stage"), 6);
    assert_eq!(run.count("sugarcrm.current_stage", "fallback_used"), 1);
    assert_eq!(
        run.count("sugarcrm.current_stage", "fallback_closing_stage_left_out"),
        1
    );
}
