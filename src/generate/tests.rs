//! Generator tests, tiny scale only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use polars::prelude::*;

use super::calendar::{DAY, fmt_ts};
use super::*;
use crate::config::Config;
use crate::schema::{self, Kind};

fn opts(dir: &Path, format: Format, dirty: bool) -> GenerateOptions {
    GenerateOptions {
        scale: Scale::Tiny,
        seed: 7,
        out: dir.to_path_buf(),
        format,
        dirty,
        pipelines: 1,
    }
}

fn read_csv_text(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap()).finish().unwrap()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// All clean tiny tables, typed, as the generator builds them.
fn tiny_frames() -> BTreeMap<&'static str, DataFrame> {
    let dir = tempfile::tempdir().unwrap();
    generate(&opts(dir.path(), Format::Parquet, false), &Config::default()).unwrap();
    schema::DATA_TABLES
        .iter()
        .map(|t| (t.name, read_parquet(&dir.path().join(format!("{}.parquet", t.name)))))
        .collect()
}

fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

/// Datetime column as seconds.
fn secs(df: &DataFrame, c: &str) -> Vec<Option<i64>> {
    let s = df.column(c).unwrap().as_materialized_series().to_physical_repr();
    s.i64().unwrap().iter().map(|v| v.map(|us| us / 1_000_000)).collect()
}

fn f64s(df: &DataFrame, c: &str) -> Vec<Option<f64>> {
    df.column(c).unwrap().f64().unwrap().iter().collect()
}

fn days(df: &DataFrame, c: &str) -> Vec<Option<i32>> {
    let s = df.column(c).unwrap().as_materialized_series().to_physical_repr();
    s.i32().unwrap().iter().collect()
}

#[test]
fn same_seed_same_bytes() {
    for format in [Format::Csv, Format::Parquet] {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ra = generate(&opts(a.path(), format, true), &Config::default()).unwrap();
        let rb = generate(&opts(b.path(), format, true), &Config::default()).unwrap();
        assert_eq!(ra.render(), rb.render());
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(fa.len(), 11, "{format:?}: {:?}", fa.keys());
        for (name, bytes) in &fa {
            assert!(fb[name] == *bytes, "{format:?}: {name} differs between runs");
        }
    }
    // A different seed gives different data.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    generate(&opts(a.path(), Format::Csv, false), &Config::default()).unwrap();
    generate(
        &GenerateOptions {
            seed: 8,
            ..opts(b.path(), Format::Csv, false)
        },
        &Config::default(),
    )
    .unwrap();
    assert_ne!(files(a.path())["leads.csv"], files(b.path())["leads.csv"]);
}

#[test]
fn csv_has_schema_columns_and_rfc3339_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let report = generate(&opts(dir.path(), Format::Csv, false), &Config::default()).unwrap();
    assert!(report.dirty.is_empty());
    for t in schema::DATA_TABLES {
        let df = read_csv_text(&dir.path().join(format!("{}.csv", t.name)));
        assert_eq!(report.rows[t.name], df.height(), "{}", t.name);
        assert!(df.height() > 0, "{}", t.name);
        let want: Vec<&str> = writer::output_columns(t).iter().map(|c| c.0).collect();
        let got: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(got, want, "{}", t.name);
        for c in t.input_columns() {
            if c.kind != Kind::Timestamp && c.kind != Kind::Date || c.name == schema::UPDATED_AT {
                continue;
            }
            for v in strs(&df, c.name).into_iter().flatten().take(50) {
                if c.kind == Kind::Timestamp {
                    assert!(
                        v.len() == 20 && v.ends_with('Z') && &v[10..11] == "T",
                        "{}.{}: {v}",
                        t.name,
                        c.name
                    );
                } else {
                    assert!(v.len() == 10 && &v[4..5] == "-", "{}.{}: {v}", t.name, c.name);
                }
            }
        }
    }
    let text = report.render();
    assert!(text.contains("stage_events") && text.contains("total"), "{text}");
}

