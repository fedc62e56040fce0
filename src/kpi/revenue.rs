//! Order revenue per period and dimension; historical customer lifetime value per account and
//! per segment (acquisition cohort, source).
//!
//! Refunds are their own order rows (`is_refund = true`), dated when the refund was recorded and
//! not linked to the order they refund: they count, negatively, in the period and the account
//! they are recorded in, whatever the sign the export gives them.

use polars::prelude::*;

use crate::kpi::periods::{local_date, period_start};
use crate::kpi::{Inputs, Kpi, Params, as_of_col, by_dimensions, ratio};

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "revenue",
            family: "customers and revenue",
            grain: "one row per period per dimension value (all, region, channel)",
            definition: "Order revenue by the period of ordered_at (local), overall and by the order's \
                region and channel. Money is amount_base. A refund is an order row with is_refund = true: \
                it counts as -|amount_base| in the period it was recorded in (refund rows do not name the \
                order they refund), and is not an order. orders = non-refund orders; revenue = sum of \
                non-refund amounts minus refunded; paid = non-refund orders with paid_at at or before \
                as_of; unpaid = non-refund orders not paid at as_of (paid + unpaid = revenue + refunded); \
                overdue = unpaid orders whose due_at is before the as_of instant (no due_at: never \
                overdue); refunds = refund rows, refunded = their absolute amount; customers = distinct \
                accounts with a non-refund order; revenue_per_customer = revenue / customers (null \
                without customers). new_customer_revenue = revenue (refunds included) of accounts in the \
                period of their first non-refund order (clv_historical's cohort_start); \
                recurring_revenue = revenue of accounts whose first order lies in an earlier period (and \
                refunds of accounts without any order at as_of); new + recurring = revenue. The first \
                order is the account's, across regions and channels. Only periods and dimension values \
                with at least one order or refund have a row.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("orders", DataType::UInt32),
                    ("revenue", DataType::Float64),
                    ("paid", DataType::Float64),
                    ("unpaid", DataType::Float64),
                    ("overdue", DataType::Float64),
                    ("refunds", DataType::UInt32),
                    ("refunded", DataType::Float64),
                    ("customers", DataType::UInt32),
                    ("revenue_per_customer", DataType::Float64),
                    ("new_customer_revenue", DataType::Float64),
                    ("recurring_revenue", DataType::Float64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: revenue,
        },
        Kpi {
            name: "clv_historical",
            family: "customers and revenue",
            grain: "one row per account with a non-refund order at or before as_of",
            definition: "Historical customer lifetime value per account, from its orders at or before \
                as_of. first_order_date / last_order_date = local dates of its first and last non-refund \
                order; orders = non-refund orders; revenue = sum of amount_base net of refunds (a refund \
                counts -|amount_base|); mean_order_value = revenue / orders; tenure_days = days from the \
                first order to as_of (customer age, fractional); cohort_start = the period (run grain) of \
                the first order; source = the source of the account's first converted lead (leads with \
                this account_id and converted_at at or before as_of; earliest converted_at, then \
                created_at, then lead_id), null when none. Accounts with only refunds are left out.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("account_id", DataType::String),
                    ("first_order_date", DataType::Date),
                    ("last_order_date", DataType::Date),
                    ("orders", DataType::UInt32),
                    ("revenue", DataType::Float64),
                    ("mean_order_value", DataType::Float64),
                    ("tenure_days", DataType::Float64),
                    ("cohort_start", DataType::Date),
                    ("source", DataType::String),
                ]
            },
            key: &["account_id"],
            build: clv_historical,
        },
        Kpi {
            name: "clv_segments",
            family: "customers and revenue",
            grain: "one row per dimension value (all, cohort_start, source)",
            definition: "Historical CLV per segment, over the accounts of clv_historical: customers = \
                accounts; mean_clv and median_clv = mean and median of their revenue (net of refunds); \
                total_revenue = its sum. Dimensions: all, cohort_start (period of the first order, as \
                YYYY-MM-DD) and source (of the first converted lead; accounts without one in a null \
                dimension_value row).",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("customers", DataType::UInt32),
                    ("mean_clv", DataType::Float64),
                    ("median_clv", DataType::Float64),
                    ("total_revenue", DataType::Float64),
                ]
            },
            key: &["dimension", "dimension_value"],
            build: clv_segments,
        },
    ]
}

/// Whether an order row is a refund (a missing flag is not).
pub(crate) fn is_refund() -> Expr {
    col("is_refund").fill_null(lit(false))
}

/// Orders at or before as_of with `__amount`: amount_base, negative for refunds whatever their
/// stored sign.
fn signed_orders(i: &Inputs) -> LazyFrame {
    i.orders.clone().with_column(
        when(is_refund())
            .then(-col("amount_base").abs())
            .otherwise(col("amount_base"))
            .alias("__amount"),
    )
}

