//! Per-rep KPIs: open deals per rep at as_of, sales velocity, the rep scorecard (leaderboard
//! per period), and the rep targets helper shared with `activity`.

use polars::prelude::*;

use crate::kpi::periods::{period_start, period_start_of_date};
use crate::kpi::pipeline::{current_period_start, open_snapshots};
use crate::kpi::{Inputs, Kpi, Params, as_of_col, by_dimensions, ratio, stable_sum};

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "open_deals_per_rep",
            family: "funnel and pipeline",
            grain: "one row per owner with open deals at as_of",
            definition: "Deals open at as_of per owner: open_deals, amount (base currency), mean_age_days \
                (days from creation to as_of), stale_deals (open deals with no stage change for at least \
                stale_after_days days before as_of, counted from the last stage event, or from creation \
                when there is none), team from the reps table (null when the owner is not a rep or has no \
                team) and team_share = the owner's open deals / the open deals of the owner's team (null \
                without a team).",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("owner_id", DataType::String),
                    ("team", DataType::String),
                    ("open_deals", DataType::UInt32),
                    ("amount", DataType::Float64),
                    ("mean_age_days", DataType::Float64),
                    ("stale_deals", DataType::UInt32),
                    ("team_share", DataType::Float64),
                ]
            },
            key: &["owner_id"],
            build: open_deals_per_rep,
        },
        Kpi {
            name: "sales_velocity",
            family: "funnel and pipeline",
            grain: "one row per period per dimension value (all, owner_id) with open deals at the period's \
                end or deals closed in it",
            definition: "Revenue per day the pipeline generates: velocity = open_deals x win_rate x \
                mean_won_amount / mean_cycle_days. open_deals = deals open at the period's end (for as_of's \
                period: at as_of), reconstructed from stage events as in pipeline_snapshot; win_rate = won \
                / (won + lost) of deals closed in the period (status at as_of, as in win_rate); \
                mean_won_amount = mean base amount of deals won in the period; mean_cycle_days = mean days \
                from creation to close of those won deals. velocity is null when any factor is null or \
                the cycle is 0.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("open_deals", DataType::UInt32),
                    ("win_rate", DataType::Float64),
                    ("mean_won_amount", DataType::Float64),
                    ("mean_cycle_days", DataType::Float64),
                    ("velocity", DataType::Float64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: sales_velocity,
        },
        Kpi {
            name: "rep_scorecard",
            family: "reps and activity",
            grain: "one row per owner per period in which the owner closed a deal, had open pipeline at \
                the period's end, or has a revenue target",
            definition: "Leaderboard per deal owner and period (close period cut in the configured \
                timezone; status at as_of). won_amount and won_deals = deals won in the period (sum of \
                amount_base, count); lost_deals = deals lost in it; win_rate = won / (won + lost), null \
                when nothing closed; mean_deal_size = mean amount_base of the won deals; \
                median_cycle_days = median days from creation to close of the won deals; open_deals and \
                open_pipeline = count and sum of amount_base of the owner's deals open at the period's \
                end (the end of its last local day; at as_of for as_of's period), reconstructed from \
                stage events as in pipeline_snapshot. target = sum of targets.value with scope_kind \
                'rep', scope = owner, metric 'revenue' whose whole span (period_start + its grain) lies \
                inside the period: monthly targets add up in a quarter or year; a target spanning more \
                than one run period (a quarterly target in a monthly run, a monthly one in a weekly run) is \
                not prorated and is left out; when targets of several grains fit (monthly and \
                quarterly targets for the same quarter) only the coarsest grain counts, so nothing is \
                counted twice; null when no target fits. Targets of periods after as_of's are ignored. \
                attainment = won_amount / target (null without a target or with a 0 target). rank = \
                dense rank within the period by won_amount descending, ties broken by won_deals \
                descending (equal on both: same rank; every row of the period is ranked, including \
                owners with nothing won). team = the owner's team in the reps table (null when the \
                owner is not a rep or has no team); team_won_amount = won_amount of all owners of that \
                team in the period; share_of_team = won_amount / team_won_amount (null without a team \
                or when the team won nothing). Owners get a row in a period when they closed (won or \
                lost) a deal in it, had at least one deal open at its end, or have a revenue target \
                fitting it.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("owner_id", DataType::String),
                    ("team", DataType::String),
                    ("won_amount", DataType::Float64),
                    ("won_deals", DataType::UInt32),
                    ("lost_deals", DataType::UInt32),
                    ("win_rate", DataType::Float64),
                    ("mean_deal_size", DataType::Float64),
                    ("median_cycle_days", DataType::Float64),
                    ("open_deals", DataType::UInt32),
                    ("open_pipeline", DataType::Float64),
                    ("target", DataType::Float64),
                    ("attainment", DataType::Float64),
                    ("rank", DataType::UInt32),
                    ("team_won_amount", DataType::Float64),
                    ("share_of_team", DataType::Float64),
                ]
            },
            key: &["period_start", "owner_id"],
            build: rep_scorecard,
        },
    ]
}

