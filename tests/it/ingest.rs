//! Ingest end to end on fixtures small enough to check by hand: every validation rule,
//! the three modes, idempotent re-ingest, currency and timezone handling, mappings, and the
//! three input formats.

use std::path::Path;

use crm_kpi::schema;
use crm_kpi::store::Store;
use polars::prelude::*;

use crate::common::*;
use crate::fixtures::{quarantine, strs};

const FX: &str = "currency,date,rate_to_base\nEUR,2024-01-01,1.10\nEUR,2024-02-01,1.20\n";

const OPPS: &str = "\
opportunity_id,account_id,created_at,owner_id,amount,currency,status,closed_at
O1,A1,2024-01-05T10:00:00Z,R1,1000,EUR,won,2024-02-10T10:00:00Z
O2,A1,2024-01-06,R1,500,,open,
O3,A2,2024-01-07,R2,-5,USD,open,
O4,A2,2024-01-07,R2,100,USD,won,
O5,A2,2024-03-07,R2,100,USD,lost,2024-01-01
O6,A2,yesterday,R2,100,USD,open,
O7,A2,2024-03-07,R2,100,SEK,open,
O8,A2,2024-03-07,R2,100,USD,pending,
O9,,2024-03-07,R2,100,USD,open,
O2,A1,2024-01-06,R1,600,,open,
O10,A3,2024-02-15 09:00:00,R2,50,eur,lost,2024-03-01
";

const EVENTS: &str = "\
opportunity_id,stage,entered_at
O1,prospecting,2024-01-05T10:00:00Z
O1,closed_won,2024-02-10T10:00:00Z
O1,limbo,2024-02-10T10:00:00Z
O404,prospecting,2024-02-10T10:00:00Z
O2,prospecting,2024-01-01T10:00:00Z
";

const ORDERS: &str = "\
order_id,account_id,ordered_at,amount,currency,opportunity_id,is_refund
X1,A1,2024-02-11,1000,EUR,O1,
X2,A1,2024-02-12,-100,EUR,O1,true
X3,A1,2024-02-12,-100,EUR,O1,
X4,A1,2024-02-13,10,USD,O404,
";

fn fixture(d: &Path) {
    write(d, "fx_rates.csv", FX);
    write(d, "opportunities.csv", OPPS);
    write(d, "stage_events.csv", EVENTS);
    write(d, "orders.csv", ORDERS);
}

fn ingest(d: &Path, store: &Path, extra: &[&str], files: &[&str]) -> std::process::Output {
    let mut args = vec!["ingest", "--store", s(store)];
    args.extend_from_slice(extra);
    args.extend_from_slice(files);
    run_in(d, &args)
}

fn table(store: &Path, def: &schema::TableDef) -> DataFrame {
    Store::open(store).unwrap().read_table(def).unwrap()
}

fn manifest(store: &Path) -> String {
    std::fs::read_to_string(store.join("_manifest.json")).unwrap()
}

