//! Turning simulated entities into typed polars frames, one per canonical table, with the
//! schema's input column names in schema order.

use std::fmt::Write as _;

use polars::prelude::*;

use super::calendar::{DAY, HOUR, MONTHS};
use super::rng::Rng;
use super::sim::{ACTIVITY_KINDS, ChunkData, FORECAST_CATEGORIES, OUTCOMES, Stats};
use super::world::{
    INDUSTRIES, LOSS_REASONS, ORDER_CHANNELS, PRODUCTS, REGIONS, SEGMENTS, SOURCES, TAG_FORECASTS, TAG_SPEND,
    TAG_TARGETS, World,
};

/// Id prefixes.
pub const LEAD: &str = "L";
pub const ACCOUNT: &str = "A";
pub const OPP: &str = "O";
pub const ORDER: &str = "ORD";
pub const ACTIVITY: &str = "ACT";
pub const REP: &str = "R";
pub const CAMPAIGN: &str = "C";

pub fn id(prefix: &str, n: u64, width: usize) -> String {
    format!("{prefix}{n:0width$}")
}

/// Running id offsets of the chunk tables (ids are offset + local index + 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offsets {
    pub lead: u64,
    pub account: u64,
    pub opp: u64,
    pub order: u64,
    pub activity: u64,
}

impl Offsets {
    pub fn advance(&mut self, c: &ChunkData) {
        self.lead += c.leads.len() as u64;
        self.account += c.accounts.len() as u64;
        self.opp += c.opps.len() as u64;
        self.order += c.orders.len() as u64;
        self.activity += c.activities.len() as u64;
    }
}

fn ids<I: Iterator<Item = Option<u64>>>(name: &str, prefix: &str, width: usize, it: I, cap: usize) -> Column {
    let mut b = StringChunkedBuilder::new(name.into(), cap);
    let mut buf = String::with_capacity(16);
    for v in it {
        match v {
            Some(n) => {
                buf.clear();
                let _ = write!(buf, "{prefix}{n:0width$}");
                b.append_value(&buf);
            }
            None => b.append_null(),
        }
    }
    b.finish().into_series().into_column()
}

fn strs<'a, I: Iterator<Item = Option<&'a str>>>(name: &str, it: I, cap: usize) -> Column {
    let mut b = StringChunkedBuilder::new(name.into(), cap);
    for v in it {
        b.append_option(v);
    }
    b.finish().into_series().into_column()
}

/// Instants in seconds -> Datetime(us, UTC).
fn ts<I: Iterator<Item = Option<i64>>>(name: &str, it: I) -> Column {
    Int64Chunked::from_iter_options(name.into(), it.map(|v| v.map(|s| s * 1_000_000)))
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column()
}

fn dates<I: Iterator<Item = Option<i32>>>(name: &str, it: I) -> Column {
    Int32Chunked::from_iter_options(name.into(), it)
        .into_date()
        .into_series()
        .into_column()
}

fn f64s<I: Iterator<Item = Option<f64>>>(name: &str, it: I) -> Column {
    Float64Chunked::from_iter_options(name.into(), it)
        .into_series()
        .into_column()
}

fn i64s<I: Iterator<Item = Option<i64>>>(name: &str, it: I) -> Column {
    Int64Chunked::from_iter_options(name.into(), it)
        .into_series()
        .into_column()
}

fn bools<I: Iterator<Item = Option<bool>>>(name: &str, it: I) -> Column {
    BooleanChunked::from_iter_options(name.into(), it)
        .into_series()
        .into_column()
}

fn frame(height: usize, columns: Vec<Column>) -> PolarsResult<DataFrame> {
    DataFrame::new(height, columns)
}

fn local(off: u64, i: u32) -> u64 {
    off + i as u64 + 1
}

/// Frames of the chunk tables for a run of consecutive chunks starting at `off`.
pub struct ChunkFrames {
    pub leads: DataFrame,
    pub accounts: DataFrame,
    pub opportunities: DataFrame,
    pub stage_events: DataFrame,
    pub orders: DataFrame,
    pub activities: DataFrame,
}

