//! Per-rep pipeline KPIs: open deals per rep at as_of, sales velocity.

use polars::prelude::*;

use crate::kpi::periods::period_start;
use crate::kpi::pipeline::open_snapshots;
use crate::kpi::{Inputs, Kpi, Params, as_of_col, by_dimensions, ratio};

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
    ]
}

fn open_deals_per_rep(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let stale = p.config.stale_after_days as f64;
    let idle = p.age_days(col("stage_entered_at").fill_null(col("created_at")));
    let teams = i.reps.clone().select([col("rep_id").alias("owner_id"), col("team")]);
    Ok(i.deals
        .clone()
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
        .deals
        .clone()
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
