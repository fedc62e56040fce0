//! Customer-side deal KPIs: deals from new vs existing customers, lost deals due for
//! re-engagement.

use polars::prelude::*;

use crate::kpi::periods::{local_date, period_start};
use crate::kpi::{Inputs, Kpi, Params, as_of_col, stable_sum};

/// How far ahead `lost_reengagement` lists windows that are not open yet.
pub const REENGAGEMENT_LOOKAHEAD_DAYS: u32 = 30;

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "new_vs_existing",
            family: "funnel and pipeline",
            grain: "one row per period per customer type (new, existing)",
            definition: "Deals by customer type: a deal is from an `existing` customer when its account, \
                before the deal was created, had a deal won (status at as_of, closed strictly before the \
                deal's created_at) or a paid order (paid_at at or before as_of and strictly before the \
                deal's created_at; refunds excluded); otherwise `new`. deals = deals created in the \
                period; won_deals and won_amount (base currency) = deals won in the period (close period, \
                status at as_of), typed by the same rule at their creation.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("customer_type", DataType::String),
                    ("deals", DataType::UInt32),
                    ("won_deals", DataType::UInt32),
                    ("won_amount", DataType::Float64),
                ]
            },
            key: &["period_start", "customer_type"],
            build: new_vs_existing,
        },
        Kpi {
            name: "lost_reengagement",
            family: "funnel and pipeline",
            grain: "one row per lost deal whose re-engagement window is open at as_of or opens within 30 days",
            definition: "Deals lost at as_of, with their follow-up window: lost_at = local date of the loss, \
                follow_up_from = lost_at + reengagement.min_days, follow_up_until = lost_at + \
                reengagement.max_days. status `due` when as_of's date is within [from, until], `upcoming` \
                when the window opens within the next 30 days. Deals whose window has passed or opens \
                later are left out.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("opportunity_id", DataType::String),
                    ("account_id", DataType::String),
                    ("owner_id", DataType::String),
                    ("loss_reason", DataType::String),
                    ("lost_at", DataType::Date),
                    ("follow_up_from", DataType::Date),
                    ("follow_up_until", DataType::Date),
                    ("status", DataType::String),
                ]
            },
            key: &["opportunity_id"],
            build: lost_reengagement,
        },
    ]
}

fn new_vs_existing(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let first_won = i
        .deals()?
        .filter(col("status").eq(lit("won")))
        .group_by([col("account_id")])
        .agg([col("closed_at").min().alias("__first_won")]);
    let first_paid = i
        .orders
        .clone()
        .filter(
            col("paid_at")
                .is_not_null()
                .and(col("is_refund").fill_null(lit(false)).not()),
        )
        .group_by([col("account_id")])
        .agg([col("paid_at").min().alias("__first_paid")]);
    let before_created = |c: &str| col(c).lt(col("created_at")).fill_null(lit(false));
    let typed = i
        .deals()?
        .join(
            first_won,
            [col("account_id")],
            [col("account_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            first_paid,
            [col("account_id")],
            [col("account_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            when(before_created("__first_won").or(before_created("__first_paid")))
                .then(lit("existing"))
                .otherwise(lit("new"))
                .alias("customer_type"),
        );
    let keys = [col("period_start"), col("customer_type")];
    let created = typed
        .clone()
        .with_column(period_start(col("created_at"), p.grain, cfg).alias("period_start"))
        .group_by(keys.clone())
        .agg([len().alias("deals")]);
    let won = typed
        .filter(col("status").eq(lit("won")))
        .with_column(period_start(col("closed_at"), p.grain, cfg).alias("period_start"))
        .group_by(keys.clone())
        .agg([
            len().alias("won_deals"),
            stable_sum(col("amount_base")).alias("won_amount"),
        ]);
    Ok(concat_lf_diagonal([created, won], UnionArgs::default())?
        .group_by(keys)
        .agg([col("deals").sum(), col("won_deals").sum(), col("won_amount").sum()])
        .with_column(as_of_col(p)))
}

fn lost_reengagement(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let r = &p.config.reengagement;
    let today = as_of_col(p);
    let days = |n: u32| lit(format!("{n}d"));
    let horizon = today.clone().dt().offset_by(days(REENGAGEMENT_LOOKAHEAD_DAYS));
    Ok(i.deals()?
        .filter(col("status").eq(lit("lost")))
        .with_column(local_date(col("closed_at"), &p.config).alias("lost_at"))
        .with_columns([
            col("lost_at").dt().offset_by(days(r.min_days)).alias("follow_up_from"),
            col("lost_at").dt().offset_by(days(r.max_days)).alias("follow_up_until"),
        ])
        .with_column(
            when(
                col("follow_up_from")
                    .lt_eq(today.clone())
                    .and(col("follow_up_until").gt_eq(today.clone())),
            )
            .then(lit("due"))
            .when(
                col("follow_up_from")
                    .gt(today.clone())
                    .and(col("follow_up_from").lt_eq(horizon)),
            )
            .then(lit("upcoming"))
            .otherwise(lit(NULL).cast(DataType::String))
            .alias("status"),
        )
        .filter(col("status").is_not_null())
        .with_column(today))
}