pub fn chunk_frames(w: &World, chunks: &[ChunkData], off: &mut Offsets) -> PolarsResult<ChunkFrames> {
    let wd = w.id_width();
    let rw = w.rep_width();
    let cw = w.campaign_width();
    let fx = &w.fx;
    let stage_names = &w.stages.names;

    // Offsets of each chunk within the run.
    let mut offs = Vec::with_capacity(chunks.len());
    for c in chunks {
        offs.push(*off);
        off.advance(c);
    }
    let pairs = || chunks.iter().zip(offs.iter());

    let n: usize = chunks.iter().map(|c| c.leads.len()).sum();
    let leads = || pairs().flat_map(|(c, o)| c.leads.iter().map(move |l| (l, o)));
    let leads = frame(
        n,
        vec![
            ids(
                "lead_id",
                LEAD,
                wd,
                pairs().flat_map(|(c, o)| (0..c.leads.len() as u32).map(|i| Some(local(o.lead, i)))),
                n,
            ),
            ts("created_at", leads().map(|(l, _)| Some(l.created))),
            strs("source", leads().map(|(l, _)| Some(SOURCES[l.source as usize].name)), n),
            ids(
                "campaign_id",
                CAMPAIGN,
                cw,
                leads().map(|(l, _)| l.campaign.map(|c| c as u64 + 1)),
                n,
            ),
            ids(
                "owner_id",
                REP,
                rw,
                leads().map(|(l, _)| l.owner.map(|r| r as u64 + 1)),
                n,
            ),
            strs("region", leads().map(|(l, _)| Some(REGIONS[l.region as usize])), n),
            ts("qualified_at", leads().map(|(l, _)| l.qualified)),
            ts("converted_at", leads().map(|(l, _)| l.converted)),
            ids(
                "account_id",
                ACCOUNT,
                wd,
                leads().map(|(l, o)| l.account.map(|a| local(o.account, a))),
                n,
            ),
            ts("disqualified_at", leads().map(|(l, _)| l.disqualified)),
        ],
    )?;

    let n: usize = chunks.iter().map(|c| c.accounts.len()).sum();
    let accs = || pairs().flat_map(|(c, o)| c.accounts.iter().enumerate().map(move |(i, a)| (i as u32, a, o)));
    let accounts = frame(
        n,
        vec![
            ids(
                "account_id",
                ACCOUNT,
                wd,
                accs().map(|(i, _, o)| Some(local(o.account, i))),
                n,
            ),
            ts("created_at", accs().map(|(_, a, _)| Some(a.created))),
            strs("name", accs().map(|(_, a, _)| Some(a.name.as_str())), n),
            strs("region", accs().map(|(_, a, _)| Some(REGIONS[a.region as usize])), n),
            strs("segment", accs().map(|(_, a, _)| Some(SEGMENTS[a.segment as usize])), n),
            strs(
                "industry",
                accs().map(|(_, a, _)| Some(INDUSTRIES[a.industry as usize])),
                n,
            ),
        ],
    )?;

    let n: usize = chunks.iter().map(|c| c.opps.len()).sum();
    let opps = || pairs().flat_map(|(c, o)| c.opps.iter().enumerate().map(move |(i, x)| (i as u32, x, o)));
    let opportunities = frame(
        n,
        vec![
            ids(
                "opportunity_id",
                OPP,
                wd,
                opps().map(|(i, _, o)| Some(local(o.opp, i))),
                n,
            ),
            ids(
                "account_id",
                ACCOUNT,
                wd,
                opps().map(|(_, x, o)| Some(local(o.account, x.account))),
                n,
            ),
            ts("created_at", opps().map(|(_, x, _)| Some(x.created))),
            ids("owner_id", REP, rw, opps().map(|(_, x, _)| Some(x.owner as u64 + 1)), n),
            f64s("amount", opps().map(|(_, x, _)| Some(x.amount))),
            strs(
                "currency",
                opps().map(|(_, x, _)| Some(fx.codes[x.currency as usize].as_str())),
                n,
            ),
            strs("status", opps().map(|(_, x, _)| Some(x.status.as_str())), n),
            ts("closed_at", opps().map(|(_, x, _)| x.closed)),
            dates("expected_close_date", opps().map(|(_, x, _)| Some(x.expected_close))),
            ids(
                "lead_id",
                LEAD,
                wd,
                opps().map(|(_, x, o)| x.lead.map(|l| local(o.lead, l))),
                n,
            ),
            ids(
                "campaign_id",
                CAMPAIGN,
                cw,
                opps().map(|(_, x, _)| x.campaign.map(|c| c as u64 + 1)),
                n,
            ),
            strs(
                "loss_reason",
                opps().map(|(_, x, _)| x.loss_reason.map(|r| LOSS_REASONS[r as usize])),
                n,
            ),
            strs(
                "product",
                opps().map(|(_, x, _)| Some(PRODUCTS[x.product as usize].0)),
                n,
            ),
            strs("region", opps().map(|(_, x, _)| Some(REGIONS[x.region as usize])), n),
            strs(
                "forecast_category",
                opps().map(|(_, x, _)| Some(FORECAST_CATEGORIES[x.forecast as usize])),
                n,
            ),
            // The stage the export shows: the deal's last stage event.
            strs(
                "stage",
                opps().map(|(_, x, _)| x.events.last().map(|e| stage_names[e.0 as usize].as_str())),
                n,
            ),
            // With one pipeline, none (the configured stage list); with several, the deal's.
            strs(
                "pipeline",
                opps().map(|(_, x, _)| match w.pipelines.len() {
                    1 => None,
                    _ => Some(w.pipelines[x.pipeline as usize].0.as_str()),
                }),
                n,
            ),
        ],
    )?;

    let n: usize = chunks.iter().map(|c| c.stage_event_count()).sum();
    let evs = || opps().flat_map(|(i, x, o)| x.events.iter().map(move |e| (local(o.opp, i), e)));
    let stage_events = frame(
        n,
        vec![
            ids("opportunity_id", OPP, wd, evs().map(|(id, _)| Some(id)), n),
            strs("stage", evs().map(|(_, e)| Some(stage_names[e.0 as usize].as_str())), n),
            ts("entered_at", evs().map(|(_, e)| Some(e.1))),
        ],
    )?;

    let n: usize = chunks.iter().map(|c| c.orders.len()).sum();
    let ords = || pairs().flat_map(|(c, o)| c.orders.iter().enumerate().map(move |(i, x)| (i as u32, x, o)));
    let orders = frame(
        n,
        vec![
            ids(
                "order_id",
                ORDER,
                wd,
                ords().map(|(i, _, o)| Some(local(o.order, i))),
                n,
            ),
            ids(
                "account_id",
                ACCOUNT,
                wd,
                ords().map(|(_, x, o)| Some(local(o.account, x.account))),
                n,
            ),
            ts("ordered_at", ords().map(|(_, x, _)| Some(x.ordered))),
            f64s("amount", ords().map(|(_, x, _)| Some(x.amount))),
            strs(
                "currency",
                ords().map(|(_, x, _)| Some(fx.codes[x.currency as usize].as_str())),
                n,
            ),
            ids(
                "opportunity_id",
                OPP,
                wd,
                ords().map(|(_, x, o)| x.opp.map(|p| local(o.opp, p))),
                n,
            ),
            ts("paid_at", ords().map(|(_, x, _)| x.paid)),
            ts("due_at", ords().map(|(_, x, _)| x.due)),
            strs("region", ords().map(|(_, x, _)| Some(REGIONS[x.region as usize])), n),
            strs(
                "channel",
                ords().map(|(_, x, _)| Some(ORDER_CHANNELS[x.channel as usize])),
                n,
            ),
            bools("is_refund", ords().map(|(_, x, _)| Some(x.refund))),
        ],
    )?;

    let n: usize = chunks.iter().map(|c| c.activities.len()).sum();
    let acts = || pairs().flat_map(|(c, o)| c.activities.iter().enumerate().map(move |(i, x)| (i as u32, x, o)));
    let activities = frame(
        n,
        vec![
            ids(
                "activity_id",
                ACTIVITY,
                wd,
                acts().map(|(i, _, o)| Some(local(o.activity, i))),
                n,
            ),
            ids("owner_id", REP, rw, acts().map(|(_, x, _)| Some(x.owner as u64 + 1)), n),
            strs("kind", acts().map(|(_, x, _)| Some(ACTIVITY_KINDS[x.kind as usize])), n),
            ts("occurred_at", acts().map(|(_, x, _)| Some(x.occurred))),
            strs(
                "outcome",
                acts().map(|(_, x, _)| x.outcome.map(|k| OUTCOMES[k as usize])),
                n,
            ),
            i64s("duration_s", acts().map(|(_, x, _)| x.duration)),
            ids(
                "lead_id",
                LEAD,
                wd,
                acts().map(|(_, x, o)| x.lead.map(|l| local(o.lead, l))),
                n,
            ),
            ids(
                "opportunity_id",
                OPP,
                wd,
                acts().map(|(_, x, o)| x.opp.map(|p| local(o.opp, p))),
                n,
            ),
            ids(
                "account_id",
                ACCOUNT,
                wd,
                acts().map(|(_, x, o)| x.account.map(|a| local(o.account, a))),
                n,
            ),
        ],
    )?;

    Ok(ChunkFrames {
        leads,
        accounts,
        opportunities,
        stage_events,
        orders,
        activities,
    })
}

