//! Issue 13's reproductions, each as a test: one bad value must not poison the store; input
//! columns cannot collide with crm-kpi's own; outputs are safe to open in a spreadsheet; `sql`
//! sees the store only; runs into one output directory do not mix; a failed write leaves the
//! store as it was.

use std::path::Path;

use crm_kpi::schema;
use crm_kpi::store::Store;
use polars::prelude::*;

use crate::common::*;
use crate::fixtures::{quarantine, strs};

/// `L1,-9000000000000000,web` was stored under `month=invalid` and made every later `run`,
/// `show` and `sql` panic inside polars. Times outside 1900-2199 are quarantined now.
#[test]
fn an_out_of_range_time_is_quarantined_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "leads.csv",
        "lead_id,created_at,source,qualified_at\nL1,-9000000000000000,web,\nL2,2024-01-01,web,\nL3,9000000000000000,web,\nL4,2024-01-02,web,9999-12-31\n",
    );
    let store = d.join("store");
    let out = run_in(d, &["ingest", "--store", s(&store), "leads.csv"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let q = quarantine(&store, "leads");
    assert_eq!(strs(&q, "lead_id"), ["L1", "L3", "L4"]);
    assert_eq!(strs(&q, "_rule"), ["unparseable"; 3]);
    assert!(
        strs(&q, "_reason")
            .iter()
            .all(|r| r.contains("1900-01-01 to 2199-12-31")),
        "{:?}",
        strs(&q, "_reason")
    );
    for args in [
        vec![
            "run",
            "--store",
            s(&store),
            "--out",
            s(&d.join("out")),
            "--as-of",
            "2024-06-30",
        ],
        vec!["show", "lead_volume", "--store", s(&store), "--as-of", "2024-06-30"],
        vec!["sql", "--store", s(&store), "SELECT * FROM leads"],
    ] {
        let o = run_in(d, &args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
}

/// A Parquet date32 of 2^31 - 1 and an int64-max timestamp panicked in the reader and left a
/// `tmp/` folder in the store. They are bad rows: quarantined with their value as an integer.
#[test]
fn out_of_range_parquet_dates_and_times_are_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    let mut reps = df!(
        "rep_id" => ["R1", "R2"],
        "name" => ["Ann", "Bob"],
        "active_from" => [i32::MAX, 19_000],
    )
    .unwrap();
    reps.with_column(reps.column("active_from").unwrap().cast(&DataType::Date).unwrap())
        .unwrap();
    let mut leads = df!(
        "lead_id" => ["L1", "L2"],
        "created_at" => [i64::MAX, 1_704_067_200_000_000],
        "source" => ["web", "web"],
    )
    .unwrap();
    leads
        .with_column(leads.column("created_at").unwrap().cast(&utc).unwrap())
        .unwrap();
    for (name, df) in [("reps.parquet", &mut reps), ("leads.parquet", &mut leads)] {
        ParquetWriter::new(std::fs::File::create(d.join(name)).unwrap())
            .finish(df)
            .unwrap();
    }
    let store = d.join("store");
    let out = run_in(d, &["ingest", "--store", s(&store), "reps.parquet", "leads.parquet"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(strs(&quarantine(&store, "reps"), "rep_id"), ["R1"]);
    assert_eq!(strs(&quarantine(&store, "reps"), "active_from"), [i32::MAX.to_string()]);
    assert_eq!(strs(&quarantine(&store, "leads"), "lead_id"), ["L1"]);
    assert_eq!(strs(&quarantine(&store, "leads"), "created_at"), [i64::MAX.to_string()]);
    let s_ = Store::open(&store).unwrap();
    assert_eq!(strs(&s_.read_table(&schema::REPS).unwrap(), "rep_id"), ["R2"]);
    assert!(!store.join("tmp").exists(), "no scratch left behind");
}

/// Input columns named like the quarantine's own (`_rule`, `_reason`, `_file`, `_row`) or like
/// crm-kpi's internal ones failed the ingest with "duplicate column": they are kept, renamed.
#[test]
fn input_columns_named_like_internal_ones_do_not_collide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "leads.csv",
        "lead_id,created_at,source,_rule,_reason,_file,_row,__crm_kpi_row,__read_error\n\
         L1,2024-01-01,web,a,b,c,d,e,f\n\
         L2,not a date,web,a,b,c,d,e,f\n",
    );
    let store = d.join("store");
    let out = run_in(d, &["ingest", "--store", s(&store), "leads.csv"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let q = quarantine(&store, "leads");
    assert_eq!(strs(&q, "lead_id"), ["L2"]);
    assert_eq!(strs(&q, "_rule"), ["unparseable"]);
    assert_eq!(strs(&q, "_row"), ["2"]);
    assert_eq!(strs(&q, "input_rule"), ["a"]);
    assert_eq!(strs(&q, "input_row"), ["d"]);
    assert_eq!(strs(&q, "input.__crm_kpi_row"), ["e"]);
    assert_eq!(strs(&q, "__read_error"), ["f"]);
}

/// `=HYPERLINK(...)`, `+cmd|...`, `@SUM(1)` from a lead source came out unchanged in CSV,
/// ready to run in a spreadsheet; table output passed escape sequences to the terminal.
#[test]
fn csv_formulas_are_neutralised_and_tables_show_no_escape_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "leads.csv",
        "lead_id,created_at,source\nL1,2024-01-01,\"=HYPERLINK(\"\"http://x\"\")\"\nL2,2024-01-02,+cmd|' /C calc'!A0\nL3,2024-01-03,@SUM(1)\nL4,2024-01-04,\u{1b}[31mred\n",
    );
    let store = d.join("store");
    assert_eq!(code(&run_in(d, &["ingest", "--store", s(&store), "leads.csv"])), 0);
    let sql = |extra: &[&str]| {
        let mut a = vec!["sql", "--store", s(&store), "--format", "csv"];
        a.extend_from_slice(extra);
        a.push("SELECT lead_id, source FROM leads ORDER BY lead_id");
        stdout(&run_in(d, &a))
    };
    let safe = sql(&[]);
    assert!(safe.contains("L1,\"'=HYPERLINK(\"\"http://x\"\")\"\n"), "{safe}");
    assert!(safe.contains("L2,'+cmd|' /C calc'!A0\n"), "{safe}");
    assert!(safe.contains("L3,'@SUM(1)\n"), "{safe}");
    let raw = sql(&["--raw-csv"]);
    assert!(raw.contains("L3,@SUM(1)\n"), "{raw}");
    let show = run_in(
        d,
        &[
            "show",
            "lead_volume",
            "--store",
            s(&store),
            "--as-of",
            "2024-06-30",
            "--by",
            "source",
            "--format",
            "csv",
        ],
    );
    assert!(stdout(&show).contains(",\"'=HYPERLINK"), "{}", stdout(&show));
    let table = stdout(&run_in(
        d,
        &[
            "sql",
            "--store",
            s(&store),
            "SELECT source FROM leads WHERE lead_id = 'L4'",
        ],
    ));
    assert!(!table.contains('\u{1b}') && table.contains("?[31mred"), "{table}");
}

/// `SELECT * FROM read_csv('/etc/shadow')` printed the file, and `read_csv('http://...')`
/// fetched a URL: queries see the store's tables and the KPI outputs only.
#[test]
fn sql_reads_no_files_without_allow_file_access() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "leads.csv", "lead_id,created_at,source\nL1,2024-01-01,web\n");
    write(d, "secret.csv", "a\nhidden\n");
    let store = d.join("store");
    assert_eq!(code(&run_in(d, &["ingest", "--store", s(&store), "leads.csv"])), 0);
    let q = format!("SELECT * FROM read_csv('{}')", s(&d.join("secret.csv")));
    let refused = run_in(d, &["sql", "--store", s(&store), &q]);
    assert_eq!(code(&refused), 2);
    assert!(
        stderr(&refused).contains("--allow-file-access") && !stdout(&refused).contains("hidden"),
        "{}",
        stderr(&refused)
    );
    let url = run_in(
        d,
        &[
            "sql",
            "--store",
            s(&store),
            "SELECT * FROM read_parquet('http://127.0.0.1:9/x')",
        ],
    );
    assert_eq!(code(&url), 2);
    let allowed = run_in(d, &["sql", "--store", s(&store), "--allow-file-access", &q]);
    assert_eq!(code(&allowed), 0, "{}", stderr(&allowed));
    assert!(stdout(&allowed).contains("hidden"));
}

