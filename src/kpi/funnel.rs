//! Funnel KPIs: stage funnel (any / ordered), time in stage with Kaplan-Meier survival.

use std::sync::Arc;

use polars::prelude::*;

use crate::config::{Config, Terminal};
use crate::kpi::periods::period_start;
use crate::kpi::{Inputs, Kpi, Params, as_of_col, by_dimensions, ratio};
use crate::stats::km::KaplanMeier;

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "stage_funnel",
            family: "funnel and pipeline",
            grain: "one row per mode (any/ordered) per dimension value (all, owner_id, campaign_id, \
                created_period) per funnel stage",
            definition: "Funnel steps: the non-terminal stages in pipeline order, then the won stage; lost \
                stages are left out. Over deals created at or before as_of: reached = deals with an event \
                into the stage at or before as_of (`any`), or into the stage and every earlier non-terminal \
                stage, in any order (`ordered`; never increases down the funnel). next_stage_rate = \
                reached at the next step / reached here (null at the last step or when nothing reached \
                this step), from_first_rate = reached / reached at the first step. created_period is the \
                start (YYYY-MM-DD) of the period, in the run's grain, in which the deal was created. Every \
                step is listed for every dimension value, with reached = 0 where no deal reached it.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("mode", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("stage", DataType::String),
                    ("stage_index", DataType::UInt32),
                    ("reached", DataType::UInt32),
                    ("next_stage_rate", DataType::Float64),
                    ("from_first_rate", DataType::Float64),
                ]
            },
            key: &["mode", "dimension", "dimension_value", "stage_index"],
            build: stage_funnel,
        },
        Kpi {
            name: "stage_duration",
            family: "funnel and pipeline",
            grain: "one row per non-terminal stage per dimension value (all, owner_id)",
            definition: "Visits to a non-terminal stage (one per stage event at or before as_of). A visit \
                is completed when the deal entered another stage or closed by as_of, else censored (still \
                in the stage at as_of; its time so far is as_of - entered_at). mean / p25 / median / p75 / \
                p90 of completed durations in days (linear interpolation; censored visits are never \
                averaged in). Kaplan-Meier estimate of time in stage over all visits (completed = event, \
                censored = censored; a visit censored at t is at risk at t): km_median_days = first time \
                with S(t) <= 0.5 (null if never), 95% CI where the exponential Greenwood (log-log) bounds \
                first reach 0.5. Stages without visits have no row. The step table is \
                stage_duration_survival.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("stage", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("visits", DataType::UInt32),
                    ("completed", DataType::UInt32),
                    ("censored", DataType::UInt32),
                    ("mean_days", DataType::Float64),
                    ("p25_days", DataType::Float64),
                    ("median_days", DataType::Float64),
                    ("p75_days", DataType::Float64),
                    ("p90_days", DataType::Float64),
                    ("km_median_days", DataType::Float64),
                    ("km_median_ci_low", DataType::Float64),
                    ("km_median_ci_high", DataType::Float64),
                ]
            },
            key: &["stage", "dimension", "dimension_value"],
            build: stage_duration,
        },
        Kpi {
            name: "stage_duration_survival",
            family: "funnel and pipeline",
            grain: "one row per non-terminal stage per dimension value (all, owner_id) per distinct visit \
                duration (days) with an event or a censoring",
            definition: "The Kaplan-Meier table of time in stage behind stage_duration: at t_days, visits \
                at risk (duration >= t), completed visits (events) and censored visits ending at t, \
                survival S(t) = product of (1 - events / at_risk) up to t, and its 95% confidence band by \
                the exponential Greenwood (log-log) formula.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("stage", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("t_days", DataType::Float64),
                    ("at_risk", DataType::UInt32),
                    ("events", DataType::UInt32),
                    ("censored", DataType::UInt32),
                    ("survival", DataType::Float64),
                    ("ci_low", DataType::Float64),
                    ("ci_high", DataType::Float64),
                ]
            },
            key: &["stage", "dimension", "dimension_value", "t_days"],
            build: stage_duration_survival,
        },
    ]
}

