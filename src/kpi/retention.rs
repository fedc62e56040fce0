//! Customer retention by acquisition cohort, and churn.

use polars::prelude::*;

use crate::kpi::periods::{period_ordinal, period_start};
use crate::kpi::pipeline::{explode_dates, period_complete, periods_to_as_of};
use crate::kpi::revenue::is_refund;
use crate::kpi::{Inputs, Kpi, Params, as_of_col, ratio};

pub fn kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "retention",
        family: "customers and revenue",
        grain: "one row per acquisition cohort per period since acquisition (k)",
        definition: "Customer retention by acquisition cohort. An account is acquired by its first \
            paid non-refund order (paid_at at or before as_of): cohort_start = the period of that \
            order's ordered_at (local, run grain), so an order paid only after as_of does not acquire \
            the account yet; cohort_size = accounts acquired in it. After that, a customer is active \
            in a period when it placed a non-refund order in it (ordered_at in the period), paid or \
            not yet paid: retention measures buying, and a payment lag must not show the latest \
            periods as churn. For k = 0, 1, ... up to as_of's period: period_start = cohort_start + \
            k periods; active = cohort accounts with such an order in that period; retention_rate = \
            active / cohort_size (1 at k = 0 by construction); churned = accounts active in period \
            k-1 but not in k (null at k = 0), churn_rate = churned / active at k-1 (null when none). \
            A customer who returns after a gap is active again (and churned once, when it left). \
            Cells whose period has not ended at as_of (the run's last period, unless as_of is its \
            last instant) are only partly observable: active, retention_rate, churned and \
            churn_rate are null there; cohort_size is the size at as_of.",
        version: 2,
        columns: || {
            vec![
                ("as_of", DataType::Date),
                ("cohort_start", DataType::Date),
                ("k", DataType::UInt32),
                ("period_start", DataType::Date),
                ("cohort_size", DataType::UInt32),
                ("active", DataType::UInt32),
                ("retention_rate", DataType::Float64),
                ("churned", DataType::UInt32),
                ("churn_rate", DataType::Float64),
            ]
        },
        key: &["cohort_start", "k"],
        build: retention,
    }]
}

fn retention(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let periods_since_cohort =
        || period_ordinal(col("period_start"), p.grain) - period_ordinal(col("cohort_start"), p.grain);
    // One row per account and period with a non-refund order at or after the account's
    // acquisition (its first paid non-refund order), with the cohort and k. Cached: every part
    // below reads it, and without the cache each would recompute it with its own projection.
    let orders = i.orders.clone().filter(is_refund().not()).select([
        col("account_id"),
        period_start(col("ordered_at"), p.grain, cfg).alias("period_start"),
        col("paid_at"),
    ]);
    let cohorts = orders
        .clone()
        .filter(col("paid_at").is_not_null())
        .group_by([col("account_id")])
        .agg([col("period_start").min().alias("cohort_start")]);
    let activity = orders
        .select([col("account_id"), col("period_start")])
        .unique(None, UniqueKeepStrategy::Any)
        .join(
            cohorts,
            [col("account_id")],
            [col("account_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column(periods_since_cohort().alias("k"))
        .filter(col("k").gt_eq(lit(0i64)))
        .cache();
    let cell = [col("cohort_start"), col("k")];
    let active = activity.clone().group_by(cell.clone()).agg([len().alias("__active")]);
    let active_before = active.clone().select([
        col("cohort_start"),
        (col("k") + lit(1i64)).alias("k"),
        col("__active").alias("__active_before"),
    ]);
    // Accounts active in both k-1 and k.
    let stayed = activity
        .clone()
        .select([col("account_id"), col("cohort_start"), col("k")])
        .join(
            activity
                .clone()
                .select([col("account_id"), (col("k") + lit(1i64)).alias("k")]),
            [col("account_id"), col("k")],
            [col("account_id"), col("k")],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by(cell.clone())
        .agg([len().alias("__stayed")]);
    // Every account is active at k = 0 (its first period): the cohort sizes.
    let grid = active
        .clone()
        .filter(col("k").eq(lit(0i64)))
        .select([col("cohort_start"), col("__active").alias("cohort_size")])
        .with_column(periods_to_as_of(col("cohort_start"), p)?.alias("period_start"));
    let grid = explode_dates(grid, "period_start").with_column(periods_since_cohort().alias("k"));
    let left = || JoinArgs::new(JoinType::Left);
    let observable = period_complete(col("period_start"), p);
    let null_u32 = || lit(NULL).cast(DataType::UInt32);
    Ok(grid
        .join(active, cell.clone(), cell.clone(), left())
        .join(active_before, cell.clone(), cell.clone(), left())
        .join(stayed, cell.clone(), cell, left())
        .with_columns([
            when(observable.clone())
                .then(col("__active").fill_null(lit(0u32)))
                .otherwise(null_u32())
                .alias("active"),
            when(observable.and(col("k").gt(lit(0i64))))
                .then(col("__active_before").fill_null(lit(0u32)) - col("__stayed").fill_null(lit(0u32)))
                .otherwise(null_u32())
                .alias("churned"),
        ])
        .with_columns([
            ratio(col("active"), col("cohort_size")).alias("retention_rate"),
            ratio(col("churned"), col("__active_before").fill_null(lit(0u32))).alias("churn_rate"),
            as_of_col(p),
        ]))
}