/// Two runs into one OUT shared a temporary name: one failed, or KPIs of two stores mixed. Now
/// one run writes an OUT at a time (the other is refused, saying so), every KPI of a run
/// lands together, and nothing temporary is left.
#[test]
fn two_runs_into_one_out_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    let spawn = || {
        std::process::Command::new(bin())
            .args(["run", "--store", s(&sample), "--out", s(&out), "--as-of", "2026-06-30"])
            .env_remove("CRM_KPI_LOG")
            .output()
    };
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(spawn);
        let b = sc.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    let mut ok = 0;
    for o in [&a, &b] {
        match code(o) {
            0 => ok += 1,
            2 => assert!(stderr(o).contains("is being written by another run"), "{}", stderr(o)),
            c => panic!("exit {c}: {}", stderr(o)),
        }
    }
    assert!(ok >= 1);
    let mut leftovers = Vec::new();
    let mut files = 0;
    for kpi in std::fs::read_dir(&out).unwrap().flatten() {
        let name = kpi.file_name().to_string_lossy().into_owned();
        if name.starts_with(".staging") {
            leftovers.push(name);
            continue;
        }
        if !kpi.path().is_dir() || name == "_runs" {
            continue;
        }
        let parts = std::fs::read_dir(kpi.path())
            .unwrap()
            .flatten()
            .flat_map(|g| std::fs::read_dir(g.path()).unwrap().flatten());
        for part in parts {
            for f in std::fs::read_dir(part.path()).unwrap().flatten() {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.ends_with(".tmp") {
                    leftovers.push(n);
                } else if n != "_SUCCESS" {
                    ParquetReader::new(std::fs::File::open(f.path()).unwrap())
                        .finish()
                        .unwrap();
                    files += 1;
                }
            }
        }
    }
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(files, crm_kpi::kpi::registry().len());
}

