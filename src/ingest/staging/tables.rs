//! The staging rules that span sources, table by table: one stage list merged from every
//! source that knows something of the stages (and the store's); deals' status and close dates
//! settled against it; stage histories cut to real stage changes, completed with each deal's
//! first stage, and fallbacks used only where nothing better covers an entity; inverse fx
//! rates turned around. Every row dropped or added and every value rewritten is counted on
//! the source it belongs to.

use std::collections::{BTreeMap, HashMap, HashSet};

use polars::prelude::*;

use super::spec::{History, Source};
use super::{Counts, StagingError};
use crate::config::{Config, Terminal};
use crate::error::Error;
use crate::ingest::parse::ParseOptions;
use crate::ingest::read::{FILE, ROW};
use crate::schema::{self, TableDef};
use crate::store::Store;

/// One source's canonical rows (text), before and after the rules here.
pub struct Output {
    pub source: usize,
    pub def: &'static TableDef,
    pub df: DataFrame,
    /// stage_events with `initial_stage`: the stage before each row.
    pub initial: Option<Vec<Option<String>>>,
    pub opts: ParseOptions,
    pub labels: BTreeMap<&'static str, String>,
}

type Text = Vec<Option<String>>;

/// A stage event row that reopens its deal (see `Source::reopen`).
pub const REOPEN: &str = "__crm_kpi_reopen";

fn text(df: &DataFrame, c: &str) -> Result<Text, StagingError> {
    match df.column(c) {
        Err(_) => Ok(vec![None; df.height()]),
        Ok(col) => {
            let s = col.cast(&DataType::String)?;
            Ok(s.str()?.iter().map(|v| v.map(str::to_string)).collect())
        }
    }
}

fn set_text(df: &mut DataFrame, c: &str, v: Text) -> Result<(), StagingError> {
    df.with_column(Column::new(c.into(), v))?;
    Ok(())
}

fn key(s: &str) -> String {
    s.trim().to_lowercase()
}

/// A number written so that the source's parse options read it back.
fn number_text(v: f64, opts: &ParseOptions) -> String {
    let s = format!("{v}");
    match opts.locale {
        Some(l) if l.decimal != '.' => s.replace('.', &l.decimal.to_string()),
        _ => s,
    }
}

/// The stages in effect for this ingest: name by loose key, and which close a deal.
#[derive(Debug, Default)]
struct Kinds {
    names: HashMap<String, (String, Option<Terminal>)>,
}

impl Kinds {
    fn get(&self, stage: &str) -> Option<&(String, Option<Terminal>)> {
        self.names.get(&key(stage))
    }
}

pub fn settle(
    outputs: Vec<Output>,
    sources: &[Source],
    reports: &mut [super::SourceReport],
    config: &Config,
    store: Option<&Store>,
) -> Result<Vec<Output>, Error> {
    let stored_stages = match store {
        Some(s) => Some(s.read_table(&schema::STAGES)?),
        None => None,
    };
    let (stage_outs, mut rest): (Vec<Output>, Vec<Output>) = outputs.into_iter().partition(|o| o.def.name == "stages");
    let mut settled = Vec::new();
    let kinds = if stage_outs.is_empty() {
        match stored_stages.as_ref().filter(|d| d.height() > 0) {
            Some(d) => kinds_from(&text(d, "stage")?, &text(d, "terminal")?),
            None => Kinds {
                names: config
                    .stages
                    .iter()
                    .map(|s| (key(&s.name), (s.name.clone(), s.terminal)))
                    .collect(),
            },
        }
    } else {
        let merged = merge_stages(stage_outs, sources, reports, stored_stages.as_ref())?;
        let k = kinds_from(&text(&merged.df, "stage")?, &text(&merged.df, "terminal")?);
        settled.push(merged);
        k
    };

    // Deals: the stage's spelling, status from the stage, an open deal's close date.
    let mut created: HashMap<String, i64> = HashMap::new();
    for o in rest.iter_mut().filter(|o| o.def.name == "opportunities") {
        let counts = &mut reports[o.source].counts;
        settle_deal(o, &kinds, counts)?;
        let ids = text(&o.df, "opportunity_id")?;
        let at = text(&o.df, "created_at")?;
        for (id, at) in ids.into_iter().zip(at) {
            if let (Some(id), Some(us)) = (id, at.and_then(|a| o.opts.timestamp_us(&a))) {
                created.entry(id).or_insert(us);
            }
        }
    }

    // Stage histories.
    let mut stored_deals: HashSet<String> = HashSet::new();
    if let Some(s) = store
        && rest.iter().any(|o| o.def.name == "stage_events")
    {
        let ev = s.read_table(&schema::STAGE_EVENTS)?;
        let stages = text(&ev, "stage")?;
        for (d, st) in text(&ev, "opportunity_id")?.into_iter().zip(stages) {
            let closing = st
                .as_deref()
                .and_then(|s| kinds.get(s))
                .is_some_and(|(_, t)| t.is_some());
            if let (Some(d), false) = (d, closing) {
                stored_deals.insert(d);
            }
        }
        let opps = s.read_table(&schema::OPPORTUNITIES)?;
        let ids = text(&opps, "opportunity_id")?;
        let at = opps
            .column("created_at")
            .map_err(StagingError::from)?
            .cast(&DataType::Int64)
            .map_err(StagingError::from)?;
        for (id, us) in ids.into_iter().zip(at.i64().map_err(StagingError::from)?.iter()) {
            if let (Some(id), Some(us)) = (id, us) {
                created.entry(id).or_insert(us);
            }
        }
    }
    for o in rest.iter_mut().filter(|o| o.def.name == "stage_events") {
        let s = &sources[o.source];
        let counts = &mut reports[o.source].counts;
        spell_stages(&mut o.df, "stage", &kinds, counts)?;
        if s.history == History::Changes {
            changes_only(o, counts)?;
        }
        if o.initial.is_some() {
            add_initial_stage(o, &created, &kinds, counts)?;
        }
    }
    reopen_into_last_stage(&mut rest, reports, &kinds)?;
    for o in rest
        .iter_mut()
        .filter(|o| o.def.name == "fx_rates" && sources[o.source].inverse)
    {
        invert_rates(o, &config.base_currency, &mut reports[o.source].counts)?;
    }
    fallbacks(&mut rest, sources, reports, &stored_deals, &kinds, &created)?;
    same_events_once(&mut rest, reports)?;
    close_from_history(&mut rest, reports, &kinds, store)?;
    let stored_orders = match store {
        Some(s) => s.manifest().rows("orders"),
        None => 0,
    };
    let orders = won_deals_as_orders(&rest, reports, config, store, stored_orders)?;
    settled.extend(rest);
    settled.extend(orders);
    Ok(settled)
}

