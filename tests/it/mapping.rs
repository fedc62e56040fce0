//! The mapping language (`[[sources]]`, docs/mapping.md) through the CLI, feature by feature,
//! on exports of an imaginary CRM small enough to check by hand: what lands in the store and
//! what the report counts.

use std::collections::BTreeMap;
use std::path::Path;

use crm_kpi::schema;
use crm_kpi::store::Store;
use polars::prelude::*;

use crate::common::*;
use crate::fixtures::rows;

fn ingest_with(d: &Path, config: &str, files: &[&str]) -> (std::process::Output, std::path::PathBuf) {
    let cfg = write(d, "crm-kpi.toml", config);
    let store = d.join("store");
    let mut args = vec!["--config", s(&cfg), "ingest", "--store", s(&store)];
    args.extend_from_slice(files);
    (run_in(d, &args), store)
}

fn sorted(df: DataFrame, by: &[&str]) -> DataFrame {
    df.sort(by.to_vec(), SortMultipleOptions::default()).unwrap()
}

fn stored(store: &Path, def: &schema::TableDef) -> DataFrame {
    Store::open(store).unwrap().read_table(def).unwrap()
}

/// `  <source> <rule> <n>` lines of the report.
fn counts(report: &str) -> BTreeMap<String, u64> {
    report
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            if p.len() != 3 {
                return None;
            }
            Some((format!("{} {}", p[0], p[1]), p[2].parse().ok()?))
        })
        .collect()
}

const ACME: &str = r#"
timezone = "UTC"

[[sources]]
name = "acme.stages"
table = "stages"
rows = [
  { stage = "Lead", position = 1, probability = 0.1 },
  { stage = "Demo", position = 2, probability = 0.5 },
  { stage = "Won", position = 3, probability = 1.0, terminal = "won" },
  { stage = "Lost", position = 4, probability = 0.0, terminal = "lost" },
]
[sources.columns]
stage = "stage"
position = "position"
probability = "probability"
terminal = "terminal"

[[sources]]
name = "acme.users"
files = ["users_*.csv"]
requires = ["login"]

[[sources]]
name = "acme.deals"
table = "opportunities"
files = ["export_deals_*.csv"]
requires = ["Deal #"]
filter = "Deleted <> 'yes'"
[sources.columns]
opportunity_id = "Deal #"
account_id = { column = "Company", split = ";" }
created_at = "Opened"
owner_id = { column = "Rep", lookup = { source = "acme.users", key = "full name", value = "login" } }
amount = "Value"
stage = "Stage"
lead_id = { column = "Contact", prefix = "L-" }

[[sources]]
name = "acme.entries"
table = "stage_events"
files = ["export_deals_*.csv"]
requires = ["Deal #"]
filter = "Deleted <> 'yes'"
unpivot = { columns = '^Entered: (?P<stage>.+)$', value = "at" }
[sources.columns]
opportunity_id = "Deal #"
stage = "stage"
entered_at = "at"

[[sources]]
name = "acme.leads"
table = "leads"
files = ["export_contacts_*.csv"]
requires = ["Contact #"]
[sources.columns]
lead_id = "Contact #"
created_at = "Added"
source = { first = ["Channel", "Origin"], default = "(none)", values = { web = "Web", ads = "Ads" }, others = "Other" }
"#;

const DEALS: &str = "\
Deal #,Company,Opened,Rep,Value,Stage,Contact,Deleted,Entered: Lead,Entered: Demo,Entered: Won,Entered: Lost
D1,A1;A9,2025-01-02 09:00,Ann Smith,100,Won,L-1,no,2025-01-02 09:00,2025-01-10 09:00,2025-02-01 09:00,
D2,A2,2025-01-05 09:00,Bob Jones,,Demo,C-7,no,2025-01-05 09:00,2025-01-20 09:00,,
D3,A3,2025-01-06 09:00,Zed Unknown,50,Lost,,no,2025-01-06 09:00,,,2025-03-01 09:00
D4,A4,2025-01-07 09:00,Ann Smith,70,Lead,,yes,2025-01-07 09:00,,,
";

