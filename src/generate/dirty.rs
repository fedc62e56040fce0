//! `--dirty`: a known number of extra bad rows per table, each breaking exactly one ingest
//! rule (README, "What gets rejected"), with fresh ids that nothing else references, so rejecting one row never
//! cascades. Duplicates are exact copies of clean rows, appended by the writer.

use std::collections::BTreeMap;

use super::calendar::{DAY, HOUR, fmt_date, fmt_ts};
use super::frames::{self, ACCOUNT, LEAD, OPP, REP, id};
use super::sim::ChunkData;
use super::world::{REGIONS, World};
use crate::schema::{self, Rule};

/// (table, rule, rows). Duplicates are copies of clean rows; all others are new rows.
pub const PLAN: &[(&str, Rule, usize)] = &[
    ("leads", Rule::MissingRequired, 3),
    ("leads", Rule::Unparseable, 4),
    ("leads", Rule::DuplicateKey, 3),
    ("accounts", Rule::MissingRequired, 3),
    ("accounts", Rule::DuplicateKey, 4),
    ("opportunities", Rule::MissingRequired, 3),
    ("opportunities", Rule::Unparseable, 4),
    ("opportunities", Rule::InvalidValue, 3),
    ("opportunities", Rule::ClosedWithoutDate, 5),
    ("opportunities", Rule::ClosedBeforeCreated, 4),
    ("opportunities", Rule::DuplicateKey, 3),
    ("stage_events", Rule::MissingRequired, 3),
    ("stage_events", Rule::UnknownStage, 4),
    ("stage_events", Rule::EventBeforeCreated, 5),
    ("stage_events", Rule::UnknownDeal, 3),
    ("stage_events", Rule::DuplicateKey, 4),
    ("orders", Rule::MissingRequired, 3),
    ("orders", Rule::Unparseable, 4),
    ("orders", Rule::NegativeAmount, 5),
    ("orders", Rule::UnknownDeal, 3),
    ("orders", Rule::DuplicateKey, 3),
    ("activities", Rule::MissingRequired, 3),
    ("activities", Rule::Unparseable, 3),
    ("activities", Rule::InvalidValue, 4),
    ("activities", Rule::UnknownDeal, 5),
    ("activities", Rule::DuplicateKey, 3),
    ("reps", Rule::MissingRequired, 3),
    ("reps", Rule::DuplicateKey, 3),
    ("targets", Rule::InvalidValue, 3),
    ("targets", Rule::Unparseable, 3),
    ("targets", Rule::DuplicateKey, 4),
    ("forecasts", Rule::InvalidValue, 3),
    ("forecasts", Rule::MissingRequired, 3),
    ("forecasts", Rule::DuplicateKey, 3),
    ("campaigns", Rule::MissingRequired, 3),
    ("campaigns", Rule::DuplicateKey, 3),
    ("fx_rates", Rule::MissingRequired, 3),
    ("fx_rates", Rule::Unparseable, 3),
    ("fx_rates", Rule::DuplicateKey, 3),
];

/// The column that holds the unparseable value of a table's `unparseable` rows (written as
/// text in Parquet), and the value.
pub const UNPARSEABLE: &[(&str, &str, &str)] = &[
    ("leads", "created_at", "yesterday"),
    ("opportunities", "amount", "12,5O"),
    ("orders", "amount", "12,5O"),
    ("activities", "occurred_at", "yesterday"),
    ("targets", "value", "lots"),
    ("fx_rates", "rate_to_base", "n/a"),
];

pub fn count(table: &str, rule: Rule) -> usize {
    PLAN.iter()
        .filter(|(t, r, _)| *t == table && *r == rule)
        .map(|p| p.2)
        .sum()
}

pub fn stringified(table: &str) -> Vec<&'static str> {
    UNPARSEABLE.iter().filter(|u| u.0 == table).map(|u| u.1).collect()
}

fn unparseable_value(table: &str) -> &'static str {
    UNPARSEABLE
        .iter()
        .find(|u| u.0 == table)
        .map(|u| u.2)
        .expect("planned table")
}

