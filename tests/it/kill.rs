//! SIGKILL robustness (README, "Reliability": "a crash or kill at any moment leaves the previous consistent
//! store"). A store holds an "old" state; an ingest of the whole history is killed with
//! SIGKILL at delays spread over the measured duration of one uninterrupted ingest. After
//! each kill the store must validate and hold exactly the old row counts or exactly the new
//! ones, and re-running the ingest must complete with the new counts and leave no orphans.
//!
//! `scripts/kill-test.sh` runs the same check on a release build at larger scales.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// Tables ingested first, to give the store a non-empty "old" state.
const FIRST_PART: &[&str] = &["fx_rates", "reps", "accounts", "campaigns", "leads"];

/// Row counts of every table and every quarantine, from `_manifest.json`.
type Counts = BTreeMap<String, u64>;

fn manifest(store: &Path) -> serde_json::Value {
    let text = std::fs::read(store.join("_manifest.json")).expect("store has a manifest");
    serde_json::from_slice(&text).expect("manifest is JSON")
}

fn counts(store: &Path) -> Counts {
    let m = manifest(store);
    let mut out = Counts::new();
    for (t, e) in m["tables"].as_object().expect("tables") {
        out.insert(t.clone(), e["rows"].as_u64().expect("rows"));
    }
    for (t, files) in m["quarantine"].as_object().expect("quarantine") {
        let n = files
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f["rows"].as_u64().expect("rows"))
            .sum();
        out.insert(format!("quarantine/{t}"), n);
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Table of an input file, from its name (`leads.csv`, `leads-2024.csv`).
fn table_of(p: &Path) -> String {
    let name = p.file_name().unwrap().to_str().unwrap();
    let stem = name.split('.').next().unwrap();
    crm_kpi::schema::TABLES
        .iter()
        .map(|t| t.name)
        .filter(|t| stem == *t || stem.strip_prefix(t).is_some_and(|r| r.starts_with(['-', '_'])))
        .max_by_key(|t| t.len())
        .unwrap_or(stem)
        .to_string()
}

/// A CRM history to ingest: `generate --scale tiny --seed 7`, or, while the generator writes
/// nothing, a synthetic one built here by repeating rows.
fn history(dir: &Path) -> Vec<PathBuf> {
    let gen_dir = dir.join("gen");
    let out = run_in(
        dir,
        &["generate", "--scale", "tiny", "--seed", "7", "--out", s(&gen_dir)],
    );
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&gen_dir) {
        Ok(rd) if code(&out) == 0 => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv" || e == "parquet"))
            .collect(),
        _ => Vec::new(),
    };
    if files.is_empty() {
        eprintln!("kill test: `generate` wrote nothing; using a built-in synthetic history");
        files = synthetic(&dir.join("synthetic"));
    }
    files.sort();
    files
}