fn keys(first: &[&str], dim: Option<&str>) -> Vec<Expr> {
    first.iter().map(|c| col(*c)).chain(dim.map(col)).collect()
}

/// The funnel steps in order: (stage_index in the configured pipeline, stage, in_chain), where
/// the chain is the non-terminal stages (required by the `ordered` mode), then the won stage.
fn funnel_steps(cfg: &Config) -> Vec<(u32, &str, bool)> {
    let chain = cfg.stages.iter().enumerate().filter(|(_, s)| s.terminal.is_none());
    let won = cfg
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| s.terminal == Some(Terminal::Won));
    chain
        .chain(won)
        .map(|(i, s)| (i as u32, s.name.as_str(), s.terminal.is_none()))
        .collect()
}

/// One wide row per deal and per dimension value: for each funnel step `s`, `__any_s` (the deal
/// entered the step) and `__ord_s` (it entered the step and every earlier chain step), summed per
/// dimension value. Summing flags per deal (no deal x step grid, no join on dimension values)
/// keeps every dimension value, even one whose deals reached nothing, with 0 at every step.
fn stage_funnel(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let steps = funnel_steps(&p.config);
    let any = |s: usize| format!("__any_{s}");
    let ord = |s: usize| format!("__ord_{s}");
    let step_names: Vec<String> = steps.iter().map(|s| s.1.to_string()).collect();
    // Per deal that entered a funnel stage at or before as_of: one flag per step.
    let touched = i
        .stage_events
        .clone()
        .select([col("opportunity_id"), col("stage")])
        .filter(col("stage").is_in(lit(Series::new("s".into(), step_names)).implode(false), false))
        .group_by([col("opportunity_id")])
        .agg(
            steps
                .iter()
                .enumerate()
                .map(|(s, step)| col("stage").eq(lit(step.1)).any(true).alias(any(s)))
                .collect::<Vec<_>>(),
        );
    // `ordered`: a chain step counts when every chain step up to it was entered, in any order;
    // the won step when the whole chain was, and won.
    let mut ordered = Vec::with_capacity(steps.len());
    let mut chain_so_far = lit(true);
    for (s, step) in steps.iter().enumerate() {
        let flag = chain_so_far.clone().and(col(any(s)));
        if step.2 {
            chain_so_far = flag.clone();
        }
        ordered.push(flag.alias(ord(s)));
    }
    let per_deal = i
        .opportunities
        .clone()
        .select([
            col("opportunity_id"),
            col("owner_id"),
            col("campaign_id"),
            period_start(col("created_at"), p.grain, &p.config)
                .cast(DataType::String)
                .alias("created_period"),
        ])
        .join(
            touched,
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns(
            (0..steps.len())
                .map(|s| col(any(s)).fill_null(lit(false)))
                .collect::<Vec<_>>(),
        )
        .with_columns(ordered);
    let sums: Vec<Expr> = (0..steps.len())
        .flat_map(|s| [col(any(s)).sum().alias(any(s)), col(ord(s)).sum().alias(ord(s))])
        .collect();
    let counts = by_dimensions(&["owner_id", "campaign_id", "created_period"], |d| {
        Ok(match d {
            Some(d) => per_deal.clone().group_by([col(d)]).agg(sums.clone()),
            // No deal at all: no `all` rows either (as a group-by would give).
            None => per_deal
                .clone()
                .select(sums.iter().cloned().chain([len().alias("__deals")]).collect::<Vec<_>>())
                .filter(col("__deals").gt(lit(0))),
        })
    })?;
    // Long form: one row per mode x dimension value x step, with the rates from the wide row.
    let mut rows = Vec::with_capacity(2 * steps.len());
    for (mode, name) in [("any", any as fn(usize) -> String), ("ordered", ord)] {
        for (s, step) in steps.iter().enumerate() {
            let next = match s + 1 < steps.len() {
                true => ratio(col(name(s + 1)), col(name(s))),
                false => lit(NULL).cast(DataType::Float64),
            };
            rows.push(counts.clone().select([
                lit(mode).alias("mode"),
                col("dimension"),
                col("dimension_value"),
                lit(step.1).alias("stage"),
                lit(step.0).alias("stage_index"),
                col(name(s)).alias("reached"),
                next.alias("next_stage_rate"),
                ratio(col(name(s)), col(name(0))).alias("from_first_rate"),
                as_of_col(p),
            ]));
        }
    }
    concat(rows, UnionArgs::default())
}

/// Visits to non-terminal stages: `stage`, `owner_id` (the deal's), `completed` (ended by as_of)
/// and `days` (to the visit's end, or to as_of while censored).
/// Shared: stage_duration and stage_duration_survival read it.
fn stage_visits(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    i.shared("stage_visits", || stage_visits_plan(i, p))
}

fn stage_visits_plan(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(i.visits()?
        .filter(col("terminal").eq(lit(false)))
        // Only what its readers group and aggregate: at scale l it is 20M rows, held through
        // the funnel family.
        .select([
            col("stage"),
            col("owner_id"),
            col("exited_at").is_not_null().alias("completed"),
            (col("exited_at").fill_null(p.as_of_lit()) - col("entered_at"))
                .dt()
                .total_days(true)
                .alias("days"),
        ]))
}

/// Per stage × dimension value: the aggregates `aggs` plus the visits' durations and event flags
/// as lists (`__days`, `__events`) for the Kaplan-Meier step.
fn visits_by_stage(i: &Inputs, p: &Params, aggs: Vec<Expr>) -> PolarsResult<LazyFrame> {
    let visits = stage_visits(i, p)?;
    by_dimensions(&["owner_id"], |d| {
        let lists = [col("days").alias("__days"), col("completed").alias("__events")];
        Ok(visits
            .clone()
            .group_by(keys(&["stage"], d))
            .agg(aggs.iter().cloned().chain(lists).collect::<Vec<_>>()))
    })
}

/// Fits one Kaplan-Meier estimate per row of a frame with `__days` (List f64) and `__events`
/// (List bool) columns.
fn fit_rows(df: &DataFrame) -> PolarsResult<Vec<KaplanMeier>> {
    let (days, events) = (df.column("__days")?.list()?, df.column("__events")?.list()?);
    days.series_iter()
        .zip(events.series_iter())
        .map(|(d, e)| {
            let (Some(d), Some(e)) = (d, e) else {
                return Ok(KaplanMeier::default());
            };
            let (d, e) = (d.f64()?, e.bool()?);
            Ok(KaplanMeier::fit(
                d.iter().zip(e.iter()).filter_map(|(d, e)| Some((d?, e?))),
            ))
        })
        .collect()
}

/// The output schema of a Kaplan-Meier UDF: the input's without the list columns, plus `added`.
fn km_schema(added: &'static [(&'static str, DataType)]) -> Arc<dyn UdfSchema> {
    Arc::new(move |input: &Schema| -> PolarsResult<SchemaRef> {
        let mut s: Schema = input
            .iter()
            .filter(|(n, _)| !n.starts_with("__"))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (n, t) in added {
            s.with_column((*n).into(), t.clone());
        }
        Ok(Arc::new(s))
    })
}