/// Rep targets of `metric` per run period: columns `period_start`, `owner_id`, `target`.
///
/// A target counts in the run period that contains its whole span [period_start, period_start +
/// its grain); one spanning several run periods is left out (not prorated). Where targets of
/// several grains fit the same period for the same rep, only the coarsest grain is summed.
/// Periods after as_of's are dropped.
pub(crate) fn rep_targets(i: &Inputs, p: &Params, metric: &str) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let start = || col("period_start");
    let grain = || col("grain");
    let last_day = when(grain().eq(lit("week")))
        .then(start().dt().offset_by(lit("1w")))
        .when(grain().eq(lit("month")))
        .then(start().dt().offset_by(lit("1mo")))
        .when(grain().eq(lit("quarter")))
        .then(start().dt().offset_by(lit("3mo")))
        .otherwise(start().dt().offset_by(lit("1y")))
        .dt()
        .offset_by(lit("-1d"));
    let size = when(grain().eq(lit("week")))
        .then(lit(0u32))
        .when(grain().eq(lit("month")))
        .then(lit(1u32))
        .when(grain().eq(lit("quarter")))
        .then(lit(2u32))
        .otherwise(lit(3u32));
    let run_ps = |d: Expr| period_start_of_date(d, p.grain, cfg);
    let keys = [col("__ps"), col("scope")];
    Ok(i.targets
        .clone()
        .filter(
            col("scope_kind")
                .eq(lit("rep"))
                .and(col("metric").eq(lit(metric.to_string()))),
        )
        .with_columns([
            run_ps(start()).alias("__ps"),
            run_ps(last_day).alias("__ps_last"),
            size.alias("__size"),
        ])
        .filter(
            col("__ps")
                .eq(col("__ps_last"))
                .and(col("__ps").lt_eq(current_period_start(p))),
        )
        .filter(col("__size").eq(col("__size").max().over(keys.clone())?))
        .group_by(keys)
        .agg([col("value").sum().alias("target")])
        .select([
            col("__ps").alias("period_start"),
            col("scope").alias("owner_id"),
            col("target"),
        ]))
}

