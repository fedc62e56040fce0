//! The global, read-only part of the synthetic world: scale parameters, the sales
//! organisation (reps, teams, managers), campaigns, fx rates and the source profiles.

use super::Scale;
use super::calendar::{Calendar, DAY, FX_MARGIN_DAYS, MONTHS, quarter_label};
use super::rng::Rng;
use crate::config::{Config, Terminal};

// Stream tags: every random stream is keyed by (seed, tag, index...).
pub const TAG_REPS: u64 = 1;
pub const TAG_CAMPAIGNS: u64 = 2;
pub const TAG_FX: u64 = 3;
pub const TAG_CHUNK: u64 = 4;
pub const TAG_TARGETS: u64 = 5;
pub const TAG_FORECASTS: u64 = 6;
pub const TAG_SPEND: u64 = 7;

/// Size parameters of a scale.
#[derive(Debug, Clone, Copy)]
pub struct ScaleParams {
    pub leads: usize,
    /// Leads per independent chunk (the unit of parallel work and of determinism).
    pub chunk_leads: usize,
    /// Chunks generated in parallel and written as one batch.
    pub batch_chunks: usize,
    /// Selling reps (managers and a VP come on top).
    pub sellers: usize,
    /// Months covered by one campaign.
    pub campaign_months: usize,
    /// Campaigns per (source, region, period).
    pub campaign_variants: usize,
    pub campaign_by_region: bool,
    /// Digits of the numeric part of generated ids.
    pub id_width: usize,
}

impl ScaleParams {
    pub fn of(scale: Scale) -> ScaleParams {
        match scale {
            Scale::Tiny => ScaleParams {
                leads: 2_000,
                chunk_leads: 2_000,
                batch_chunks: 1,
                sellers: 8,
                campaign_months: 6,
                campaign_variants: 1,
                campaign_by_region: false,
                id_width: 6,
            },
            Scale::S => ScaleParams {
                leads: 100_000,
                chunk_leads: 20_000,
                batch_chunks: 8,
                sellers: 40,
                campaign_months: 3,
                campaign_variants: 1,
                campaign_by_region: true,
                id_width: 7,
            },
            Scale::M => ScaleParams {
                leads: 1_000_000,
                chunk_leads: 20_000,
                batch_chunks: 10,
                sellers: 200,
                campaign_months: 3,
                campaign_variants: 2,
                campaign_by_region: true,
                id_width: 8,
            },
            Scale::L => ScaleParams {
                leads: 10_000_000,
                chunk_leads: 20_000,
                batch_chunks: 10,
                sellers: 2_000,
                campaign_months: 1,
                campaign_variants: 2,
                campaign_by_region: true,
                id_width: 9,
            },
        }
    }

    pub fn chunks(&self) -> usize {
        self.leads.div_ceil(self.chunk_leads)
    }

    pub fn leads_in_chunk(&self, c: usize) -> usize {
        (self.leads - c * self.chunk_leads).min(self.chunk_leads)
    }
}

pub const REGIONS: [&str; 4] = ["NORAM", "EMEA", "APAC", "LATAM"];
pub const REGION_WEIGHTS: [f64; 4] = [0.45, 0.30, 0.15, 0.10];

/// Currencies the generator uses, with an initial value of one unit in USD and the daily
/// volatility of its random walk.
pub const CURRENCIES: [(&str, f64, f64); 5] = [
    ("USD", 1.0, 0.0),
    ("EUR", 1.07, 0.0040),
    ("GBP", 1.22, 0.0045),
    ("SEK", 0.096, 0.0060),
    ("JPY", 0.0076, 0.0055),
];

/// Currency of an account in a region: (currency index, weight).
pub fn region_currencies(region: usize) -> &'static [(usize, f64)] {
    match region {
        0 => &[(0, 1.0)],
        1 => &[(1, 0.55), (2, 0.30), (3, 0.15)],
        2 => &[(4, 0.45), (0, 0.55)],
        _ => &[(0, 1.0)],
    }
}