#[test]
fn unpivot_lookup_split_prefix_values_and_filters_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "export_deals_2025.csv", DEALS);
    write(d, "users_2025.csv", "login,full name\nann,Ann Smith\nbob,Bob Jones\n");
    write(
        d,
        "export_contacts_2025.csv",
        "Contact #,Added,Channel,Origin\nL-1,2024-12-30,web,\nL-2,2024-12-31,,ads\nL-3,2025-01-01,,\nL-4,2025-01-02,fax,\n",
    );
    let (out, store) = ingest_with(
        d,
        ACME,
        &["export_deals_2025.csv", "users_2025.csv", "export_contacts_2025.csv"],
    );
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = stdout(&out);

    let opps = sorted(stored(&store, &schema::OPPORTUNITIES), &["opportunity_id"]);
    // D4 deleted; owners by name to login (Zed has no login: kept as written); the first of
    // two companies; a contact id that is not a lead (C-) is left out; D2 has no amount.
    assert_eq!(
        rows(
            &opps,
            &[
                "opportunity_id",
                "account_id",
                "owner_id",
                "amount",
                "status",
                "lead_id"
            ]
        ),
        [
            "D1|A1|ann|100.0000|won|L-1",
            "D2|A2|bob|null|open|null",
            "D3|A3|Zed Unknown|50.0000|lost|null",
        ]
    );
    // Status from the stage's kind; D1 and D3 closed by their stage events (no closed_at column).
    let events = sorted(stored(&store, &schema::STAGE_EVENTS), &["opportunity_id", "entered_at"]);
    assert_eq!(
        rows(&events, &["opportunity_id", "stage", "entered_at"]),
        [
            "D1|Lead|2025-01-02 09:00",
            "D1|Demo|2025-01-10 09:00",
            "D1|Won|2025-02-01 09:00",
            "D2|Lead|2025-01-05 09:00",
            "D2|Demo|2025-01-20 09:00",
            "D3|Lead|2025-01-06 09:00",
            "D3|Lost|2025-03-01 09:00",
        ]
    );
    let leads = sorted(stored(&store, &schema::LEADS), &["lead_id"]);
    assert_eq!(
        rows(&leads, &["lead_id", "source"]),
        ["L-1|Web", "L-2|Ads", "L-3|(none)", "L-4|Other"]
    );
    let c = counts(&report);
    assert_eq!(c["acme.deals filtered"], 1, "{report}");
    assert_eq!(c["acme.deals first_of_several:account_id"], 1, "{report}");
    assert_eq!(c["acme.deals other_prefix_left_out:lead_id"], 1, "{report}");
    assert_eq!(c["acme.deals status_from_stage"], 3, "{report}");
    assert_eq!(c["acme.deals closed_at_from_history"], 2, "{report}");
    assert_eq!(c["acme.leads default:source"], 1, "{report}");
    assert_eq!(c["acme.leads other_value:source"], 1, "{report}");
    assert_eq!(c["opportunities blank_kept_as_null:amount"], 1, "{report}");
    // The store's stage list drives the run: D1 won in February, D3 lost in March.
    let run = run_in(
        d,
        &[
            "--config",
            s(&d.join("crm-kpi.toml")),
            "show",
            "win_rate",
            "--store",
            s(&store),
            "--as-of",
            "2025-06-30",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let csv = stdout(&run);
    assert!(csv.contains("2025-02-01,all,,1,0,1.0,100.0"), "{csv}");
    assert!(csv.contains("2025-03-01,all,,0,1,0.0,0.0,50.0"), "{csv}");
}

const LOG: &str = r#"
timezone = "UTC"

[[sources]]
name = "log.stages"
table = "stages"
rows = [
  { stage = "New", position = 1, probability = 0.1 },
  { stage = "Talks", position = 2, probability = 0.4 },
  { stage = "Offer", position = 3, probability = 0.7 },
  { stage = "Signed", position = 4, probability = 1.0, terminal = "won" },
]
[sources.columns]
stage = "stage"
position = "position"
probability = "probability"
terminal = "terminal"

[[sources]]
name = "log.deals"
table = "opportunities"
files = ["deals.csv"]
[sources.columns]
opportunity_id = "id"
account_id = "account"
created_at = "created"
owner_id = "owner"
amount = "amount"
stage = "stage"

[[sources]]
name = "log.snapshots"
table = "stage_events"
files = ["snapshots.csv"]
history = "changes"
[sources.columns]
opportunity_id = "deal"
stage = "stage"
entered_at = "at"

[[sources]]
name = "log.changes"
table = "stage_events"
files = ["changes-deal-*.json"]
fallback = 1
filter = "field = 'stage'"
initial_stage = "old"
[sources.columns]
opportunity_id = { column = "$file", pattern = '(\d+)' }
stage = "new"
entered_at = "time"

[[sources]]
name = "log.current"
table = "stage_events"
files = ["deals.csv"]
fallback = 2
[sources.columns]
opportunity_id = "id"
stage = "stage"
entered_at = "created"
"#;

#[test]
fn history_changes_initial_stage_and_fallback_levels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "deals.csv",
        "id,account,created,owner,amount,stage\n\
         1,A,2025-01-01T00:00:00Z,r,10,Signed\n\
         2,A,2025-01-01T00:00:00Z,r,10,Offer\n\
         3,A,2025-01-01T00:00:00Z,r,10,Talks\n\
         4,A,2025-01-01T00:00:00Z,r,10,Signed\n",
    );
    // Deal 1: snapshots; two rows are edits of other fields (same stage as the row before).
    write(
        d,
        "snapshots.csv",
        "deal,stage,at,amount\n\
         1,New,2025-01-01T00:00:00Z,10\n\
         1,New,2025-01-03T00:00:00Z,12\n\
         1,Talks,2025-01-05T00:00:00Z,12\n\
         1,Signed,2025-01-09T00:00:00Z,12\n\
         1,Signed,2025-01-20T00:00:00Z,15\n",
    );
    // Deal 2: a change log (its id in the file name); deal 1's log is not needed.
    write(
        d,
        "changes-deal-2.json",
        r#"{"data": [
          {"field": "stage", "old": "Talks", "new": "Offer", "time": "2025-01-07 00:00:00"},
          {"field": "label", "old": "1", "new": "3", "time": "2025-01-06 00:00:00"},
          {"field": "stage", "old": "New", "new": "Talks", "time": "2025-01-04 00:00:00"}
        ]}"#,
    );
    write(
        d,
        "changes-deal-1.json",
        r#"[{"field": "stage", "old": "New", "new": "Talks", "time": "2025-01-05 00:00:00"}]"#,
    );
    let (out, store) = ingest_with(
        d,
        LOG,
        &[
            "deals.csv",
            "snapshots.csv",
            "changes-deal-2.json",
            "changes-deal-1.json",
        ],
    );
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    let events = sorted(stored(&store, &schema::STAGE_EVENTS), &["opportunity_id", "entered_at"]);
    assert_eq!(
        rows(&events, &["opportunity_id", "stage", "entered_at"]),
        [
            // Deal 1: the snapshots' stage changes only.
            "1|New|2025-01-01 00:00",
            "1|Talks|2025-01-05 00:00",
            "1|Signed|2025-01-09 00:00",
            // Deal 2: its first stage (the old value of its first change) at its creation.
            "2|New|2025-01-01 00:00",
            "2|Talks|2025-01-04 00:00",
            "2|Offer|2025-01-07 00:00",
            // Deal 3: no history: its current stage from its creation. Deal 4 sits in a closing
            // stage with no history: nothing (its close is not its creation).
            "3|Talks|2025-01-01 00:00",
        ]
    );
    let c = counts(&report);
    assert_eq!(c["log.snapshots not_a_stage_change"], 2, "{report}");
    assert_eq!(c["log.changes filtered"], 1, "{report}");
    assert_eq!(c["log.changes initial_stage"], 2, "{report}");
    assert_eq!(c["log.changes fallback_not_needed"], 2, "{report}");
    assert_eq!(c["log.current fallback_used"], 1, "{report}");
    assert_eq!(c["log.current fallback_closing_stage_left_out"], 1, "{report}");
}