/// A deal won or lost by its status (or its stage) but without a close date closes at its
/// last event into a stage of that kind, in this ingest's history or the store's.
fn close_from_history(
    outputs: &mut [Output],
    reports: &mut [super::SourceReport],
    kinds: &Kinds,
    store: Option<&Store>,
) -> Result<(), Error> {
    // A close without a date, or with a date only (Salesforce's CloseDate).
    let needs = |o: &Output| -> Result<bool, StagingError> {
        let status = text(&o.df, "status")?;
        let closed = text(&o.df, "closed_at")?;
        Ok(status.iter().zip(&closed).any(|(s, c)| {
            matches!(s.as_deref().map(key).as_deref(), Some("won" | "lost")) && c.as_deref().is_none_or(is_date_only)
        }))
    };
    let mut any = false;
    for o in outputs.iter().filter(|o| o.def.name == "opportunities") {
        any |= needs(o)?;
    }
    if !any {
        return Ok(());
    }
    // deal -> (kind, latest time of an event into a stage of that kind), as RFC 3339.
    let mut closes: HashMap<(String, Terminal), i64> = HashMap::new();
    let mut note = |deal: String, kind: Terminal, us: i64| {
        let e = closes.entry((deal, kind)).or_insert(us);
        *e = (*e).max(us);
    };
    for o in outputs.iter().filter(|o| o.def.name == "stage_events") {
        let deals = text(&o.df, "opportunity_id")?;
        let stages = text(&o.df, "stage")?;
        let at = text(&o.df, "entered_at")?;
        for ((d, s), a) in deals.into_iter().zip(stages).zip(at) {
            let kind = s.as_deref().and_then(|s| kinds.get(s)).and_then(|(_, t)| *t);
            if let (Some(d), Some(k), Some(us)) = (d, kind, a.and_then(|a| o.opts.timestamp_us(&a))) {
                note(d, k, us);
            }
        }
    }
    if let Some(s) = store {
        let ev = s.read_table(&schema::STAGE_EVENTS)?;
        let deals = text(&ev, "opportunity_id")?;
        let stages = text(&ev, "stage")?;
        let at = ev
            .column("entered_at")
            .map_err(StagingError::from)?
            .cast(&DataType::Int64)
            .map_err(StagingError::from)?;
        for ((d, s), us) in deals
            .into_iter()
            .zip(stages)
            .zip(at.i64().map_err(StagingError::from)?.iter())
        {
            let kind = s.as_deref().and_then(|s| kinds.get(s)).and_then(|(_, t)| *t);
            if let (Some(d), Some(k), Some(us)) = (d, kind, us) {
                note(d, k, us);
            }
        }
    }
    let rfc = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    for o in outputs.iter_mut().filter(|o| o.def.name == "opportunities") {
        let ids = text(&o.df, "opportunity_id")?;
        let status = text(&o.df, "status")?;
        let created = text(&o.df, "created_at")?;
        let mut closed = text(&o.df, "closed_at")?;
        let (mut filled, mut timed, mut at_creation) = (0, 0, 0);
        for (((id, st), cr), c) in ids.iter().zip(&status).zip(&created).zip(closed.iter_mut()) {
            let kind = match st.as_deref().map(key).as_deref() {
                Some("won") => Terminal::Won,
                Some("lost") => Terminal::Lost,
                _ => continue,
            };
            let event = id.as_ref().and_then(|id| closes.get(&(id.clone(), kind))).copied();
            match c.as_deref() {
                None => {
                    if let Some(us) = event {
                        *c = rfc(us);
                        filled += 1;
                    }
                }
                Some(day) if is_date_only(day) => {
                    let local = |us: i64| crate::timefmt::local_day(us, o.opts.tz);
                    let date = o.opts.date_days(day);
                    // The close that day in the history gives its time; a close dated the
                    // day the deal was created is not before its creation.
                    if let Some(us) = event.filter(|us| local(*us) == date && date.is_some()) {
                        *c = rfc(us);
                        timed += 1;
                    } else if let Some(cr_us) = cr.as_deref().and_then(|t| o.opts.timestamp_us(t))
                        && local(cr_us) == date
                        && date.is_some()
                    {
                        *c = rfc(cr_us);
                        at_creation += 1;
                    }
                }
                Some(_) => {}
            }
        }
        let counts = &mut reports[o.source].counts;
        counts.add("closed_at_from_history", filled);
        counts.add("close_date_timed_from_history", timed);
        counts.add("close_date_of_creation_day_at_creation", at_creation);
        if filled + timed + at_creation > 0 {
            set_text(&mut o.df, "closed_at", closed)?;
        }
    }
    Ok(())
}