/// Lead sources and how they behave.
#[derive(Debug, Clone, Copy)]
pub struct SourceProfile {
    pub name: &'static str,
    /// Share of leads at the window start.
    pub weight: f64,
    /// Extra share gained per year (ads and referrals grow).
    pub growth: f64,
    pub qualify: f64,
    /// Qualified -> opportunity.
    pub convert: f64,
    /// Base win probability of its deals.
    pub win: f64,
    /// Chance a lead of this source is tied to a campaign.
    pub campaign: f64,
    /// Deal-size multiplier.
    pub size: f64,
    /// Cost per lead in USD (campaign spend).
    pub cpl: f64,
    /// Campaign channels of the source.
    pub channels: &'static [&'static str],
    /// Share of enterprise / mid-market accounts among its leads.
    pub enterprise: f64,
    pub mid_market: f64,
}

pub const SOURCES: [SourceProfile; 6] = [
    SourceProfile {
        name: "web",
        weight: 0.30,
        growth: 0.0,
        qualify: 0.50,
        convert: 0.62,
        win: 0.30,
        campaign: 0.45,
        size: 0.9,
        cpl: 45.0,
        channels: &["seo", "content", "webinar"],
        enterprise: 0.06,
        mid_market: 0.28,
    },
    SourceProfile {
        name: "ads",
        weight: 0.20,
        growth: 0.04,
        qualify: 0.40,
        convert: 0.55,
        win: 0.22,
        campaign: 1.0,
        size: 0.75,
        cpl: 120.0,
        channels: &["paid_search", "paid_social", "display"],
        enterprise: 0.04,
        mid_market: 0.25,
    },
    SourceProfile {
        name: "events",
        weight: 0.13,
        growth: 0.0,
        qualify: 0.55,
        convert: 0.65,
        win: 0.34,
        campaign: 0.95,
        size: 1.2,
        cpl: 280.0,
        channels: &["trade_show", "conference", "roadshow"],
        enterprise: 0.18,
        mid_market: 0.40,
    },
    SourceProfile {
        name: "outbound",
        weight: 0.17,
        growth: -0.02,
        qualify: 0.45,
        convert: 0.55,
        win: 0.25,
        campaign: 0.6,
        size: 1.1,
        cpl: 80.0,
        channels: &["cold_email", "cold_call", "abm"],
        enterprise: 0.16,
        mid_market: 0.36,
    },
    SourceProfile {
        name: "referral",
        weight: 0.08,
        growth: 0.015,
        qualify: 0.80,
        convert: 0.78,
        win: 0.55,
        campaign: 0.0,
        size: 1.1,
        cpl: 0.0,
        channels: &["referral"],
        enterprise: 0.10,
        mid_market: 0.38,
    },
    SourceProfile {
        name: "partner",
        weight: 0.12,
        growth: 0.005,
        qualify: 0.70,
        convert: 0.72,
        win: 0.45,
        campaign: 0.7,
        size: 1.3,
        cpl: 150.0,
        channels: &["partner_program", "co_marketing"],
        enterprise: 0.20,
        mid_market: 0.40,
    },
];

/// Source mix in month `m`: a base share, a trend, and events peaking in spring and autumn.
pub fn source_weights(m: usize) -> [f64; 6] {
    let years = m as f64 / 12.0;
    let moy = m % 12 + 1;
    let mut w = [0.0; 6];
    for (i, s) in SOURCES.iter().enumerate() {
        let mut x = (s.weight + s.growth * years).max(0.01);
        if s.name == "events" {
            x *= match moy {
                3..=5 | 9..=11 => 1.5,
                7 | 8 | 12 => 0.35,
                _ => 0.9,
            };
        }
        w[i] = x;
    }
    w
}

/// Lead volume by month of year (1-12): Q4 peak, August dip.
pub const SEASON: [f64; 12] = [0.95, 1.0, 1.1, 1.0, 1.0, 0.95, 0.85, 0.68, 1.05, 1.15, 1.22, 1.0];
/// Year-over-year growth of lead volume.
pub const YOY_GROWTH: f64 = 0.25;

pub fn month_volume(m: usize) -> f64 {
    SEASON[m % 12] * (1.0 + YOY_GROWTH).powf(m as f64 / 12.0)
}

