//! Funnel and pipeline: how deals move through the stages and close.
//!
//! - the stage funnel and the time spent in each stage (Kaplan-Meier);
//! - the open pipeline per stage at each period end (reconstructed from stage events) and the
//!   size of won deals;
//! - closed deals: win rate, loss reasons, sales cycle;
//! - forecasts against the weighted pipeline and the won amount; sales velocity.

use std::sync::Arc;

use polars::prelude::*;

use crate::kpi::spark::Spark;

use crate::config::{Config, Terminal};
use crate::kpi::inputs::{open_at, open_snapshots, resolve_stages, snapshot_dates, stage_frame};
use crate::kpi::periods::{current_period_start, day_start, period_start, period_start_of_date};
use crate::kpi::rules::{is_closed, is_lost, is_open, is_won};
use crate::kpi::{Family, Inputs, Kpi, Params, as_of_col, by_dimensions, group_keys, ratio, stable_sum};
use crate::stats::km::KaplanMeier;
use rayon::prelude::*;

pub fn kpis() -> Vec<Kpi> {
    [
        stage_kpis(),
        pipeline_kpis(),
        deal_kpis(),
        forecast_kpis(),
        velocity_kpis(),
        snapshot_kpis(),
    ]
    .concat()
}

fn stage_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "stage_funnel",
            family: Family::Funnel,
            grain: "one row per mode (any/ordered) per dimension value (all, owner_id, campaign_id, \
                created_period) per pipeline per funnel stage",
            definition: "Funnel steps, per pipeline: its non-terminal stages in order, then its won stage; \
                lost stages are left out; stage_index is the stage's position in its pipeline. A stage event \
                counts in its deal's pipeline (the opportunity's `pipeline` when configured, else the first \
                pipeline); a stage that pipeline lacks counts in the first pipeline that has it (the deal \
                moved). Over deals created at or before as_of: reached = deals with an event \
                into the stage at or before as_of (`any`), or into the stage and every earlier non-terminal \
                stage of its pipeline, in any order (`ordered`; never increases down the funnel). \
                next_stage_rate = reached at the pipeline's next step / reached here (null at its last step \
                or when nothing reached this step), from_first_rate = reached / reached at the pipeline's \
                first step. created_period is the \
                start (YYYY-MM-DD) of the period, in the run's grain, in which the deal was created. Every \
                step of every pipeline is listed for every dimension value, with reached = 0 where no deal \
                reached it.",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("mode", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("pipeline", DataType::String),
                    ("stage", DataType::String),
                    ("stage_index", DataType::Int64),
                    ("reached", DataType::Int64),
                    ("next_stage_rate", DataType::Float64),
                    ("from_first_rate", DataType::Float64),
                ]
            },
            key: &["mode", "dimension", "dimension_value", "pipeline", "stage_index"],
            build: stage_funnel,
            spark: Spark::sql(include_str!("spark/stage_funnel.sql")),
        },
        Kpi {
            name: "stage_duration",
            family: Family::Funnel,
            grain: "one row per non-terminal stage of each pipeline per dimension value (all, owner_id)",
            definition: "Visits to a non-terminal stage (one per stage event at or before as_of, in the \
                pipeline the event is read in, as in stage_funnel). A visit \
                is completed when the deal entered another stage or closed by as_of, else censored (still \
                in the stage at as_of; its time so far is as_of - entered_at). mean / p25 / median / p75 / \
                p90 of completed durations in days (linear interpolation; censored visits are never \
                averaged in). Kaplan-Meier estimate of time in stage over all visits (completed = event, \
                censored = censored; a visit censored at t is at risk at t): km_median_days = first time \
                with S(t) <= 0.5 (null if never), 95% CI where the exponential Greenwood (log-log) bounds \
                first reach 0.5. Stages without visits have no row. The step table is \
                stage_duration_survival.",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("pipeline", DataType::String),
                    ("stage", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("visits", DataType::Int64),
                    ("completed", DataType::Int64),
                    ("censored", DataType::Int64),
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
            key: &["pipeline", "stage", "dimension", "dimension_value"],
            build: stage_duration,
            spark: Spark::sql(include_str!("spark/stage_duration.sql")),
        },
        Kpi {
            name: "stage_duration_survival",
            family: Family::Funnel,
            grain: "one row per non-terminal stage of each pipeline per dimension value (all, owner_id) per \
                distinct visit duration (days) with an event or a censoring",
            definition: "The Kaplan-Meier table of time in stage behind stage_duration: at t_days, visits \
                at risk (duration >= t), completed visits (events) and censored visits ending at t, \
                survival S(t) = product of (1 - events / at_risk) up to t, and its 95% confidence band by \
                the exponential Greenwood (log-log) formula.",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("pipeline", DataType::String),
                    ("stage", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("t_days", DataType::Float64),
                    ("at_risk", DataType::Int64),
                    ("events", DataType::Int64),
                    ("censored", DataType::Int64),
                    ("survival", DataType::Float64),
                    ("ci_low", DataType::Float64),
                    ("ci_high", DataType::Float64),
                ]
            },
            key: &["pipeline", "stage", "dimension", "dimension_value", "t_days"],
            build: stage_duration_survival,
            spark: Spark::sql(include_str!("spark/stage_duration_survival.sql")),
        },
    ]
}