/// `YYYY-MM-DD`: a date without a time.
fn is_date_only(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// With `won_deals_as_orders`: every won deal of this ingest without an order of its own
/// becomes a paid order at its close. Without it, says so when the export brings no orders.
fn won_deals_as_orders(
    outputs: &[Output],
    reports: &mut [super::SourceReport],
    config: &Config,
    store: Option<&Store>,
    stored_orders: u64,
) -> Result<Vec<Output>, Error> {
    let deals: Vec<&Output> = outputs.iter().filter(|o| o.def.name == "opportunities").collect();
    if deals.is_empty() {
        return Ok(Vec::new());
    }
    let staged_orders = outputs.iter().any(|o| o.def.name == "orders" && o.df.height() > 0);
    if !config.won_deals_as_orders {
        if !staged_orders && stored_orders == 0 {
            reports[deals[0].source].counts.note(
                "this export has no orders: revenue, CLV and retention stay empty; pass --won-deals-as-orders \
                 (or won_deals_as_orders = true in crm-kpi.toml) to count each won deal as a paid order at its close"
                    .into(),
            );
        }
        return Ok(Vec::new());
    }
    let mut ordered: HashSet<String> = HashSet::new();
    for o in outputs.iter().filter(|o| o.def.name == "orders") {
        ordered.extend(text(&o.df, "opportunity_id")?.into_iter().flatten());
    }
    if let Some(s) = store
        && stored_orders > 0
    {
        let stored = s.read_table(&schema::ORDERS)?;
        ordered.extend(text(&stored, "opportunity_id")?.into_iter().flatten());
    }
    let mut out = Vec::new();
    for o in deals {
        let status = text(&o.df, "status")?;
        let keep: Vec<bool> = status
            .iter()
            .map(|s| s.as_deref().map(key).as_deref() == Some("won"))
            .collect();
        let ids = text(&o.df, "opportunity_id")?;
        let mut with_own = 0;
        let keep: Vec<bool> = keep
            .iter()
            .zip(&ids)
            .map(|(k, id)| {
                let own = id.as_ref().is_some_and(|id| ordered.contains(id));
                if *k && own {
                    with_own += 1;
                }
                *k && !own
            })
            .collect();
        let mask: BooleanChunked = keep.iter().copied().collect();
        let won = o.df.filter(&mask).map_err(StagingError::from)?;
        let counts = &mut reports[o.source].counts;
        counts.add("won_deal_as_order", won.height() as u64);
        counts.add("won_deal_with_its_own_order", with_own);
        if won.height() == 0 {
            continue;
        }
        let ids = text(&won, "opportunity_id")?;
        let closed = text(&won, "closed_at")?;
        let order_ids: Text = ids
            .iter()
            .map(|i| i.as_ref().map(|i| format!("won-deal:{i}")))
            .collect();
        let cols = vec![
            Column::new("order_id".into(), order_ids),
            Column::new("account_id".into(), text(&won, "account_id")?),
            Column::new("ordered_at".into(), closed.clone()),
            Column::new("amount".into(), text(&won, "amount")?),
            Column::new("currency".into(), text(&won, "currency")?),
            Column::new("opportunity_id".into(), ids),
            Column::new("paid_at".into(), closed),
            Column::new("region".into(), text(&won, "region")?),
            won.column(FILE).map_err(StagingError::from)?.clone(),
            won.column(ROW).map_err(StagingError::from)?.clone(),
        ];
        let df = DataFrame::new(won.height(), cols).map_err(StagingError::from)?;
        let mut labels = BTreeMap::new();
        labels.insert("order_id", "won deal (--won-deals-as-orders)".to_string());
        out.push(Output {
            source: o.source,
            def: &schema::ORDERS,
            df,
            initial: None,
            opts: o.opts.clone(),
            labels,
        });
    }
    Ok(out)
}

fn kinds_from(stages: &Text, terminal: &Text) -> Kinds {
    let mut k = Kinds::default();
    for (s, t) in stages.iter().zip(terminal) {
        let Some(s) = s else { continue };
        let t = match t.as_deref().map(key).as_deref() {
            Some("won") => Some(Terminal::Won),
            Some("lost") => Some(Terminal::Lost),
            _ => None,
        };
        k.names.entry(key(s)).or_insert((s.clone(), t));
    }
    k
}

/// Rewrites stage names to the stage list's spelling (`closed won` -> `Closed Won`).
fn spell_stages(df: &mut DataFrame, c: &str, kinds: &Kinds, counts: &mut Counts) -> Result<(), StagingError> {
    let mut v = text(df, c)?;
    let mut n = 0;
    for x in v.iter_mut().flatten() {
        if let Some((name, _)) = kinds.get(x)
            && name != x
        {
            *x = name.clone();
            n += 1;
        }
    }
    counts.add(&format!("stage_spelling:{c}"), n);
    set_text(df, c, v)
}

/// A deal without a status takes it from its stage (a won or lost stage closes it); an open
/// deal's close date is its expected close date (Salesforce, HubSpot and Zoho keep both in one
/// field).
fn settle_deal(o: &mut Output, kinds: &Kinds, counts: &mut Counts) -> Result<(), StagingError> {
    if o.df.column("stage").is_ok() {
        spell_stages(&mut o.df, "stage", kinds, counts)?;
    }
    let stage = text(&o.df, "stage")?;
    let mut status = text(&o.df, "status")?;
    let mut from_stage = 0;
    for (st, s) in status.iter_mut().zip(&stage) {
        if st.is_none()
            && let Some(s) = s
        {
            *st = Some(
                match kinds.get(s).and_then(|(_, t)| *t) {
                    Some(Terminal::Won) => "won",
                    Some(Terminal::Lost) => "lost",
                    None => "open",
                }
                .to_string(),
            );
            from_stage += 1;
        }
    }
    counts.add("status_from_stage", from_stage);
    let mut closed = text(&o.df, "closed_at")?;
    let mut expected = text(&o.df, "expected_close_date")?;
    let mut moved = 0;
    for ((st, c), e) in status.iter().zip(closed.iter_mut()).zip(expected.iter_mut()) {
        if st.as_deref().map(key).as_deref() == Some("open") && c.is_some() {
            if e.is_none() {
                *e = c.clone();
            }
            *c = None;
            moved += 1;
        }
    }
    counts.add("close_date_of_open_deal_as_expected", moved);
    if o.df.column("status").is_ok() || from_stage > 0 {
        set_text(&mut o.df, "status", status)?;
    }
    if moved > 0 {
        set_text(&mut o.df, "closed_at", closed)?;
        set_text(&mut o.df, "expected_close_date", expected)?;
    }
    Ok(())
}

/// Row order of a stage history: by deal, then time (unparseable times last), then file order.
fn history_order(deals: &Text, times: &[Option<i64>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..deals.len()).collect();
    idx.sort_by(|&a, &b| {
        deals[a]
            .cmp(&deals[b])
            .then_with(|| match (times[a], times[b]) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then(a.cmp(&b))
    });
    idx
}

fn keep_rows(o: &mut Output, keep: &[bool]) -> Result<(), StagingError> {
    let mask: BooleanChunked = keep.iter().copied().collect();
    o.df = o.df.filter(&mask)?;
    if let Some(init) = o.initial.as_mut() {
        let mut it = keep.iter();
        init.retain(|_| *it.next().expect("same length"));
    }
    Ok(())
}

/// Keeps the rows whose stage differs from the deal's previous row: the others record an edit
/// of another field (amount, close date, probability), not an entry into a stage.
fn changes_only(o: &mut Output, counts: &mut Counts) -> Result<(), StagingError> {
    let deals = text(&o.df, "opportunity_id")?;
    let stages = text(&o.df, "stage")?;
    let times: Vec<Option<i64>> = text(&o.df, "entered_at")?
        .iter()
        .map(|t| t.as_deref().and_then(|t| o.opts.timestamp_us(t)))
        .collect();
    let order = history_order(&deals, &times);
    let mut keep = vec![true; deals.len()];
    for w in order.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        if deals[prev].is_some()
            && deals[prev] == deals[cur]
            && stages[prev].as_deref().map(key) == stages[cur].as_deref().map(key)
        {
            keep[cur] = false;
        }
    }
    counts.add("not_a_stage_change", keep.iter().filter(|k| !**k).count() as u64);
    keep_rows(o, &keep)
}

/// For each deal, the stage before its earliest row becomes an event at the deal's creation:
/// a change log records changes, and a deal's first stage is not one.
fn add_initial_stage(
    o: &mut Output,
    created: &HashMap<String, i64>,
    kinds: &Kinds,
    counts: &mut Counts,
) -> Result<(), StagingError> {
    let initial = o.initial.take().unwrap_or_default();
    let deals = text(&o.df, "opportunity_id")?;
    let times: Vec<Option<i64>> = text(&o.df, "entered_at")?
        .iter()
        .map(|t| t.as_deref().and_then(|t| o.opts.timestamp_us(t)))
        .collect();
    let files = text(&o.df, FILE)?;
    let rows = o.df.column(ROW)?.cast(&DataType::UInt64)?;
    let rows: Vec<Option<u64>> = rows.u64()?.iter().collect();
    let order = history_order(&deals, &times);
    // (deal, stage, entered_at, file, row) of each event to add.
    type Event = (String, String, String, Option<String>, Option<u64>);
    let mut new: Vec<Event> = Vec::new();
    let mut unknown = 0;
    let mut seen: HashSet<&str> = HashSet::new();
    for &i in &order {
        let Some(d) = deals[i].as_deref() else { continue };
        if !seen.insert(d) {
            continue;
        }
        let Some(stage) = initial[i].clone() else { continue };
        let stage = kinds.get(&stage).map_or(stage, |(n, _)| n.clone());
        match created.get(d) {
            None => unknown += 1,
            Some(&us) => {
                let at = chrono::DateTime::from_timestamp_micros(us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .unwrap_or_default();
                new.push((d.to_string(), stage, at, files[i].clone(), rows[i]));
            }
        }
    }
    counts.add("initial_stage", new.len() as u64);
    counts.add("initial_stage_of_unknown_deal", unknown);
    if new.is_empty() {
        return Ok(());
    }
    let mut cols: Vec<Column> = Vec::new();
    for name in o.df.get_column_names() {
        let n = name.as_str();
        let c = match n {
            "opportunity_id" => Column::new(n.into(), new.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
            "stage" => Column::new(n.into(), new.iter().map(|r| r.1.clone()).collect::<Vec<_>>()),
            "entered_at" => Column::new(n.into(), new.iter().map(|r| r.2.clone()).collect::<Vec<_>>()),
            FILE => Column::new(n.into(), new.iter().map(|r| r.3.clone()).collect::<Vec<_>>()),
            ROW => Column::new(n.into(), new.iter().map(|r| r.4).collect::<Vec<_>>()),
            _ => Column::full_null(n.into(), new.len(), o.df.column(n)?.dtype()),
        };
        cols.push(c);
    }
    let extra = DataFrame::new(new.len(), cols)?;
    o.df = o.df.vstack(&extra)?;
    Ok(())
}

/// Rows that reopen a deal enter the open stage the deal was last in before them (from every
/// stage event of this ingest); a reopening with no open stage before it is left out.
fn reopen_into_last_stage(
    outputs: &mut [Output],
    reports: &mut [super::SourceReport],
    kinds: &Kinds,
) -> Result<(), StagingError> {
    if !outputs.iter().any(|o| o.df.column(REOPEN).is_ok()) {
        return Ok(());
    }
    // Every entry into an open stage, by deal: (time, stage).
    let mut open: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for o in outputs.iter().filter(|o| o.def.name == "stage_events") {
        let reopen: Vec<bool> = match o.df.column(REOPEN) {
            Ok(c) => c.bool()?.iter().map(|v| v == Some(true)).collect(),
            Err(_) => vec![false; o.df.height()],
        };
        let deals = text(&o.df, "opportunity_id")?;
        let stages = text(&o.df, "stage")?;
        let at = text(&o.df, "entered_at")?;
        for (((d, s), a), r) in deals.into_iter().zip(stages).zip(at).zip(reopen) {
            let closing = s
                .as_deref()
                .and_then(|s| kinds.get(s))
                .is_some_and(|(_, t)| t.is_some());
            if let (Some(d), Some(s), Some(us), false, false) =
                (d, s, a.and_then(|a| o.opts.timestamp_us(&a)), r, closing)
            {
                open.entry(d).or_default().push((us, s));
            }
        }
    }
    for v in open.values_mut() {
        v.sort();
    }
    for o in outputs.iter_mut().filter(|o| o.df.column(REOPEN).is_ok()) {
        let reopen: Vec<bool> = o.df.column(REOPEN)?.bool()?.iter().map(|v| v == Some(true)).collect();
        let deals = text(&o.df, "opportunity_id")?;
        let at = text(&o.df, "entered_at")?;
        let mut stages = text(&o.df, "stage")?;
        let mut keep = vec![true; reopen.len()];
        let (mut done, mut lost) = (0, 0);
        for i in (0..reopen.len()).filter(|i| reopen[*i]) {
            let us = at[i].as_deref().and_then(|a| o.opts.timestamp_us(a));
            let last = deals[i]
                .as_ref()
                .zip(us)
                .and_then(|(d, us)| open.get(d)?.iter().rev().find(|(t, _)| *t < us).map(|(_, s)| s.clone()));
            match last {
                Some(s) => {
                    stages[i] = Some(s);
                    done += 1;
                }
                None => {
                    keep[i] = false;
                    lost += 1;
                }
            }
        }
        let counts = &mut reports[o.source].counts;
        counts.add("reopened_into_last_stage", done);
        counts.add("reopen_without_earlier_stage", lost);
        set_text(&mut o.df, "stage", stages)?;
        o.df = o.df.drop(REOPEN)?;
        keep_rows(o, &keep)?;
    }
    Ok(())
}

/// The same entry (deal, stage, instant) from two sources (a change log's status change and a
/// deals export's won time) is kept once, from the first source.
fn same_events_once(outputs: &mut [Output], reports: &mut [super::SourceReport]) -> Result<(), StagingError> {
    let mut seen: HashSet<(String, String, i64)> = HashSet::new();
    for o in outputs.iter_mut().filter(|o| o.def.name == "stage_events") {
        let deals = text(&o.df, "opportunity_id")?;
        let stages = text(&o.df, "stage")?;
        let at = text(&o.df, "entered_at")?;
        let mut mine: HashSet<(String, String, i64)> = HashSet::new();
        let mut keep = vec![true; deals.len()];
        for (i, ((d, s), a)) in deals.into_iter().zip(stages).zip(at).enumerate() {
            if let (Some(d), Some(s), Some(us)) = (d, s, a.and_then(|a| o.opts.timestamp_us(&a))) {
                let k = (d, key(&s), us);
                if seen.contains(&k) {
                    keep[i] = false;
                } else {
                    mine.insert(k);
                }
            }
        }
        let dropped = keep.iter().filter(|k| !**k).count() as u64;
        reports[o.source].counts.add("same_event_from_another_source", dropped);
        if dropped > 0 {
            keep_rows(o, &keep)?;
        }
        seen.extend(mine);
    }
    Ok(())
}

/// Rates written as units of the currency per one unit of the reference (corporate) currency
/// become value in base currency of one unit: 1 / rate, or rate(base) / rate when the base
/// currency is itself in the list (a base other than the corporate one).
fn invert_rates(o: &mut Output, base: &str, counts: &mut Counts) -> Result<(), StagingError> {
    let cur = text(&o.df, "currency")?;
    let dates: Vec<Option<i32>> = text(&o.df, "date")?
        .iter()
        .map(|d| d.as_deref().and_then(|d| o.opts.date_days(d)))
        .collect();
    let mut rate = text(&o.df, "rate_to_base")?;
    let parsed: Vec<Option<f64>> = rate.iter().map(|r| r.as_deref().and_then(|r| o.opts.f64(r))).collect();
    let mut base_rates: Vec<(i32, f64)> = cur
        .iter()
        .zip(&dates)
        .zip(&parsed)
        .filter(|((c, _), _)| c.as_deref().map(str::to_uppercase).as_deref() == Some(base))
        .filter_map(|((_, d), r)| Some(((*d)?, (*r)?)))
        .filter(|(_, r)| *r > 0.0)
        .collect();
    base_rates.sort_by_key(|(d, _)| *d);
    let base_at = |d: Option<i32>| -> f64 {
        if base_rates.is_empty() {
            return 1.0;
        }
        let d = d.unwrap_or(i32::MAX);
        let i = base_rates.partition_point(|(x, _)| *x <= d);
        if i == 0 { base_rates[0].1 } else { base_rates[i - 1].1 }
    };
    let mut n = 0;
    for ((r, p), d) in rate.iter_mut().zip(&parsed).zip(&dates) {
        if let Some(p) = p.filter(|p| *p > 0.0) {
            *r = Some(number_text(base_at(*d) / p, &o.opts));
            n += 1;
        }
    }
    counts.add("inverted_rate", n);
    set_text(&mut o.df, "rate_to_base", rate)
}

/// The entity a fallback row stands for: a deal's history, a currency's rates, else a row's
/// primary key.
fn entity_columns(def: &TableDef) -> Vec<&'static str> {
    match def.name {
        "stage_events" => vec!["opportunity_id"],
        "fx_rates" => vec!["currency"],
        _ => def.primary_key.to_vec(),
    }
}

fn entities(df: &DataFrame, cols: &[&str]) -> Result<Vec<Option<String>>, StagingError> {
    let parts: Vec<Text> = cols.iter().map(|c| text(df, c)).collect::<Result<_, _>>()?;
    Ok((0..df.height())
        .map(|i| {
            let vals: Option<Vec<String>> = parts.iter().map(|p| p[i].as_deref().map(key)).collect();
            vals.map(|v| v.join("\u{1f}"))
        })
        .collect())
}

/// Rows of fallback sources are used for an entity only when no source of a lower fallback
/// level (nor, for stage histories, the store) has rows for it; a fallback stage event in a
/// stage that closes deals is left out (its time would be the deal's creation, not its close).
fn fallbacks(
    outputs: &mut [Output],
    sources: &[Source],
    reports: &mut [super::SourceReport],
    stored_deals: &HashSet<String>,
    kinds: &Kinds,
    created: &HashMap<String, i64>,
) -> Result<(), StagingError> {
    let tables: Vec<&'static str> = {
        let mut t: Vec<&'static str> = outputs
            .iter()
            .filter(|o| sources[o.source].fallback > 0)
            .map(|o| o.def.name)
            .collect();
        t.dedup();
        t
    };
    for table in tables {
        let mut levels: Vec<u8> = outputs
            .iter()
            .filter(|o| o.def.name == table)
            .map(|o| sources[o.source].fallback)
            .collect();
        levels.sort();
        levels.dedup();
        let mut covered: HashSet<String> = if table == "stage_events" {
            stored_deals.iter().map(|d| key(d)).collect()
        } else {
            HashSet::new()
        };
        for level in levels {
            let mut now: HashSet<String> = HashSet::new();
            for o in outputs
                .iter_mut()
                .filter(|o| o.def.name == table && sources[o.source].fallback == level)
            {
                let ents = entities(&o.df, &entity_columns(o.def))?;
                let counts = &mut reports[o.source].counts;
                let mut keep = vec![true; ents.len()];
                if level > 0 {
                    let stages = text(&o.df, "stage")?;
                    let deals = text(&o.df, "opportunity_id")?;
                    let at: Vec<Option<i64>> = text(&o.df, "entered_at")?
                        .iter()
                        .map(|t| t.as_deref().and_then(|t| o.opts.timestamp_us(t)))
                        .collect();
                    let (mut not_needed, mut terminal) = (0, 0);
                    for (i, e) in ents.iter().enumerate() {
                        // A closing stage "entered" at the deal's creation is a current stage
                        // read as if entered then: its time is not the close. (A legacy
                        // history's closing entry keeps its real time and stays.)
                        let at_creation = match (deals[i].as_ref().and_then(|d| created.get(d)), at[i]) {
                            (Some(c), Some(t)) => *c == t,
                            _ => true,
                        };
                        if e.as_ref().is_some_and(|e| covered.contains(e)) {
                            keep[i] = false;
                            not_needed += 1;
                        } else if table == "stage_events"
                            && at_creation
                            && stages[i]
                                .as_deref()
                                .and_then(|s| kinds.get(s))
                                .is_some_and(|(_, t)| t.is_some())
                        {
                            keep[i] = false;
                            terminal += 1;
                        }
                    }
                    counts.add("fallback_not_needed", not_needed);
                    counts.add("fallback_closing_stage_left_out", terminal);
                    counts.add("fallback_used", keep.iter().filter(|k| **k).count() as u64);
                }
                // A deal's history is covered by entries into open stages: a close event alone
                // (Pipedrive's won and lost are statuses) leaves its stages to the fallback.
                let closing: Vec<bool> = if table == "stage_events" {
                    text(&o.df, "stage")?
                        .iter()
                        .map(|s| {
                            s.as_deref()
                                .and_then(|s| kinds.get(s))
                                .is_some_and(|(_, t)| t.is_some())
                        })
                        .collect()
                } else {
                    vec![false; ents.len()]
                };
                for ((e, k), c) in ents.iter().zip(&keep).zip(&closing) {
                    if let (Some(e), true, false) = (e, k, c) {
                        now.insert(e.clone());
                    }
                }
                if level > 0 {
                    keep_rows(o, &keep)?;
                }
            }
            covered.extend(now);
        }
    }
    Ok(())
}

/// What one stage is known to be.
#[derive(Debug, Clone, Default)]
struct StageFacts {
    name: String,
    position: Option<f64>,
    probability: Option<f64>,
    terminal: Option<Option<String>>,
    pipeline: Option<String>,
    /// (rank of the source that named it first, row) for stable order.
    first_seen: (usize, usize),
    file: Option<String>,
    row: Option<u64>,
}

/// Most frequent value (ties: the larger).
fn mode_f64(v: &[f64]) -> Option<f64> {
    let mut counts: Vec<(f64, usize)> = Vec::new();
    for x in v {
        match counts.iter_mut().find(|(y, _)| y == x) {
            Some((_, n)) => *n += 1,
            None => counts.push((*x, 1)),
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.total_cmp(&b.0)))
        .map(|(x, _)| x)
}

/// One source's facts per stage (several rows of one stage agree by min position, most common
/// probability and terminal kind).
fn facts_of(o: &Output, rank: usize) -> Result<Vec<StageFacts>, StagingError> {
    let stage = text(&o.df, "stage")?;
    let position = text(&o.df, "position")?;
    let probability = text(&o.df, "probability")?;
    let has_terminal = o.df.column("terminal").is_ok();
    let terminal = text(&o.df, "terminal")?;
    let pipeline = text(&o.df, "pipeline")?;
    let files = text(&o.df, FILE)?;
    let rows = o.df.column(ROW)?.cast(&DataType::UInt64)?;
    let rows: Vec<Option<u64>> = rows.u64()?.iter().collect();
    let mut by: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, s) in stage.iter().enumerate() {
        let Some(s) = s else { continue };
        match by.iter_mut().find(|(k, _)| *k == key(s)) {
            Some((_, v)) => v.push(i),
            None => by.push((key(s), vec![i])),
        }
    }
    Ok(by
        .into_iter()
        .map(|(_, idx)| {
            let first = idx[0];
            let pos: Vec<f64> = idx
                .iter()
                .filter_map(|&i| position[i].as_deref().and_then(|p| o.opts.f64(p)))
                .collect();
            let prob: Vec<f64> = idx
                .iter()
                .filter_map(|&i| probability[i].as_deref().and_then(|p| o.opts.f64(p)))
                .collect();
            let terms: Vec<String> = idx.iter().filter_map(|&i| terminal[i].as_deref().map(key)).collect();
            let term = if !has_terminal {
                None
            } else {
                // Open deals sit in open stages: a source that maps `terminal` says "not
                // terminal" by a blank.
                let mut counts: Vec<(String, usize)> = Vec::new();
                for t in &terms {
                    match counts.iter_mut().find(|(x, _)| x == t) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((t.clone(), 1)),
                    }
                }
                let best = counts.into_iter().max_by_key(|(_, n)| *n).map(|(t, _)| t);
                Some(best.filter(|t| t == "won" || t == "lost"))
            };
            StageFacts {
                name: stage[first].clone().unwrap_or_default(),
                position: pos.into_iter().reduce(f64::min),
                probability: mode_f64(&prob),
                terminal: term,
                pipeline: idx.iter().find_map(|&i| pipeline[i].clone()),
                first_seen: (rank, first),
                file: files[first].clone(),
                row: rows[first],
            }
        })
        .collect())
}