fn synthetic(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut fx = String::from("currency,date,rate_to_base\n");
    for day in 1..=28 {
        for m in 1..=12 {
            writeln!(fx, "EUR,2023-{m:02}-{day:02},1.{:02}", (day + m) % 20).unwrap();
            writeln!(fx, "GBP,2023-{m:02}-{day:02},1.2{}", day % 10).unwrap();
        }
    }
    let mut reps = String::from("rep_id,name,team\n");
    for r in 0..40 {
        writeln!(reps, "R{r},Rep {r},T{}", r % 4).unwrap();
    }
    let mut accounts = String::from("account_id,created_at,name,region\n");
    for a in 0..2000 {
        writeln!(accounts, "A{a},2023-01-{:02}T08:00:00Z,Account {a},EMEA", 1 + a % 28).unwrap();
    }
    let mut campaigns = String::from("campaign_id,name,channel,spend,currency,started_at\n");
    for c in 0..20 {
        writeln!(campaigns, "C{c},Campaign {c},email,{},EUR,2023-02-01", 1000 + c).unwrap();
    }
    let mut leads = String::from("lead_id,created_at,source,campaign_id,owner_id\n");
    for l in 0..20_000 {
        writeln!(
            leads,
            "L{l},2023-{:02}-{:02}T09:00:00Z,web,C{},R{}",
            1 + l % 12,
            1 + l % 28,
            l % 20,
            l % 40
        )
        .unwrap();
    }
    let stages = ["prospecting", "qualification", "proposal", "negotiation"];
    let mut opps =
        String::from("opportunity_id,account_id,created_at,owner_id,amount,currency,status,closed_at,lead_id\n");
    let mut events = String::from("opportunity_id,stage,entered_at\n");
    for o in 0..8000 {
        let (m, d) = (1 + o % 11, 1 + o % 28);
        let (status, closed, last) = match o % 3 {
            0 => ("won", format!("2023-{:02}-{d:02}T12:00:00Z", m + 1), "closed_won"),
            1 => ("lost", format!("2023-{:02}-{d:02}T12:00:00Z", m + 1), "closed_lost"),
            _ => ("open", String::new(), ""),
        };
        writeln!(
            opps,
            "O{o},A{},2023-{m:02}-{d:02}T10:00:00Z,R{},{},{},{status},{closed},L{o}",
            o % 2000,
            o % 40,
            100 + o * 3,
            ["EUR", "GBP", "USD"][o % 3]
        )
        .unwrap();
        for (i, st) in stages.iter().enumerate().take(1 + o % 4) {
            writeln!(events, "O{o},{st},2023-{m:02}-{d:02}T1{i}:00:00Z").unwrap();
        }
        if !last.is_empty() {
            writeln!(events, "O{o},{last},{closed}").unwrap();
        }
    }
    [
        ("fx_rates.csv", fx),
        ("reps.csv", reps),
        ("accounts.csv", accounts),
        ("campaigns.csv", campaigns),
        ("leads.csv", leads),
        ("opportunities.csv", opps),
        ("stage_events.csv", events),
    ]
    .into_iter()
    .map(|(name, text)| write(dir, name, &text))
    .collect()
}

fn ingest_args<'a>(store: &'a Path, files: &'a [PathBuf]) -> Vec<&'a str> {
    let mut args = vec!["ingest", "--store", s(store)];
    args.extend(files.iter().map(|p| s(p)));
    args
}

/// Every table version and quarantine batch directory on disk is one the manifest names,
/// and no temporary manifest is left.
fn assert_no_orphans(store: &Path) {
    let m = manifest(store);
    let mut referenced: BTreeSet<PathBuf> = BTreeSet::new();
    for e in m["tables"].as_object().unwrap().values() {
        referenced.insert(store.join(e["dir"].as_str().unwrap()));
    }
    for files in m["quarantine"].as_object().unwrap().values() {
        for f in files.as_array().unwrap() {
            referenced.insert(store.join(f["path"].as_str().unwrap()).parent().unwrap().to_path_buf());
        }
    }
    for top in ["tables", "quarantine"] {
        let Ok(tables) = std::fs::read_dir(store.join(top)) else {
            continue;
        };
        for t in tables.flatten() {
            for v in std::fs::read_dir(t.path()).unwrap().flatten() {
                assert!(
                    referenced.contains(&v.path()),
                    "orphan left behind: {}",
                    v.path().display()
                );
            }
        }
    }
    assert!(
        !store.join("_manifest.json.tmp").exists(),
        "temporary manifest left behind"
    );
}

/// What the stores of one test look like.
struct Setup<'a> {
    dir: &'a Path,
    files: &'a [PathBuf],
    old_store: PathBuf,
    old: Counts,
    new: Counts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Old,
    New,
}

