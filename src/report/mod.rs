//! `crm-kpi report`: one self-contained static HTML file from the KPI outputs: headline tiles,
//! the funnel, time in stage, cohorts, pipeline and forecast, trends, reps and CLV. Charts are
//! SVG drawn here (svg.rs), styles and the one small script inlined: nothing is fetched when
//! the file is opened (file:// or an e-mail attachment). docs/decisions.md, "Report", says why.

pub mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use polars::prelude::*;

use crate::kpi::Grain;
use svg::{Cell, Curve, Fmt, Series, esc};

/// The KPIs the report reads (each frame sorted by its KPI's key).
pub const KPIS: [&str; 18] = [
    "trends",
    "lead_velocity_rate",
    "sales_cycle",
    "stage_funnel",
    "stage_duration_survival",
    "cohort_conversion",
    "retention",
    "pipeline_snapshot",
    "forecast_vs_actual",
    "win_rate",
    "loss_reasons",
    "rep_scorecard",
    "open_deals_per_rep",
    "activity",
    "clv_historical",
    "clv_predictive",
    "clv_segments",
    "clv_model",
];

/// What the report is made from: the KPI outputs of one as_of and grain, and where they came
/// from (for the footer).
pub struct ReportData {
    pub frames: BTreeMap<String, DataFrame>,
    pub as_of: String,
    pub grain: Grain,
    pub store: String,
    pub store_generation: u64,
    pub config_hash: String,
    pub currency: String,
    /// Every pipeline's stages in order, as (pipeline, stage): charts list stages this way.
    pub stages: Vec<(String, String)>,
    /// The fiscal year's first month (1 = January), for quarter labels.
    pub fiscal_year_start_month: u32,
}

impl ReportData {
    fn df(&self, kpi: &str) -> PolarsResult<&DataFrame> {
        self.frames
            .get(kpi)
            .ok_or_else(|| PolarsError::ComputeError(format!("report: KPI `{kpi}` was not read").into()))
    }

    /// A stage's position in the configured order (unknown stages last, by name).
    fn stage_rank(&self, pipeline: &str, stage: &str) -> usize {
        self.stages
            .iter()
            .position(|(p, s)| p == pipeline && s == stage)
            .unwrap_or(usize::MAX)
    }

    /// A period's label on an axis: `2026-03` for a month, `2026-Q1` for a quarter (of the
    /// calendar year the period starts in), `2026` for a year, the start date for a week.
    fn period_label(&self, start: &str) -> String {
        let month = || start.get(5..7).and_then(|m| m.parse::<u32>().ok());
        match self.grain {
            Grain::Month => start.get(..7).unwrap_or(start).to_string(),
            Grain::Quarter => match month() {
                Some(m) if start.len() >= 10 && (m - 1) % 3 == 0 && self.quarters_calendar() => {
                    format!("{}-Q{}", &start[..4], (m - 1) / 3 + 1)
                }
                _ => start.to_string(),
            },
            Grain::Year => match month() {
                Some(1) => start[..4].to_string(),
                _ => start.to_string(),
            },
            Grain::Week => start.to_string(),
        }
    }

    /// Whether quarters start in January, April, July and October (else fiscal quarters are
    /// labelled by their start date).
    fn quarters_calendar(&self) -> bool {
        self.fiscal_year_start_month % 3 == 1
    }

    fn labels(&self, periods: &[String]) -> Vec<String> {
        periods.iter().map(|p| self.period_label(p)).collect()
    }

    fn periods_per_year(&self) -> usize {
        match self.grain {
            Grain::Week => 52,
            Grain::Month => 12,
            Grain::Quarter => 4,
            Grain::Year => 1,
        }
    }
}

// ---- reading columns -------------------------------------------------------------------