/// A full disk failed with "No space left on device" naming no file, and left partial files.
/// On a 1 MiB tmpfs (where the machine allows mounting one) the error names the file, and the
/// store is left as it was.
#[test]
fn a_full_disk_fails_naming_the_file_and_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", s(&mnt)])
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); the disk-full case is untested");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).output();
        }
    }
    let _guard = Unmount(&mnt);
    let d = dir.path();
    let store = mnt.join("store");
    write(d, "reps.csv", "rep_id,name\nR1,Ann\n");
    assert_eq!(code(&run_in(d, &["ingest", "--store", s(&store), "reps.csv"])), 0);
    let before = std::fs::read_to_string(store.join("_manifest.json")).unwrap();
    // ~3 MB of incompressible leads: more than the disk holds.
    let mut big = String::from("lead_id,created_at,source\n");
    for i in 0..60_000u64 {
        big.push_str(&format!(
            "L{:016x},2024-01-01,{:016x}\n",
            i.wrapping_mul(0x9e3779b97f4a7c15),
            i.wrapping_mul(0xd1b54a32d192ed03)
        ));
    }
    write(d, "leads.csv", &big);
    let out = run_in(d, &["ingest", "--store", s(&store), "leads.csv"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let e = stderr(&out);
    assert!(e.contains("No space left") && e.contains(s(&store)), "{e}");
    assert_eq!(std::fs::read_to_string(store.join("_manifest.json")).unwrap(), before);
    let leftovers = std::fs::read_dir(store.join("tables/leads")).map_or(0, |d| d.count());
    assert_eq!(leftovers, 0, "no partial table left");
    assert!(!store.join("tmp").exists(), "no scratch left");
}

/// Two whole-catalog runs of the same store and as_of write the same bytes, file by file
/// (float sums whose order varied, `new_vs_existing.won_amount` among them, are ordered).
#[test]
fn two_runs_write_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    let outs: Vec<std::path::PathBuf> = (0..2).map(|i| dir.path().join(format!("out{i}"))).collect();
    for o in &outs {
        let r = run(&["run", "--store", s(&sample), "--out", s(o), "--as-of", "2026-06-30"]);
        assert_eq!(code(&r), 0, "{}", stderr(&r));
    }
    let mut compared = 0;
    for k in crm_kpi::kpi::registry() {
        let rel = Path::new(k.name)
            .join("grain=month/as_of=2026-06-30")
            .join("part-0.parquet");
        let a = std::fs::read(outs[0].join(&rel)).unwrap();
        let b = std::fs::read(outs[1].join(&rel)).unwrap();
        assert!(a == b, "{} differs between two runs", k.name);
        compared += 1;
    }
    assert_eq!(compared, crm_kpi::kpi::registry().len());
}