/// One try: kill an ingest of all files after `delay`, check the store, recover.
fn one_try(setup: &Setup, i: usize, delay: Duration) -> Result<State, String> {
    let Setup {
        dir,
        files,
        old_store,
        old,
        new,
    } = setup;
    let store = dir.join(format!("try{i}"));
    copy_dir(old_store, &store);
    let mut child = Command::new(bin())
        .args(ingest_args(&store, files))
        .current_dir(dir)
        .env_remove("CRM_KPI_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("crm-kpi starts");
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL; an error means it had already exited
    let status = child.wait().unwrap();
    let fail = |what: String| Err(format!("try {i} (killed after {delay:?}, {status}): {what}"));

    let v = run_in(dir, &["validate", "--store", s(&store)]);
    if code(&v) != 0 {
        return fail(format!("validate failed: {}", stderr(&v).trim()));
    }
    let got = counts(&store);
    let state = if got == *old {
        State::Old
    } else if got == *new {
        State::New
    } else {
        return fail(format!("counts are neither old nor new: {got:?}"));
    };
    // Recovery: the same ingest again completes with the new counts and no orphans.
    let again = run_in(dir, &ingest_args(&store, files));
    if code(&again) != 0 {
        return fail(format!("re-ingest failed: {}", stderr(&again).trim()));
    }
    let got = counts(&store);
    if got != *new {
        return fail(format!("re-ingest gave {got:?}"));
    }
    assert_no_orphans(&store);
    std::fs::remove_dir_all(&store).unwrap();
    Ok(state)
}

#[test]
fn sigkill_during_ingest_leaves_old_or_new_store() {
    const TRIES: usize = 20;
    const WORKERS: usize = 2;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let files = history(dir);
    let first: Vec<PathBuf> = files
        .iter()
        .filter(|p| FIRST_PART.contains(&table_of(p).as_str()))
        .cloned()
        .collect();
    assert!(
        !first.is_empty() && first.len() < files.len(),
        "history files: {files:?}"
    );

    // The old state.
    let old_store = dir.join("old");
    let out = run_in(dir, &ingest_args(&old_store, &first));
    assert_eq!(code(&out), 0, "first ingest:\n{}{}", stdout(&out), stderr(&out));
    let old = counts(&old_store);

    // The new state, and how long one full ingest takes while another runs beside it (the
    // tries below run two at a time).
    let full = dir.join("full");
    let twin = dir.join("twin");
    copy_dir(&old_store, &full);
    copy_dir(&old_store, &twin);
    let timed = |store: &Path| {
        let start = Instant::now();
        let out = run_in(dir, &ingest_args(store, &files));
        assert_eq!(code(&out), 0, "full ingest:\n{}{}", stdout(&out), stderr(&out));
        start.elapsed()
    };
    let took = std::thread::scope(|scope| {
        let a = scope.spawn(|| timed(&full));
        let b = scope.spawn(|| timed(&twin));
        a.join().unwrap().max(b.join().unwrap())
    });
    assert_eq!(counts(&twin), counts(&full), "two full ingests disagree");
    let new = counts(&full);
    assert_ne!(old, new, "the full ingest must change the store");
    let setup = Setup {
        dir,
        files: &files,
        old_store,
        old,
        new,
    };

    // Delays spread over [0, 1.2 × one ingest) in a scrambled but fixed order: the commit
    // (manifest swap) comes at the very end of an ingest, so the longer delays reach past it
    // and both outcomes are seen. Two tries run at a time to keep the test short.
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= TRIES {
                        break;
                    }
                    let frac = (0.5 + i as f64 * 0.618_033_988_75).fract();
                    let r = one_try(&setup, i, took.mul_f64(1.2 * frac));
                    results.lock().unwrap().push(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let n_old = results.iter().filter(|r| matches!(r, Ok(State::Old))).count();
    let n_new = results.iter().filter(|r| matches!(r, Ok(State::New))).count();
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "kill test: {TRIES} tries, {n_old} old, {n_new} new, {} bad (one ingest: {took:?})",
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "old {:?}\nnew {:?}\n{}",
        setup.old,
        setup.new,
        bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}