/// One step of the stage funnel.
struct FunnelStep<'a> {
    pipeline: &'a str,
    stage: &'a str,
    /// The stage's position in its pipeline.
    stage_index: u32,
    /// Its position in the whole configured list (`inputs::stage_frame`'s stage_index).
    global_index: u32,
    /// A non-terminal stage: part of the chain the `ordered` mode requires.
    in_chain: bool,
    /// The pipeline's first step.
    first: bool,
    /// The pipeline's last step.
    last: bool,
}

/// The funnel steps in order, pipeline after pipeline: each pipeline's non-terminal stages (the
/// chain the `ordered` mode requires), then its won stage.
fn funnel_steps(cfg: &Config) -> Vec<FunnelStep<'_>> {
    let mut steps = Vec::new();
    for pipeline in cfg.pipeline_names() {
        let stages: Vec<(usize, &crate::config::Stage)> = cfg
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pipeline == pipeline)
            .collect();
        let start = stages.first().map_or(0, |(g, _)| *g);
        let chain = stages.iter().filter(|(_, s)| s.terminal.is_none());
        let won = stages.iter().filter(|(_, s)| s.terminal == Some(Terminal::Won));
        let from = steps.len();
        steps.extend(chain.chain(won).map(|(g, s)| FunnelStep {
            pipeline,
            stage: s.name.as_str(),
            stage_index: (g - start) as u32,
            global_index: *g as u32,
            in_chain: s.terminal.is_none(),
            first: false,
            last: false,
        }));
        if steps.len() > from {
            steps[from].first = true;
            let n = steps.len();
            steps[n - 1].last = true;
        }
    }
    steps
}

