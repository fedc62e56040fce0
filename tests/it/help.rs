//! `--help` texts and user-facing error messages, as snapshots.

use crate::common::*;

fn filtered(text: &str, dir: &std::path::Path) -> String {
    text.replace(s(dir), "[TMP]")
}

#[test]
fn help_texts() {
    for args in [
        &["--help"][..],
        &["generate", "--help"],
        &["ingest", "--help"],
        &["validate", "--help"],
        &["run", "--help"],
        &["show", "--help"],
        &["list", "--help"],
        &["sql", "--help"],
    ] {
        let out = run(args);
        assert_eq!(code(&out), 0, "{args:?}");
        insta::assert_snapshot!(format!("help_{}", args[..args.len() - 1].join("_")), stdout(&out));
    }
}

#[test]
fn usage_error_exits_2() {
    let out = run(&["ingest"]);
    assert_eq!(code(&out), 2);
    insta::assert_snapshot!("usage_ingest_without_args", stderr(&out));
}

#[test]
fn error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    write(d, "leads.csv", "lead_id,source\nL1,web\n");
    write(d, "notes.csv", "a,b\n1,2\n");
    write(d, "spaces.csv", "lead_id created_at source\nL1 2024-01-01 web\n");
    write(d, "opportunities.csv", "opportunity_id;amount\nO1;5\n");
    write(d, "bad.toml", "timezone = \"Mars/Olympus\"\n");
    write(d, "typo.toml", "base_curency = \"EUR\"\n");
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "missing_required_column",
            vec!["ingest".into(), "--store".into(), s(&store).into(), "leads.csv".into()],
        ),
        (
            "unknown_table",
            vec!["ingest".into(), "--store".into(), s(&store).into(), "notes.csv".into()],
        ),
        (
            "single_column_header_hint",
            vec![
                "ingest".into(),
                "--store".into(),
                s(&store).into(),
                "--table".into(),
                "leads".into(),
                "spaces.csv".into(),
            ],
        ),
        (
            "missing_columns_semicolon",
            vec![
                "ingest".into(),
                "--store".into(),
                s(&store).into(),
                "opportunities.csv".into(),
            ],
        ),
        (
            "bad_config_value",
            vec![
                "--config".into(),
                "bad.toml".into(),
                "validate".into(),
                "--store".into(),
                s(&store).into(),
            ],
        ),
        (
            "bad_config_key",
            vec![
                "--config".into(),
                "typo.toml".into(),
                "validate".into(),
                "--store".into(),
                s(&store).into(),
            ],
        ),
        (
            "not_a_store",
            vec!["validate".into(), "--store".into(), s(&store).into()],
        ),
        (
            "missing_file",
            vec!["ingest".into(), "--store".into(), s(&store).into(), "nope.csv".into()],
        ),
    ];
    for (name, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_in(d, &args);
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{name}");
        insta::assert_snapshot!(format!("error_{name}"), filtered(&stderr(&out), d));
    }
}

/// Every subcommand's output piped into a reader that has already gone (`crm-kpi validate |
/// head -1`): the command finishes its work and exits as it would have, without a panic or a
/// "Broken pipe" error.
#[test]
fn a_closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    let (gen_dir, store, out) = (d.join("gen"), d.join("store"), d.join("out"));
    let csv = |t: &str| gen_dir.join(format!("{t}.csv")).to_string_lossy().into_owned();
    let cases: Vec<Vec<String>> = vec![
        vec!["generate".into(), "--out".into(), s(&gen_dir).into()],
        vec![
            "ingest".into(),
            "--store".into(),
            s(&store).into(),
            csv("reps"),
            csv("leads"),
        ],
        vec!["validate".into(), "--store".into(), s(&sample).into()],
        vec![
            "run".into(),
            "--store".into(),
            s(&sample).into(),
            "--out".into(),
            s(&out).into(),
            "--as-of".into(),
            "2026-06-30".into(),
            "--kpi".into(),
            "win_rate".into(),
        ],
        vec!["show".into(), "win_rate".into(), "--store".into(), s(&sample).into()],
        vec![
            "show".into(),
            "win_rate".into(),
            "--store".into(),
            s(&sample).into(),
            "--format".into(),
            "csv".into(),
        ],
        vec!["list".into()],
        vec!["list".into(), "--long".into()],
        vec!["list".into(), "--json".into()],
        vec!["list".into(), "--markdown".into()],
        vec![
            "sql".into(),
            "--store".into(),
            s(&sample).into(),
            "--out".into(),
            s(&out).into(),
            "SELECT * FROM leads".into(),
        ],
        vec!["preset".into(), "list".into()],
        vec!["preset".into(), "show".into(), "salesforce".into()],
    ];
    for args in cases {
        let mut child = std::process::Command::new(bin())
            .args(&args)
            .current_dir(d)
            .env_remove("CRM_KPI_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes anything.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.to_lowercase().contains("broken pipe"),
            "{args:?}: {err}"
        );
    }
    // The work was done although nothing could be printed.
    assert!(gen_dir.join("leads.csv").exists());
    assert!(store.join("_manifest.json").exists());
    assert!(
        out.join("win_rate/grain=month/as_of=2026-06-30/part-0.parquet")
            .exists()
    );
}