pub fn reps_frame(w: &World) -> PolarsResult<DataFrame> {
    let rw = w.rep_width();
    let n = w.reps.len();
    let r = || w.reps.iter();
    frame(
        n,
        vec![
            ids("rep_id", REP, rw, (0..n as u64).map(|i| Some(i + 1)), n),
            strs("name", r().map(|x| Some(x.name.as_str())), n),
            strs("team", r().map(|x| x.team.map(|t| w.teams[t].name.as_str())), n),
            strs("region", r().map(|x| x.region.map(|g| REGIONS[g])), n),
            ids("manager_id", REP, rw, r().map(|x| x.manager.map(|m| m as u64 + 1)), n),
            dates("active_from", r().map(|x| Some(x.active_from))),
            dates("active_to", r().map(|x| x.active_to)),
        ],
    )
}

pub fn campaigns_frame(w: &World, stats: &Stats) -> PolarsResult<DataFrame> {
    let cw = w.campaign_width();
    let n = w.campaigns.len();
    let spend: Vec<f64> = w
        .campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut rng = Rng::new(w.seed, &[TAG_SPEND, i as u64]);
            let leads = stats.campaign_leads[i] as f64;
            let usd = if leads > 0.0 {
                leads * SOURCES[c.source].cpl * rng.lognormal(0.0, 0.35)
            } else {
                300.0 * rng.lognormal(0.0, 0.5)
            };
            w.fx.round_amount(w.fx.usd_to(usd, c.currency, c.started_at), c.currency)
        })
        .collect();
    let c = || w.campaigns.iter();
    frame(
        n,
        vec![
            ids("campaign_id", CAMPAIGN, cw, (0..n as u64).map(|i| Some(i + 1)), n),
            strs("name", c().map(|x| Some(x.name.as_str())), n),
            strs("channel", c().map(|x| Some(x.channel)), n),
            f64s("spend", spend.iter().map(|v| Some(*v))),
            strs("currency", c().map(|x| Some(w.fx.codes[x.currency].as_str())), n),
            ts("started_at", c().map(|x| Some(x.started_at))),
            ts("ended_at", c().map(|x| Some(x.ended_at))),
        ],
    )
}