/// One wide row per deal and per dimension value: for each funnel step `s`, `__any_s` (the deal
/// entered the step) and `__ord_s` (it entered the step and every earlier chain step of its
/// pipeline), summed per dimension value. Summing flags per deal (no deal x step grid, no join on
/// dimension values) keeps every dimension value, even one whose deals reached nothing, with 0
/// at every step of every pipeline.
fn stage_funnel(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let steps = funnel_steps(cfg);
    let any = |s: usize| format!("__any_{s}");
    let ord = |s: usize| format!("__ord_{s}");
    // Per deal that entered a funnel stage at or before as_of: one flag per step. With one
    // pipeline a stage is its name; with several, (pipeline, name) as `resolve_stages` reads it.
    let single = cfg.pipeline_names().len() == 1;
    let events = i.stage_events.clone().select([col("opportunity_id"), col("stage")]);
    let events = match single {
        true => events,
        false => resolve_stages(events, i.opportunities.clone(), cfg, &[]),
    };
    let is_step = |s: &FunnelStep| match single {
        true => col("stage").eq(lit(s.stage.to_string())),
        false => col("stage_index").eq(lit(s.global_index)),
    };
    let any_step = steps.iter().map(is_step).reduce(|a, b| a.or(b)).unwrap_or(lit(false));
    let touched = events.filter(any_step).group_by([col("opportunity_id")]).agg(
        steps
            .iter()
            .enumerate()
            .map(|(s, step)| is_step(step).any(true).alias(any(s)))
            .collect::<Vec<_>>(),
    );
    // `ordered`: a chain step counts when every chain step of its pipeline up to it was
    // entered, in any order; the won step when the whole chain was, and won.
    let mut ordered = Vec::with_capacity(steps.len());
    let mut chain_so_far = lit(true);
    for (s, step) in steps.iter().enumerate() {
        if step.first {
            chain_so_far = lit(true);
        }
        let flag = chain_so_far.clone().and(col(any(s)));
        if step.in_chain {
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
    // Long form: one row per mode x dimension value x step, with the rates from the wide row
    // (next step and first step of the same pipeline).
    let mut rows = Vec::with_capacity(2 * steps.len());
    for (mode, name) in [("any", any as fn(usize) -> String), ("ordered", ord)] {
        let mut first = 0;
        for (s, step) in steps.iter().enumerate() {
            if step.first {
                first = s;
            }
            let next = match step.last {
                false => ratio(col(name(s + 1)), col(name(s))),
                true => lit(NULL).cast(DataType::Float64),
            };
            rows.push(counts.clone().select([
                lit(mode).alias("mode"),
                col("dimension"),
                col("dimension_value"),
                lit(step.pipeline).alias("pipeline"),
                lit(step.stage).alias("stage"),
                lit(step.stage_index).alias("stage_index"),
                col(name(s)).alias("reached"),
                next.alias("next_stage_rate"),
                ratio(col(name(s)), col(name(first))).alias("from_first_rate"),
                as_of_col(p),
            ]));
        }
    }
    concat(rows, UnionArgs::default())
}

/// Visits to non-terminal stages: `stage_index`, `owner_id` (the deal's), `completed` (ended by as_of)
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
            col("stage_index"),
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
    let stages = stage_frame(&p.config).select([col("stage_index"), col("pipeline"), col("stage")]);
    Ok(by_dimensions(&["owner_id"], |d| {
        let lists = [col("days").alias("__days"), col("completed").alias("__events")];
        Ok(visits
            .clone()
            .group_by(group_keys(&["stage_index"], d))
            .agg(aggs.iter().cloned().chain(lists).collect::<Vec<_>>()))
    })?
    .join(
        stages,
        [col("stage_index")],
        [col("stage_index")],
        JoinArgs::new(JoinType::Left),
    )
    .drop(cols(["stage_index"])))
}

/// Fits one Kaplan-Meier estimate per row of a frame with `__days` (List f64) and `__events`
/// (List bool) columns. The groups are fitted in parallel (each fit is independent and sorts
/// its own durations; the results keep the rows' order): one after the other, the fits of the
/// ~800 groups at scale m (3.1M visits, the `all` rows holding every visit of their stage) held
/// one core while the other idled.
fn fit_rows(df: &DataFrame) -> PolarsResult<Vec<KaplanMeier>> {
    let (days, events) = (df.column("__days")?.list()?, df.column("__events")?.list()?);
    let rows: Vec<(Option<Series>, Option<Series>)> = days.series_iter().zip(events.series_iter()).collect();
    rows.into_par_iter()
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
    ("at_risk", DataType::Int64),
    ("events", DataType::Int64),
    ("censored", DataType::Int64),
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
        Column::new(name.into(), steps.iter().map(|s| i64::from(f(s))).collect::<Vec<_>>())
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
// visits it reads (the shared `stage_visits` frame) are read by both duration KPIs of the
// family's collect. No pushdown through the UDF
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

fn pipeline_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "pipeline_snapshot",
            family: Family::Funnel,
            grain: "one row per snapshot date per pipeline per stage",
            definition: "Open pipeline per stage at as_of and at the end (last local day, end of that day) of \
                every period from the first deal's creation period up to the period before as_of's. A deal \
                counts at a snapshot instant T when it was created at or before T and is open at T, \
                reconstructed from its stage events, not from its current stage: its last stage event at or \
                before T is not terminal, and the export's own close does not apply (a won/lost export is closed \
                from its closed_at when it has no won/lost event or is later than all of them; a deal the export \
                shows open after a won/lost last event is reopened at its updated_at: docs/decisions.md). Its stage is that last event's stage, and its pipeline that \
                stage's pipeline; a deal open without any stage event yet is reported under a null stage \
                of its pipeline at as_of (weighted_amount null). open_deals, amount (base \
                currency, current amount), weighted_amount = sum of amount x the stage's configured win \
                probability (0-1), mean_age_days = mean days from creation to T. Every non-terminal \
                configured stage of every pipeline has a row at every snapshot (0 deals, null age when \
                empty).",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("snapshot_at", DataType::Date),
                    ("pipeline", DataType::String),
                    ("stage", DataType::String),
                    ("open_deals", DataType::Int64),
                    ("amount", DataType::Float64),
                    ("weighted_amount", DataType::Float64),
                    ("mean_age_days", DataType::Float64),
                ]
            },
            key: &["snapshot_at", "pipeline", "stage"],
            build: pipeline_snapshot,
            spark: Spark::sql(include_str!("spark/pipeline_snapshot.sql")),
        },
        Kpi {
            name: "deal_size",
            family: Family::Funnel,
            grain: "one row per close period per dimension value (all, owner_id, pipeline)",
            definition: "Deals won in the period (status at as_of, close date cut in the configured timezone): \
                won deals, mean and median amount in base currency, and the bucket mix by the configured \
                deal_size_buckets [b0, ..., bn]: small = amount < b0, medium = b0 <= amount < bn, large = \
                amount >= bn (with a single threshold medium is always 0). Deals without a base amount are \
                counted in won_deals but in no bucket. pipeline: the deal's at as_of, as in win_rate.",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("won_deals", DataType::Int64),
                    ("mean_amount", DataType::Float64),
                    ("median_amount", DataType::Float64),
                    ("small", DataType::Int64),
                    ("medium", DataType::Int64),
                    ("large", DataType::Int64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: deal_size,
            spark: Spark::sql(include_str!("spark/deal_size.sql")),
        },
    ]
}