pub const SEGMENTS: [&str; 3] = ["smb", "mid_market", "enterprise"];
/// Median deal size in USD by segment.
pub const SEGMENT_DEAL_USD: [f64; 3] = [6_000.0, 24_000.0, 85_000.0];
/// Cycle-length multiplier by segment.
pub const SEGMENT_CYCLE: [f64; 3] = [0.7, 1.0, 1.6];
/// Win-odds multiplier by segment.
pub const SEGMENT_WIN: [f64; 3] = [1.15, 1.0, 0.8];
/// Mean repeat-order value in USD by segment.
pub const SEGMENT_ORDER_USD: [f64; 3] = [700.0, 2_400.0, 8_000.0];

pub const INDUSTRIES: [&str; 10] = [
    "software",
    "manufacturing",
    "retail",
    "financial_services",
    "healthcare",
    "education",
    "logistics",
    "media",
    "energy",
    "public_sector",
];

/// Products with their deal-size multiplier.
pub const PRODUCTS: [(&str, f64); 5] = [
    ("Starter", 0.5),
    ("Professional", 1.0),
    ("Enterprise", 1.8),
    ("Analytics Add-on", 0.6),
    ("Premium Support", 0.4),
];

pub const LOSS_REASONS: [&str; 6] = [
    "price",
    "competitor",
    "no_budget",
    "timing",
    "no_decision",
    "product_fit",
];

/// Loss reasons weighted by how far the deal got (0 = first open stage, 1 = last).
pub fn loss_weights(progress: f64) -> [f64; 6] {
    [
        0.10 + 0.30 * progress,
        0.12 + 0.25 * progress,
        0.25 - 0.15 * progress,
        0.18,
        0.20 - 0.05 * progress,
        0.15 - 0.08 * progress,
    ]
}

pub const ORDER_CHANNELS: [&str; 3] = ["online", "direct", "partner"];

const FIRST_NAMES: [&str; 32] = [
    "Ava", "Liam", "Noah", "Emma", "Olivia", "Lucas", "Mia", "Sofia", "Hugo", "Lena", "Yuki", "Kenji", "Priya",
    "Arjun", "Chloe", "Mateo", "Elena", "Omar", "Nora", "Felix", "Ines", "Jonas", "Aiko", "Diego", "Sara", "Tom",
    "Maya", "Leo", "Zoe", "Ivan", "Lea", "Ben",
];
const LAST_NAMES: [&str; 32] = [
    "Martin", "Smith", "Garcia", "Muller", "Rossi", "Tanaka", "Kim", "Nguyen", "Silva", "Dubois", "Jensen", "Novak",
    "Cohen", "Patel", "Khan", "Lopez", "Berg", "Sato", "Moreau", "Costa", "Weber", "Larsen", "Suzuki", "Fischer",
    "Brown", "Wilson", "Santos", "Ito", "Meyer", "Lind", "Hughes", "Ortiz",
];
const NAME_ROOTS: [&str; 24] = [
    "Nor", "Vex", "Alta", "Brio", "Cora", "Dyna", "Equi", "Flux", "Gala", "Hexa", "Iona", "Juno", "Kora", "Luma",
    "Mira", "Nexa", "Orbi", "Pola", "Quan", "Rivo", "Sola", "Tera", "Vela", "Zeni",
];
const NAME_ENDS: [&str; 12] = [
    "tek", "gen", "via", "lytics", "core", "forge", "wave", "line", "works", "sys", "net", "labs",
];
const NAME_SUFFIXES: [&str; 8] = ["Inc", "Ltd", "GmbH", "AB", "KK", "SA", "LLC", "Group"];

/// A company name; deterministic in `rng`.
pub fn company_name(rng: &mut Rng) -> String {
    let root = NAME_ROOTS[rng.index(NAME_ROOTS.len())];
    let end = NAME_ENDS[rng.index(NAME_ENDS.len())];
    let suffix = NAME_SUFFIXES[rng.index(NAME_SUFFIXES.len())];
    format!("{root}{end} {suffix}")
}