fn strs(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<String>>> {
    let s = df.column(c)?.cast(&DataType::String)?;
    Ok(s.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

fn f64s(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<f64>>> {
    let s = df.column(c)?.cast(&DataType::Float64)?;
    Ok(s.f64()?.iter().collect())
}

fn bools(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<bool>>> {
    Ok(df.column(c)?.bool()?.iter().collect())
}

/// period_start -> the value of `c`, for a KPI with one row per period.
fn by_period(df: &DataFrame, c: &str) -> PolarsResult<BTreeMap<String, Option<f64>>> {
    Ok(strs(df, "period_start")?
        .into_iter()
        .zip(f64s(df, c)?)
        .filter_map(|(p, v)| Some((p?, v)))
        .collect())
}

fn rows_where(df: &DataFrame, c: &str, v: &str) -> PolarsResult<DataFrame> {
    df.clone()
        .lazy()
        .filter(col(c).cast(DataType::String).eq(lit(v)))
        .collect()
}

fn definition(kpi: &str) -> String {
    crate::kpi::find(kpi).map_or_else(String::new, |k| k.definition.to_string())
}

/// A section: heading with the KPIs it shows, each one's definition in a `<details>`.
fn section(id: &str, heading: &str, kpis: &[&str], body: &str) -> String {
    let mut s = format!(
        r#"<section id="{id}" data-kpis="{}"><h2>{}</h2>"#,
        kpis.join(" "),
        esc(heading)
    );
    s.push_str(body);
    s.push_str("<details class=\"defs\"><summary>Definitions</summary>");
    for k in kpis {
        let _ = write!(s, "<p><b>{k}</b>: {}</p>", esc(&definition(k)));
    }
    s.push_str("</details></section>");
    s
}

/// A chart with its title: the KPI's name, its definition on hover.
fn figure(kpi: &str, caption: &str, chart: &str) -> String {
    format!(
        r#"<figure data-kpi="{kpi}"><figcaption title="{}"><code>{kpi}</code> {}</figcaption>{chart}</figure>"#,
        esc(&definition(kpi)),
        esc(caption)
    )
}

fn empty_note(kpi: &str, what: &str) -> String {
    format!(
        r#"<p class="empty" data-kpi="{kpi}">No {} as of this date (<code>{kpi}</code> has no rows).</p>"#,
        esc(what)
    )
}

// ---- headline tiles --------------------------------------------------------------------

struct Tile {
    id: &'static str,
    label: &'static str,
    kpi: &'static str,
    fmt: Fmt,
    value: Option<f64>,
    prev: Option<f64>,
    prev_year: Option<f64>,
}

/// (v - base) / base, as `trends` defines pop_change and yoy_change; null over a zero base.
fn change(v: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (v, base) {
        (Some(v), Some(b)) if b != 0.0 => Some((v - b) / b),
        _ => None,
    }
}

/// The last complete period of `trends` (else its last), its index in the dense period list.
fn headline_period(d: &ReportData) -> PolarsResult<(Vec<String>, Option<usize>)> {
    let t = rows_where(d.df("trends")?, "series", "won_revenue")?;
    let periods: Vec<String> = strs(&t, "period_start")?.into_iter().flatten().collect();
    let complete = bools(&t, "complete")?;
    let idx = complete
        .iter()
        .rposition(|c| *c == Some(true))
        .or_else(|| periods.len().checked_sub(1));
    Ok((periods, idx))
}

fn tiles(d: &ReportData) -> PolarsResult<String> {
    let (periods, idx) = headline_period(d)?;
    let Some(i) = idx else {
        return Ok(section(
            "headline",
            "Headline",
            &["trends"],
            &empty_note("trends", "periods"),
        ));
    };
    let period = &periods[i];
    let prev_period = i.checked_sub(1).map(|j| periods[j].clone());
    let year_period = i.checked_sub(d.periods_per_year()).map(|j| periods[j].clone());
    let trends = d.df("trends")?;
    let series = strs(trends, "series")?;
    let ps = strs(trends, "period_start")?;
    let (vals, prevs, years) = (
        f64s(trends, "value")?,
        f64s(trends, "prev_value")?,
        f64s(trends, "prev_year_value")?,
    );
    let trend = |name: &str| -> (Option<f64>, Option<f64>, Option<f64>) {
        (0..series.len())
            .find(|&r| series[r].as_deref() == Some(name) && ps[r].as_deref() == Some(period))
            .map_or((None, None, None), |r| (vals[r], prevs[r], years[r]))
    };
    // lead velocity and the sales cycle: the same period, the one before and a year before.
    let lvr = by_period(d.df("lead_velocity_rate")?, "lvr")?;
    let cycle = rows_where(&rows_where(d.df("sales_cycle")?, "dimension", "all")?, "outcome", "won")?;
    let cycle = by_period(&cycle, "median_days")?;
    let mut list = Vec::new();
    for (id, label, fmt) in [
        ("won_revenue", "Won revenue", Fmt::Money),
        ("win_rate", "Win rate", Fmt::Pct),
        ("deals_won", "Deals won", Fmt::Count),
        ("mean_deal_size", "Mean deal size", Fmt::Money),
        ("new_leads", "New leads", Fmt::Count),
    ] {
        let (value, prev, prev_year) = trend(id);
        list.push(Tile {
            id,
            label,
            kpi: "trends",
            fmt,
            value,
            prev,
            prev_year,
        });
    }
    for (id, label, fmt, values) in [
        ("lead_velocity_rate", "Lead velocity", Fmt::Pct, &lvr),
        ("sales_cycle", "Sales cycle (median, won)", Fmt::Days, &cycle),
    ] {
        let at = |p: Option<&String>| p.and_then(|p| values.get(p).copied().flatten());
        list.push(Tile {
            id,
            label,
            kpi: id,
            fmt,
            value: at(Some(period)),
            prev: at(prev_period.as_ref()),
            prev_year: at(year_period.as_ref()),
        });
    }
    let mut s = format!(
        r#"<p class="sub">Period starting <b>{}</b> (the last complete {} at as_of), against the period before and the same period a year earlier.</p><div class="tiles">"#,
        esc(period),
        d.grain.name()
    );
    for t in &list {
        // A rate's change is in points; other values' in percent.
        let delta = |base: Option<f64>| -> String {
            let (text, up) = match t.fmt {
                Fmt::Pct => match (t.value, base) {
                    (Some(v), Some(b)) => (format!("{:+.1} pts", (v - b) * 100.0), Some(v >= b)),
                    _ => ("n/a".into(), None),
                },
                _ => match change(t.value, base) {
                    Some(c) => (format!("{:+.1}%", c * 100.0), Some(c >= 0.0)),
                    None => ("n/a".into(), None),
                },
            };
            let class = match up {
                Some(true) => "up",
                Some(false) => "down",
                None => "na",
            };
            format!(r#"<span class="{class}">{}</span>"#, esc(&text))
        };
        let raw = t.value.map_or("null".to_string(), |v| format!("{v}"));
        let _ = write!(
            s,
            r#"<div class="tile" data-tile="{}" data-kpi="{}" data-period="{}" data-value="{raw}" title="{}"><div class="tl">{}</div><div class="tv">{}</div><div class="td">vs prev {} · YoY {}</div></div>"#,
            t.id,
            t.kpi,
            esc(period),
            esc(&definition(t.kpi)),
            esc(t.label),
            esc(&t.value.map_or("n/a".into(), |v| t.fmt.full(v))),
            delta(t.prev),
            delta(t.prev_year)
        );
    }
    s.push_str("</div>");
    Ok(section(
        "headline",
        "Headline",
        &["trends", "lead_velocity_rate", "sales_cycle"],
        &s,
    ))
}

// ---- funnel ----------------------------------------------------------------------------

/// Up to this many owners and campaigns are selectable (the largest by deals at the first step).
const FUNNEL_CHOICES: usize = 25;

fn funnel(d: &ReportData) -> PolarsResult<String> {
    let df = d.df("stage_funnel")?;
    if df.height() == 0 {
        return Ok(section(
            "funnel",
            "Stage funnel",
            &["stage_funnel"],
            &empty_note("stage_funnel", "deals"),
        ));
    }
    let (mode, dim, val, pipe, stage) = (
        strs(df, "mode")?,
        strs(df, "dimension")?,
        strs(df, "dimension_value")?,
        strs(df, "pipeline")?,
        strs(df, "stage")?,
    );
    let (idx, reached, next, first) = (
        f64s(df, "stage_index")?,
        f64s(df, "reached")?,
        f64s(df, "next_stage_rate")?,
        f64s(df, "from_first_rate")?,
    );
    // The choices: all, then owners and campaigns by their deals at the first step.
    // (dimension, value): a null value (all deals; deals without a campaign) is a choice too.
    let mut size: BTreeMap<(String, Option<String>), f64> = BTreeMap::new();
    for r in 0..df.height() {
        if mode[r].as_deref() == Some("any") && idx[r] == Some(0.0) {
            let k = (dim[r].clone().unwrap_or_default(), val[r].clone());
            *size.entry(k).or_default() += reached[r].unwrap_or(0.0);
        }
    }
    let mut choices: Vec<(String, Option<String>)> = vec![("all".to_string(), None)];
    for d_name in ["owner_id", "campaign_id"] {
        let mut of: Vec<_> = size.iter().filter(|(k, _)| k.0 == d_name).collect();
        of.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        choices.extend(of.into_iter().take(FUNNEL_CHOICES).map(|(k, _)| k.clone()));
    }
    let pipelines: Vec<String> = {
        let mut seen = Vec::new();
        for p in pipe.iter().flatten() {
            if !seen.contains(p) {
                seen.push(p.clone());
            }
        }
        seen
    };
    let mut body = String::from(r#"<label class="pick">Deals of <select data-group="funnel">"#);
    for (i, (dn, dv)) in choices.iter().enumerate() {
        let label = match (dn.as_str(), dv) {
            ("all", _) => "all deals".to_string(),
            (_, Some(v)) => format!("{dn} = {v}"),
            (_, None) => format!("{dn}: none"),
        };
        let _ = write!(body, r#"<option value="{i}">{}</option>"#, esc(&label));
    }
    body.push_str("</select></label>");
    for (i, (dn, dv)) in choices.iter().enumerate() {
        let hidden = if i == 0 { "" } else { " hidden" };
        let _ = write!(
            body,
            r#"<div class="choice" data-group="funnel" data-choice="{i}"{hidden}><div class="pair">"#
        );
        for m in ["any", "ordered"] {
            for p in &pipelines {
                let mut rows: Vec<(f64, String, f64, String)> = (0..df.height())
                    .filter(|&r| {
                        mode[r].as_deref() == Some(m)
                            && dim[r].as_deref() == Some(dn.as_str())
                            && val[r] == *dv
                            && pipe[r].as_deref() == Some(p.as_str())
                    })
                    .map(|r| {
                        let text = format!(
                            "{}{}",
                            svg::Fmt::Count.full(reached[r].unwrap_or(0.0)),
                            match (next[r], first[r]) {
                                (Some(n), Some(f)) => format!(" · next {:.0}% · of first {:.0}%", n * 100.0, f * 100.0),
                                (None, Some(f)) => format!(" · of first {:.0}%", f * 100.0),
                                _ => String::new(),
                            }
                        );
                        (
                            idx[r].unwrap_or(0.0),
                            stage[r].clone().unwrap_or_default(),
                            reached[r].unwrap_or(0.0),
                            text,
                        )
                    })
                    .collect();
                rows.sort_by(|a, b| a.0.total_cmp(&b.0));
                let bars: Vec<(String, f64, String)> = rows.into_iter().map(|(_, s, v, t)| (s, v, t)).collect();
                let caption = if pipelines.len() > 1 {
                    format!("{m} (pipeline {p}): deals reaching each stage")
                } else {
                    format!("{m}: deals reaching each stage")
                };
                let title = format!("stage_funnel {m} {p} {dn}={}", dv.as_deref().unwrap_or("none"));
                body.push_str(&figure(
                    "stage_funnel",
                    &caption,
                    &svg::hbars(&title, &bars, Fmt::Count, 0),
                ));
            }
        }
        body.push_str("</div></div>");
    }
    Ok(section("funnel", "Stage funnel", &["stage_funnel"], &body))
}

// ---- time in stage ---------------------------------------------------------------------

/// At most this many points per survival curve (steps thinned evenly, the last kept).
const CURVE_POINTS: usize = 160;

fn time_in_stage(d: &ReportData) -> PolarsResult<String> {
    let df = rows_where(d.df("stage_duration_survival")?, "dimension", "all")?;
    if df.height() == 0 {
        return Ok(section(
            "time-in-stage",
            "Time in stage",
            &["stage_duration_survival"],
            &empty_note("stage_duration_survival", "stage visits"),
        ));
    }
    let (pipe, stage) = (strs(&df, "pipeline")?, strs(&df, "stage")?);
    let (t, sv, lo, hi) = (
        f64s(&df, "t_days")?,
        f64s(&df, "survival")?,
        f64s(&df, "ci_low")?,
        f64s(&df, "ci_high")?,
    );
    // Per pipeline, its stages in the order they appear (the output is sorted by stage order).
    type Stages = Vec<(String, Vec<svg::Step>)>;
    let mut curves: Vec<(String, Stages)> = Vec::new();
    for r in 0..df.height() {
        let (p, s) = (
            pipe[r].clone().unwrap_or_default(),
            stage[r].clone().unwrap_or_default(),
        );
        if curves.last().is_none_or(|c| c.0 != p) {
            curves.push((p.clone(), Vec::new()));
        }
        let stages = &mut curves.last_mut().expect("pushed").1;
        if stages.last().is_none_or(|c| c.0 != s) {
            stages.push((s.clone(), Vec::new()));
        }
        if let (Some(t), Some(v)) = (t[r], sv[r]) {
            stages.last_mut().expect("pushed").1.push((t, v, lo[r], hi[r]));
        }
    }
    for (p, stages) in &mut curves {
        stages.sort_by_key(|(s, _)| (d.stage_rank(p, s), s.clone()));
    }
    let mut body = String::from(
        r#"<p class="sub">Kaplan-Meier: the share of visits still in the stage after t days, with its 95% confidence band; visits still open at as_of are censored. The dotted line is the median.</p>"#,
    );
    for (p, stages) in &curves {
        let mut all_t: Vec<f64> = stages.iter().flat_map(|s| s.1.iter().map(|x| x.0)).collect();
        all_t.sort_by(f64::total_cmp);
        // The x axis to the 95th percentile of the step times: long tails flatten the rest.
        let x_max = all_t.get(all_t.len() * 95 / 100).copied().unwrap_or(1.0);
        let list: Vec<Curve> = stages
            .iter()
            .enumerate()
            .map(|(i, (name, steps))| {
                let every = steps.len().div_ceil(CURVE_POINTS).max(1);
                let mut thin: Vec<_> = steps.iter().step_by(every).copied().collect();
                if let (Some(last), Some(kept)) = (steps.last(), thin.last())
                    && last.0 != kept.0
                {
                    thin.push(*last);
                }
                Curve {
                    name: name.clone(),
                    steps: thin,
                    color: i,
                }
            })
            .collect();
        let caption = if curves.len() > 1 {
            format!("pipeline {p}: share of visits still in each stage")
        } else {
            "share of visits still in each stage".into()
        };
        body.push_str(&figure(
            "stage_duration_survival",
            &caption,
            &svg::survival_chart(&format!("stage_duration_survival {p}"), &list, x_max),
        ));
    }
    Ok(section(
        "time-in-stage",
        "Time in stage",
        &["stage_duration_survival"],
        &body,
    ))
}

// ---- cohorts ---------------------------------------------------------------------------

/// The last this many cohorts, and k up to this many periods, are shown.
const COHORT_ROWS: usize = 18;
const COHORT_COLS: usize = 13;

/// Whether as_of's period is still in progress (its last instant after as_of).
fn current_period_partial(d: &ReportData) -> PolarsResult<bool> {
    let t = rows_where(d.df("trends")?, "series", "won_revenue")?;
    Ok(bools(&t, "complete")?.last().copied().flatten() == Some(false))
}

fn cohort_heatmap(
    d: &ReportData,
    df: &DataFrame,
    rate: &str,
    partial_now: bool,
    caption: &str,
    kpi: &str,
) -> PolarsResult<String> {
    let (c, k, v) = (strs(df, "cohort_start")?, f64s(df, "k")?, f64s(df, rate)?);
    let cohorts: BTreeSet<String> = c.iter().flatten().cloned().collect();
    let rows: Vec<String> = cohorts
        .into_iter()
        .rev()
        .take(COHORT_ROWS)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let cols: Vec<String> = (0..COHORT_COLS).map(|k| k.to_string()).collect();
    let mut cells = vec![
        vec![
            Cell {
                value: None,
                partial: false
            };
            COHORT_COLS
        ];
        rows.len()
    ];
    // The last k of each cohort is as_of's period.
    let mut last_k: BTreeMap<&str, f64> = BTreeMap::new();
    for r in 0..df.height() {
        if let (Some(c), Some(k)) = (&c[r], k[r]) {
            let e = last_k.entry(c.as_str()).or_insert(k);
            *e = e.max(k);
        }
    }
    for r in 0..df.height() {
        let (Some(cr), Some(kr)) = (&c[r], k[r]) else { continue };
        let Some(i) = rows.iter().position(|x| x == cr) else {
            continue;
        };
        let j = kr as usize;
        if j >= COHORT_COLS {
            continue;
        }
        cells[i][j] = Cell {
            value: v[r],
            partial: partial_now && last_k.get(cr.as_str()) == Some(&kr),
        };
    }
    let labels = d.labels(&rows);
    Ok(figure(
        kpi,
        caption,
        &svg::heatmap(&format!("{kpi} heatmap"), &labels, &cols, &cells, Fmt::Pct),
    ))
}

fn cohorts(d: &ReportData) -> PolarsResult<String> {
    let partial = current_period_partial(d)?;
    let mut body = String::new();
    let conv = rows_where(d.df("cohort_conversion")?, "dimension", "all")?;
    if conv.height() == 0 {
        body.push_str(&empty_note("cohort_conversion", "lead cohorts"));
    } else {
        body.push_str(&cohort_heatmap(
            d,
            &conv,
            "conversion_rate_cum",
            partial,
            "leads converted by k periods after their creation period (cumulative)",
            "cohort_conversion",
        )?);
    }
    let ret = d.df("retention")?;
    if ret.height() == 0 {
        body.push_str(&empty_note("retention", "customer cohorts"));
    } else {
        body.push_str(&cohort_heatmap(
            d,
            ret,
            "retention_rate",
            partial,
            "customers ordering k periods after their first order's period",
            "retention",
        )?);
    }
    Ok(section(
        "cohorts",
        "Cohorts",
        &["cohort_conversion", "retention"],
        &body,
    ))
}

// ---- pipeline and forecast -------------------------------------------------------------

/// The last this many periods (snapshots) are drawn in the period charts.
const PERIODS_SHOWN: usize = 13;

fn last_n<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v[v.len().saturating_sub(n)..].to_vec()
}

fn pipeline(d: &ReportData) -> PolarsResult<String> {
    let mut body = String::new();
    let snap = d.df("pipeline_snapshot")?;
    if snap.height() == 0 {
        body.push_str(&empty_note("pipeline_snapshot", "open deals"));
    } else {
        let (at, pipe, stage) = (
            strs(snap, "snapshot_at")?,
            strs(snap, "pipeline")?,
            strs(snap, "stage")?,
        );
        let (amount, weighted) = (f64s(snap, "amount")?, f64s(snap, "weighted_amount")?);
        let dates: BTreeSet<String> = at.iter().flatten().cloned().collect();
        let dates = last_n(&dates.into_iter().collect::<Vec<_>>(), PERIODS_SHOWN);
        let multi = pipe.iter().flatten().collect::<BTreeSet<_>>().len() > 1;
        // Stages in output order (pipeline order).
        let mut stages: Vec<(String, String)> = Vec::new();
        for r in 0..snap.height() {
            let k = (
                pipe[r].clone().unwrap_or_default(),
                stage[r].clone().unwrap_or_default(),
            );
            if !stages.contains(&k) {
                stages.push(k);
            }
        }
        stages.sort_by_key(|(p, s)| (d.stage_rank(p, s), p.clone(), s.clone()));
        for (values, what) in [(&amount, "amount"), (&weighted, "weighted amount")] {
            let series: Vec<Series> = stages
                .iter()
                .enumerate()
                .map(|(i, (p, s))| Series {
                    name: if multi { format!("{p} / {s}") } else { s.clone() },
                    values: dates
                        .iter()
                        .map(|dt| {
                            (0..snap.height())
                                .find(|&r| {
                                    at[r].as_ref() == Some(dt)
                                        && pipe[r].as_ref() == Some(p)
                                        && stage[r].as_ref() == Some(s)
                                })
                                .and_then(|r| values[r])
                        })
                        .collect(),
                    dashed: false,
                    color: i,
                })
                .collect();
            body.push_str(&figure(
                "pipeline_snapshot",
                &format!("open pipeline by stage at each period end, {what} ({})", d.currency),
                &svg::stacked_bars(&format!("pipeline_snapshot {what}"), &dates, &series, Fmt::Money),
            ));
        }
    }
    let fva = d.df("forecast_vs_actual")?;
    if fva.height() == 0 {
        body.push_str(&empty_note("forecast_vs_actual", "forecasts or won deals"));
    } else {
        let (ps, pipe) = (strs(fva, "period_start")?, strs(fva, "pipeline")?);
        let (sub, pf, act) = (
            f64s(fva, "submitted_forecast")?,
            f64s(fva, "pipeline_forecast")?,
            f64s(fva, "actual")?,
        );
        // Totals per period: every forecast is in one row; each deal in one row with a
        // pipeline (the rows with pipeline null, with several pipelines, repeat their sums).
        let mut per: BTreeMap<String, [f64; 3]> = BTreeMap::new();
        let mut has_sub: BTreeSet<String> = BTreeSet::new();
        for r in 0..fva.height() {
            let Some(p) = &ps[r] else { continue };
            let e = per.entry(p.clone()).or_default();
            if let Some(v) = sub[r] {
                e[0] += v;
                has_sub.insert(p.clone());
            }
            if pipe[r].is_some() {
                e[1] += pf[r].unwrap_or(0.0);
                e[2] += act[r].unwrap_or(0.0);
            }
        }
        let periods = last_n(&per.keys().cloned().collect::<Vec<_>>(), PERIODS_SHOWN);
        let pick = |i: usize, need_sub: bool| -> Vec<Option<f64>> {
            periods
                .iter()
                .map(|p| (!need_sub || has_sub.contains(p)).then(|| per[p][i]))
                .collect()
        };
        let series = [
            Series {
                name: "submitted forecast (commit)".into(),
                values: pick(0, true),
                dashed: false,
                color: 6,
            },
            Series {
                name: "pipeline forecast".into(),
                values: pick(1, false),
                dashed: false,
                color: 4,
            },
            Series {
                name: "actual (won)".into(),
                values: pick(2, false),
                dashed: false,
                color: 2,
            },
        ];
        body.push_str(&figure(
            "forecast_vs_actual",
            &format!("forecast against won revenue per period, all owners ({})", d.currency),
            &svg::grouped_bars("forecast_vs_actual", &d.labels(&periods), &series, Fmt::Money),
        ));
    }
    Ok(section(
        "pipeline",
        "Pipeline and forecast",
        &["pipeline_snapshot", "forecast_vs_actual"],
        &body,
    ))
}

// ---- trends and loss reasons -----------------------------------------------------------

fn trends(d: &ReportData) -> PolarsResult<String> {
    let mut body = String::new();
    let t = d.df("trends")?;
    let n = 2 * d.periods_per_year().min(12);
    for (name, what, fmt) in [
        ("win_rate", "win rate", Fmt::Pct),
        ("won_revenue", "won revenue", Fmt::Money),
    ] {
        let rows = rows_where(t, "series", name)?;
        let periods = last_n(
            &strs(&rows, "period_start")?.into_iter().flatten().collect::<Vec<_>>(),
            n,
        );
        let (v, y) = (
            last_n(&f64s(&rows, "value")?, n),
            last_n(&f64s(&rows, "prev_year_value")?, n),
        );
        let series = [
            Series {
                name: what.into(),
                values: v,
                dashed: false,
                color: 0,
            },
            Series {
                name: "same period a year earlier".into(),
                values: y,
                dashed: true,
                color: 6,
            },
        ];
        body.push_str(&figure(
            "trends",
            &format!("{what} per period, and a year earlier"),
            &svg::line_chart(&format!("trends {name}"), &d.labels(&periods), &series, fmt),
        ));
    }
    // Loss reasons over the last 12 periods (lost deals, with their share).
    let lr = d.df("loss_reasons")?;
    if lr.height() == 0 {
        body.push_str(&empty_note("loss_reasons", "lost deals"));
    } else {
        let (ps, reason, lost) = (strs(lr, "period_start")?, strs(lr, "loss_reason")?, f64s(lr, "lost")?);
        let all: BTreeSet<String> = ps.iter().flatten().cloned().collect();
        let keep: BTreeSet<String> = last_n(&all.into_iter().collect::<Vec<_>>(), 12).into_iter().collect();
        let mut per: BTreeMap<String, f64> = BTreeMap::new();
        for r in 0..lr.height() {
            if ps[r].as_ref().is_some_and(|p| keep.contains(p)) {
                *per.entry(reason[r].clone().unwrap_or_else(|| "(no reason)".into()))
                    .or_default() += lost[r].unwrap_or(0.0);
            }
        }
        let total: f64 = per.values().sum();
        let mut rows: Vec<(String, f64, String)> = per
            .into_iter()
            .map(|(k, v)| {
                let share = if total > 0.0 {
                    format!("{v:.0} · {:.1}%", v / total * 100.0)
                } else {
                    format!("{v:.0}")
                };
                (k, v, share)
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        body.push_str(&figure(
            "loss_reasons",
            &format!("lost deals by reason, last {} periods", keep.len()),
            &svg::hbars("loss_reasons", &rows, Fmt::Count, 5),
        ));
    }
    Ok(section(
        "trends",
        "Win rate, revenue and losses",
        &["trends", "loss_reasons"],
        &body,
    ))
}

// ---- reps ------------------------------------------------------------------------------

fn reps(d: &ReportData) -> PolarsResult<String> {
    let (periods, idx) = headline_period(d)?;
    let period = idx.map(|i| periods[i].clone()).unwrap_or_default();
    let mut body = String::new();
    let sc = rows_where(d.df("rep_scorecard")?, "period_start", &period)?;
    // Open and stale deals at as_of per owner, over pipelines.
    let od = d.df("open_deals_per_rep")?;
    let mut open: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (o, (n, st)) in strs(od, "owner_id")?
        .into_iter()
        .zip(f64s(od, "open_deals")?.into_iter().zip(f64s(od, "stale_deals")?))
    {
        let e = open.entry(o.unwrap_or_default()).or_default();
        e.0 += n.unwrap_or(0.0);
        e.1 += st.unwrap_or(0.0);
    }
    if sc.height() == 0 {
        body.push_str(&empty_note("rep_scorecard", "rep results for this period"));
    } else {
        let (owner, team) = (strs(&sc, "owner_id")?, strs(&sc, "team")?);
        let (rank, won, deals, wr, target, att) = (
            f64s(&sc, "rank")?,
            f64s(&sc, "won_amount")?,
            f64s(&sc, "won_deals")?,
            f64s(&sc, "win_rate")?,
            f64s(&sc, "target")?,
            f64s(&sc, "attainment")?,
        );
        let mut order: Vec<usize> = (0..sc.height()).collect();
        order.sort_by(|&a, &b| {
            rank[a]
                .unwrap_or(f64::MAX)
                .total_cmp(&rank[b].unwrap_or(f64::MAX))
                .then(owner[a].cmp(&owner[b]))
        });
        let max_att = att.iter().flatten().fold(1.0f64, |m, v| m.max(*v));
        let _ = write!(
            body,
            r#"<figure data-kpi="rep_scorecard"><figcaption title="{}"><code>rep_scorecard</code> leaderboard, period starting {}; open and stale deals at as_of from <code>open_deals_per_rep</code></figcaption><table class="board"><thead><tr><th>#</th><th>owner</th><th>team</th><th>won ({})</th><th>deals won</th><th>win rate</th><th>target</th><th>attainment</th><th>open deals</th><th>stale</th></tr></thead><tbody>"#,
            esc(&definition("rep_scorecard")),
            esc(&period),
            esc(&d.currency)
        );
        let num = |v: Option<f64>, f: Fmt| v.map_or("–".to_string(), |v| f.full(v));
        for &r in &order {
            let o = owner[r].clone().unwrap_or_default();
            let (n_open, n_stale) = open.get(&o).copied().unwrap_or_default();
            let bar = att[r].map_or(String::new(), |a| {
                format!(
                    r##"<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none"><rect width="{:.1}" height="10" fill="{}"/><line x1="{:.1}" x2="{:.1}" y1="0" y2="10" stroke="#333"/></svg>"##,
                    (a / max_att * 100.0).clamp(0.0, 100.0),
                    if a >= 1.0 { svg::color(2) } else { svg::color(1) },
                    100.0 / max_att,
                    100.0 / max_att
                )
            });
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{} {bar}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                num(rank[r], Fmt::Count),
                esc(&o),
                esc(team[r].as_deref().unwrap_or("")),
                num(won[r], Fmt::Money),
                num(deals[r], Fmt::Count),
                num(wr[r], Fmt::Pct),
                num(target[r], Fmt::Money),
                num(att[r], Fmt::Pct),
                Fmt::Count.full(n_open),
                Fmt::Count.full(n_stale)
            );
        }
        body.push_str("</tbody></table></figure>");
    }
    let act = rows_where(d.df("activity")?, "period_start", &period)?;
    if act.height() == 0 {
        body.push_str(&empty_note("activity", "activities for this period"));
    } else {
        let (owner, calls, target) = (
            strs(&act, "owner_id")?,
            f64s(&act, "calls")?,
            f64s(&act, "calls_target")?,
        );
        let mut order: Vec<usize> = (0..act.height()).collect();
        order.sort_by(|&a, &b| {
            calls[b]
                .unwrap_or(0.0)
                .total_cmp(&calls[a].unwrap_or(0.0))
                .then(owner[a].cmp(&owner[b]))
        });
        order.truncate(30);
        let labels: Vec<String> = order.iter().map(|&r| owner[r].clone().unwrap_or_default()).collect();
        let series = [
            Series {
                name: "calls".into(),
                values: order.iter().map(|&r| calls[r]).collect(),
                dashed: false,
                color: 0,
            },
            Series {
                name: "calls target".into(),
                values: order.iter().map(|&r| target[r]).collect(),
                dashed: false,
                color: 6,
            },
        ];
        body.push_str(&figure(
            "activity",
            &format!("calls against target per owner, period starting {period}"),
            &svg::grouped_bars("activity calls", &labels, &series, Fmt::Count),
        ));
    }
    Ok(section(
        "reps",
        "Reps and activity",
        &["rep_scorecard", "open_deals_per_rep", "activity"],
        &body,
    ))
}

// ---- CLV -------------------------------------------------------------------------------

fn clv(d: &ReportData) -> PolarsResult<String> {
    let mut body = String::new();
    let pred = d.df("clv_predictive")?;
    let values: Vec<f64> = f64s(pred, "clv")?.into_iter().flatten().collect();
    if values.is_empty() {
        body.push_str(&empty_note("clv_predictive", "customers"));
    } else {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let cap = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)].max(1.0);
        body.push_str(&figure(
            "clv_predictive",
            &format!(
                "predicted CLV per customer ({}; the last bar holds the top 1% and above {})",
                d.currency,
                Fmt::Money.full(cap)
            ),
            &svg::histogram("clv_predictive distribution", &values, 20, cap, Fmt::Money),
        ));
    }
    let seg = d.df("clv_segments")?;
    for (dim, what) in [("cohort_start", "acquisition cohort"), ("source", "lead source")] {
        let rows = rows_where(seg, "dimension", dim)?;
        if rows.height() == 0 {
            continue;
        }
        let (val, mean, n) = (
            strs(&rows, "dimension_value")?,
            f64s(&rows, "mean_clv")?,
            f64s(&rows, "customers")?,
        );
        let mut bars: Vec<(String, f64, String)> = (0..rows.height())
            .map(|r| {
                (
                    val[r].as_deref().map_or_else(
                        || "(none)".into(),
                        |v| {
                            if dim == "cohort_start" {
                                d.period_label(v)
                            } else {
                                v.to_string()
                            }
                        },
                    ),
                    mean[r].unwrap_or(0.0),
                    format!(
                        "{} · {} customers",
                        Fmt::Money.full(mean[r].unwrap_or(0.0)),
                        Fmt::Count.full(n[r].unwrap_or(0.0))
                    ),
                )
            })
            .collect();
        if dim == "cohort_start" {
            bars = last_n(&bars, 24);
        } else {
            bars.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        body.push_str(&figure(
            "clv_segments",
            &format!("mean predicted CLV by {what} ({})", d.currency),
            &svg::hbars(&format!("clv_segments {dim}"), &bars, Fmt::Money, 2),
        ));
    }
    let model = d.df("clv_model")?;
    if model.height() > 0 {
        let (m, seg, p) = (strs(model, "model")?, strs(model, "segment")?, strs(model, "param")?);
        let (v, se, ll, n) = (
            f64s(model, "value")?,
            f64s(model, "std_err")?,
            f64s(model, "log_likelihood")?,
            f64s(model, "n_customers")?,
        );
        let _ = write!(
            body,
            r#"<figure data-kpi="clv_model"><figcaption title="{}"><code>clv_model</code> fitted parameters (BG/NBD purchases, Gamma-Gamma spend), their standard errors and the fit's log-likelihood</figcaption><table class="board"><thead><tr><th>model</th><th>segment</th><th>parameter</th><th>value</th><th>std err</th><th>log-likelihood</th><th>customers</th></tr></thead><tbody>"#,
            esc(&definition("clv_model"))
        );
        let num = |x: Option<f64>, dp: usize| x.map_or("–".into(), |x| format!("{x:.dp$}"));
        for r in 0..model.height() {
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                esc(m[r].as_deref().unwrap_or("")),
                esc(seg[r].as_deref().unwrap_or("")),
                esc(p[r].as_deref().unwrap_or("")),
                num(v[r], 4),
                num(se[r], 4),
                num(ll[r], 1),
                num(n[r], 0)
            );
        }
        body.push_str("</tbody></table></figure>");
    }
    Ok(section(
        "clv",
        "Customer lifetime value",
        &["clv_predictive", "clv_segments", "clv_model"],
        &body,
    ))
}

// ---- the page --------------------------------------------------------------------------

const STYLE: &str = r#"
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fafafa}
body{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.2rem;margin:0 0 .4rem;border-bottom:2px solid #0072B2;padding-bottom:.2rem}
section{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:14px 16px;margin:16px 0}
figure{margin:10px 0}figcaption{font-size:.9rem;color:#444;margin-bottom:4px;cursor:help}
.chart{width:100%;height:auto;display:block}.chart .ax{font-size:11px;fill:#555}.chart .lg{font-size:11px;fill:#333}.chart .lb{font-size:12px;fill:#222}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.tile{border:1px solid #e3e3e3;border-radius:8px;padding:10px;background:#fcfcfd}.tl{font-size:.8rem;color:#555}.tv{font-size:1.45rem;font-weight:600;margin:.2rem 0}.td{font-size:.75rem;color:#555}
.up{color:#00795a}.down{color:#c0392b}.na{color:#888}.sub{color:#555;font-size:.85rem;margin:.2rem 0 .6rem}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:10px}
table.board{border-collapse:collapse;font-size:.85rem;width:100%}table.board th,table.board td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}td.n{text-align:right;white-space:nowrap}
svg.bar{width:60px;height:10px;vertical-align:middle;background:#eee}
details.defs{font-size:.8rem;color:#444;margin-top:8px}details.defs p{margin:.3rem 0}
.pick{font-size:.9rem}footer{font-size:.8rem;color:#555;margin-top:20px}.empty{color:#888;font-style:italic}
"#;

/// The page's one script: errors are recorded on the page (a headless check reads them), and
/// the funnel's owner/campaign picker shows one set of charts at a time.
const SCRIPT: &str = r#"
document.querySelectorAll('select[data-group]').forEach(function(sel){
  sel.addEventListener('change',function(){
    document.querySelectorAll('.choice[data-group="'+sel.dataset.group+'"]').forEach(function(d){
      d.hidden = d.dataset.choice !== sel.value;
    });
  });
});
var drawn = 0;
document.querySelectorAll('svg.chart').forEach(function(s){ if (s.childElementCount > 1) drawn++; });
document.documentElement.dataset.charts = String(drawn);
document.documentElement.dataset.errors = JSON.stringify(window.__reportErrors);
"#;

const ERRORS_FIRST: &str = r#"window.__reportErrors=[];window.addEventListener('error',function(e){window.__reportErrors.push(String(e.message));});(function(){var ce=console.error;console.error=function(){window.__reportErrors.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};})();"#;

/// The whole page.
pub fn render(d: &ReportData) -> PolarsResult<String> {
    let sections = [
        tiles(d)?,
        funnel(d)?,
        time_in_stage(d)?,
        cohorts(d)?,
        pipeline(d)?,
        trends(d)?,
        reps(d)?,
        clv(d)?,
    ];
    let mut s = String::with_capacity(1 << 20);
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>crm-kpi report as of {}</title><script>{ERRORS_FIRST}</script><style>{STYLE}</style></head><body><header><h1>Sales KPIs as of {}</h1><p class="sub">Periods: {}; amounts in {}. Hover a chart title for its KPI's definition, a mark for its value.</p></header>"#,
        esc(&d.as_of),
        esc(&d.as_of),
        d.grain.name(),
        esc(&d.currency)
    );
    for sec in &sections {
        s.push_str(sec);
    }
    let _ = write!(
        s,
        r#"<footer>as_of <b data-footer="as_of">{}</b> · grain <b data-footer="grain">{}</b> · store <code>{}</code> generation <b data-footer="generation">{}</b> · config hash <code data-footer="config_hash">{}</code> · crm-kpi {}</footer><script>{SCRIPT}</script></body></html>"#,
        esc(&d.as_of),
        d.grain.name(),
        esc(&d.store),
        d.store_generation,
        esc(&d.config_hash),
        env!("CARGO_PKG_VERSION")
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(grain: Grain, fiscal_year_start_month: u32) -> ReportData {
        ReportData {
            frames: BTreeMap::new(),
            as_of: "2026-06-30".into(),
            grain,
            store: "s".into(),
            store_generation: 1,
            config_hash: "h".into(),
            currency: "USD".into(),
            stages: vec![("p".into(), "b".into()), ("p".into(), "a".into())],
            fiscal_year_start_month,
        }
    }

    #[test]
    fn periods_are_labelled_by_their_grain() {
        assert_eq!(data(Grain::Month, 1).period_label("2026-03-01"), "2026-03");
        assert_eq!(data(Grain::Quarter, 1).period_label("2026-04-01"), "2026-Q2");
        // Fiscal quarters starting in February: labelled by their start date.
        assert_eq!(data(Grain::Quarter, 2).period_label("2026-05-01"), "2026-05-01");
        assert_eq!(data(Grain::Quarter, 4).period_label("2026-10-01"), "2026-Q4");
        assert_eq!(data(Grain::Year, 1).period_label("2026-01-01"), "2026");
        assert_eq!(data(Grain::Year, 7).period_label("2025-07-01"), "2025-07-01");
        assert_eq!(data(Grain::Week, 1).period_label("2026-03-02"), "2026-03-02");
    }

    #[test]
    fn stages_follow_the_configured_order() {
        let d = data(Grain::Month, 1);
        assert!(d.stage_rank("p", "b") < d.stage_rank("p", "a"));
        assert_eq!(d.stage_rank("q", "a"), usize::MAX);
    }

    #[test]
    fn changes_are_relative_and_null_over_zero() {
        assert_eq!(change(Some(150.0), Some(100.0)), Some(0.5));
        assert_eq!(change(Some(50.0), Some(-100.0)), Some(-1.5));
        assert_eq!(change(Some(1.0), Some(0.0)), None);
        assert_eq!(change(None, Some(1.0)), None);
    }
}