fn pipeline_snapshot(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let open = open_snapshots(i, p)?;
    let agg = open
        .with_column((col("__t") - col("created_at")).dt().total_days(true).alias("__age"))
        .group_by([col("snapshot_at"), col("pipeline"), col("__stage").alias("stage")])
        .agg([
            len().cast(DataType::UInt32).alias("open_deals"),
            col("amount_base").sum().alias("amount"),
            when(col("__probability").null_count().eq(len()))
                .then(lit(NULL).cast(DataType::Float64))
                .otherwise((col("amount_base") * col("__probability")).sum())
                .alias("weighted_amount"),
            col("__age").mean().alias("mean_age_days"),
        ]);
    // Dense grid: every open (non-terminal) configured stage at every snapshot, plus the rows
    // found (deals without a stage event, stages no longer configured).
    let stages = stage_frame(&p.config)
        .filter(col("terminal").not())
        .select([col("pipeline"), col("stage")]);
    let grid = snapshot_dates(i, p)?.cross_join(stages, None);
    let keys = concat(
        [
            grid,
            agg.clone().select([col("snapshot_at"), col("pipeline"), col("stage")]),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let on = [col("snapshot_at"), col("pipeline"), col("stage")];
    Ok(keys
        .join(
            agg,
            on.clone(),
            on,
            JoinArgs {
                nulls_equal: true,
                ..JoinArgs::new(JoinType::Left)
            },
        )
        .with_columns([
            col("open_deals").fill_null(lit(0u32)),
            col("amount").fill_null(lit(0.0)),
            when(col("open_deals").is_null().and(col("stage").is_not_null()))
                .then(lit(0.0))
                .otherwise(col("weighted_amount"))
                .alias("weighted_amount"),
            as_of_col(p),
        ]))
}

fn deal_size(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let b = &p.config.deal_size_buckets;
    let (lo, hi) = (b[0], b[b.len() - 1]);
    let amount = || col("amount_base");
    let won = i
        .deals()?
        .filter(is_won())
        .with_column(period_start(col("closed_at"), p.grain, &p.config).alias("period_start"));
    by_dimensions(&["owner_id", "pipeline"], |d| {
        let keys: Vec<Expr> = std::iter::once(col("period_start")).chain(d.map(col)).collect();
        Ok(won.clone().group_by(keys).agg([
            len().cast(DataType::UInt32).alias("won_deals"),
            amount().mean().alias("mean_amount"),
            amount().median().alias("median_amount"),
            amount().lt(lit(lo)).sum().cast(DataType::UInt32).alias("small"),
            amount()
                .gt_eq(lit(lo))
                .and(amount().lt(lit(hi)))
                .sum()
                .cast(DataType::UInt32)
                .alias("medium"),
            amount().gt_eq(lit(hi)).sum().cast(DataType::UInt32).alias("large"),
        ]))
    })
    .map(|lf| lf.with_column(as_of_col(p)))
}

// Closed deals.

fn deal_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "win_rate",
            family: Family::Funnel,
            grain: "one row per close period per dimension value (all, owner_id, source, region, pipeline)",
            definition: "Deals closed in the period (status at as_of, close date cut in the configured timezone): \
                won, lost, count win rate = won / (won + lost), won and lost amounts in base currency, \
                amount win rate = won amount / (won + lost amount). Null when nothing closed. The pipeline \
                dimension is the deal's pipeline at as_of: that of its last stage event's stage, else the \
                opportunity's `pipeline` when configured, else the first pipeline.",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("won", DataType::Int64),
                    ("lost", DataType::Int64),
                    ("win_rate", DataType::Float64),
                    ("won_amount", DataType::Float64),
                    ("lost_amount", DataType::Float64),
                    ("amount_win_rate", DataType::Float64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: win_rate,
            spark: Spark::sql(include_str!("spark/win_rate.sql")),
        },
        Kpi {
            name: "loss_reasons",
            family: Family::Funnel,
            grain: "one row per close period per loss reason",
            definition: "Deals lost in the period by loss_reason (null reason reported as `unspecified`): \
                lost deals, lost amount in base currency, share of the period's lost deals.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("loss_reason", DataType::String),
                    ("lost", DataType::Int64),
                    ("lost_amount", DataType::Float64),
                    ("share", DataType::Float64),
                ]
            },
            key: &["period_start", "loss_reason"],
            build: loss_reasons,
            spark: Spark::sql(include_str!("spark/loss_reasons.sql")),
        },
        Kpi {
            name: "sales_cycle",
            family: Family::Funnel,
            grain: "one row per close period per outcome (won/lost) per dimension value (all, owner_id, \
                pipeline)",
            definition: "Days from a deal's creation to its close, for deals closed in the period, won and \
                lost separately: count, mean, median and p90 (linear interpolation). Open deals are not \
                averaged in; their age is in open_deals_per_rep and pipeline_snapshot. pipeline: the deal's \
                at as_of, as in win_rate.",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("outcome", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("deals", DataType::Int64),
                    ("mean_days", DataType::Float64),
                    ("median_days", DataType::Float64),
                    ("p90_days", DataType::Float64),
                ]
            },
            key: &["period_start", "outcome", "dimension", "dimension_value"],
            build: sales_cycle,
            spark: Spark::sql(include_str!("spark/sales_cycle.sql")),
        },
    ]
}