const KM_MEDIAN_COLUMNS: &[(&str, DataType)] = &[
    ("km_median_days", DataType::Float64),
    ("km_median_ci_low", DataType::Float64),
    ("km_median_ci_high", DataType::Float64),
];

const KM_STEP_COLUMNS: &[(&str, DataType)] = &[
    ("t_days", DataType::Float64),
    ("at_risk", DataType::UInt32),
    ("events", DataType::UInt32),
    ("censored", DataType::UInt32),
    ("survival", DataType::Float64),
    ("ci_low", DataType::Float64),
    ("ci_high", DataType::Float64),
];

fn without_lists(df: &DataFrame) -> DataFrame {
    df.drop_many(["__days", "__events"])
}

/// UDF: one row per group in, the same row with the KM median and its CI out.
fn km_medians(df: DataFrame) -> PolarsResult<DataFrame> {
    let fits = fit_rows(&df)?;
    let (ci_low, ci_high): (Vec<_>, Vec<_>) = fits.iter().map(|k| k.median_ci()).unzip();
    let median: Vec<Option<f64>> = fits.iter().map(|k| k.median()).collect();
    without_lists(&df).hstack(&[
        Column::new("km_median_days".into(), median),
        Column::new("km_median_ci_low".into(), ci_low),
        Column::new("km_median_ci_high".into(), ci_high),
    ])
}