#[test]
fn clean_tiny_data_satisfies_the_ingest_rules() {
    let config = Config::default();
    let f = tiny_frames();
    // Typed columns match the schema.
    for t in schema::DATA_TABLES {
        let df = &f[t.name];
        for (name, kind) in writer::output_columns(t) {
            assert_eq!(df.column(name).unwrap().dtype(), &kind.dtype(), "{}.{name}", t.name);
        }
        // Required fields present.
        for c in t.input_columns().filter(|c| c.required) {
            assert_eq!(
                df.column(c.name).unwrap().null_count(),
                0,
                "{}.{} has nulls",
                t.name,
                c.name
            );
        }
        // Allowed values.
        for c in t.input_columns().filter(|c| !c.allowed.is_empty()) {
            for v in strs(df, c.name).into_iter().flatten() {
                assert!(c.allowed.contains(&v.as_str()), "{}.{}: {v}", t.name, c.name);
            }
        }
        // Primary keys unique.
        let keys: Vec<Vec<String>> = t
            .primary_key
            .iter()
            .map(|k| {
                let s = df
                    .column(k)
                    .unwrap()
                    .as_materialized_series()
                    .cast(&DataType::String)
                    .unwrap();
                s.str().unwrap().iter().map(|v| v.unwrap_or("").to_string()).collect()
            })
            .collect();
        let mut seen = HashSet::new();
        for i in 0..df.height() {
            let key: Vec<&str> = keys.iter().map(|k| k[i].as_str()).collect();
            assert!(seen.insert(key.join("|")), "{}: duplicate key {key:?}", t.name);
        }
    }

    // Sizes of the committed sample stay small.
    let opps = &f["opportunities"];
    assert!((1_900..=2_100).contains(&f["leads"].height()));
    assert!((300..=1_000).contains(&opps.height()), "{} deals", opps.height());

    // Opportunities: status, closed_at, amounts, loss reasons.
    let ids = strs(opps, "opportunity_id");
    let created = secs(opps, "created_at");
    let closed = secs(opps, "closed_at");
    let status = strs(opps, "status");
    let loss = strs(opps, "loss_reason");
    let amount = f64s(opps, "amount");
    let mut deal: HashMap<String, (i64, String, Option<i64>)> = HashMap::new();
    for i in 0..opps.height() {
        let st = status[i].clone().unwrap();
        match st.as_str() {
            "open" => assert!(closed[i].is_none() && loss[i].is_none()),
            "won" => assert!(closed[i].unwrap() >= created[i].unwrap() && loss[i].is_none()),
            "lost" => assert!(closed[i].unwrap() >= created[i].unwrap() && loss[i].is_some()),
            _ => unreachable!(),
        }
        assert!(amount[i].unwrap() > 0.0);
        deal.insert(ids[i].clone().unwrap(), (created[i].unwrap(), st, closed[i]));
    }
    for s in ["open", "won", "lost"] {
        assert!(
            status.iter().filter(|x| x.as_deref() == Some(s)).count() > 10,
            "few {s} deals"
        );
    }

    // Stage events: known stages, never before the deal, terminal event at closed_at.
    let ev = &f["stage_events"];
    let names = config.stage_names();
    let won_stage = config
        .stages
        .iter()
        .find(|s| s.terminal == Some(crate::config::Terminal::Won))
        .unwrap();
    let lost_stage = config
        .stages
        .iter()
        .find(|s| s.terminal == Some(crate::config::Terminal::Lost))
        .unwrap();
    let mut by_deal: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for ((o, s), t) in strs(ev, "opportunity_id")
        .into_iter()
        .zip(strs(ev, "stage"))
        .zip(secs(ev, "entered_at"))
    {
        let (o, s, t) = (o.unwrap(), s.unwrap(), t.unwrap());
        assert!(names.contains(&s.as_str()), "unknown stage {s}");
        let d = deal
            .get(&o)
            .unwrap_or_else(|| panic!("stage event for unknown deal {o}"));
        assert!(
            t >= d.0,
            "{o}: event {s} at {} before created {}",
            fmt_ts(t),
            fmt_ts(d.0)
        );
        by_deal.entry(o).or_default().push((t, s));
    }
    let (mut skips, mut regressions, mut reopened) = (0, 0, 0);
    let pos = |s: &str| names.iter().position(|n| *n == s).unwrap();
    for (o, (c, st, cl)) in &deal {
        let evs = by_deal.get(o).cloned().unwrap_or_default();
        assert!(evs.windows(2).all(|w| w[0].0 < w[1].0), "{o}: events out of order");
        assert_eq!(
            evs.first().map(|e| (e.0, e.1.as_str())),
            Some((*c, names[0])),
            "{o}: first event"
        );
        let last = evs.last().unwrap();
        match st.as_str() {
            "won" => assert_eq!((last.0, last.1.as_str()), (cl.unwrap(), won_stage.name.as_str()), "{o}"),
            "lost" => assert_eq!(
                (last.0, last.1.as_str()),
                (cl.unwrap(), lost_stage.name.as_str()),
                "{o}"
            ),
            _ => assert!(
                config.stage(&last.1).unwrap().terminal.is_none(),
                "{o}: open deal ends terminal"
            ),
        }
        for w in evs.windows(2) {
            let (a, b) = (pos(&w[0].1), pos(&w[1].1));
            if config.stages[a].terminal.is_some() {
                reopened += 1;
            } else if config.stages[b].terminal.is_none() {
                skips += usize::from(b > a + 1);
                regressions += usize::from(b < a);
            }
        }
    }
    assert!(
        skips > 5 && regressions > 5 && reopened > 0,
        "skips {skips}, regressions {regressions}, reopened {reopened}"
    );

    // Orders: real deals, non-negative amounts except flagged refunds.
    let ord = &f["orders"];
    let refund: Vec<Option<bool>> = ord.column("is_refund").unwrap().bool().unwrap().iter().collect();
    let mut refunds = 0;
    for (i, a) in f64s(ord, "amount").into_iter().enumerate() {
        if refund[i] == Some(true) {
            assert!(a.unwrap() < 0.0);
            refunds += 1;
        } else {
            assert!(a.unwrap() >= 0.0);
        }
    }
    assert!(refunds > 0);
    for o in strs(ord, "opportunity_id").into_iter().flatten() {
        let d = deal.get(&o).unwrap_or_else(|| panic!("order for unknown deal {o}"));
        assert_eq!(d.1, "won", "order on a {} deal", d.1);
    }
    let unpaid = ord.column("paid_at").unwrap().null_count();
    assert!(unpaid > 0 && unpaid < ord.height() / 3, "unpaid {unpaid}");
    // Repeat purchases: most customers order more than once.
    let mut per_account: HashMap<String, usize> = HashMap::new();
    for a in strs(ord, "account_id").into_iter().flatten() {
        *per_account.entry(a).or_default() += 1;
    }
    assert!(per_account.values().filter(|n| **n > 1).count() * 2 > per_account.len());

    // Activities reference real deals.
    let act = &f["activities"];
    for o in strs(act, "opportunity_id").into_iter().flatten() {
        assert!(deal.contains_key(&o), "activity for unknown deal {o}");
    }
    let kinds: HashSet<String> = strs(act, "kind").into_iter().flatten().collect();
    assert_eq!(kinds.len(), 5);

    // Leads: conversions carry an account and are in order.
    let leads = &f["leads"];
    let (lc, lq, lv) = (
        secs(leads, "created_at"),
        secs(leads, "qualified_at"),
        secs(leads, "converted_at"),
    );
    let la = strs(leads, "account_id");
    for i in 0..leads.height() {
        assert_eq!(lv[i].is_some(), la[i].is_some());
        if let Some(q) = lq[i] {
            assert!(q >= lc[i].unwrap());
        }
        if let Some(v) = lv[i] {
            assert!(v >= lq[i].unwrap());
        }
    }
    // Year-over-year growth.
    let year = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y").to_string();
    let n23 = lc.iter().filter(|t| year(t.unwrap()) == "2023").count();
    let n25 = lc.iter().filter(|t| year(t.unwrap()) == "2025").count();
    assert!(n25 as f64 > n23 as f64 * 1.3, "2023: {n23}, 2025: {n25}");

    // fx: every non-base currency has a rate for every day from 30 days before the window.
    let fx = &f["fx_rates"];
    let cur = strs(fx, "currency");
    let dates = days(fx, "date");
    let mut per_cur: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (c, d) in cur.into_iter().zip(dates) {
        per_cur.entry(c.unwrap()).or_default().push(d.unwrap());
    }
    let start = (super::calendar::Calendar::new().start / DAY) as i32;
    let end = (super::calendar::Calendar::new().end / DAY) as i32;
    assert!(!per_cur.contains_key(&config.base_currency));
    for money in ["opportunities", "orders", "campaigns"] {
        for c in strs(&f[money], "currency").into_iter().flatten() {
            assert!(
                c == config.base_currency || per_cur.contains_key(&c),
                "{money}: no fx for {c}"
            );
        }
    }
    assert_eq!(per_cur.len(), 4);
    for (c, ds) in per_cur {
        assert_eq!(ds.first(), Some(&(start - 30)), "{c}");
        assert_eq!(ds.last(), Some(&end), "{c}");
        assert!(ds.windows(2).all(|w| w[1] == w[0] + 1), "{c}: gap");
    }
    assert!(f64s(fx, "rate_to_base").iter().all(|r| r.unwrap() > 0.0));
}