/// One stage list from every stages source and the store: for each stage and attribute, the
/// first source (in config order; `fill` sources after the stored stages) that knows it.
/// Stages with a position keep its order; a stage without one goes after the open stages of
/// lower or equal probability (else after every open stage); closing stages without one go
/// last, won before lost. Positions are then renumbered 1, 2, ...
fn merge_stages(
    outs: Vec<Output>,
    sources: &[Source],
    reports: &mut [super::SourceReport],
    stored: Option<&DataFrame>,
) -> Result<Output, Error> {
    let mut ranked: Vec<(usize, bool, Vec<StageFacts>)> = Vec::new();
    let (main, fill): (Vec<&Output>, Vec<&Output>) = outs.iter().partition(|o| !sources[o.source].fill);
    let mut rank = 0;
    for o in &main {
        ranked.push((o.source, sources[o.source].add, facts_of(o, rank)?));
        rank += 1;
    }
    if let Some(d) = stored.filter(|d| d.height() > 0) {
        let stage = text(d, "stage")?;
        let pos = d
            .column("position")
            .map_err(StagingError::from)?
            .cast(&DataType::Float64)
            .map_err(StagingError::from)?;
        let prob = d
            .column("probability")
            .map_err(StagingError::from)?
            .cast(&DataType::Float64)
            .map_err(StagingError::from)?;
        let term = text(d, "terminal")?;
        let pipe = text(d, "pipeline")?;
        let facts = (0..d.height())
            .filter_map(|i| {
                Some(StageFacts {
                    name: stage[i].clone()?,
                    position: pos.f64().ok()?.get(i),
                    probability: prob.f64().ok()?.get(i),
                    terminal: Some(term[i].clone()),
                    pipeline: pipe[i].clone(),
                    first_seen: (rank, i),
                    file: Some("(store)".into()),
                    row: None,
                })
            })
            .collect();
        ranked.push((usize::MAX, true, facts));
        rank += 1;
    }
    for o in &fill {
        ranked.push((o.source, sources[o.source].add, facts_of(o, rank)?));
        rank += 1;
    }
    let mut merged: Vec<StageFacts> = Vec::new();
    for (_, add, facts) in &ranked {
        for f in facts {
            match merged.iter_mut().find(|m| key(&m.name) == key(&f.name)) {
                None if *add => merged.push(f.clone()),
                None => {}
                Some(m) => {
                    m.position = m.position.or(f.position);
                    m.probability = m.probability.or(f.probability);
                    if m.terminal.is_none() {
                        m.terminal = f.terminal.clone();
                    }
                    m.pipeline = m.pipeline.clone().or(f.pipeline.clone());
                }
            }
        }
    }
    let is_term = |f: &StageFacts| f.terminal.as_ref().is_some_and(|t| t.is_some());
    let open_positioned: Vec<(f64, Option<f64>)> = merged
        .iter()
        .filter(|f| !is_term(f))
        .filter_map(|f| f.position.map(|p| (p, f.probability)))
        .collect();
    let max_open = open_positioned
        .iter()
        .map(|(p, _)| *p)
        .fold(f64::NEG_INFINITY, f64::max);
    let min_open = open_positioned.iter().map(|(p, _)| *p).fold(f64::INFINITY, f64::min);
    let sort_key = |f: &StageFacts| -> f64 {
        if let Some(p) = f.position {
            return p;
        }
        if is_term(f) {
            let lost = f.terminal.as_ref().and_then(|t| t.as_deref()) == Some("lost");
            return if lost { f64::MAX } else { f64::MAX / 2.0 };
        }
        let base = if open_positioned.is_empty() { 0.0 } else { max_open };
        match f.probability {
            None => base + 0.5,
            Some(p) => {
                let below = open_positioned
                    .iter()
                    .filter(|(_, q)| q.is_some_and(|q| q <= p))
                    .map(|(pos, _)| *pos)
                    .fold(f64::NEG_INFINITY, f64::max);
                if below.is_finite() {
                    below + 0.5
                } else if min_open.is_finite() {
                    min_open - 0.5
                } else {
                    0.5
                }
            }
        }
    };
    let mut order: Vec<(f64, (usize, usize), usize)> = merged
        .iter()
        .enumerate()
        .map(|(i, f)| (sort_key(f), f.first_seen, i))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let main_source = ranked.first().map_or(0, |(s, ..)| *s);
    let main_source = if main_source == usize::MAX {
        outs[0].source
    } else {
        main_source
    };
    let opts = outs
        .iter()
        .find(|o| o.source == main_source)
        .map_or_else(|| outs[0].opts.clone(), |o| o.opts.clone());
    let n = order.len();
    let mut cols: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    let mut files = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for (pos, (_, _, i)) in order.iter().enumerate() {
        let f = &merged[*i];
        cols.entry("stage").or_default().push(Some(f.name.clone()));
        cols.entry("position").or_default().push(Some((pos + 1).to_string()));
        cols.entry("probability")
            .or_default()
            .push(f.probability.map(|p| number_text(p, &opts)));
        cols.entry("terminal").or_default().push(f.terminal.clone().flatten());
        cols.entry("pipeline").or_default().push(f.pipeline.clone());
        files.push(f.file.clone());
        rows.push(f.row);
    }
    let mut columns: Vec<Column> = ["stage", "position", "probability", "terminal", "pipeline"]
        .iter()
        .map(|c| Column::new((*c).into(), cols.remove(c).unwrap_or_default()))
        .collect();
    columns.push(Column::new(FILE.into(), files));
    columns.push(Column::new(ROW.into(), rows));
    let df = DataFrame::new(n, columns).map_err(StagingError::from)?;
    let without_probability = merged.iter().filter(|f| f.probability.is_none()).count() as u64;
    let rep = &mut reports[main_source].counts;
    rep.add("stage_without_probability", without_probability);
    let names: Vec<String> = outs.iter().map(|o| sources[o.source].name.clone()).collect();
    rep.note(format!("stages merged from {} into one list of {n}", names.join(", ")));
    let mut labels = BTreeMap::new();
    labels.insert("stage", format!("stages merged from {}", names.join(", ")));
    Ok(Output {
        source: main_source,
        def: &schema::STAGES,
        df,
        initial: None,
        opts,
        labels,
    })
}