/// A row as (column, text) pairs; unnamed columns are empty.
type Cells = Vec<(&'static str, Option<String>)>;

fn set(row: &mut Cells, col: &'static str, v: Option<String>) {
    match row.iter_mut().find(|c| c.0 == col) {
        Some(c) => c.1 = v,
        None => row.push((col, v)),
    }
}

fn s(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

/// Bad rows for every table, in output column order: table -> (rule, rows).
pub type BadRows = BTreeMap<&'static str, Vec<(Rule, Vec<Vec<Option<String>>>)>>;

/// Builds the bad rows from the first chunk (real deals, accounts and reps to point at).
pub fn bad_rows(w: &World, c0: &ChunkData) -> BadRows {
    let wd = w.id_width();
    let rw = w.rep_width();
    let base = w.fx.codes[w.fx.base].clone();
    let first_stage = w.stages.names[w.stages.open.first().copied().unwrap_or(0)].clone();
    let sellers: Vec<usize> = w.sellers().collect();
    let rep = |k: usize| id(REP, sellers[k % sellers.len()] as u64 + 1, rw);
    let opp = |k: usize| {
        let i = (k * 7) % c0.opps.len();
        (id(OPP, i as u64 + 1, wd), &c0.opps[i])
    };
    let acc = |k: usize| {
        let i = (k * 5) % c0.accounts.len();
        (id(ACCOUNT, i as u64 + 1, wd), &c0.accounts[i])
    };
    let lead_t = |k: usize| c0.leads[(k * 11) % c0.leads.len()].created;

    let mut out: BadRows = BTreeMap::new();
    let mut serial = 0usize;
    for &(table, rule, n) in PLAN {
        if rule == Rule::DuplicateKey {
            continue;
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            serial += 1;
            let k = serial;
            let tag = format!("BAD-{k:03}");
            let mut r: Cells;
            match table {
                "leads" => {
                    let t = lead_t(k);
                    r = vec![
                        ("lead_id", s(format!("{LEAD}-{tag}"))),
                        ("created_at", s(fmt_ts(t))),
                        ("source", s("web")),
                        ("owner_id", s(rep(k))),
                        ("region", s(REGIONS[k % REGIONS.len()])),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "source", None),
                        Rule::Unparseable => set(&mut r, "created_at", s(unparseable_value(table))),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "accounts" => {
                    let (_, a) = acc(k);
                    r = vec![
                        ("account_id", s(format!("{ACCOUNT}-{tag}"))),
                        ("created_at", s(fmt_ts(a.created))),
                        ("name", s(format!("Dirty Row {k} Ltd"))),
                        ("region", s(REGIONS[a.region as usize])),
                        ("segment", s("smb")),
                        ("industry", s("retail")),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "created_at", None),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "opportunities" => {
                    let (aid, a) = acc(k);
                    let created = (a.created + DAY).min(w.cal.end);
                    r = vec![
                        ("opportunity_id", s(format!("{OPP}-{tag}"))),
                        ("account_id", s(aid)),
                        ("created_at", s(fmt_ts(created))),
                        ("owner_id", s(rep(k))),
                        ("amount", s("12000")),
                        ("currency", s(base.clone())),
                        ("status", s("open")),
                        ("product", s("Professional")),
                        ("region", s(REGIONS[a.region as usize])),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "owner_id", None),
                        Rule::Unparseable => set(&mut r, "amount", s(unparseable_value(table))),
                        Rule::InvalidValue => set(&mut r, "status", s("pending")),
                        Rule::ClosedWithoutDate => set(&mut r, "status", s("won")),
                        Rule::ClosedBeforeCreated => {
                            set(&mut r, "status", s("lost"));
                            set(&mut r, "closed_at", s(fmt_ts(created - 2 * DAY)));
                            set(&mut r, "loss_reason", s("price"));
                        }
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "stage_events" => {
                    let (oid, o) = opp(k);
                    r = vec![
                        ("opportunity_id", s(oid)),
                        ("stage", s(first_stage.clone())),
                        ("entered_at", s(fmt_ts(o.created + HOUR))),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "entered_at", None),
                        Rule::UnknownStage => set(&mut r, "stage", s("limbo")),
                        Rule::EventBeforeCreated => set(&mut r, "entered_at", s(fmt_ts(o.created - DAY))),
                        Rule::UnknownDeal => set(&mut r, "opportunity_id", s(format!("{OPP}-MISSING-{k}"))),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "orders" => {
                    let (aid, a) = acc(k);
                    r = vec![
                        ("order_id", s(format!("{}-{tag}", frames::ORDER))),
                        ("account_id", s(aid)),
                        ("ordered_at", s(fmt_ts((a.created + 3 * DAY).min(w.cal.end)))),
                        ("amount", s("250")),
                        ("currency", s(base.clone())),
                        ("region", s(REGIONS[a.region as usize])),
                        ("channel", s("online")),
                        ("is_refund", s("false")),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "account_id", None),
                        Rule::Unparseable => set(&mut r, "amount", s(unparseable_value(table))),
                        Rule::NegativeAmount => set(&mut r, "amount", s("-50")),
                        Rule::UnknownDeal => set(&mut r, "opportunity_id", s(format!("{OPP}-MISSING-{k}"))),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "activities" => {
                    let (aid, _) = acc(k);
                    r = vec![
                        ("activity_id", s(format!("{}-{tag}", frames::ACTIVITY))),
                        ("owner_id", s(rep(k))),
                        ("kind", s("call")),
                        ("occurred_at", s(fmt_ts(lead_t(k) + HOUR))),
                        ("outcome", s("connected")),
                        ("duration_s", s("120")),
                        ("account_id", s(aid)),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "owner_id", None),
                        Rule::Unparseable => set(&mut r, "occurred_at", s(unparseable_value(table))),
                        Rule::InvalidValue => set(&mut r, "kind", s("fax")),
                        Rule::UnknownDeal => set(&mut r, "opportunity_id", s(format!("{OPP}-MISSING-{k}"))),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "reps" => {
                    r = vec![
                        ("rep_id", s(format!("{REP}-{tag}"))),
                        ("name", s(format!("Dirty Rep {k}"))),
                        ("team", s(w.teams[0].name.clone())),
                        ("region", s(REGIONS[w.teams[0].region])),
                        ("active_from", s(fmt_date(w.cal.start_day()))),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "name", None),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "targets" => {
                    // A period before the window, unique per row, so the key is fresh.
                    r = vec![
                        ("scope", s(rep(k))),
                        ("scope_kind", s("rep")),
                        ("period_start", s(format!("2022-{:02}-01", k % 12 + 1))),
                        ("grain", s("month")),
                        ("metric", s("revenue")),
                        ("value", s("1000")),
                    ];
                    match rule {
                        Rule::InvalidValue => set(&mut r, "grain", s("fortnight")),
                        Rule::Unparseable => set(&mut r, "value", s(unparseable_value(table))),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "forecasts" => {
                    let month = k % 12 + 1;
                    r = vec![
                        ("owner_id", s(rep(k))),
                        ("period_start", s(format!("2022-{month:02}-01"))),
                        ("grain", s("month")),
                        ("amount", s("1000")),
                        ("category", s("commit")),
                        ("submitted_at", s(format!("2022-{month:02}-02T09:00:00Z"))),
                        ("currency", s(base.clone())),
                    ];
                    match rule {
                        Rule::InvalidValue => set(&mut r, "category", s("maybe")),
                        Rule::MissingRequired => set(&mut r, "submitted_at", None),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "campaigns" => {
                    let c = &w.campaigns[k % w.campaigns.len()];
                    r = vec![
                        ("campaign_id", s(format!("{}-{tag}", frames::CAMPAIGN))),
                        ("name", s(format!("Dirty campaign {k}"))),
                        ("channel", s("seo")),
                        ("spend", s("100")),
                        ("currency", s(base.clone())),
                        ("started_at", s(fmt_ts(c.started_at))),
                        ("ended_at", s(fmt_ts(c.ended_at))),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "channel", None),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                "fx_rates" => {
                    // XTS is the ISO 4217 code reserved for testing: no amount uses it.
                    r = vec![
                        ("currency", s("XTS")),
                        ("date", s(fmt_date(w.cal.start_day() + k as i32))),
                        ("rate_to_base", s("1.5")),
                    ];
                    match rule {
                        Rule::MissingRequired => set(&mut r, "currency", None),
                        Rule::Unparseable => set(&mut r, "rate_to_base", s(unparseable_value(table))),
                        _ => unreachable!("unplanned {table} {rule:?}"),
                    }
                }
                _ => unreachable!("unplanned table {table}"),
            }
            rows.push(to_columns(table, r));
        }
        out.entry(table).or_default().push((rule, rows));
    }
    out
}

/// Orders a row's cells by the table's output columns.
fn to_columns(table: &str, mut cells: Cells) -> Vec<Option<String>> {
    let def = schema::table(table).expect("canonical table");
    let cols = super::writer::output_columns(def);
    for (name, _) in &cells {
        assert!(cols.iter().any(|c| c.0 == *name), "{table} has no column {name}");
    }
    cols.iter()
        .map(|(name, _)| cells.iter_mut().find(|c| c.0 == *name).and_then(|c| c.1.take()))
        .collect()
}
