//! Simulation of one chunk: a slice of the lead population with the accounts, deals, stage
//! history, orders and activities that grow out of it. A chunk only references itself and
//! the global world (reps, campaigns, fx), and draws from its own random stream, so chunks
//! can run in parallel and the output does not depend on scheduling.

use super::calendar::{DAY, HOUR, MONTHS};
use super::rng::Rng;
use super::world::{
    PRODUCTS, REGION_WEIGHTS, SEGMENT_CYCLE, SEGMENT_DEAL_USD, SEGMENT_ORDER_USD, SEGMENT_WIN, SOURCES, TAG_CHUNK,
    World, company_name, loss_weights, region_currencies, source_weights,
};

pub const NO_SOURCE: u8 = u8::MAX;

#[derive(Debug, Clone)]
pub struct Lead {
    pub created: i64,
    pub source: u8,
    pub campaign: Option<u32>,
    pub owner: Option<u32>,
    pub region: u8,
    pub qualified: Option<i64>,
    pub converted: Option<i64>,
    pub account: Option<u32>,
    pub disqualified: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub created: i64,
    pub name: String,
    pub region: u8,
    pub segment: u8,
    pub industry: u8,
    pub currency: u8,
    pub owner: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Won,
    Lost,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Won => "won",
            Status::Lost => "lost",
        }
    }
}

pub const FORECAST_CATEGORIES: [&str; 5] = ["pipeline", "best_case", "commit", "closed", "omitted"];

#[derive(Debug, Clone)]
pub struct Opp {
    pub created: i64,
    pub account: u32,
    pub owner: u32,
    pub amount: f64,
    pub currency: u8,
    pub status: Status,
    pub closed: Option<i64>,
    pub expected_close: i32,
    pub lead: Option<u32>,
    pub campaign: Option<u32>,
    /// Index into `world::LOSS_REASONS`.
    pub loss_reason: Option<u8>,
    pub product: u8,
    pub region: u8,
    /// Index into `FORECAST_CATEGORIES`.
    pub forecast: u8,
    /// (stage index into config stages, entered_at), in time order.
    pub events: Vec<(u8, i64)>,
    /// Index into `World::pipelines`.
    pub pipeline: u8,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub account: u32,
    pub ordered: i64,
    pub amount: f64,
    pub currency: u8,
    pub opp: Option<u32>,
    pub paid: Option<i64>,
    pub due: Option<i64>,
    pub region: u8,
    /// Index into `world::ORDER_CHANNELS`.
    pub channel: u8,
    pub refund: bool,
}

pub const ACTIVITY_KINDS: [&str; 5] = ["call", "email", "meeting", "visit", "task"];
pub const OUTCOMES: [&str; 7] = [
    "connected",
    "no_answer",
    "voicemail",
    "sent",
    "completed",
    "no_show",
    "open",
];

#[derive(Debug, Clone)]
pub struct Activity {
    pub owner: u32,
    /// Index into `ACTIVITY_KINDS`.
    pub kind: u8,
    pub occurred: i64,
    /// Index into `OUTCOMES`.
    pub outcome: Option<u8>,
    pub duration: Option<i64>,
    pub lead: Option<u32>,
    pub opp: Option<u32>,
    pub account: Option<u32>,
}

/// Per rep and month aggregates that targets and forecasts are derived from.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepMonth {
    pub won_revenue: f64,
    pub won_deals: u32,
    pub calls: u32,
    pub new_leads: u32,
}

#[derive(Debug, Clone)]
pub struct Stats {
    /// reps.len() * MONTHS, indexed rep * MONTHS + month.
    pub rep_month: Vec<RepMonth>,
    pub campaign_leads: Vec<u32>,
}

impl Stats {
    pub fn new(reps: usize, campaigns: usize) -> Stats {
        Stats {
            rep_month: vec![RepMonth::default(); reps * MONTHS],
            campaign_leads: vec![0; campaigns],
        }
    }

