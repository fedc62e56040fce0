//! Closed-deal KPIs: win rate, loss reasons, deal size, sales cycle.

use polars::prelude::*;

use crate::kpi::periods::period_start;
use crate::kpi::{Inputs, Kpi, Params, as_of_col, by_dimensions, ratio};

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "win_rate",
            family: "funnel and pipeline",
            grain: "one row per close period per dimension value (all, owner_id, source, region)",
            definition: "Deals closed in the period (status at as_of, close date cut in the configured timezone): \
                won, lost, count win rate = won / (won + lost), won and lost amounts in base currency, \
                amount win rate = won amount / (won + lost amount). Null when nothing closed.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("won", DataType::UInt32),
                    ("lost", DataType::UInt32),
                    ("win_rate", DataType::Float64),
                    ("won_amount", DataType::Float64),
                    ("lost_amount", DataType::Float64),
                    ("amount_win_rate", DataType::Float64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: win_rate,
        },
        Kpi {
            name: "loss_reasons",
            family: "funnel and pipeline",
            grain: "one row per close period per loss reason",
            definition: "Deals lost in the period by loss_reason (null reason reported as `unspecified`): \
                lost deals, lost amount in base currency, share of the period's lost deals.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("loss_reason", DataType::String),
                    ("lost", DataType::UInt32),
                    ("lost_amount", DataType::Float64),
                    ("share", DataType::Float64),
                ]
            },
            key: &["period_start", "loss_reason"],
            build: loss_reasons,
        },
        Kpi {
            name: "sales_cycle",
            family: "funnel and pipeline",
            grain: "one row per close period per outcome (won/lost) per dimension value (all, owner_id)",
            definition: "Days from a deal's creation to its close, for deals closed in the period, won and \
                lost separately: count, mean, median and p90 (linear interpolation). Open deals are not \
                averaged in; their age is in open_deals_per_rep and pipeline_snapshot.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("outcome", DataType::String),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("deals", DataType::UInt32),
                    ("mean_days", DataType::Float64),
                    ("median_days", DataType::Float64),
                    ("p90_days", DataType::Float64),
                ]
            },
            key: &["period_start", "outcome", "dimension", "dimension_value"],
            build: sales_cycle,
        },
    ]
}

/// Deals closed at as_of, with `period_start` of their close.
fn closed(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(i.deals()?
        .filter(col("status").eq(lit("won")).or(col("status").eq(lit("lost"))))
        .with_column(period_start(col("closed_at"), p.grain, &p.config).alias("period_start")))
}

fn keys(first: &[&str], dim: Option<&str>) -> Vec<Expr> {
    first.iter().map(|c| col(*c)).chain(dim.map(col)).collect()
}

fn win_rate(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let closed = closed(i, p)?;
    let won = col("status").eq(lit("won"));
    let lost = col("status").eq(lit("lost"));
    Ok(by_dimensions(&["owner_id", "source", "region"], |d| {
        Ok(closed.clone().group_by(keys(&["period_start"], d)).agg([
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
        .filter(col("status").eq(lit("lost")))
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
    by_dimensions(&["owner_id"], |d| {
        Ok(closed.clone().group_by(keys(&["period_start", "outcome"], d)).agg([
            len().cast(DataType::UInt32).alias("deals"),
            col("days").mean().alias("mean_days"),
            col("days").median().alias("median_days"),
            col("days").quantile(lit(0.9), QuantileMethod::Linear).alias("p90_days"),
        ]))
    })
    .map(|lf| lf.with_column(as_of_col(p)))
}