/// Values that are extreme but each parse (or are quarantined) in some typed column.
const EDGE_TIMES: &[&str] = &[
    "2024-01-01",
    "1900-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "2199-12-31T23:59:59Z",
    "2200-01-01",
    "-9000000000000000",
    "9000000000000000",
    "9223372036854775807",
    "0",
    "1e10",
    "2024-02-30",
    "",
];
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1e308",
    "-1e308",
    "1e-300",
    "9223372036854775807",
    "NaN",
    "inf",
    "",
    "12.5",
    "-3",
];
const EDGE_TEXT: &[&str] = &["web", "", "\u{1b}[2J", "=1+1", "ünïcødé", "a,b", "\"q\"", "x\ny"];

fn csv_cell(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, failure_persistence: None, ..Default::default() })]

    /// Issue 13: whatever an ingest accepts, every KPI computes and every table reads back in
    /// `sql` without a panic (one stored value made every later run panic).
    #[test]
    fn any_accepted_store_computes_every_kpi_and_reads_back(
        leads in proptest::collection::vec((0..EDGE_TIMES.len(), 0..EDGE_TEXT.len(), 0..EDGE_TIMES.len()), 1..8),
        deals in proptest::collection::vec((0..EDGE_TIMES.len(), 0..EDGE_NUMBERS.len(), 0..3usize, 0..EDGE_TIMES.len()), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut l = String::from("lead_id,created_at,source,qualified_at\n");
        for (i, (c, src, q)) in leads.iter().enumerate() {
            l.push_str(&format!("L{i},{},{},{}\n", csv_cell(EDGE_TIMES[*c]), csv_cell(EDGE_TEXT[*src]), csv_cell(EDGE_TIMES[*q])));
        }
        let mut o = String::from("opportunity_id,account_id,created_at,owner_id,amount,status,closed_at,lead_id\n");
        let mut e = String::from("opportunity_id,stage,entered_at\n");
        for (i, (c, amt, st, cl)) in deals.iter().enumerate() {
            let status = ["open", "won", "lost"][*st];
            o.push_str(&format!("O{i},A,{},R,{},{status},{},L{i}\n", csv_cell(EDGE_TIMES[*c]), csv_cell(EDGE_NUMBERS[*amt]), csv_cell(EDGE_TIMES[*cl])));
            e.push_str(&format!("O{i},prospecting,{}\n", csv_cell(EDGE_TIMES[*c])));
        }
        let files = [write(d, "leads.csv", &l), write(d, "opportunities.csv", &o), write(d, "stage_events.csv", &e)];
        let store = d.join("store");
        let config = crm_kpi::Config::default();
        let report = crm_kpi::ingest::ingest(&store, &files, &Default::default(), &config);
        proptest::prop_assert!(report.is_ok(), "{:?}", report.err().map(|e| e.to_string()));
        let st = Store::open(&store).unwrap();
        for as_of in ["2024-06-30T00:00:00Z", "2199-12-31T00:00:00Z"] {
            let us = chrono::DateTime::parse_from_rfc3339(as_of).unwrap().timestamp_micros();
            let params = crm_kpi::kpi::Params::new(us, crm_kpi::kpi::Grain::Month, config.clone());
            let tables = crm_kpi::kpi::inputs::Tables::from_store(&st).unwrap();
            let got = crate::fixtures::big_stack(move || {
                crm_kpi::kpi::run::compute(&tables, &params, crm_kpi::kpi::registry(), Engine::InMemory).map(|r| r.0.len())
            });
            proptest::prop_assert!(got.is_ok(), "as of {as_of}: {:?}", got.err().map(|e| e.to_string()));
        }
        for t in ["leads", "opportunities", "stage_events"] {
            let mut ctx = crm_kpi::cli::sql::context(&store, &d.join("out")).unwrap();
            let df = ctx.execute(&format!("SELECT * FROM {t}")).and_then(|lf| lf.collect());
            proptest::prop_assert!(df.is_ok(), "{t}: {:?}", df.err());
            let printed = format!("{}", df.unwrap());
            proptest::prop_assert!(!printed.is_empty());
        }
    }
}