    /// Adds `other` (in a fixed order, so float sums are reproducible).
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.rep_month.iter_mut().zip(&other.rep_month) {
            a.won_revenue += b.won_revenue;
            a.won_deals += b.won_deals;
            a.calls += b.calls;
            a.new_leads += b.new_leads;
        }
        for (a, b) in self.campaign_leads.iter_mut().zip(&other.campaign_leads) {
            *a += b;
        }
    }

    pub fn get(&self, rep: usize, month: usize) -> &RepMonth {
        &self.rep_month[rep * MONTHS + month]
    }

    fn at(&mut self, rep: u32, month: usize) -> &mut RepMonth {
        &mut self.rep_month[rep as usize * MONTHS + month]
    }
}

#[derive(Debug, Clone)]
pub struct ChunkData {
    pub leads: Vec<Lead>,
    pub accounts: Vec<Account>,
    pub opps: Vec<Opp>,
    pub orders: Vec<Order>,
    pub activities: Vec<Activity>,
    pub stats: Stats,
}

impl ChunkData {
    pub fn stage_event_count(&self) -> usize {
        self.opps.iter().map(|o| o.events.len()).sum()
    }
}

/// What an opportunity is created from.
#[derive(Debug, Clone, Copy)]
struct OppSeed {
    created: i64,
    account: u32,
    owner: u32,
    lead: Option<u32>,
    campaign: Option<u32>,
    source: u8,
    expansion: bool,
}

fn days(d: f64) -> i64 {
    (d * DAY as f64).round() as i64
}

/// `t` if it is inside the window.
fn within(t: i64, end: i64) -> Option<i64> {
    (t <= end).then_some(t)
}