fn revenue(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let sale = || is_refund().not();
    // The account's first-order period, as a window over the same rows (cheaper than a
    // group_by joined back).
    let first_period = when(sale())
        .then(col("period_start"))
        .otherwise(lit(NULL).cast(DataType::Date))
        .min()
        .over([col("account_id")])?;
    let rows = signed_orders(i)
        .with_column(period_start(col("ordered_at"), p.grain, cfg).alias("period_start"))
        .with_column(
            first_period
                .eq(col("period_start"))
                .fill_null(lit(false))
                .alias("__new"),
        )
        // Read by one group_by per dimension, each projecting its own column: without the cache
        // each would rescan and recompute the window.
        .cache();
    let amount = || col("__amount");
    let unpaid = || sale().and(col("paid_at").is_null());
    let out = by_dimensions(&["region", "channel"], |d| {
        let keys: Vec<Expr> = std::iter::once(col("period_start")).chain(d.map(col)).collect();
        Ok(rows.clone().group_by(keys).agg([
            sale().sum().cast(DataType::UInt32).alias("orders"),
            amount().sum().alias("revenue"),
            amount()
                .filter(sale().and(col("paid_at").is_not_null()))
                .sum()
                .alias("paid"),
            amount().filter(unpaid()).sum().alias("unpaid"),
            amount()
                .filter(unpaid().and(col("due_at").lt(p.as_of_lit())))
                .sum()
                .alias("overdue"),
            is_refund().sum().cast(DataType::UInt32).alias("refunds"),
            (-amount()).filter(is_refund()).sum().alias("refunded"),
            col("account_id")
                .filter(sale())
                .n_unique()
                .cast(DataType::UInt32)
                .alias("customers"),
            amount().filter(col("__new")).sum().alias("new_customer_revenue"),
            amount().filter(col("__new").not()).sum().alias("recurring_revenue"),
        ]))
    })?;
    Ok(out.with_columns([
        ratio(col("revenue"), col("customers")).alias("revenue_per_customer"),
        as_of_col(p),
    ]))
}

/// One row per account with a non-refund order at or before as_of: account_id,
/// first_order_date, last_order_date, orders, revenue, mean_order_value, tenure_days,
/// cohort_start, source.
fn customer_values(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let sale = || is_refund().not();
    // The first converted lead of each account: one sort, then the first row per account (a
    // per-group sort_by is several times slower on a million leads).
    let source = i
        .leads
        .clone()
        .filter(col("account_id").is_not_null().and(col("converted_at").is_not_null()))
        .select([
            col("account_id"),
            col("source"),
            col("converted_at"),
            col("created_at"),
            col("lead_id"),
        ])
        .sort(
            ["converted_at", "created_at", "lead_id"],
            SortMultipleOptions::default(),
        )
        .unique_stable(Some(cols(["account_id"])), UniqueKeepStrategy::First)
        .select([col("account_id"), col("source")]);
    Ok(signed_orders(i)
        .group_by([col("account_id")])
        .agg([
            col("ordered_at").filter(sale()).min().alias("__first_at"),
            col("ordered_at").filter(sale()).max().alias("__last_at"),
            sale().sum().cast(DataType::UInt32).alias("orders"),
            col("__amount").sum().alias("revenue"),
        ])
        .filter(col("orders").gt(lit(0u32)))
        .with_columns([
            local_date(col("__first_at"), cfg).alias("first_order_date"),
            local_date(col("__last_at"), cfg).alias("last_order_date"),
            ratio(col("revenue"), col("orders")).alias("mean_order_value"),
            p.age_days(col("__first_at")).alias("tenure_days"),
            period_start(col("__first_at"), p.grain, cfg).alias("cohort_start"),
        ])
        .join(
            source,
            [col("account_id")],
            [col("account_id")],
            JoinArgs::new(JoinType::Left),
        ))
}

fn clv_historical(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(customer_values(i, p)?.with_column(as_of_col(p)))
}

fn clv_segments(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    // One group_by per dimension reads it: computed once. Sorted by account, so the float sums
    // add in the same order every run (the order out of the group_by varies).
    let values = customer_values(i, p)?
        .sort(["account_id"], SortMultipleOptions::default())
        .cache();
    let aggs = || {
        [
            len().cast(DataType::UInt32).alias("customers"),
            col("revenue").mean().alias("mean_clv"),
            col("revenue").median().alias("median_clv"),
            col("revenue").sum().alias("total_revenue"),
        ]
    };
    let out = by_dimensions(&["cohort_start", "source"], |d| {
        Ok(match d {
            None => values.clone().select(aggs()),
            Some(d) => values.clone().group_by([col(d)]).agg(aggs()),
        })
    })?;
    // Without any customer the `all` row would count 0 of them: no rows instead.
    Ok(out.filter(col("customers").gt(lit(0u32))).with_column(as_of_col(p)))
}