/// Deals closed at as_of, with `period_start` of their close.
fn closed(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(i.deals()?
        .filter(is_closed())
        .with_column(period_start(col("closed_at"), p.grain, &p.config).alias("period_start")))
}

fn win_rate(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let closed = closed(i, p)?;
    let won = is_won();
    let lost = is_lost();
    Ok(by_dimensions(&["owner_id", "source", "region", "pipeline"], |d| {
        Ok(closed.clone().group_by(group_keys(&["period_start"], d)).agg([
            won.clone().sum().cast(DataType::UInt32).alias("won"),
            lost.clone().sum().cast(DataType::UInt32).alias("lost"),
            col("amount_base").filter(won.clone()).sum().alias("won_amount"),
            col("amount_base").filter(lost.clone()).sum().alias("lost_amount"),
        ]))
    })?
    .with_columns([
        ratio(col("won"), col("won") + col("lost")).alias("win_rate"),
        ratio(col("won_amount"), col("won_amount") + col("lost_amount")).alias("amount_win_rate"),
        as_of_col(p),
    ]))
}

fn loss_reasons(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(closed(i, p)?
        .filter(is_lost())
        .with_column(col("loss_reason").fill_null(lit("unspecified")))
        .group_by([col("period_start"), col("loss_reason")])
        .agg([
            len().cast(DataType::UInt32).alias("lost"),
            col("amount_base").sum().alias("lost_amount"),
        ])
        .with_columns([
            ratio(col("lost"), col("lost").sum().over([col("period_start")])?).alias("share"),
            as_of_col(p),
        ]))
}