pub fn simulate_chunk(w: &World, chunk: usize) -> ChunkData {
    let mut rng = Rng::new(w.seed, &[TAG_CHUNK, chunk as u64]);
    let end = w.cal.end;
    let mut stats = Stats::new(w.reps.len(), w.campaigns.len());

    // Leads, in creation order.
    let n = w.params.leads_in_chunk(chunk);
    let mut times: Vec<i64> = (0..n)
        .map(|_| {
            let m = rng.pick_cdf(&w.month_cdf);
            w.cal.instant_in_month(&mut rng, m)
        })
        .collect();
    times.sort_unstable();
    let mut leads = Vec::with_capacity(n);
    for created in times {
        let month = w.cal.month_of(created);
        let region = rng.weighted(&REGION_WEIGHTS);
        let source = rng.weighted(&source_weights(month));
        let src = &SOURCES[source];
        let owner = (!rng.chance(0.03)).then(|| w.pick_rep(&mut rng, region, created) as u32);
        let campaign = if rng.chance(src.campaign) {
            w.campaign_for(&mut rng, source, region, created)
        } else {
            None
        };
        if let Some(c) = campaign {
            stats.campaign_leads[c as usize] += 1;
        }
        if let Some(o) = owner {
            stats.at(o, month).new_leads += 1;
        }
        let skill = owner.map_or(1.0, |o| w.reps[o as usize].skill);
        let mut lead = Lead {
            created,
            source: source as u8,
            campaign,
            owner,
            region: region as u8,
            qualified: None,
            converted: None,
            account: None,
            disqualified: None,
        };
        let speed = 1.0 / skill.sqrt();
        if rng.chance((src.qualify * skill.powf(0.3)).min(0.95)) {
            let q = created + 900 + days(rng.lognormal(3f64.ln(), 0.8) * speed);
            lead.qualified = within(q, end);
            if lead.qualified.is_some() {
                if rng.chance((src.convert * skill.powf(0.2)).min(0.95)) {
                    lead.converted = within(q + 900 + days(rng.lognormal(6f64.ln(), 0.8) * speed), end);
                } else if rng.chance(0.6) {
                    lead.disqualified = within(q + 900 + days(rng.lognormal(15f64.ln(), 0.6)), end);
                }
            }
        } else if rng.chance(0.7) {
            lead.disqualified = within(created + 900 + days(rng.lognormal(8f64.ln(), 0.7)), end);
        }
        leads.push(lead);
    }

    // Opportunity seeds: converted leads, plus a few direct new-logo deals, in time order.
    let mut conversions: Vec<(i64, Option<u32>)> = leads
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.converted.map(|t| (t, Some(i as u32))))
        .collect();
    let direct = rng.poisson(n as f64 * 0.04);
    for _ in 0..direct {
        let m = rng.pick_cdf(&w.month_cdf);
        conversions.push((w.cal.instant_in_month(&mut rng, m), None));
    }
    conversions.sort_by_key(|(t, l)| (*t, l.map_or(u64::MAX, u64::from)));

    let mut accounts: Vec<Account> = Vec::new();
    let mut by_region: Vec<Vec<u32>> = vec![Vec::new(); REGION_WEIGHTS.len()];
    let mut seeds: Vec<OppSeed> = Vec::with_capacity(conversions.len());
    for (t, lead) in conversions {
        let (region, source, owner, campaign) = match lead {
            Some(l) => {
                let l = &leads[l as usize];
                let owner = l
                    .owner
                    .unwrap_or_else(|| w.pick_rep(&mut rng, l.region as usize, t) as u32);
                (l.region as usize, l.source, owner, l.campaign)
            }
            None => {
                let region = rng.weighted(&REGION_WEIGHTS);
                (region, NO_SOURCE, w.pick_rep(&mut rng, region, t) as u32, None)
            }
        };
        let existing = &by_region[region];
        let account = if !existing.is_empty() && rng.chance(0.1) {
            existing[rng.index(existing.len())]
        } else {
            let (ent, mid) = if source == NO_SOURCE {
                (0.25, 0.40)
            } else {
                (SOURCES[source as usize].enterprise, SOURCES[source as usize].mid_market)
            };
            let segment = rng.weighted(&[1.0 - ent - mid, mid, ent]) as u8;
            let opts = region_currencies(region);
            let currency = opts[rng.weighted(&opts.iter().map(|o| o.1).collect::<Vec<_>>())].0 as u8;
            let id = accounts.len() as u32;
            accounts.push(Account {
                created: t,
                name: company_name(&mut rng),
                region: region as u8,
                segment,
                industry: rng.index(super::world::INDUSTRIES.len()) as u8,
                currency,
                owner,
            });
            by_region[region].push(id);
            id
        };
        if let Some(l) = lead {
            leads[l as usize].account = Some(account);
        }
        seeds.push(OppSeed {
            created: t,
            account,
            owner,
            lead,
            campaign,
            source,
            expansion: false,
        });
    }

    // Simulate deals; won deals may spawn expansion deals on the same account later.
    let mut opps: Vec<Opp> = Vec::with_capacity(seeds.len() * 5 / 4);
    let mut k = 0;
    while k < seeds.len() {
        let seed = seeds[k];
        k += 1;
        let opp = simulate_deal(w, &mut rng, &seed, &accounts[seed.account as usize]);
        if opp.status == Status::Won {
            let closed = opp.closed.expect("won deals are closed");
            if rng.chance(0.45) {
                let t = closed + days(rng.lognormal(150f64.ln(), 0.5));
                if t <= end {
                    let acc = &accounts[seed.account as usize];
                    let owner = if w.reps[seed.owner as usize]
                        .active_to
                        .is_none_or(|d| (d as i64) * DAY > t)
                    {
                        seed.owner
                    } else {
                        w.pick_rep(&mut rng, acc.region as usize, t) as u32
                    };
                    seeds.push(OppSeed {
                        created: t,
                        account: seed.account,
                        owner,
                        lead: None,
                        campaign: None,
                        source: NO_SOURCE,
                        expansion: true,
                    });
                }
            }
            let base = w.fx.to_base(opp.amount, opp.currency as usize, opp.created);
            let rm = stats.at(opp.owner, w.cal.month_of(closed));
            rm.won_revenue += base;
            rm.won_deals += 1;
        }
        opps.push(opp);
    }
    opps.sort_by_key(|o| o.created); // stable: ties keep simulation order

    let orders = simulate_orders(w, &mut rng, &accounts, &opps, &leads);
    let activities = simulate_activities(w, &mut rng, &leads, &accounts, &opps, &orders, &mut stats);
    ChunkData {
        leads,
        accounts,
        opps,
        orders,
        activities,
        stats,
    }
}