#[test]
fn every_rule_quarantines_with_its_reason_and_good_rows_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d);
    let store = d.join("store");
    let out = ingest(
        d,
        &store,
        &[],
        &["fx_rates.csv", "opportunities.csv", "stage_events.csv", "orders.csv"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    insta::assert_snapshot!("ingest_every_rule_report", stdout(&out));

    let opps = table(&store, &schema::OPPORTUNITIES);
    assert_eq!(strs(&opps, "opportunity_id"), ["O1", "O10", "O2", "O7", "O9"]);
    // O1: 1000 EUR at the rate of its close (2024-02-10: the 2024-02-01 rate 1.20, as
    // Salesforce and HubSpot convert deals); O2: the later duplicate (600) wins, base currency
    // by default; O10: lower-case currency normalized, closed 2024-03-01 at 1.20. O7 has no
    // SEK rate and O9 no account: both kept (a deal still counts in win rates and funnels),
    // O7 without a base amount, and both counted in the report.
    assert_eq!(
        opps.column("amount_base").unwrap().f64().unwrap().to_vec(),
        [Some(1200.0), Some(60.0), Some(600.0), None, Some(100.0)]
    );
    assert_eq!(strs(&opps, "currency"), ["EUR", "EUR", "null", "SEK", "USD"]);
    assert_eq!(strs(&opps, "account_id"), ["A1", "A3", "A1", "A2", "null"]);

    let q = quarantine(&store, "opportunities");
    let mut got: Vec<(String, String)> = strs(&q, "opportunity_id").into_iter().zip(strs(&q, "_rule")).collect();
    got.sort();
    let want = [
        ("O2", "duplicate_key"),
        ("O3", "negative_amount"),
        ("O4", "closed_without_date"),
        ("O5", "closed_before_created"),
        ("O6", "unparseable"),
        ("O8", "invalid_value"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    // Original values are kept as text, with the file and 1-based row.
    let o6 = q
        .filter(&q.column("opportunity_id").unwrap().str().unwrap().equal("O6"))
        .unwrap();
    assert_eq!(strs(&o6, "created_at"), ["yesterday"]);
    assert_eq!(strs(&o6, "_row"), ["6"]);
    assert!(strs(&o6, "_file")[0].ends_with("opportunities.csv"));
    assert_eq!(
        strs(&o6, "_reason"),
        ["unparseable: unparseable timestamp in `created_at`: 'yesterday'"]
    );

    let ev = quarantine(&store, "stage_events");
    let mut rules = strs(&ev, "_rule");
    rules.sort();
    assert_eq!(rules, ["event_before_created", "unknown_deal", "unknown_stage"]);
    assert_eq!(table(&store, &schema::STAGE_EVENTS).height(), 2);

    let orders = table(&store, &schema::ORDERS);
    assert_eq!(strs(&orders, "order_id"), ["X1", "X2"]);
    assert_eq!(
        orders.column("amount_base").unwrap().f64().unwrap().to_vec(),
        [Some(1200.0), Some(-120.0)]
    );
    let mut rules = strs(&quarantine(&store, "orders"), "_rule");
    rules.sort();
    assert_eq!(rules, ["negative_amount", "unknown_deal"]);

    let v = run(&["validate", "--store", s(&store)]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert!(stdout(&v).contains("integrity OK"));
}

#[test]
fn strict_exits_1_when_rows_were_rejected_but_commits_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d);
    let store = d.join("store");
    let out = ingest(d, &store, &["--strict"], &["fx_rates.csv", "opportunities.csv"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("--strict"));
    assert_eq!(table(&store, &schema::OPPORTUNITIES).height(), 5);
    let clean = ingest(d, &store, &["--strict"], &["fx_rates.csv"]);
    assert_eq!(code(&clean), 0, "already ingested: skipped, nothing rejected");
}

#[test]
fn reingesting_the_same_files_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d);
    let store = d.join("store");
    let files = ["fx_rates.csv", "opportunities.csv", "stage_events.csv", "orders.csv"];
    assert_eq!(code(&ingest(d, &store, &[], &files)), 0);
    let before = manifest(&store);
    let again = ingest(d, &store, &[], &files);
    assert_eq!(code(&again), 0);
    assert!(stdout(&again).contains("nothing to commit"), "{}", stdout(&again));
    assert_eq!(manifest(&store), before);
    // The same rows under another file name: upserted onto themselves, counts unchanged.
    std::fs::copy(d.join("opportunities.csv"), d.join("opportunities-copy.csv")).unwrap();
    let copy = ingest(d, &store, &[], &["opportunities-copy.csv"]);
    assert_eq!(code(&copy), 0);
    let m: serde_json::Value = serde_json::from_str(&manifest(&store)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&before).unwrap();
    for t in ["fx_rates", "opportunities", "stage_events", "orders"] {
        assert_eq!(m["tables"][t]["rows"], b["tables"][t]["rows"], "{t}");
    }
    assert_eq!(
        strs(&table(&store, &schema::OPPORTUNITIES), "amount"),
        ["1000.0", "50.0", "600.0", "100.0", "100.0"]
    );
}

#[test]
fn modes_upsert_append_replace() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let head = "account_id,created_at,name,updated_at\n";
    write(
        d,
        "accounts.csv",
        &format!("{head}A1,2024-01-01,Old,2024-01-01\nA2,2024-01-01,Two,\n"),
    );
    write(
        d,
        "accounts-2.csv",
        &format!("{head}A1,2024-01-01,New,2024-02-01\nA3,2024-01-01,Three,\n"),
    );
    write(d, "accounts-3.csv", &format!("{head}A1,2024-01-01,Stale,2023-12-01\n"));
    let names = |store: &Path| strs(&table(store, &schema::ACCOUNTS), "name");

    assert_eq!(code(&ingest(d, &store, &[], &["accounts.csv"])), 0);
    assert_eq!(code(&ingest(d, &store, &[], &["accounts-2.csv"])), 0);
    assert_eq!(names(&store), ["New", "Two", "Three"]);
    // A row older (by updated_at) than the stored one loses, and is reported.
    let stale = ingest(d, &store, &[], &["accounts-3.csv"]);
    assert!(stdout(&stale).contains("duplicate_key"), "{}", stdout(&stale));
    assert_eq!(names(&store), ["New", "Two", "Three"]);

    let store2 = d.join("store2");
    assert_eq!(code(&ingest(d, &store2, &[], &["accounts.csv"])), 0);
    let out = ingest(d, &store2, &["--mode", "append"], &["accounts-2.csv"]);
    assert_eq!(code(&out), 0);
    assert_eq!(names(&store2), ["Old", "Two", "Three"]);
    assert_eq!(strs(&quarantine(&store2, "accounts"), "_rule"), ["duplicate_key"]);

    let out = ingest(d, &store2, &["--mode", "replace"], &["accounts-3.csv"]);
    assert_eq!(code(&out), 0);
    assert_eq!(names(&store2), ["Stale"]);
}