fn sales_cycle(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let closed = closed(i, p)?
        .with_column(
            (col("closed_at") - col("created_at"))
                .dt()
                .total_days(true)
                .alias("days"),
        )
        .rename(["status"], ["outcome"], true);
    by_dimensions(&["owner_id", "pipeline"], |d| {
        Ok(closed
            .clone()
            .group_by(group_keys(&["period_start", "outcome"], d))
            .agg([
                len().cast(DataType::UInt32).alias("deals"),
                col("days").mean().alias("mean_days"),
                col("days").median().alias("median_days"),
                col("days").quantile(lit(0.9), QuantileMethod::Linear).alias("p90_days"),
            ]))
    })
    .map(|lf| lf.with_column(as_of_col(p)))
}

fn forecast_kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "forecast_vs_actual",
        family: Family::Funnel,
        grain: "one row per period per owner per pipeline with a forecast, pipeline forecast or won amount, up \
            to as_of's period; with several pipelines also one row per period and owner for all pipelines \
            (pipeline null)",
        definition: "Per period (the run grain, cut in the configured timezone) and owner, for periods up to \
            as_of's: submitted_forecast = the owner's latest forecast of the run grain for the period \
            submitted at or before as_of, category commit (a forecast without a category counts as commit; \
            its period_start is mapped to the period containing it), in base currency, null if none; \
            pipeline_forecast = sum of amount x stage probability of the deals open when the period \
            starts (at the last instant before it, i.e. the previous period's pipeline_snapshot, \
            reconstructed from stage events; the stage at that instant gives the probability, a deal \
            without a stage event yet counts 0) whose expected_close_date (current value) falls in the \
            period; actual = base amount of the deals won \
            in the period (status at as_of); attainment = actual / submitted_forecast and error = actual - \
            submitted_forecast (null without a forecast, attainment null for a zero forecast). pipeline: \
            the forecast's own (forecasts.pipeline); the pipeline of the deal's stage at the period's \
            start for pipeline_forecast (without a stage event, the deal's); the deal's pipeline at as_of \
            for actual. A forecast naming no pipeline is for the only pipeline when there is one; with \
            several it is for all of them: it is compared in the row with pipeline null, whose \
            pipeline_forecast and actual sum every pipeline's.",
        version: 2,
        columns: || {
            vec![
                ("as_of", DataType::Date),
                ("period_start", DataType::Date),
                ("owner_id", DataType::String),
                ("pipeline", DataType::String),
                ("submitted_forecast", DataType::Float64),
                ("pipeline_forecast", DataType::Float64),
                ("actual", DataType::Float64),
                ("attainment", DataType::Float64),
                ("error", DataType::Float64),
            ]
        },
        key: &["period_start", "owner_id", "pipeline"],
        build: forecast_vs_actual,
        spark: Spark::sql(include_str!("spark/forecast_vs_actual.sql")),
    }]
}