#[test]
fn locale_lenient_offsets_and_inverse_rates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = r#"
timezone = "Europe/Berlin"
base_currency = "USD"

[[sources]]
name = "de.deals"
table = "opportunities"
files = ["Verkaufschancen*.csv"]
locale = "de-DE"
lenient = true
[sources.columns]
opportunity_id = "Nr"
account_id = "Firma"
created_at = "Erstellt"
owner_id = "Besitzer"
amount = "Betrag"
currency = "Währung"
status = { column = "Status", values = { Gewonnen = "won", Verloren = "lost", Offen = "open" } }
closed_at = "Abschluss"
expected_close_date = "Erwartet"

[[sources]]
name = "corp.rates"
table = "fx_rates"
files = ["rates.csv"]
inverse = true
[sources.columns]
currency = "code"
date = "from"
rate_to_base = "per_eur"
"#;
    write(
        d,
        "Verkaufschancen.csv",
        "Nr;Firma;Erstellt;Besitzer;Betrag;Währung;Status;Abschluss;Erwartet\n\
         V1;A;03.02.2025 10:00;r;1.234,50 €;EUR;Gewonnen;2025-03-04T09:00:00+0000;\n\
         \n\
         V2;A;2025-02-05 10:00:00+00;r;2.000,00;USD;Offen;;irgendwann\n",
    );
    // Units per one EUR (the corporate currency); the base is USD, itself in the list.
    write(
        d,
        "rates.csv",
        "code,from,per_eur\nUSD,2025-01-01,1.25\nEUR,2025-01-01,1\n",
    );
    let (out, store) = ingest_with(d, config, &["rates.csv", "Verkaufschancen.csv"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    let opps = sorted(stored(&store, &schema::OPPORTUNITIES), &["opportunity_id"]);
    // 03.02.2025 10:00 Berlin = 09:00 UTC; 1.234,50 EUR at 1.25 USD per EUR = 1543.125 USD;
    // `irgendwann` is no date: null under `lenient`, counted.
    assert_eq!(
        rows(
            &opps,
            &[
                "opportunity_id",
                "created_at",
                "amount",
                "amount_base",
                "status",
                "closed_at",
                "expected_close_date"
            ]
        ),
        [
            "V1|2025-02-03 09:00|1234.5000|1543.1250|won|2025-03-04 09:00|null",
            "V2|2025-02-05 10:00|2000.0000|2000.0000|open|null|null",
        ]
    );
    let rates = sorted(stored(&store, &schema::FX_RATES), &["currency"]);
    assert_eq!(
        rows(&rates, &["currency", "rate_to_base"]),
        ["EUR|1.2500", "USD|1.0000"]
    );
    let c = counts(&report);
    assert_eq!(c["de.deals blank_line"], 1, "{report}");
    assert_eq!(c["opportunities lenient_null:expected_close_date"], 1, "{report}");
    assert_eq!(c["corp.rates inverted_rate"], 2, "{report}");
}

#[test]
fn a_preset_reads_an_export_folder_and_lists_what_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "Opportunity.csv",
        "\"Id\",\"AccountId\",\"OwnerId\",\"StageName\",\"Amount\",\"CloseDate\",\"CreatedDate\",\"IsClosed\",\"IsWon\"\n\
         \"0061x00000AbCdEAAV\",\"0011x00000AbCdEAAV\",\"0051x00000AbCdEAAV\",\"Prospecting\",\"10\",\"2025-03-01\",\"2025-01-02T10:00:00.000Z\",\"false\",\"false\"\n",
    );
    write(
        d,
        "Contact.csv",
        "\"Id\",\"LastName\"\n\"0031x00000AbCdEAAV\",\"Lee\"\n",
    );
    write(
        d,
        "report1700000000000.csv",
        "\"Opportunity Name\",\"Stage\"\n\"Big deal\",\"Prospecting\"\n\n\n\"Grand Totals (1 records)\"\n\"Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.\"\n\"Confidential Information - Do Not Distribute\"\n",
    );
    let store = d.join("store");
    // A report export is refused, saying what to export instead; the store stays untouched.
    let refused = run_in(
        d,
        &[
            "ingest",
            "--preset",
            "salesforce",
            "--store",
            s(&store),
            "Opportunity.csv",
            "report1700000000000.csv",
        ],
    );
    assert_eq!(code(&refused), 2, "{}", stdout(&refused));
    let e = stderr(&refused);
    assert!(
        e.contains("this is a Salesforce report export") && e.contains("Data Export"),
        "{e}"
    );
    assert!(!store.join("_manifest.json").exists());
    let out = run_in(
        d,
        &[
            "ingest",
            "--preset",
            "salesforce",
            "--store",
            s(&store),
            "Opportunity.csv",
            "Contact.csv",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("not read: ") && report.contains("Contact.csv: no source of the preset reads it"),
        "{report}"
    );
    let opps = stored(&store, &schema::OPPORTUNITIES);
    // An open deal's CloseDate is its expected close.
    assert_eq!(
        rows(&opps, &["opportunity_id", "status", "closed_at", "expected_close_date"]),
        ["0061x00000AbCdEAAV|open|null|2025-03-01"]
    );
    // Without a preset, an unknown file is still an error that suggests one.
    let plain = run_in(d, &["ingest", "--store", s(&d.join("other")), "Contact.csv"]);
    assert_eq!(code(&plain), 2);
    assert!(stderr(&plain).contains("--preset salesforce"), "{}", stderr(&plain));
}

#[test]
fn preset_show_prints_a_config_that_loads() {
    for name in ["salesforce", "hubspot", "pipedrive"] {
        let out = run(&["preset", "show", name]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stdout(&out);
        let dir = tempfile::tempdir().unwrap();
        // The printed preset, minus its description line, is a valid crm-kpi.toml.
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("description = "))
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = write(dir.path(), "crm-kpi.toml", &body);
        let check = run(&["--config", s(&cfg), "list"]);
        assert_eq!(code(&check), 0, "{name}: {}", stderr(&check));
    }
    let list = run(&["preset", "list"]);
    assert!(stdout(&list).contains("salesforce") && stdout(&list).contains("pipedrive"));
    let bad = run(&["preset", "show", "zoho"]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("built-in presets: salesforce, hubspot, pipedrive"));
}