fn pick_product(rng: &mut Rng, segment: u8, expansion: bool) -> usize {
    let w: [f64; 5] = if expansion {
        [0.0, 0.2, 0.1, 0.4, 0.3]
    } else {
        match segment {
            0 => [0.5, 0.35, 0.0, 0.1, 0.05],
            1 => [0.15, 0.5, 0.15, 0.12, 0.08],
            _ => [0.0, 0.2, 0.6, 0.12, 0.08],
        }
    };
    rng.weighted(&w)
}

/// Mean days a deal spends in open stage position `pos` before moving.
fn stage_days(pos: usize) -> f64 {
    9.0 + 5.0 * pos as f64
}

fn simulate_deal(w: &World, rng: &mut Rng, seed: &OppSeed, acc: &Account) -> Opp {
    let end = w.cal.end;
    let rep = &w.reps[seed.owner as usize];
    let seg = acc.segment as usize;
    let product = pick_product(rng, acc.segment, seed.expansion);
    let src_size = if seed.source == NO_SOURCE {
        1.0
    } else {
        SOURCES[seed.source as usize].size
    };
    let exp_size = if seed.expansion { 0.5 } else { 1.0 };
    let usd = SEGMENT_DEAL_USD[seg] * src_size * exp_size * PRODUCTS[product].1 * rng.lognormal(0.0, 0.55);
    let currency = acc.currency as usize;
    let amount = w.fx.round_deal(w.fx.usd_to(usd, currency, seed.created), currency);

    let p0 = if seed.expansion {
        0.6
    } else if seed.source == NO_SOURCE {
        0.25
    } else {
        SOURCES[seed.source as usize].win
    };
    let odds = p0 / (1.0 - p0) * SEGMENT_WIN[seg] * rep.skill.powf(1.3);
    let win = rng.chance(odds / (1.0 + odds));
    let cycle = SEGMENT_CYCLE[seg] / rep.skill.powf(0.4) * if seed.expansion { 0.6 } else { 1.0 };

    // With two pipelines, expansion deals are the second's (renewals and upsells).
    let pipeline = usize::from(w.pipelines.len() > 1 && seed.expansion);
    let stages = &w.pipelines[pipeline].1;
    let open = &stages.open;
    let k = open.len();
    let expected_days: f64 = (0..k.max(1)).map(stage_days).sum::<f64>() * cycle * rng.lognormal(0.0, 0.25);
    let expected_close = ((seed.created + days(expected_days)).div_euclid(DAY)) as i32;

    let mut events: Vec<(u8, i64)> = Vec::with_capacity(8);
    let mut status = Status::Open;
    let mut closed = None;
    let mut loss_reason = None;
    let mut t = seed.created;
    let mut pos = 0usize;
    if k == 0 {
        // A pipeline with only terminal stages: the deal closes straight away.
        t += days(10.0 * cycle * rng.lognormal(-0.18, 0.6)).max(900);
        if t <= end {
            let (stage, st) = if win {
                (stages.won, Status::Won)
            } else {
                (stages.lost, Status::Lost)
            };
            events.push((stage as u8, t));
            status = st;
            closed = Some(t);
            if !win {
                loss_reason = Some(rng.weighted(&loss_weights(0.5)) as u8);
            }
        }
    } else {
        // A few deals of the second pipeline start in the first one's first stage: they moved.
        if pipeline > 0
            && let Some(first) = w.pipelines[0].1.open.first()
            && rng.chance(0.05)
        {
            let moved_at = t + days(rng.lognormal(5f64.ln(), 0.5)).max(900);
            if moved_at <= end {
                events.push((*first as u8, t));
                t = moved_at;
            }
        }
        events.push((open[0] as u8, t));
        let mut win = win;
        // Losers drop out at a stage drawn towards the early ones.
        let exit = |rng: &mut Rng, from: usize| {
            let ws: Vec<f64> = (from..k).map(|i| (k - i) as f64 + 3.0).collect();
            from + rng.weighted(&ws)
        };
        let mut target = if win { k } else { exit(rng, 0) };
        let mut reopened = false;
        for _ in 0..64 {
            // Now and then a deal stalls in a stage for months.
            let stall = if rng.chance(0.03) { 6.0 } else { 1.0 };
            t += days(stage_days(pos) * cycle * stall * rng.lognormal(-0.18, 0.6)).max(900);
            if t > end {
                break;
            }
            if !win && pos >= target {
                events.push((stages.lost as u8, t));
                let progress = if k > 1 { pos as f64 / (k - 1) as f64 } else { 0.5 };
                if !reopened && rng.chance(0.05) {
                    // Re-engaged: back into an open stage some months later.
                    let t2 = t + days(rng.lognormal(75f64.ln(), 0.4));
                    if t2 <= end {
                        reopened = true;
                        pos = pos.saturating_sub(1);
                        t = t2;
                        events.push((open[pos] as u8, t));
                        win = rng.chance(0.45);
                        target = if win { k } else { exit(rng, pos) };
                        continue;
                    }
                }
                status = Status::Lost;
                closed = Some(t);
                loss_reason = Some(rng.weighted(&loss_weights(progress)) as u8);
                break;
            }
            if win && pos == k - 1 && !(pos > 0 && rng.chance(0.06)) {
                // Quarter-end push: deals about to close often slip to the last days.
                let q_end = w.cal.month_start[(w.cal.month_of(t) / 3 + 1) * 3];
                if q_end - t < 30 * DAY && rng.chance(0.6) {
                    t = t.max(q_end - rng.range_i64(HOUR, 3 * DAY));
                }
                events.push((stages.won as u8, t));
                status = Status::Won;
                closed = Some(t);
                break;
            }
            let limit = if win { k - 1 } else { target };
            if pos > 0 && rng.chance(0.25) {
                pos -= 1;
            } else if pos + 2 <= limit && rng.chance(0.1) {
                pos += 2;
            } else {
                pos = (pos + 1).min(limit);
            }
            events.push((open[pos] as u8, t));
        }
    }
    let forecast = match status {
        Status::Won => 3,
        Status::Lost => 4,
        Status::Open => {
            let p = events.last().map_or(0.0, |(s, _)| stages.probability[*s as usize]);
            if p >= 0.7 {
                2
            } else if p >= 0.4 {
                1
            } else {
                0
            }
        }
    };
    Opp {
        created: seed.created,
        account: seed.account,
        owner: seed.owner,
        amount,
        currency: currency as u8,
        status,
        closed,
        expected_close,
        lead: seed.lead,
        campaign: seed.campaign,
        loss_reason,
        product: product as u8,
        region: acc.region,
        forecast,
        events,
        pipeline: pipeline as u8,
    }
}