fn forecast_vs_actual(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let cur = current_period_start(p);
    // `__pk`: the pipeline, or ALL for the all-pipelines rows (joined by value, while a null
    // owner matches nothing, as before pipelines).
    const ALL: &str = "\u{1f}all";
    let multi = cfg.pipeline_names().len() > 1;
    let keys = [col("period_start"), col("owner_id"), col("__pk")];
    // Per pipeline (`pipeline` of `rows`), and with several pipelines all of them together.
    let per_pipeline = |rows: LazyFrame, value: Expr, name: &str| -> PolarsResult<LazyFrame> {
        let by = |pk: Expr| {
            rows.clone()
                .group_by([col("period_start"), col("owner_id"), pk.alias("__pk")])
                .agg([stable_sum(value.clone()).alias(name)])
        };
        let one = by(col("pipeline"));
        if multi {
            concat([one, by(lit(ALL))], UnionArgs::default())
        } else {
            Ok(one)
        }
    };
    let forecast_pipeline = if multi {
        col("pipeline").fill_null(lit(ALL))
    } else {
        col("pipeline").fill_null(lit(cfg.default_pipeline()))
    };

    let submitted = i
        .forecasts
        .clone()
        .filter(
            col("grain")
                .eq(lit(p.grain.name()))
                .and(col("category").eq(lit("commit")).or(col("category").is_null())),
        )
        .with_columns([
            period_start_of_date(col("period_start"), p.grain, cfg).alias("period_start"),
            forecast_pipeline.alias("__pk"),
        ])
        .filter(col("period_start").lt_eq(cur.clone()))
        .group_by(keys.clone())
        .agg([col("amount_base")
            .sort_by(
                [col("submitted_at"), col("amount_base")],
                SortMultipleOptions::default(),
            )
            .last()
            .alias("submitted_forecast")]);

    // Each deal is looked at once: at the start of the period its expected close falls in.
    let expected = i
        .deals()?
        .filter(col("expected_close_date").is_not_null())
        .select([
            col("opportunity_id"),
            col("owner_id"),
            col("created_at"),
            col("closed_at"),
            col("amount_base"),
            col("pipeline"),
            period_start_of_date(col("expected_close_date"), p.grain, cfg).alias("period_start"),
        ])
        .filter(col("period_start").lt_eq(cur))
        .with_column(
            day_start(col("period_start"), p)
                .dt()
                .offset_by(lit("-1us"))
                .alias("__t"),
        );
    let pipeline = per_pipeline(
        open_at(expected, i, p)?.with_column(col("__pipeline").alias("pipeline")),
        col("amount_base") * col("__probability"),
        "pipeline_forecast",
    )?;

    let actual = per_pipeline(
        i.deals()?
            .filter(is_won())
            .with_column(period_start(col("closed_at"), p.grain, cfg).alias("period_start")),
        col("amount_base"),
        "actual",
    )?;

    let rows = concat(
        [
            submitted.clone().select(keys.clone()),
            pipeline.clone().select(keys.clone()),
            actual.clone().select(keys.clone()),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let left = || JoinArgs::new(JoinType::Left);
    Ok(rows
        .join(submitted, keys.clone(), keys.clone(), left())
        .join(pipeline, keys.clone(), keys.clone(), left())
        .join(actual, keys.clone(), keys, left())
        .with_columns([
            col("pipeline_forecast").fill_null(lit(0.0)),
            col("actual").fill_null(lit(0.0)),
        ])
        .with_columns([
            ratio(col("actual"), col("submitted_forecast")).alias("attainment"),
            (col("actual") - col("submitted_forecast")).alias("error"),
            when(col("__pk").eq(lit(ALL)))
                .then(lit(NULL).cast(DataType::String))
                .otherwise(col("__pk"))
                .alias("pipeline"),
            as_of_col(p),
        ])
        .drop(cols(["__pk"])))
}

fn velocity_kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "sales_velocity",
        family: Family::Funnel,
        grain: "one row per period per dimension value (all, owner_id, pipeline) with open deals at the \
                period's end or deals closed in it",
        definition: "Revenue per day the pipeline generates: velocity = open_deals x win_rate x \
                mean_won_amount / mean_cycle_days. open_deals = deals open at the period's end (for as_of's \
                period: at as_of), reconstructed from stage events as in pipeline_snapshot; win_rate = won \
                / (won + lost) of deals closed in the period (status at as_of, as in win_rate); \
                mean_won_amount = mean base amount of deals won in the period; mean_cycle_days = mean days \
                from creation to close of those won deals. velocity is null when any factor is null or \
                the cycle is 0. By pipeline: open deals in the pipeline of their stage at the period's end \
                (as in pipeline_snapshot), closed deals in their pipeline at as_of.",
        version: 2,
        columns: || {
            vec![
                ("as_of", DataType::Date),
                ("period_start", DataType::Date),
                ("dimension", DataType::String),
                ("dimension_value", DataType::String),
                ("open_deals", DataType::Int64),
                ("win_rate", DataType::Float64),
                ("mean_won_amount", DataType::Float64),
                ("mean_cycle_days", DataType::Float64),
                ("velocity", DataType::Float64),
            ]
        },
        key: &["period_start", "dimension", "dimension_value"],
        build: sales_velocity,
        spark: Spark::sql(include_str!("spark/sales_velocity.sql")),
    }]
}