#[test]
fn naive_timestamps_are_local_and_mappings_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "crm-kpi.toml",
        r#"
timezone = "Europe/Paris"
base_currency = "EUR"

[mapping.opportunities.columns]
"Opportunity ID" = "opportunity_id"
"Close Date" = "closed_at"
"Stage" = "status"

[mapping.opportunities.values.status]
"Closed Won" = "won"
"Open" = "open"
"#,
    );
    write(
        d,
        "opportunities.csv",
        "Opportunity ID,account_id,created_at,owner_id,amount,Stage,Close Date,Extra\n\
         O1,A1,2024-07-01 10:00:00,R1,10,Closed Won,2024-07-02T10:00:00+02:00,x\n\
         O2,A1,1719828000,R1,20,Open,,y\n",
    );
    let store = d.join("store");
    let out = run_in(d, &["ingest", "--store", s(&store), "opportunities.csv"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Extra"),
        "ignored column is noted: {}",
        stdout(&out)
    );
    let o = table(&store, &schema::OPPORTUNITIES);
    assert_eq!(strs(&o, "status"), ["won", "open"]);
    let created = o.column("created_at").unwrap().cast(&DataType::Int64).unwrap();
    // 10:00 in Paris (CEST, UTC+2) is 08:00 UTC; epoch 1719828000 is 2024-07-01T10:00:00Z.
    assert_eq!(
        created.i64().unwrap().to_vec(),
        [Some(1_719_820_800_000_000), Some(1_719_828_000_000_000)]
    );
    // Base currency EUR, no currency column: amounts are already in base.
    assert_eq!(
        o.column("amount_base").unwrap().f64().unwrap().to_vec(),
        [Some(10.0), Some(20.0)]
    );
}

#[test]
fn csv_ndjson_and_parquet_inputs_store_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "leads.csv",
        "lead_id,created_at,source,qualified_at\nL1,2024-01-05T10:00:00Z,web,\nL2,2024-02-05T10:00:00Z,ads,2024-02-06T00:00:00Z\n",
    );
    write(
        d,
        "leads.ndjson",
        "{\"lead_id\":\"L1\",\"created_at\":\"2024-01-05T10:00:00Z\",\"source\":\"web\"}\n\
         {\"lead_id\":\"L2\",\"created_at\":1707127200000,\"source\":\"ads\",\"qualified_at\":\"2024-02-06\"}\n",
    );
    let a = d.join("a");
    let b = d.join("b");
    let c = d.join("c");
    assert_eq!(code(&ingest(d, &a, &[], &["leads.csv"])), 0);
    assert_eq!(code(&ingest(d, &b, &[], &["leads.ndjson"])), 0);
    let ta = table(&a, &schema::LEADS);
    assert!(
        ta.equals_missing(&table(&b, &schema::LEADS)),
        "{ta}\n{}",
        table(&b, &schema::LEADS)
    );
    // Parquet, typed: write the stored table out and ingest it.
    let mut typed = ta.clone();
    let pq = d.join("leads.parquet");
    ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut typed)
        .unwrap();
    assert_eq!(code(&ingest(d, &c, &[], &["leads.parquet"])), 0);
    assert!(ta.equals_missing(&table(&c, &schema::LEADS)));
    // leads are partitioned by local month of created_at.
    let m: serde_json::Value = serde_json::from_str(&manifest(&a)).unwrap();
    let files: Vec<String> = m["tables"]["leads"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files,
        [
            "tables/leads/g000001/month=2024-01/part-0.parquet",
            "tables/leads/g000001/month=2024-02/part-0.parquet"
        ]
    );
}