/// Payment of an order: (paid_at, due_at).
fn payment(rng: &mut Rng, ordered: i64, segment: u8, end: i64) -> (Option<i64>, Option<i64>) {
    if rng.chance(0.25) {
        return (within(ordered + rng.range_i64(60, 2 * HOUR), end), None);
    }
    let terms = [30.0, 45.0, 60.0][segment as usize];
    let due = ordered + days(terms);
    let paid = if rng.chance(0.93) {
        within(ordered + days(rng.lognormal((terms * 0.75f64).ln(), 0.35)), end)
    } else {
        None
    };
    (paid, Some(due))
}

fn simulate_orders(w: &World, rng: &mut Rng, accounts: &[Account], opps: &[Opp], leads: &[Lead]) -> Vec<Order> {
    let end = w.cal.end;
    let mut orders = Vec::with_capacity(opps.len() * 2);
    let mut first_purchase: Vec<Option<i64>> = vec![None; accounts.len()];
    for (i, o) in opps.iter().enumerate() {
        if o.status != Status::Won {
            continue;
        }
        let t = o.closed.expect("won") + rng.range_i64(HOUR, 10 * DAY);
        if t > end {
            continue;
        }
        let acc = &accounts[o.account as usize];
        let via_partner = o
            .lead
            .is_some_and(|l| SOURCES[leads[l as usize].source as usize].name == "partner");
        let (paid, due) = payment(rng, t, acc.segment, end);
        orders.push(Order {
            account: o.account,
            ordered: t,
            amount: o.amount,
            currency: o.currency,
            opp: Some(i as u32),
            paid,
            due,
            region: acc.region,
            channel: if via_partner { 2 } else { 1 },
            refund: false,
        });
        let fp = &mut first_purchase[o.account as usize];
        *fp = Some(fp.map_or(t, |x| x.min(t)));
    }
    // Repeat purchases: each customer buys at its own rate until it drops out (BG/NBD-like),
    // with its own mean order value (Gamma-Gamma-like).
    for (a, first) in first_purchase.iter().enumerate() {
        let Some(first) = *first else { continue };
        let acc = &accounts[a];
        let rate = rng.gamma(1.2, 0.8); // purchases per month
        let drop = rng.beta(1.2, 12.0);
        let mean_usd = SEGMENT_ORDER_USD[acc.segment as usize] * rng.gamma(4.0, 0.25);
        let channel_w = [0.5, 0.3, 0.2];
        let mut t = first;
        loop {
            t += days(rng.exp(30.44 / rate.max(1e-3)));
            if t > end {
                break;
            }
            let usd = rng.gamma(6.0, mean_usd / 6.0);
            let currency = acc.currency as usize;
            let amount = w.fx.round_amount(w.fx.usd_to(usd, currency, t), currency).max(1.0);
            let (paid, due) = payment(rng, t, acc.segment, end);
            orders.push(Order {
                account: a as u32,
                ordered: t,
                amount,
                currency: acc.currency,
                opp: None,
                paid,
                due,
                region: acc.region,
                channel: rng.weighted(&channel_w) as u8,
                refund: false,
            });
            if rng.chance(drop) {
                break;
            }
        }
    }
    // A small share of paid orders is refunded later.
    let n = orders.len();
    for i in 0..n {
        let o = &orders[i];
        let Some(paid) = o.paid else { continue };
        if !rng.chance(0.02) {
            continue;
        }
        let t = paid + rng.range_i64(2 * DAY, 40 * DAY);
        if t > end {
            continue;
        }
        let share = if rng.chance(0.6) { 1.0 } else { 0.5 };
        let amount = -w.fx.round_amount(o.amount * share, o.currency as usize);
        orders.push(Order {
            ordered: t,
            amount,
            paid: Some(t),
            due: None,
            refund: true,
            ..o.clone()
        });
    }
    orders.sort_by_key(|o| o.ordered);
    orders
}