fn sales_velocity(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let open = open_snapshots(i, p)?;
    let won = || is_won();
    let closed = i.deals()?.filter(is_closed()).with_columns([
        period_start(col("closed_at"), p.grain, &p.config).alias("period_start"),
        (col("closed_at") - col("created_at"))
            .dt()
            .total_days(true)
            .alias("__days"),
    ]);
    by_dimensions(&["owner_id", "pipeline"], |d| {
        let keys: Vec<Expr> = std::iter::once(col("period_start")).chain(d.map(col)).collect();
        let opened = open.clone().group_by(keys.clone()).agg([len().alias("open_deals")]);
        let closed = closed.clone().group_by(keys.clone()).agg([
            won().sum().alias("__won"),
            is_lost().sum().alias("__lost"),
            col("amount_base").filter(won()).mean().alias("mean_won_amount"),
            col("__days").filter(won()).mean().alias("mean_cycle_days"),
        ]);
        let all = concat(
            [opened.clone().select(keys.clone()), closed.clone().select(keys.clone())],
            UnionArgs::default(),
        )?
        .unique(None, UniqueKeepStrategy::Any);
        Ok(all
            .join(opened, keys.clone(), keys.clone(), JoinArgs::new(JoinType::Left))
            .join(closed, keys.clone(), keys, JoinArgs::new(JoinType::Left)))
    })
    .map(|lf| {
        lf.with_columns([
            col("open_deals").fill_null(lit(0u32)),
            ratio(col("__won"), col("__won") + col("__lost")).alias("win_rate"),
        ])
        .with_columns([
            ratio(
                col("open_deals") * col("win_rate") * col("mean_won_amount"),
                col("mean_cycle_days"),
            )
            .alias("velocity"),
            as_of_col(p),
        ])
    })
}

fn snapshot_kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "deal_snapshot",
        family: Family::Funnel,
        grain: "one row per deal created at or before as_of",
        definition: "Every deal as it stood at as_of, to drill from any KPI to the deals behind it (as \
            Fivetran's salesforce__opportunity_enhanced does): its own columns (account, owner, lead and \
            the lead's source, campaign, region, base amount, creation, expected close, loss reason), \
            status, pipeline, stage and closed_at at as_of (rebuilt from the stage events up to as_of, as every \
            KPI reads them, with the export's close or reopening where the export and the history \
            disagree: docs/decisions.md), stage_entered_at (its last stage event at or before as_of), age_days = days \
            from creation to its close (to as_of while open), days_in_stage = days from \
            stage_entered_at to as_of for an open deal (null for a closed deal or one without stage \
            events), stage_events = its stage events at or before as_of, first_stage_at = the first of \
            them.",
        version: 2,
        columns: || {
            vec![
                ("as_of", DataType::Date),
                ("opportunity_id", DataType::String),
                ("account_id", DataType::String),
                ("owner_id", DataType::String),
                ("lead_id", DataType::String),
                ("source", DataType::String),
                ("campaign_id", DataType::String),
                ("region", DataType::String),
                ("status", DataType::String),
                ("pipeline", DataType::String),
                ("stage", DataType::String),
                ("amount_base", DataType::Float64),
                ("created_at", crate::kpi::utc()),
                ("closed_at", crate::kpi::utc()),
                ("expected_close_date", DataType::Date),
                ("loss_reason", DataType::String),
                ("age_days", DataType::Float64),
                ("stage_entered_at", crate::kpi::utc()),
                ("days_in_stage", DataType::Float64),
                ("stage_events", DataType::Int64),
                ("first_stage_at", crate::kpi::utc()),
            ]
        },
        key: &["opportunity_id"],
        build: deal_snapshot,
        spark: Spark::sql(include_str!("spark/deal_snapshot.sql")),
    }]
}

fn deal_snapshot(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let events = i.stage_events.clone().group_by([col("opportunity_id")]).agg([
        len().cast(DataType::Int64).alias("stage_events"),
        col("entered_at").min().alias("first_stage_at"),
    ]);
    let end = coalesce(&[col("closed_at"), p.as_of_lit()]);
    Ok(i.deals()?
        .join(
            events,
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            (end - col("created_at")).dt().total_days(true).alias("age_days"),
            when(is_open())
                .then(p.age_days(col("stage_entered_at")))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("days_in_stage"),
            col("stage_events").fill_null(lit(0i64)),
            as_of_col(p),
        ]))
}