#[test]
fn dirty_rows_are_counted_and_appended() {
    let clean = tempfile::tempdir().unwrap();
    let dirty = tempfile::tempdir().unwrap();
    let rc = generate(&opts(clean.path(), Format::Csv, false), &Config::default()).unwrap();
    let rd = generate(&opts(dirty.path(), Format::Csv, true), &Config::default()).unwrap();
    let mut planned: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (t, r, n) in dirty::PLAN {
        *planned.entry((t.to_string(), r.code().to_string())).or_default() += n;
    }
    assert_eq!(rd.dirty, planned);
    assert!(!rd.dirty.keys().any(|(_, r)| r == "no_fx_rate"));
    let text = rd.render();
    assert!(
        text.contains("duplicate_key") && text.contains("unknown_deal"),
        "{text}"
    );
    for t in schema::DATA_TABLES {
        let extra: usize = rd
            .dirty
            .iter()
            .filter(|((tt, _), _)| tt == t.name)
            .map(|(_, n)| n)
            .sum();
        assert!(extra >= 3, "{}: only {extra} dirty rows", t.name);
        assert_eq!(rd.rows[t.name], rc.rows[t.name] + extra, "{}", t.name);
        let name = format!("{}.csv", t.name);
        let c = std::fs::read(clean.path().join(&name)).unwrap();
        let d = std::fs::read(dirty.path().join(&name)).unwrap();
        // The clean rows come first, unchanged.
        assert!(d.starts_with(&c), "{name}: clean part changed");
        let clean_lines: HashSet<&[u8]> = c.split(|b| *b == b'\n').collect();
        let tail: Vec<&[u8]> = d[c.len()..].split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(tail.len(), extra, "{name}");
        let dups = tail.iter().filter(|l| clean_lines.contains(*l)).count();
        assert_eq!(
            dups,
            rd.dirty[&(t.name.to_string(), "duplicate_key".to_string())],
            "{name}"
        );
        // Bad rows never reuse a clean row's primary key (ids are fresh).
        let df = read_csv_text(&dirty.path().join(&name));
        let pk = t.primary_key[0];
        let ids = strs(&df, pk);
        let n_clean = rc.rows[t.name];
        if t.primary_key.len() == 1 {
            let clean_ids: HashSet<_> = ids[..n_clean].iter().collect();
            let reused = ids[n_clean..]
                .iter()
                .filter(|i| i.is_some() && clean_ids.contains(i))
                .count();
            assert_eq!(reused, dups, "{name}");
        }
    }
}