fn open_deals_per_rep(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let stale = p.config.stale_after_days as f64;
    let idle = p.age_days(col("stage_entered_at").fill_null(col("created_at")));
    let teams = i.reps.clone().select([col("rep_id").alias("owner_id"), col("team")]);
    Ok(i.deals()?
        .filter(col("status").eq(lit("open")))
        .group_by([col("owner_id")])
        .agg([
            len().cast(DataType::UInt32).alias("open_deals"),
            col("amount_base").sum().alias("amount"),
            p.age_days(col("created_at")).mean().alias("mean_age_days"),
            idle.gt_eq(lit(stale)).sum().cast(DataType::UInt32).alias("stale_deals"),
        ])
        .join(
            teams,
            [col("owner_id")],
            [col("owner_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            when(col("team").is_null())
                .then(lit(NULL).cast(DataType::Float64))
                .otherwise(ratio(col("open_deals"), col("open_deals").sum().over([col("team")])?))
                .alias("team_share"),
            as_of_col(p),
        ]))
}

fn sales_velocity(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let open = open_snapshots(i, p)?;
    let won = || col("status").eq(lit("won"));
    let closed = i
        .deals()?
        .filter(col("status").eq(lit("won")).or(col("status").eq(lit("lost"))))
        .with_columns([
            period_start(col("closed_at"), p.grain, &p.config).alias("period_start"),
            (col("closed_at") - col("created_at"))
                .dt()
                .total_days(true)
                .alias("__days"),
        ]);
    by_dimensions(&["owner_id"], |d| {
        let keys: Vec<Expr> = std::iter::once(col("period_start")).chain(d.map(col)).collect();
        let opened = open.clone().group_by(keys.clone()).agg([len().alias("open_deals")]);
        let closed = closed.clone().group_by(keys.clone()).agg([
            won().sum().alias("__won"),
            col("status").eq(lit("lost")).sum().alias("__lost"),
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

fn rep_scorecard(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let keys = || [col("period_start"), col("owner_id")];
    let won = || col("status").eq(lit("won"));
    let closed = i
        .deals()?
        .filter(won().or(col("status").eq(lit("lost"))))
        .select([
            period_start(col("closed_at"), p.grain, &p.config).alias("period_start"),
            col("owner_id"),
            col("status"),
            col("amount_base"),
            (col("closed_at") - col("created_at"))
                .dt()
                .total_days(true)
                .alias("__days"),
        ])
        .group_by(keys())
        .agg([
            col("amount_base").filter(won()).sum().alias("won_amount"),
            won().sum().alias("won_deals"),
            col("status").eq(lit("lost")).sum().alias("lost_deals"),
            col("amount_base").filter(won()).mean().alias("mean_deal_size"),
            col("__days").filter(won()).median().alias("median_cycle_days"),
        ]);
    let open = open_snapshots(i, p)?.group_by(keys()).agg([
        len().alias("open_deals"),
        stable_sum(col("amount_base")).alias("open_pipeline"),
    ]);
    let targets = rep_targets(i, p, "revenue")?;
    let teams = i.reps.clone().select([col("rep_id").alias("owner_id"), col("team")]);
    let rows = concat(
        [
            closed.clone().select(keys()),
            open.clone().select(keys()),
            targets.clone().select(keys()),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let left = |a: LazyFrame, b: LazyFrame| a.join(b, keys(), keys(), JoinArgs::new(JoinType::Left));
    let by_period = || [col("period_start")];
    let amount_rank = col("won_amount")
        .rank(
            RankOptions {
                method: RankMethod::Dense,
                descending: true,
            },
            None,
        )
        .over(by_period())?;
    // (amount rank ascending, won deals descending) as one integer, ranked densely again.
    let combined = amount_rank.cast(DataType::Int64) * lit(1i64 << 32) - col("won_deals").cast(DataType::Int64);
    let rank = combined
        .rank(
            RankOptions {
                method: RankMethod::Dense,
                descending: false,
            },
            None,
        )
        .over(by_period())?;
    let team_won = when(col("team").is_null())
        .then(lit(NULL).cast(DataType::Float64))
        .otherwise(col("won_amount").sum().over([col("period_start"), col("team")])?);
    Ok(left(left(left(rows, closed), open), targets)
        .join(
            teams,
            [col("owner_id")],
            [col("owner_id")],
            JoinArgs::new(JoinType::Left),
        )
        // The team's sum adds floats in row order, and the order of the rows out of `unique`
        // and the joins varies from run to run: sorted first, the sum is the same every run.
        .sort(["period_start", "owner_id"], SortMultipleOptions::default())
        .with_columns([
            col("won_amount").fill_null(lit(0.0)),
            col("won_deals").fill_null(lit(0u32)),
            col("lost_deals").fill_null(lit(0u32)),
            col("open_deals").fill_null(lit(0u32)),
            col("open_pipeline").fill_null(lit(0.0)),
        ])
        .with_columns([
            ratio(col("won_deals"), col("won_deals") + col("lost_deals")).alias("win_rate"),
            ratio(col("won_amount"), col("target")).alias("attainment"),
            rank.alias("rank"),
            team_won.alias("team_won_amount"),
        ])
        .with_columns([
            ratio(col("won_amount"), col("team_won_amount")).alias("share_of_team"),
            as_of_col(p),
        ]))
}