#[derive(Debug, Clone)]
pub struct Rep {
    pub name: String,
    /// Team index into `World::teams` (None for the VP).
    pub team: Option<usize>,
    pub region: Option<usize>,
    pub manager: Option<usize>,
    pub active_from: i32,
    pub active_to: Option<i32>,
    pub seller: bool,
    /// Win-odds multiplier (~0.5-2).
    pub skill: f64,
    /// Activity-volume multiplier.
    pub hustle: f64,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    pub region: usize,
    pub members: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub channel: &'static str,
    pub source: usize,
    pub currency: usize,
    pub started_at: i64,
    pub ended_at: i64,
}

/// Stage layout from the configuration.
#[derive(Debug, Clone)]
pub struct Stages {
    pub names: Vec<String>,
    /// Indices (into `names`) of the non-terminal stages, in pipeline order.
    pub open: Vec<usize>,
    pub won: usize,
    pub lost: usize,
    pub probability: Vec<f64>,
}

impl Stages {
    /// One pipeline's layout; `names` and the indices are into the whole stage list.
    pub fn for_pipeline(config: &Config, pipeline: &str) -> Stages {
        let names: Vec<String> = config.stages.iter().map(|s| s.name.clone()).collect();
        let mine = |i: &usize| config.stages[*i].pipeline == pipeline;
        let open = (0..names.len())
            .filter(mine)
            .filter(|i| config.stages[*i].terminal.is_none())
            .collect();
        let n = names.len();
        let find = |t: Terminal| {
            (0..n)
                .filter(mine)
                .find(|i| config.stages[*i].terminal == Some(t))
                .expect("every pipeline has terminal stages")
        };
        Stages {
            names,
            open,
            won: find(Terminal::Won),
            lost: find(Terminal::Lost),
            probability: config.stages.iter().map(|s| s.probability.unwrap_or(0.0)).collect(),
        }
    }
}

/// Daily value of each currency in USD and rates to the base currency.
#[derive(Debug, Clone)]
pub struct Fx {
    /// Currency codes: the generator's currencies, plus the base if it is not one of them.
    pub codes: Vec<String>,
    pub base: usize,
    /// First day (days since epoch) covered.
    pub day0: i32,
    /// usd[c][d - day0]: value of one unit of currency c in USD.
    usd: Vec<Vec<f64>>,
    /// rate[c][d - day0]: value of one unit of currency c in base currency, as written.
    rate: Vec<Vec<f64>>,
}

impl Fx {
    pub fn new(seed: u64, cal: &Calendar, base_code: &str) -> Fx {
        let mut codes: Vec<String> = CURRENCIES.iter().map(|c| c.0.to_string()).collect();
        let mut start: Vec<(f64, f64)> = CURRENCIES.iter().map(|c| (c.1, c.2)).collect();
        let base = match codes.iter().position(|c| c == base_code) {
            Some(i) => i,
            None => {
                codes.push(base_code.to_string());
                start.push((1.0, 0.004));
                codes.len() - 1
            }
        };
        let day0 = cal.start_day() - FX_MARGIN_DAYS;
        let n = (cal.end_day() - day0 + 1) as usize;
        let usd: Vec<Vec<f64>> = start
            .iter()
            .enumerate()
            .map(|(c, &(v0, vol))| {
                let mut rng = Rng::new(seed, &[TAG_FX, c as u64]);
                let x0 = v0.ln();
                let mut x = x0;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(x.exp());
                    // Random walk with a weak pull back to the starting level.
                    x += vol * rng.normal() + 0.002 * (x0 - x);
                }
                out
            })
            .collect();
        let rate = (0..codes.len())
            .map(|c| (0..n).map(|d| round_sig(usd[c][d] / usd[base][d], 6)).collect())
            .collect();
        Fx {
            codes,
            base,
            day0,
            usd,
            rate,
        }
    }

    pub fn days(&self) -> usize {
        self.rate[0].len()
    }

    fn day_index(&self, t: i64) -> usize {
        let d = t.div_euclid(DAY) as i32;
        (d - self.day0).clamp(0, self.days() as i32 - 1) as usize
    }

    /// Converts a USD value to currency `c` at instant `t`.
    pub fn usd_to(&self, usd: f64, c: usize, t: i64) -> f64 {
        usd / self.usd[c][self.day_index(t)]
    }

    /// Converts an amount in currency `c` to the base currency at instant `t`, with the
    /// rate as written to fx_rates.
    pub fn to_base(&self, amount: f64, c: usize, t: i64) -> f64 {
        if c == self.base {
            amount
        } else {
            amount * self.rate[c][self.day_index(t)]
        }
    }

    pub fn rate_on(&self, c: usize, day_index: usize) -> f64 {
        self.rate[c][day_index]
    }

    /// Rounds an amount the way the currency is quoted (JPY has no minor unit).
    pub fn round_amount(&self, amount: f64, c: usize) -> f64 {
        if self.codes[c] == "JPY" {
            amount.round()
        } else {
            (amount * 100.0).round() / 100.0
        }
    }

    /// Rounds a deal amount to a "quoted" figure (tens, or thousands of yen).
    pub fn round_deal(&self, amount: f64, c: usize) -> f64 {
        let unit = if self.codes[c] == "JPY" { 1000.0 } else { 10.0 };
        ((amount / unit).round() * unit).max(unit)
    }
}