/// Issue 13: `run` killed at any moment leaves OUT readable: every KPI file that is there
/// (old or new, each replaced by one rename) reads as Parquet, no half-written file is in
/// place, and the next run clears what the killed one left aside. `CRM_KPI_RUN_KILLS=N` tries
/// N kills (the long mode; `CRM_KPI_BIN` runs another binary, e.g. a release build).
/// (`scripts/kill-test.sh` does the same for `ingest`.)
#[test]
fn a_killed_run_leaves_its_outputs_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    let args = ["run", "--store", s(&sample), "--out", s(&out), "--as-of", "2026-06-30"];
    let binary = std::env::var_os("CRM_KPI_BIN").map_or_else(bin, std::path::PathBuf::from);
    let tries: u32 = std::env::var("CRM_KPI_RUN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(2);
    let first = std::process::Command::new(&binary).args(args).output().unwrap();
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // The second (warm) run's time: the kills are spread over it.
    let t0 = std::time::Instant::now();
    let second = std::process::Command::new(&binary).args(args).output().unwrap();
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let full = t0.elapsed();
    let check = |after: &str| {
        let mut files = 0;
        for k in crm_kpi::kpi::registry() {
            let p = out
                .join(k.name)
                .join("grain=month/as_of=2026-06-30")
                .join("part-0.parquet");
            let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("{after}: {}: {e}", p.display()));
            ParquetReader::new(f)
                .finish()
                .unwrap_or_else(|e| panic!("{after}: {} unreadable: {e}", p.display()));
            files += 1;
        }
        assert_eq!(files, crm_kpi::kpi::registry().len(), "{after}");
    };
    let mut finished = 0;
    for i in 0..tries {
        let delay = full.mul_f64(f64::from(i) / f64::from(tries - 1) * 1.1);
        let mut child = std::process::Command::new(&binary)
            .args(args)
            .env_remove("CRM_KPI_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if matches!(child.try_wait(), Ok(Some(_))) {
            finished += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        check(&format!("kill after {delay:?}"));
    }
    let last = std::process::Command::new(&binary).args(args).output().unwrap();
    assert_eq!(code(&last), 0, "{}", stderr(&last));
    check("a run after the kills");
    eprintln!(
        "run kill test: {tries} tries ({} killed while running, {finished} finished first), 0 bad",
        tries - finished
    );
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