/// The rep doing an activity at `t`: the owner, or the first seller of the owner's team
/// once the owner has left.
fn owner_at(w: &World, rep: u32, t: i64) -> u32 {
    let r = &w.reps[rep as usize];
    match (r.active_to, r.team) {
        (Some(to), Some(team)) if (to as i64 + 1) * DAY <= t => w.teams[team].members[0] as u32,
        _ => rep,
    }
}

fn activity(w: &World, rng: &mut Rng, owner: u32, kind: usize, occurred: i64) -> Activity {
    let skill = w.reps[owner as usize].skill;
    let (outcome, duration) = match kind {
        0 => {
            let connect = (0.36 + 0.1 * (skill - 1.0)).clamp(0.15, 0.6);
            match rng.weighted(&[connect, 0.4, 1.0 - connect - 0.4]) {
                0 => (0, Some((rng.lognormal(300f64.ln(), 0.6).round() as i64).max(20))),
                1 => (1, Some(rng.range_i64(10, 35))),
                _ => (2, Some(rng.range_i64(25, 90))),
            }
        }
        1 => (3, None),
        2 => {
            if rng.chance(0.88) {
                (4, Some([1800, 2700, 3600][rng.index(3)]))
            } else {
                (5, None)
            }
        }
        3 => (4, Some(rng.range_i64(12, 36) * 300)),
        _ => {
            if rng.chance(0.9) {
                (4, None)
            } else {
                (6, None)
            }
        }
    };
    Activity {
        owner,
        kind: kind as u8,
        occurred,
        outcome: Some(outcome),
        duration,
        lead: None,
        opp: None,
        account: None,
    }
}