#[test]
fn a_file_ingested_before_a_replace_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    write(d, "reps.csv", "rep_id,name\nR1,Ann\nR2,Bob\n");
    write(d, "reps-new.csv", "rep_id,name\nR3,Cid\n");
    assert_eq!(code(&ingest(d, &store, &[], &["reps.csv"])), 0);
    assert_eq!(code(&ingest(d, &store, &["--mode", "replace"], &["reps-new.csv"])), 0);
    assert_eq!(strs(&table(&store, &schema::REPS), "rep_id"), ["R3"]);
    let again = ingest(d, &store, &[], &["reps.csv"]);
    assert!(!stdout(&again).contains("skipped"), "{}", stdout(&again));
    assert_eq!(strs(&table(&store, &schema::REPS), "rep_id"), ["R1", "R2", "R3"]);
}

#[test]
fn the_previous_generation_stays_readable_until_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    write(d, "reps.csv", "rep_id,name\nR1,Ann\n");
    write(d, "reps-2.csv", "rep_id,name\nR2,Bob\n");
    write(d, "reps-3.csv", "rep_id,name\nR3,Cid\n");
    assert_eq!(code(&ingest(d, &store, &[], &["reps.csv"])), 0);
    let old = Store::open(&store).unwrap();
    assert_eq!(code(&ingest(d, &store, &[], &["reps-2.csv"])), 0);
    assert_eq!(strs(&old.read_table(&schema::REPS).unwrap(), "rep_id"), ["R1"]);
    // Issue 13: a reader pins the version it opened: two commits later it still reads it.
    assert_eq!(code(&ingest(d, &store, &[], &["reps-3.csv"])), 0);
    assert_eq!(strs(&old.read_table(&schema::REPS).unwrap(), "rep_id"), ["R1"]);
    assert!(store.join("tables/reps/g000001").exists(), "pinned by a live reader");
    // Once the reader is gone, the next write removes it (two generations back).
    drop(old);
    write(d, "reps-4.csv", "rep_id,name\nR4,Dee\n");
    assert_eq!(code(&ingest(d, &store, &[], &["reps-4.csv"])), 0);
    assert!(
        !store.join("tables/reps/g000001").exists(),
        "two generations back is removed"
    );
    assert!(!store.join("tables/reps/g000002").exists());
    assert!(store.join("tables/reps/g000003").exists());
    assert!(!store.join(".pins").read_dir().unwrap().any(|_| true), "no pin left");
}

/// Leads whose duplicates, upsert winners and bad rows fall on either side of batch
/// boundaries when read two rows at a time.
const BATCHED_LEADS: &str = "\
lead_id,created_at,source,updated_at
L1,2024-01-05,web,2024-01-01T00:00:00Z
L2,2024-02-05,web,
L1,2024-01-05,event,2024-02-01T00:00:00Z
L3,not a date,web,
L2,2024-02-06,referral,
L4,2024-03-05,web,
L5,2024-03-06,web,2024-05-01T00:00:00Z
";

fn ingest_batched(d: &Path, store: &Path, batch_rows: Option<usize>, files: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["ingest", "--store", s(store)])
        .args(files)
        .current_dir(d)
        .env_remove("CRM_KPI_LOG")
        .env("NO_COLOR", "1");
    match batch_rows {
        Some(n) => cmd.env("CRM_KPI_INGEST_BATCH_ROWS", n.to_string()),
        None => cmd.env_remove("CRM_KPI_INGEST_BATCH_ROWS"),
    };
    cmd.output().expect("crm-kpi runs")
}

fn sorted_rows(df: &DataFrame) -> Vec<String> {
    let cols: Vec<Vec<String>> = df.get_column_names().iter().map(|c| strs(df, c)).collect();
    let mut rows: Vec<String> = (0..df.height())
        .map(|i| cols.iter().map(|c| c[i].as_str()).collect::<Vec<_>>().join("|"))
        .collect();
    rows.sort();
    rows
}