pub fn fx_frame(w: &World) -> PolarsResult<DataFrame> {
    let fx = &w.fx;
    let mut order: Vec<usize> = (0..fx.codes.len()).filter(|c| *c != fx.base).collect();
    order.sort_by(|a, b| fx.codes[*a].cmp(&fx.codes[*b]));
    let days = fx.days();
    let n = order.len() * days;
    let rows = || order.iter().flat_map(|c| (0..days).map(move |d| (*c, d)));
    frame(
        n,
        vec![
            strs("currency", rows().map(|(c, _)| Some(fx.codes[c].as_str())), n),
            dates("date", rows().map(|(_, d)| Some(fx.day0 + d as i32))),
            f64s("rate_to_base", rows().map(|(c, d)| Some(fx.rate_on(c, d)))),
        ],
    )
}

/// Whether seller `rep` works during month `m`.
fn active_in(w: &World, rep: usize, m: usize) -> bool {
    let r = &w.reps[rep];
    r.active_from < w.cal.month_start_day(m + 1) && r.active_to.is_none_or(|d| d >= w.cal.month_start_day(m))
}

const TARGET_METRICS: [&str; 4] = ["revenue", "won_deals", "calls", "new_leads"];

fn metric(s: &Stats, rep: usize, m: usize, k: usize) -> f64 {
    let x = s.get(rep, m);
    match k {
        0 => x.won_revenue,
        1 => x.won_deals as f64,
        2 => x.calls as f64,
        _ => x.new_leads as f64,
    }
}