/// `show`'s errors for a misspelt KPI and an unknown dimension, and its table format.
#[test]
fn show_errors_and_table() {
    let o = run(&["show", "win_rat"]);
    assert_eq!(code(&o), 2);
    insta::assert_snapshot!("error_show_unknown_kpi", stderr(&o));
    let o = run(&["show", "win_rate", "--by", "ownr", "--as-of", "2026-06-30"]);
    assert_eq!(code(&o), 2);
    insta::assert_snapshot!("error_show_unknown_dimension", stderr(&o));
    let o = run(&[
        "show",
        "stage_duration",
        "--by",
        "all",
        "--as-of",
        "2026-06-30T12:00:00",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    insta::assert_snapshot!("show_stage_duration_table", stdout(&o));
    let o = run(&["show", "lead_volume", "--as-of", "2026-06-30"]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).contains("1069 rows (200 shown"), "{}", stderr(&o));
    let o = run(&[
        "show",
        "win_rate",
        "--by",
        "all",
        "--period",
        "2026-Q1",
        "--as-of",
        "2026-06-30",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    insta::assert_snapshot!("show_win_rate_2026_q1", stdout(&o));
    let o = run(&["show", "campaign_performance", "--period", "2026"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("has no period column"), "{}", stderr(&o));
}

/// `--log-format json` for schedulers: every stderr line is a JSON object with a timestamp, the
/// level and the run id; one `written` line per KPI with its rows. `-q` prints nothing on
/// stderr. CRM_KPI_STORE and CRM_KPI_OUT stand for --store and --out.
#[test]
fn json_logs_quiet_and_path_variables() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    let out = dir.path().join("out");
    let o = std::process::Command::new(bin())
        .args([
            "run",
            "--as-of",
            "2026-06-30",
            "--kpi",
            "win_rate,deal_size",
            "-v",
            "--log-format",
            "json",
        ])
        .env("CRM_KPI_STORE", &sample)
        .env("CRM_KPI_OUT", &out)
        .env_remove("CRM_KPI_LOG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(lines.len() >= 4, "{lines:?}");
    for l in &lines {
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(l["level"].is_string() && l["run_id"].is_string(), "{l}");
    }
    let written: Vec<_> = lines.iter().filter(|l| l["message"] == "written").collect();
    assert_eq!(written.len(), 2);
    assert_eq!(written[0]["kpi"], "win_rate");
    assert!(written[0]["rows"].as_u64().unwrap() > 0);
    assert!(
        out.join("win_rate/grain=month/as_of=2026-06-30/part-0.parquet")
            .exists()
    );
    let o = std::process::Command::new(bin())
        .args(["-q", "run", "--as-of", "2026-06-30", "--kpi", "win_rate"])
        .env("CRM_KPI_STORE", &sample)
        .env("CRM_KPI_OUT", &out)
        .env_remove("CRM_KPI_LOG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    assert_eq!(stderr(&o), "");
}

/// Completion scripts for every shell clap knows, with the KPI names; a man page in roff.
#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = run(&["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains("crm-kpi") && text.contains("ingest"), "{shell}");
        // clap's bash and zsh scripts list positional values; the others complete flags only.
        if shell == "bash" || shell == "zsh" {
            assert!(text.contains("stage_duration_survival"), "{shell}: KPI names");
        }
    }
    let o = run(&["man"]);
    assert_eq!(code(&o), 0);
    let page = stdout(&o);
    assert!(page.contains(".TH crm-kpi 1") && page.contains(".SH NAME"), "{page}");
    assert!(page.contains("completions") && page.contains("ingest"), "{page}");
}

/// On a terminal (a pty from `script`), `run` shows progress with counts (`n/N KPIs`), and a log
/// line never shares a line with it: the bar is cleared before each log line is written.
#[test]
fn progress_on_a_terminal_never_shares_a_line_with_logs() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to make a pty");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    let cmd = format!(
        "{} run --store {} --out {} --as-of 2026-06-30 -v",
        bin().display(),
        sample.display(),
        dir.path().join("out").display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NO_COLOR", "1")
        .env_remove("CRM_KPI_LOG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    // Segments between carriage returns and newlines, escape sequences removed.
    let plain: String = {
        let mut s = String::new();
        let mut esc = false;
        for c in text.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, c) => s.push(c),
            }
        }
        s
    };
    let segments: Vec<&str> = plain.split(['\r', '\n']).filter(|s| !s.trim().is_empty()).collect();
    let total = crm_kpi::kpi::registry().len();
    assert!(
        segments
            .iter()
            .any(|s| s.contains(&format!("/{total} KPIs as of 2026-06-30"))),
        "no progress with counts in:\n{plain}"
    );
    for s in &segments {
        assert!(
            !(s.contains("KPIs as of") && s.contains(" INFO ")),
            "a log line shares the progress line: {s}"
        );
    }
    assert!(segments.iter().any(|s| s.contains(" INFO ") && s.contains("written")));
}

/// `store` and `out` in crm-kpi.toml stand for --store and --out; a command that needs a store
/// and has none says how to give one.
#[test]
fn store_and_out_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/store");
    write(
        d,
        "crm-kpi.toml",
        &format!("store = {:?}\nout = \"kpis\"\n", s(&sample)),
    );
    let o = run_in(d, &["run", "--as-of", "2026-06-30", "--kpi", "win_rate"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        d.join("kpis/win_rate/grain=month/as_of=2026-06-30/part-0.parquet")
            .exists()
    );
    let o = run_in(d, &["validate"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::remove_file(d.join("crm-kpi.toml")).unwrap();
    let o = run_in(d, &["validate"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("pass --store DIR, set CRM_KPI_STORE, or set `store` in crm-kpi.toml"),
        "{}",
        stderr(&o)
    );
}