/// Rounds to `digits` significant digits.
pub fn round_sig(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = v.abs().log10().floor() as i32;
    let p = 10f64.powi(digits - 1 - mag);
    (v * p).round() / p
}

#[derive(Debug, Clone)]
pub struct World {
    pub seed: u64,
    pub params: ScaleParams,
    pub cal: Calendar,
    /// The first pipeline's stages.
    pub stages: Stages,
    /// The pipelines deals spread over (the first is `stages`), with their names.
    pub pipelines: Vec<(String, Stages)>,
    pub fx: Fx,
    pub reps: Vec<Rep>,
    pub teams: Vec<Team>,
    /// Sellers active in (region, month).
    pub active: Vec<Vec<Vec<usize>>>,
    pub campaigns: Vec<Campaign>,
    /// Campaign candidates per (source, region, month).
    campaign_index: Vec<Vec<u32>>,
    /// Cumulative lead volume over months.
    pub month_cdf: Vec<f64>,
}

impl World {
    pub fn new(seed: u64, scale: Scale, config: &Config, pipelines: usize) -> World {
        let params = ScaleParams::of(scale);
        let cal = Calendar::new();
        let pipelines: Vec<(String, Stages)> = config
            .pipeline_names()
            .into_iter()
            .take(pipelines.max(1))
            .map(|p| (p.to_string(), Stages::for_pipeline(config, p)))
            .collect();
        let stages = pipelines[0].1.clone();
        let fx = Fx::new(seed, &cal, &config.base_currency);
        let (reps, teams) = build_reps(seed, &params, &cal);
        let active = (0..REGIONS.len())
            .map(|r| {
                (0..MONTHS)
                    .map(|m| {
                        let from = cal.month_start_day(m + 1) - 1;
                        let to = cal.month_start_day(m);
                        (0..reps.len())
                            .filter(|&i| {
                                let p = &reps[i];
                                p.seller
                                    && p.region == Some(r)
                                    && p.active_from <= from
                                    && p.active_to.is_none_or(|x| x >= to)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut month_cdf = Vec::with_capacity(MONTHS);
        let mut acc = 0.0;
        for m in 0..MONTHS {
            acc += month_volume(m);
            month_cdf.push(acc);
        }
        let mut w = World {
            seed,
            params,
            cal,
            stages,
            pipelines,
            fx,
            reps,
            teams,
            active,
            campaigns: Vec::new(),
            campaign_index: Vec::new(),
            month_cdf,
        };
        w.build_campaigns();
        w
    }

    fn build_campaigns(&mut self) {
        let p = self.params;
        let mut rng = Rng::new(self.seed, &[TAG_CAMPAIGNS]);
        let mut index = vec![Vec::new(); SOURCES.len() * REGIONS.len() * MONTHS];
        let periods = MONTHS.div_ceil(p.campaign_months);
        let region_sets: Vec<Option<usize>> = if p.campaign_by_region {
            (0..REGIONS.len()).map(Some).collect()
        } else {
            vec![None]
        };
        for period in 0..periods {
            let m0 = period * p.campaign_months;
            let m1 = ((period + 1) * p.campaign_months).min(MONTHS);
            let label = if p.campaign_months == 1 {
                super::calendar::month_label(m0)
            } else if p.campaign_months == 3 {
                quarter_label(m0)
            } else {
                format!(
                    "{} H{}",
                    super::calendar::START_YEAR + (m0 / 12) as i32,
                    (m0 % 12) / 6 + 1
                )
            };
            for (s, src) in SOURCES.iter().enumerate() {
                if src.campaign <= 0.0 {
                    continue;
                }
                for region in &region_sets {
                    for v in 0..p.campaign_variants {
                        let channel = src.channels[(period + v) % src.channels.len()];
                        let currency = match region {
                            None => 0,
                            Some(r) => {
                                let opts = region_currencies(*r);
                                opts[rng.weighted(&opts.iter().map(|o| o.1).collect::<Vec<_>>())].0
                            }
                        };
                        // Event campaigns are short; the others span most of the period.
                        let span0 = self.cal.month_start[m0];
                        let span1 = self.cal.month_start[m1] - 1;
                        let (started_at, ended_at) = if src.name == "events" {
                            let a = span0 + rng.below(((span1 - span0) / 2).max(1) as u64) as i64;
                            let a = a - a.rem_euclid(DAY) + 8 * 3600;
                            (a, (a + 45 * DAY).min(span1))
                        } else {
                            let a = span0 + rng.range_i64(0, 2) * DAY;
                            (a, span1 - rng.range_i64(0, 2) * DAY)
                        };
                        let region_label = region.map(|r| REGIONS[r]).unwrap_or("Global");
                        let mut name = format!("{} {} {}", title_case(channel), region_label, label);
                        if v > 0 {
                            name.push_str(&format!(" #{}", v + 1));
                        }
                        let id = self.campaigns.len() as u32;
                        self.campaigns.push(Campaign {
                            name,
                            channel,
                            source: s,
                            currency,
                            started_at,
                            ended_at,
                        });
                        let regions: Vec<usize> = match region {
                            Some(r) => vec![*r],
                            None => (0..REGIONS.len()).collect(),
                        };
                        for r in regions {
                            for m in m0..m1 {
                                index[(s * REGIONS.len() + r) * MONTHS + m].push(id);
                            }
                        }
                    }
                }
            }
        }
        self.campaign_index = index;
    }

    /// Campaigns of `source` in `region` running at instant `t`.
    pub fn campaign_for(&self, rng: &mut Rng, source: usize, region: usize, t: i64) -> Option<u32> {
        let m = self.cal.month_of(t);
        let list = &self.campaign_index[(source * REGIONS.len() + region) * MONTHS + m];
        if list.is_empty() {
            return None;
        }
        let start = rng.index(list.len());
        (0..list.len()).map(|k| list[(start + k) % list.len()]).find(|&c| {
            let c = &self.campaigns[c as usize];
            c.started_at <= t && t <= c.ended_at
        })
    }

    /// A seller of `region` active in the month of `t`.
    pub fn pick_rep(&self, rng: &mut Rng, region: usize, t: i64) -> usize {
        let list = &self.active[region][self.cal.month_of(t)];
        list[rng.index(list.len())]
    }

    pub fn sellers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.reps.len()).filter(|&i| self.reps[i].seller)
    }

    pub fn id_width(&self) -> usize {
        self.params.id_width
    }

    pub fn rep_width(&self) -> usize {
        digits(self.reps.len()).max(3)
    }

    pub fn campaign_width(&self) -> usize {
        digits(self.campaigns.len()).max(3)
    }
}

pub fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

fn title_case(s: &str) -> String {
    if matches!(s, "seo" | "abm") {
        return s.to_ascii_uppercase();
    }
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Largest-remainder split of `n` by `weights`, at least one each.
fn apportion(n: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    let raw: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut out: Vec<usize> = raw.iter().map(|x| (x.floor() as usize).max(1)).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| {
        (raw[*b] - raw[*b].floor())
            .total_cmp(&(raw[*a] - raw[*a].floor()))
            .then(a.cmp(b))
    });
    let mut k = 0;
    while out.iter().sum::<usize>() < n {
        out[order[k % order.len()]] += 1;
        k += 1;
    }
    while out.iter().sum::<usize>() > n {
        let i = (0..out.len())
            .max_by_key(|i| (out[*i], usize::MAX - *i))
            .expect("non-empty");
        out[i] -= 1;
    }
    out
}

fn build_reps(seed: u64, p: &ScaleParams, cal: &Calendar) -> (Vec<Rep>, Vec<Team>) {
    let mut rng = Rng::new(seed, &[TAG_REPS]);
    let mut used = std::collections::HashSet::new();
    let mut name = |rng: &mut Rng| loop {
        let n = format!(
            "{} {}",
            FIRST_NAMES[rng.index(FIRST_NAMES.len())],
            LAST_NAMES[rng.index(LAST_NAMES.len())]
        );
        let n = if used.contains(&n) {
            format!("{n} {}", (b'A' + rng.below(26) as u8) as char)
        } else {
            n
        };
        if used.insert(n.clone()) {
            return n;
        }
    };
    let start = cal.start_day();
    let end = cal.end_day();
    let tenure_start = |rng: &mut Rng| start - rng.range_i64(60, 4 * 365) as i32;
    let mut reps = vec![Rep {
        name: name(&mut rng),
        team: None,
        region: None,
        manager: None,
        active_from: start - 6 * 365,
        active_to: None,
        seller: false,
        skill: 1.0,
        hustle: 1.0,
    }];
    let mut teams = Vec::new();
    let per_region = apportion(p.sellers, &REGION_WEIGHTS);
    for (r, &n) in per_region.iter().enumerate() {
        let n_teams = n.div_ceil(8);
        let sizes = apportion(n, &vec![1.0; n_teams]);
        for (t, &size) in sizes.iter().enumerate() {
            let team = teams.len();
            let manager = reps.len();
            reps.push(Rep {
                name: name(&mut rng),
                team: Some(team),
                region: Some(r),
                manager: Some(0),
                active_from: tenure_start(&mut rng) - 365,
                active_to: None,
                seller: false,
                skill: 1.0,
                hustle: 1.0,
            });
            let mut members = Vec::new();
            for k in 0..size {
                // The first two sellers of every team stay for the whole window, so every
                // region always has someone to own its leads.
                let permanent = k < 2;
                let (from, to) = if permanent {
                    (tenure_start(&mut rng), None)
                } else {
                    let from = if rng.chance(0.22) {
                        start + rng.range_i64(30, 3 * 365) as i32
                    } else {
                        tenure_start(&mut rng)
                    };
                    let to = if rng.chance(0.15) {
                        let leave = from.max(start) + rng.range_i64(180, 3 * 365) as i32;
                        (leave < end).then_some(leave)
                    } else {
                        None
                    };
                    (from, to)
                };
                let skill = rng.lognormal(0.0, 0.3).clamp(0.5, 2.0);
                let hustle = rng.lognormal(0.0, 0.25).clamp(0.5, 1.8);
                members.push(reps.len());
                reps.push(Rep {
                    name: name(&mut rng),
                    team: Some(team),
                    region: Some(r),
                    manager: Some(manager),
                    active_from: from,
                    active_to: to,
                    seller: true,
                    skill,
                    hustle,
                });
            }
            teams.push(Team {
                name: format!("{}-{}", REGIONS[r], t + 1),
                region: r,
                members,
            });
        }
    }
    (reps, teams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_sums_and_covers() {
        assert_eq!(apportion(8, &REGION_WEIGHTS).iter().sum::<usize>(), 8);
        assert!(apportion(8, &REGION_WEIGHTS).iter().all(|n| *n >= 1));
        assert_eq!(apportion(200, &REGION_WEIGHTS), vec![90, 60, 30, 20]);
    }

    #[test]
    fn every_region_month_has_a_seller() {
        for scale in [Scale::Tiny, Scale::S] {
            let w = World::new(5, scale, &Config::default(), 1);
            assert_eq!(w.sellers().count(), ScaleParams::of(scale).sellers);
            for r in 0..REGIONS.len() {
                for m in 0..MONTHS {
                    assert!(!w.active[r][m].is_empty(), "{scale:?} region {r} month {m}");
                }
            }
        }
    }

    #[test]
    fn round_sig_rounds() {
        assert_eq!(round_sig(0.00761234567, 3), 0.00761);
        assert_eq!(round_sig(1234.5678, 6), 1234.57);
    }
}