#[test]
fn small_batches_give_the_same_store_with_file_relative_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "leads.csv", BATCHED_LEADS);
    // The same rows as Parquet in row groups of 3, so batches of 2 cut inside row groups.
    let mut df = CsvReadOptions::default()
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(d.join("leads.csv")))
        .unwrap()
        .finish()
        .unwrap();
    let mut f = std::fs::File::create(d.join("leads-pq.parquet")).unwrap();
    ParquetWriter::new(&mut f)
        .with_row_group_size(Some(3))
        .finish(&mut df)
        .unwrap();
    let later = "lead_id,created_at,source,updated_at\nL5,2024-03-06,old,2024-04-01T00:00:00Z\nL6,2024-04-01,web,\n";
    write(d, "leads-later.csv", later);

    let mut stores = Vec::new();
    for (name, batch) in [("one", None), ("b1", Some(1)), ("b2", Some(2)), ("b3", Some(3))] {
        for input in ["leads.csv", "leads-pq.parquet"] {
            let store = d.join(format!("store-{name}-{input}"));
            let out = ingest_batched(d, &store, batch, &[input]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            let out = ingest_batched(d, &store, batch, &["leads-later.csv"]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            stores.push((format!("{name} {input}"), store));
        }
    }
    let (_, first) = &stores[0];
    let leads = table(first, &schema::LEADS);
    assert_eq!(strs(&leads, "lead_id"), ["L1", "L2", "L4", "L5", "L6"]);
    // L1: the later updated_at (row 3, second batch) wins; L2: no updated_at, the later row
    // wins; L5: the stored row has a later updated_at than the re-ingested one.
    assert_eq!(strs(&leads, "source"), ["event", "referral", "web", "web", "web"]);
    for (name, store) in &stores[1..] {
        assert_eq!(
            sorted_rows(&table(store, &schema::LEADS)),
            sorted_rows(&leads),
            "{name}"
        );
    }
    for (name, store) in &stores {
        let q = quarantine(store, "leads");
        let mut got: Vec<(String, String, String)> = strs(&q, "_row")
            .into_iter()
            .zip(strs(&q, "_rule"))
            .zip(strs(&q, "lead_id"))
            .map(|((r, u), l)| (r, u, l))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("1".into(), "duplicate_key".into(), "L1".into()),
                ("1".into(), "duplicate_key".into(), "L5".into()),
                ("2".into(), "duplicate_key".into(), "L2".into()),
                ("4".into(), "unparseable".into(), "L3".into()),
            ],
            "{name}"
        );
        let reasons = strs(&q, "_reason").join("\n");
        // Files are named by their absolute path.
        assert!(
            reasons.contains("(lead_id) = (L1); row 3 of /") && reasons.contains("/leads"),
            "{name}: {reasons}"
        );
        assert!(reasons.contains("(lead_id) = (L2); row 5 of /"), "{name}: {reasons}");
        assert!(
            reasons.contains("the stored row has a later updated_at"),
            "{name}: {reasons}"
        );
    }
    // Re-ingesting the same files changes nothing.
    let (_, store) = &stores[3];
    let before = manifest(store);
    let out = ingest_batched(d, store, Some(2), &["leads-pq.parquet", "leads-later.csv"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to commit"), "{}", stdout(&out));
    assert_eq!(manifest(store), before);
}

/// Issue 12: a file whose rows were quarantined for want of an fx rate is read again once the
/// rates are there (its content is unchanged, but what decided its rows' fate is not), and the
/// quarantine then stands as of that latest read.
#[test]
fn reingest_after_adding_fx_rates_brings_the_rows_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "opportunities.csv", OPPS);
    let orders = "order_id,account_id,ordered_at,amount,currency\nX1,A1,2024-02-11,1000,EUR\nX2,A1,2024-02-12,10,USD\n";
    write(d, "orders.csv", orders);
    let store = d.join("store");
    assert_eq!(code(&ingest(d, &store, &[], &["opportunities.csv", "orders.csv"])), 0);
    let q = quarantine(&store, "orders");
    assert_eq!(strs(&q, "_rule"), ["no_fx_rate"]);
    // Same files, nothing else changed: skipped.
    let again = ingest(d, &store, &[], &["orders.csv"]);
    assert!(
        stdout(&again).contains("same content already ingested"),
        "{}",
        stdout(&again)
    );
    // The rates arrive; the same orders file is read again, not skipped.
    write(d, "fx_rates.csv", FX);
    assert_eq!(code(&ingest(d, &store, &[], &["fx_rates.csv"])), 0);
    let retry = ingest(d, &store, &[], &["orders.csv"]);
    assert_eq!(code(&retry), 0, "{}", stderr(&retry));
    assert!(
        !stdout(&retry).contains("same content already ingested"),
        "{}",
        stdout(&retry)
    );
    assert!(stdout(&retry).contains("judged anew"), "{}", stdout(&retry));
    let stored = table(&store, &schema::ORDERS);
    assert_eq!(strs(&stored, "order_id"), ["X1", "X2"]);
    // 1000 EUR on 2024-02-11 at the 2024-02-01 rate.
    assert_eq!(strs(&stored, "amount_base"), ["1200.0", "10.0"]);
    assert_eq!(
        quarantine(&store, "orders").height(),
        0,
        "the quarantine as it stands now"
    );
    let v = run_in(d, &["validate", "--store", s(&store)]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert!(!stdout(&v).contains("no_fx_rate"), "{}", stdout(&v));
}