#[test]
fn dirty_parquet_keeps_unparseable_columns_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let r = generate(&opts(dir.path(), Format::Parquet, true), &Config::default()).unwrap();
    for t in schema::DATA_TABLES {
        let df = read_parquet(&dir.path().join(format!("{}.parquet", t.name)));
        assert_eq!(df.height(), r.rows[t.name]);
        let text = dirty::stringified(t.name);
        for (name, kind) in writer::output_columns(t) {
            let want = if text.contains(&name) {
                DataType::String
            } else {
                kind.dtype()
            };
            assert_eq!(df.column(name).unwrap().dtype(), &want, "{}.{name}", t.name);
        }
    }
    let leads = read_parquet(&dir.path().join("leads.parquet"));
    let created = strs(&leads, "created_at");
    assert!(created[0].as_deref().unwrap().ends_with('Z'));
    assert_eq!(created.iter().filter(|c| c.as_deref() == Some("yesterday")).count(), 4);
}

#[test]
fn other_base_currency_gets_usd_rates() {
    let config = Config {
        base_currency: "EUR".into(),
        ..Config::default()
    };
    let dir = tempfile::tempdir().unwrap();
    generate(&opts(dir.path(), Format::Csv, false), &config).unwrap();
    let fx = read_csv_text(&dir.path().join("fx_rates.csv"));
    let cur: HashSet<String> = strs(&fx, "currency").into_iter().flatten().collect();
    assert!(cur.contains("USD") && !cur.contains("EUR"), "{cur:?}");
}