/// UDF: one row per group in, one row per KM step out (the group's other columns repeated).
fn km_steps(df: DataFrame) -> PolarsResult<DataFrame> {
    let fits = fit_rows(&df)?;
    let idx: Vec<IdxSize> = fits
        .iter()
        .enumerate()
        .flat_map(|(r, k)| std::iter::repeat_n(r as IdxSize, k.steps.len()))
        .collect();
    let steps: Vec<_> = fits.iter().flat_map(|k| k.steps.iter().copied()).collect();
    let col_of = |name: &str, f: fn(&crate::stats::km::Step) -> f64| {
        Column::new(name.into(), steps.iter().map(f).collect::<Vec<_>>())
    };
    let count_of = |name: &str, f: fn(&crate::stats::km::Step) -> u32| {
        Column::new(name.into(), steps.iter().map(f).collect::<Vec<_>>())
    };
    without_lists(&df).take(&IdxCa::from_vec("idx".into(), idx))?.hstack(&[
        col_of("t_days", |s| s.t),
        count_of("at_risk", |s| s.at_risk),
        count_of("events", |s| s.events),
        count_of("censored", |s| s.censored),
        col_of("survival", |s| s.survival),
        col_of("ci_low", |s| s.ci_low),
        col_of("ci_high", |s| s.ci_high),
    ])
}

// The Kaplan-Meier step runs in Rust on each group's list of durations, as an opaque UDF node of
// the lazy plan (`LazyFrame::map` with its output schema declared): the plan stays lazy, so the
// visits it reads are shared with the other KPIs by `collect_all`. No pushdown through the UDF
// (its output columns are not its input's), and it runs in memory under the streaming engine.
fn stage_duration(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let done = col("days").filter(col("completed"));
    let q = |x: f64, name: &str| done.clone().quantile(lit(x), QuantileMethod::Linear).alias(name);
    let aggs = vec![
        len().cast(DataType::UInt32).alias("visits"),
        col("completed").sum().cast(DataType::UInt32).alias("completed"),
        col("completed").not().sum().cast(DataType::UInt32).alias("censored"),
        done.clone().mean().alias("mean_days"),
        q(0.25, "p25_days"),
        q(0.5, "median_days"),
        q(0.75, "p75_days"),
        q(0.9, "p90_days"),
    ];
    Ok(visits_by_stage(i, p, aggs)?
        .map(
            km_medians,
            OptFlags::empty(),
            Some(km_schema(KM_MEDIAN_COLUMNS)),
            Some("kaplan_meier_median"),
        )
        .with_column(as_of_col(p)))
}

fn stage_duration_survival(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(visits_by_stage(i, p, vec![])?
        .map(
            km_steps,
            OptFlags::empty(),
            Some(km_schema(KM_STEP_COLUMNS)),
            Some("kaplan_meier_steps"),
        )
        .with_column(as_of_col(p)))
}