fn simulate_activities(
    w: &World,
    rng: &mut Rng,
    leads: &[Lead],
    accounts: &[Account],
    opps: &[Opp],
    orders: &[Order],
    stats: &mut Stats,
) -> Vec<Activity> {
    let end = w.cal.end;
    let mut out: Vec<Activity> = Vec::with_capacity(leads.len() * 5);
    // Prospecting touches on leads.
    for (i, l) in leads.iter().enumerate() {
        let Some(owner) = l.owner else { continue };
        let hustle = w.reps[owner as usize].hustle;
        let n = rng.poisson(1.1 * hustle) + u32::from(l.qualified.is_some());
        let mut stop = l.created + 21 * DAY;
        for t in [l.converted, l.disqualified, l.qualified.map(|q| q + 10 * DAY)]
            .into_iter()
            .flatten()
        {
            stop = stop.min(t);
        }
        let stop = stop.min(end).max(l.created);
        for _ in 0..n {
            let t = w.cal.instant_between(rng, l.created, stop);
            let kind = rng.weighted(&[0.6, 0.4]);
            let mut a = activity(w, rng, owner_at(w, owner, t), kind, t);
            a.lead = Some(i as u32);
            out.push(a);
        }
    }
    // Deal work.
    for (i, o) in opps.iter().enumerate() {
        let hustle = w.reps[o.owner as usize].hustle;
        let stop = o.closed.unwrap_or(end);
        let span_days = (stop - o.created) as f64 / DAY as f64;
        let n = 1 + rng.poisson((span_days / 8.0).min(40.0) * hustle);
        for _ in 0..n {
            let t = w.cal.instant_between(rng, o.created, stop);
            let kind = rng.weighted(&[0.32, 0.33, 0.17, 0.06, 0.12]);
            let mut a = activity(w, rng, owner_at(w, o.owner, t), kind, t);
            a.opp = Some(i as u32);
            a.account = Some(o.account);
            out.push(a);
        }
    }
    // Account management of customers.
    let mut first_order: Vec<Option<i64>> = vec![None; accounts.len()];
    for o in orders {
        let f = &mut first_order[o.account as usize];
        *f = Some(f.map_or(o.ordered, |x| x.min(o.ordered)));
    }
    for (a, first) in first_order.iter().enumerate() {
        let Some(first) = *first else { continue };
        let acc = &accounts[a];
        let months = (end - first) as f64 / (30.44 * DAY as f64);
        let n = rng.poisson(months * 0.3 * w.reps[acc.owner as usize].hustle);
        for _ in 0..n {
            let t = w.cal.instant_between(rng, first, end);
            let kind = rng.weighted(&[0.35, 0.35, 0.07, 0.08, 0.15]);
            let mut x = activity(w, rng, owner_at(w, acc.owner, t), kind, t);
            x.account = Some(a as u32);
            out.push(x);
        }
    }
    out.sort_by_key(|a| a.occurred);
    for a in &out {
        if a.kind == 0 {
            stats.at(a.owner, w.cal.month_of(a.occurred)).calls += 1;
        }
    }
    out
}