/// Monthly targets per seller and metric, and quarterly revenue targets per team: the
/// seller's own average, shaped by the company's seasonality and growth, plus a stretch.
pub fn targets_frame(w: &World, stats: &Stats) -> PolarsResult<DataFrame> {
    let sellers: Vec<usize> = w.sellers().collect();
    // Per metric and month: mean per active seller; overall mean per active seller-month.
    let mut per_month = vec![[0.0f64; 4]; MONTHS];
    let mut overall = [0.0f64; 4];
    let mut active_months = 0usize;
    for (m, pm) in per_month.iter_mut().enumerate() {
        let act: Vec<usize> = sellers.iter().copied().filter(|&r| active_in(w, r, m)).collect();
        for (k, (slot, all)) in pm.iter_mut().zip(overall.iter_mut()).enumerate() {
            let total: f64 = act.iter().map(|&r| metric(stats, r, m, k)).sum();
            *slot = total / act.len().max(1) as f64;
            *all += total;
        }
        active_months += act.len();
    }
    for v in &mut overall {
        *v /= active_months.max(1) as f64;
    }
    let mut rng = Rng::new(w.seed, &[TAG_TARGETS]);
    let mut scope = Vec::new();
    let mut kind = Vec::new();
    let mut period = Vec::new();
    let mut grain = Vec::new();
    let mut met = Vec::new();
    let mut value = Vec::new();
    let mut team_rev = vec![vec![0.0f64; MONTHS / 3]; w.teams.len()];
    for &r in &sellers {
        let months: Vec<usize> = (0..MONTHS).filter(|&m| active_in(w, r, m)).collect();
        for &m in &months {
            for k in 0..4 {
                let own = months.iter().map(|&x| metric(stats, r, x, k)).sum::<f64>() / months.len() as f64;
                let base = if own > 0.0 { own } else { overall[k] };
                let season = if overall[k] > 0.0 {
                    per_month[m][k] / overall[k]
                } else {
                    1.0
                };
                let raw = base * season.max(0.2) * 1.08 * rng.lognormal(0.0, 0.1);
                let v = if k == 0 {
                    ((raw / 100.0).round() * 100.0).max(100.0)
                } else {
                    raw.round().max(1.0)
                };
                if let (0, Some(t)) = (k, w.reps[r].team) {
                    team_rev[t][m / 3] += v;
                }
                scope.push(id(REP, r as u64 + 1, w.rep_width()));
                kind.push("rep");
                period.push(w.cal.month_start_day(m));
                grain.push("month");
                met.push(TARGET_METRICS[k]);
                value.push(v);
            }
        }
    }
    for (team, revenue) in w.teams.iter().zip(&team_rev) {
        for (q, rev) in revenue.iter().enumerate() {
            let v = (rev / 1000.0).round() * 1000.0;
            if v <= 0.0 {
                continue;
            }
            scope.push(team.name.clone());
            kind.push("team");
            period.push(w.cal.month_start_day(q * 3));
            grain.push("quarter");
            met.push("revenue");
            value.push(v);
        }
    }
    let n = scope.len();
    frame(
        n,
        vec![
            strs("scope", scope.iter().map(|s| Some(s.as_str())), n),
            strs("scope_kind", kind.iter().map(|s| Some(*s)), n),
            dates("period_start", period.iter().map(|d| Some(*d))),
            strs("grain", grain.iter().map(|s| Some(*s)), n),
            strs("metric", met.iter().map(|s| Some(*s)), n),
            f64s("value", value.iter().map(|v| Some(*v))),
        ],
    )
}

/// Monthly forecast submissions per seller: commit / best case / pipeline near the start of
/// the month, and sometimes a revised commit mid-month. With several pipelines, every other
/// seller commits per pipeline (70% of the commit to the first, 30% to the second; a revision to
/// the first), the others for all pipelines (`pipeline` null, as with one pipeline).
pub fn forecasts_frame(w: &World, stats: &Stats) -> PolarsResult<DataFrame> {
    let mut rng = Rng::new(w.seed, &[TAG_FORECASTS]);
    let base = w.fx.codes[w.fx.base].as_str();
    let split = w.pipelines.len() > 1;
    let mut pipeline: Vec<Option<&str>> = Vec::new();
    let mut owner = Vec::new();
    let mut period = Vec::new();
    let mut amount = Vec::new();
    let mut category = Vec::new();
    let mut submitted = Vec::new();
    let round = |v: f64| ((v / 100.0).round() * 100.0).max(0.0);
    for r in w.sellers() {
        let months: Vec<usize> = (0..MONTHS).filter(|&m| active_in(w, r, m)).collect();
        let mean = months.iter().map(|&m| stats.get(r, m).won_revenue).sum::<f64>() / months.len().max(1) as f64;
        for &m in &months {
            let actual = stats.get(r, m).won_revenue;
            let anchor = if actual > 0.0 { actual } else { mean * 0.4 };
            let commit = round(anchor * rng.lognormal(-0.05, 0.3));
            let best = round(commit * rng.uniform(1.15, 1.5));
            let pipe = round(best * rng.uniform(1.4, 2.2));
            let ms = w.cal.month_start[m];
            let t = ms + rng.range_i64(0, 2) * DAY + rng.range_i64(8 * HOUR, 18 * HOUR);
            let rep_id = id(REP, r as u64 + 1, w.rep_width());
            let per_pipeline = split && r % 2 == 1;
            let first = per_pipeline.then(|| w.pipelines[0].0.as_str());
            let mut rows = vec![
                ("commit", commit, first),
                ("best_case", best, None),
                ("pipeline", pipe, None),
            ];
            if per_pipeline {
                rows[0].1 = round(commit * 0.7);
                rows.push(("commit", round(commit * 0.3), Some(w.pipelines[1].0.as_str())));
            }
            for (cat, v, p) in rows {
                owner.push(rep_id.clone());
                period.push(w.cal.month_start_day(m));
                amount.push(v);
                category.push(cat);
                submitted.push(t);
                pipeline.push(p);
            }
            if rng.chance(0.25) {
                let t2 = ms + 14 * DAY + rng.range_i64(8 * HOUR, 18 * HOUR);
                pipeline.push(first);
                owner.push(rep_id);
                period.push(w.cal.month_start_day(m));
                amount.push(round(anchor * rng.lognormal(0.0, 0.12)));
                category.push("commit");
                submitted.push(t2);
            }
        }
    }
    let n = owner.len();
    frame(
        n,
        vec![
            strs("owner_id", owner.iter().map(|s| Some(s.as_str())), n),
            dates("period_start", period.iter().map(|d| Some(*d))),
            strs("grain", (0..n).map(|_| Some("month")), n),
            f64s("amount", amount.iter().map(|v| Some(*v))),
            strs("category", category.iter().map(|s| Some(*s)), n),
            ts("submitted_at", submitted.iter().map(|t| Some(*t))),
            strs("currency", (0..n).map(|_| Some(base)), n),
            strs("pipeline", pipeline.into_iter(), n),
        ],
    )
}
