//! Customers and revenue: deals from new vs existing customers and lost deals due for
//! re-engagement; order revenue; historical and predictive customer lifetime value; retention.

use std::collections::HashMap;
use std::sync::Arc;

use polars::prelude::*;

use crate::kpi::spark::Spark;
use rayon::prelude::*;

use crate::config::ClvSegmentBy;
use crate::kpi::periods::{explode_dates, local_date, period_complete, period_ordinal, period_start, periods_to_as_of};
use crate::kpi::rules::{is_lost, is_refund, is_won};
use crate::kpi::{Family, Inputs, Kpi, Params, as_of_col, by_dimensions, ratio, stable_sum};
use crate::stats::bgnbd::{BgNbd, Customer, Fit, FitError};
use crate::stats::gamma_gamma::GammaGamma;

pub fn kpis() -> Vec<Kpi> {
    [deal_kpis(), revenue_kpis(), clv_kpis(), retention_kpis()].concat()
}

/// How far ahead `lost_reengagement` lists windows that are not open yet.
pub const REENGAGEMENT_LOOKAHEAD_DAYS: u32 = 30;

fn deal_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "new_vs_existing",
            family: Family::Customers,
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
                    ("deals", DataType::Int64),
                    ("won_deals", DataType::Int64),
                    ("won_amount", DataType::Float64),
                ]
            },
            key: &["period_start", "customer_type"],
            build: new_vs_existing,
            spark: Spark::sql(include_str!("spark/new_vs_existing.sql")),
        },
        Kpi {
            name: "lost_reengagement",
            family: Family::Customers,
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
            spark: Spark::sql(include_str!("spark/lost_reengagement.sql")),
        },
    ]
}

fn new_vs_existing(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let first_won = i
        .deals()?
        .filter(is_won())
        .group_by([col("account_id")])
        .agg([col("closed_at").min().alias("__first_won")]);
    let first_paid = i
        .orders
        .clone()
        .filter(col("paid_at").is_not_null().and(is_refund().not()))
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
        .filter(is_won())
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
        .filter(is_lost())
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

// Revenue and historical CLV.
//
// Order revenue per period and dimension; historical customer lifetime value per account and
// per segment (acquisition cohort, source).
//
// Refunds are their own order rows (`is_refund = true`), dated when the refund was recorded and
// not linked to the order they refund: they count, negatively, in the period and the account
// they are recorded in, whatever the sign the export gives them.

fn revenue_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "revenue",
            family: Family::Customers,
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
                    ("orders", DataType::Int64),
                    ("revenue", DataType::Float64),
                    ("paid", DataType::Float64),
                    ("unpaid", DataType::Float64),
                    ("overdue", DataType::Float64),
                    ("refunds", DataType::Int64),
                    ("refunded", DataType::Float64),
                    ("customers", DataType::Int64),
                    ("revenue_per_customer", DataType::Float64),
                    ("new_customer_revenue", DataType::Float64),
                    ("recurring_revenue", DataType::Float64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: revenue,
            spark: Spark::sql(include_str!("spark/revenue.sql")),
        },
        Kpi {
            name: "clv_historical",
            family: Family::Customers,
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
                    ("orders", DataType::Int64),
                    ("revenue", DataType::Float64),
                    ("mean_order_value", DataType::Float64),
                    ("tenure_days", DataType::Float64),
                    ("cohort_start", DataType::Date),
                    ("source", DataType::String),
                ]
            },
            key: &["account_id"],
            build: clv_historical,
            spark: Spark::sql(include_str!("spark/clv_historical.sql")),
        },
        Kpi {
            name: "clv_segments",
            family: Family::Customers,
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
                    ("customers", DataType::Int64),
                    ("mean_clv", DataType::Float64),
                    ("median_clv", DataType::Float64),
                    ("total_revenue", DataType::Float64),
                ]
            },
            key: &["dimension", "dimension_value"],
            build: clv_segments,
            spark: Spark::sql(include_str!("spark/clv_segments.sql")),
        },
    ]
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

// Predictive CLV.
//
// Predictive customer lifetime value (BG/NBD + Gamma-Gamma) and its fitted model.
//
// Both KPIs share one computation: the per-customer RFM summary is built lazily and collected
// (one small eager collect: one row per customer), the models are fitted in Rust (per segment,
// in parallel with rayon), and the results are returned as an in-memory LazyFrame.

/// Days in the month of the CLV sum: 365.25 / 12.
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// Spend is summed in micro-units of the base currency.
const MICROS: f64 = 1e6;

const PREDICTIVE_DEFINITION: &str = "Predictive CLV per customer: an account with at least one \
    non-refund order at or before as_of (refund rows are ignored). RFM from the local calendar \
    dates (configured timezone) of ordered_at, spend = amount_base summed per day (exactly: each \
    order rounded to 1e-6 of the base currency and added as integers, so the result does not \
    depend on row order): frequency = distinct purchase days minus 1 (repeat purchase days); \
    recency = last purchase date minus first purchase date; t = as_of's date minus first \
    purchase date; both in clv.time_unit (weeks = days / 7, the default, or days); \
    monetary_value = mean spend of the repeat purchase days (first day excluded; null when \
    frequency = 0). A BG/NBD model (Fader, Hardie & Lee 2005) is fitted by maximum likelihood on \
    every customer's (frequency, recency, t), and a Gamma-Gamma spend model on customers with \
    frequency > 0 and monetary_value > 0, one pair of fits per clv.segment_by group (see \
    clv_model). p_alive = P(alive at as_of) = 1 / (1 + [frequency > 0] a / (b + frequency - 1) \
    ((alpha + t) / (alpha + recency))^(r + frequency)); E[X(s)] = the customer's conditional \
    expected purchases in (as_of, as_of + s] (FHL 2005 eq. 10); expected_purchases = E[X(H*u)] \
    with H = clv.horizon_months and u = one month = 30.4375 days in the time unit (30.4375 / 7 \
    weeks); expected_avg_value = Gamma-Gamma E[spend per purchase] = p (v + frequency * \
    monetary_value) / (p * frequency + q - 1) (monetary_value 0 when null, so frequency = 0 \
    gives the population mean p v / (q - 1); null when q <= 1); clv = sum over i = 1..H of \
    expected_avg_value * (E[X(i*u)] - E[X((i-1)*u)]) / (1 + clv.monthly_discount_rate)^i. The \
    model columns are null when the customer's group has no fit (BG/NBD: fewer than 4 customers \
    with frequency > 0; Gamma-Gamma: fewer than 3 usable customers; or no convergence, or an \
    estimate outside [1e-8, 1e8]; a warning is logged). Computed with one eager collect of the \
    RFM (one row per customer) inside the builder; the fits run in Rust and the rows are returned \
    as an in-memory frame.";

const MODEL_DEFINITION: &str = "The fitted CLV models behind clv_predictive, per clv.segment_by \
    group: segment = 'all' (segment_by = none, one model), or the source of the account's first \
    lead (segment_by = source: leads at or before as_of with that account_id, earliest created_at, \
    then lowest lead_id) or the account's segment (segment_by = segment: accounts.segment), null \
    for customers without one (a group of its own). model bg_nbd (params r, alpha, a, b; alpha in \
    clv.time_unit) is fitted on every customer of the group; model gamma_gamma (params p, q, v) \
    on the group's customers with frequency > 0 and monetary_value > 0. Maximum likelihood: \
    Nelder-Mead on the log-parameters from two starts (on an evenly spaced subsample of 10000 \
    customers when the group is larger), then Newton steps with finite-difference derivatives \
    on all of them. value = the estimate; std_err = sqrt of the diagonal of the inverse observed \
    information (central differences of the log-likelihood, step 1e-3 in the log-parameters, \
    delta method; null when not positive definite); log_likelihood = the maximized \
    log-likelihood of the model on the group (BG/NBD: FHL 2005 eq. 6 with times in the time \
    unit; Gamma-Gamma: the density of each customer's mean repeat spend); n_customers = \
    customers the fit used (or would have used). A model with too few customers (BG/NBD: fewer \
    than 4 with frequency > 0; Gamma-Gamma: fewer than 3), no convergence or an estimate outside \
    [1e-8, 1e8] keeps its rows with null value, std_err and log_likelihood, and logs a warning. \
    Computed with one eager collect of the RFM inside the builder.";

fn clv_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "clv_predictive",
            family: Family::Customers,
            grain: "one row per customer (account with an order at or before as_of)",
            definition: PREDICTIVE_DEFINITION,
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("account_id", DataType::String),
                    ("frequency", DataType::Int64),
                    ("recency", DataType::Float64),
                    ("t", DataType::Float64),
                    ("monetary_value", DataType::Float64),
                    ("p_alive", DataType::Float64),
                    ("expected_purchases", DataType::Float64),
                    ("expected_avg_value", DataType::Float64),
                    ("clv", DataType::Float64),
                ]
            },
            key: &["account_id"],
            build: clv_predictive,
            spark: Spark::sql(include_str!("spark/clv_predictive.sql")),
        },
        Kpi {
            name: "clv_model",
            family: Family::Customers,
            grain: "one row per segment per model per parameter",
            definition: MODEL_DEFINITION,
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("model", DataType::String),
                    ("segment", DataType::String),
                    ("param", DataType::String),
                    ("value", DataType::Float64),
                    ("std_err", DataType::Float64),
                    ("log_likelihood", DataType::Float64),
                    ("n_customers", DataType::Int64),
                ]
            },
            key: &["segment", "model", "param"],
            build: clv_model,
            spark: Spark::sql(include_str!("spark/clv_model.sql")),
        },
    ]
}

/// The per-customer RFM summary, lazily: account_id, segment, frequency (u32), recency_days,
/// t_days (i32) and monetary_value (null when frequency = 0).
pub fn rfm_days(i: &Inputs, p: &Params) -> LazyFrame {
    let cfg = &p.config;
    let as_of_day = crate::timefmt::days_since_epoch(p.as_of_date());
    // Spend in whole micro-units (1e-6 of the base currency), so the sums are exact integer
    // sums: a float sum depends on the order rows arrive in (its last bits vary from run to
    // run, and the fitted parameters with them).
    let days = i
        .orders
        .clone()
        .filter(is_refund().not())
        .select([
            col("account_id"),
            local_date(col("ordered_at"), cfg).cast(DataType::Int32).alias("day"),
            (col("amount_base") * lit(MICROS))
                .round(0, RoundMode::HalfAwayFromZero)
                .cast(DataType::Int64)
                .alias("micros"),
        ])
        .group_by([col("account_id"), col("day")])
        .agg([col("micros").sum().alias("spend")]);
    let rfm = days
        .group_by([col("account_id")])
        .agg([
            len().alias("purchase_days"),
            col("day").min().alias("first_day"),
            col("day").max().alias("last_day"),
            col("spend").sum().alias("total_spend"),
            col("spend")
                .sort_by([col("day")], SortMultipleOptions::default())
                .first()
                .alias("first_spend"),
        ])
        .select([
            col("account_id"),
            (col("purchase_days").cast(DataType::Int64) - lit(1i64))
                .cast(DataType::UInt32)
                .alias("frequency"),
            (col("last_day") - col("first_day")).alias("recency_days"),
            (lit(as_of_day) - col("first_day")).alias("t_days"),
            when(col("purchase_days").gt(lit(1u32)))
                .then(
                    (col("total_spend") - col("first_spend")).cast(DataType::Float64)
                        / lit(MICROS)
                        / (col("purchase_days").cast(DataType::Float64) - lit(1.0)),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("monetary_value"),
        ]);
    match p.config.clv.segment_by {
        ClvSegmentBy::None => rfm.with_column(lit("all").alias("segment")),
        ClvSegmentBy::Segment => rfm.join(
            i.accounts
                .clone()
                .select([col("account_id"), col("segment")])
                .unique(Some(cols(["account_id"])), UniqueKeepStrategy::Any),
            [col("account_id")],
            [col("account_id")],
            JoinArgs::new(JoinType::Left),
        ),
        ClvSegmentBy::Source => {
            // The account's first lead (created_at, then lead_id) at or before as_of.
            let first_lead = i
                .leads
                .clone()
                .filter(col("account_id").is_not_null())
                .group_by([col("account_id")])
                .agg([col("source")
                    .sort_by([col("created_at"), col("lead_id")], SortMultipleOptions::default())
                    .first()
                    .alias("segment")]);
            rfm.join(
                first_lead,
                [col("account_id")],
                [col("account_id")],
                JoinArgs::new(JoinType::Left),
            )
        }
    }
}

/// One customer's row of the RFM summary, in the model's time unit.
#[derive(Debug, Clone)]
struct Row {
    account_id: String,
    segment: Option<String>,
    customer: Customer,
    monetary: Option<f64>,
}

/// The fits of one segment.
struct SegmentFit {
    segment: Option<String>,
    n_customers: usize,
    n_spenders: usize,
    bg: Result<Fit<BgNbd>, FitError>,
    gg: Result<Fit<GammaGamma>, FitError>,
}

fn collect_rows(i: &Inputs, p: &Params) -> PolarsResult<Vec<Row>> {
    let started = std::time::Instant::now();
    // Shared: clv_predictive and clv_model both read it.
    let df = i
        .shared("clv_rfm", || {
            Ok(rfm_days(i, p).select([
                col("account_id"),
                col("segment").cast(DataType::String),
                col("frequency"),
                col("recency_days"),
                col("t_days"),
                col("monetary_value"),
            ]))
        })?
        .collect()?;
    let unit = p.config.clv.time_unit.days();
    let ids = df.column("account_id")?.str()?.clone();
    let seg = df.column("segment")?.str()?.clone();
    let freq = df.column("frequency")?.u32()?.clone();
    let rec = df.column("recency_days")?.cast(&DataType::Int64)?.i64()?.clone();
    let age = df.column("t_days")?.cast(&DataType::Int64)?.i64()?.clone();
    let mon = df.column("monetary_value")?.f64()?.clone();
    let mut rows: Vec<Row> = Vec::with_capacity(df.height());
    for k in 0..df.height() {
        let (Some(id), Some(x), Some(r), Some(t)) = (ids.get(k), freq.get(k), rec.get(k), age.get(k)) else {
            continue;
        };
        rows.push(Row {
            account_id: id.to_string(),
            segment: seg.get(k).map(str::to_string),
            customer: Customer {
                x,
                t_x: r as f64 / unit,
                t: t as f64 / unit,
            },
            monetary: mon.get(k),
        });
    }
    // polars' group_by order varies between runs: sort so the fits see the same input order.
    rows.sort_unstable_by(|a, b| a.account_id.cmp(&b.account_id));
    tracing::debug!(
        customers = rows.len(),
        ms = started.elapsed().as_millis() as u64,
        "CLV: RFM collected"
    );
    Ok(rows)
}

/// The customers' RFM rows and the models fitted on them, computed once per run: clv_model and
/// clv_predictive both read them.
fn rows_and_fits(i: &Inputs, p: &Params) -> PolarsResult<Arc<(Vec<Row>, Vec<SegmentFit>)>> {
    i.computed_once("clv_rows_and_fits", || {
        let rows = collect_rows(i, p)?;
        let fits = fits_for(&rows, p);
        Ok((rows, fits))
    })
}

/// [`fit_segments`], with what the fits took in the debug log.
fn fits_for(rows: &[Row], p: &Params) -> Vec<SegmentFit> {
    let started = std::time::Instant::now();
    let fits = fit_segments(rows, p);
    for f in fits.iter() {
        let evals = |r: Result<usize, &FitError>| r.map(|e| e.to_string()).unwrap_or_else(|e| e.to_string());
        tracing::debug!(
            segment = f.segment.as_deref().unwrap_or("(null)"),
            bg_nbd = evals(f.bg.as_ref().map(|b| b.evals)),
            gamma_gamma = evals(f.gg.as_ref().map(|g| g.evals)),
            "CLV: log-likelihood evaluations"
        );
    }
    tracing::debug!(
        segments = fits.len(),
        ms = started.elapsed().as_millis() as u64,
        "CLV: models fitted"
    );
    fits
}

/// Fits BG/NBD and Gamma-Gamma per segment, in parallel. Segments in a stable order (by name,
/// null first).
fn fit_segments(rows: &[Row], p: &Params) -> Vec<SegmentFit> {
    let mut groups: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
    for (k, r) in rows.iter().enumerate() {
        groups.entry(r.segment.as_deref()).or_default().push(k);
    }
    if groups.is_empty() && p.config.clv.segment_by == ClvSegmentBy::None {
        groups.insert(Some("all"), Vec::new());
    }
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
        .into_par_iter()
        .map(|(segment, idx)| {
            let customers: Vec<Customer> = idx.iter().map(|&k| rows[k].customer).collect();
            let spend: Vec<(u32, f64)> = idx
                .iter()
                .filter_map(|&k| rows[k].monetary.map(|m| (rows[k].customer.x, m)))
                .collect();
            let (bg, gg) = rayon::join(|| BgNbd::fit(&customers), || GammaGamma::fit(&spend));
            let label = segment.unwrap_or("(null)");
            if let Err(e) = &bg {
                tracing::warn!(segment = label, model = "bg_nbd", "CLV model not fitted: {e}");
            }
            if let Err(e) = &gg {
                tracing::warn!(segment = label, model = "gamma_gamma", "CLV model not fitted: {e}");
            }
            SegmentFit {
                segment: segment.map(str::to_string),
                n_customers: customers.len(),
                n_spenders: spend
                    .iter()
                    .filter(|(x, m)| *x > 0 && *m > 0.0 && m.is_finite())
                    .count(),
                bg,
                gg,
            }
        })
        .collect()
}

fn clv_model(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let rows_and_fits = rows_and_fits(i, p)?;
    let fits = &rows_and_fits.1;
    let (mut model, mut segment, mut param) = (Vec::new(), Vec::new(), Vec::new());
    let (mut value, mut se, mut ll, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for f in fits.iter() {
        let mut push = |name: &'static str, names: &[&'static str], est: Estimates<'_>, count: usize| {
            for (k, pn) in names.iter().enumerate() {
                model.push(name);
                segment.push(f.segment.clone());
                param.push(*pn);
                value.push(est.map(|e| e.0[k]));
                se.push(est.and_then(|e| e.1[k]));
                ll.push(est.map(|e| e.2));
                n.push(count as u32);
            }
        };
        let bg = f.bg.as_ref().ok().map(|b| (&b.estimates, &b.std_err, b.log_likelihood));
        push("bg_nbd", BgNbd::NAMES, bg, f.n_customers);
        let gg = f.gg.as_ref().ok().map(|g| (&g.estimates, &g.std_err, g.log_likelihood));
        push("gamma_gamma", GammaGamma::NAMES, gg, f.n_spenders);
    }
    let df = df!(
        "model" => model,
        "segment" => segment,
        "param" => param,
        "value" => value,
        "std_err" => se,
        "log_likelihood" => ll,
        "n_customers" => n,
    )?;
    Ok(df.lazy().with_column(as_of_col(p)))
}

/// A fit's estimates, standard errors and log-likelihood (None: not fitted).
type Estimates<'a> = Option<(&'a Vec<f64>, &'a Vec<Option<f64>>, f64)>;

/// One customer's predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub p_alive: f64,
    /// E[X(H·u)]
    pub expected_purchases: f64,
    /// Σ_{i=1..H} (E[X(i·u)] − E[X((i−1)·u)]) / (1+d)^i: multiply by the expected spend per
    /// purchase to get the CLV.
    pub discounted_purchases: f64,
}

/// The BG/NBD side of the CLV of a customer `c`: P(alive), expected purchases over `months`
/// months of `month` time units each, and the discounted purchases of the CLV sum at monthly
/// rate `rate`. NaN values when the expectation cannot be evaluated.
pub fn predict(model: &BgNbd, c: &Customer, months: u32, month: f64, rate: f64) -> Prediction {
    let p_alive = model.p_alive(c.x, c.t_x, c.t);
    let (mut prev, mut discounted, mut factor) = (0.0, 0.0, 1.0);
    for i in 1..=months {
        let e = p_alive * model.expected_purchases_if_alive(c.x, c.t, i as f64 * month);
        factor /= 1.0 + rate;
        discounted += (e - prev) * factor;
        prev = e;
    }
    Prediction {
        p_alive,
        expected_purchases: prev,
        discounted_purchases: discounted,
    }
}

fn clv_predictive(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let rows_and_fits = rows_and_fits(i, p)?;
    let (rows, fits) = (&rows_and_fits.0, &rows_and_fits.1);
    let clv = &p.config.clv;
    let month = DAYS_PER_MONTH / clv.time_unit.days();
    let by_segment: HashMap<Option<&str>, &SegmentFit> = fits.iter().map(|f| (f.segment.as_deref(), f)).collect();
    // Customers with the same history share their BG/NBD predictions: compute each distinct
    // (segment, x, t_x, T) once, in parallel.
    let mut distinct: HashMap<Key<'_>, Option<Prediction>> = HashMap::new();
    for r in rows {
        distinct.entry(key(r)).or_insert(None);
    }
    let keys: Vec<Key<'_>> = distinct.keys().copied().collect();
    let started = std::time::Instant::now();
    let n_keys = keys.len();
    let computed: Vec<(Key<'_>, Option<Prediction>)> = keys
        .into_par_iter()
        .map(|k| {
            let pred = by_segment.get(&k.0).and_then(|f| f.bg.as_ref().ok()).map(|fit| {
                let c = Customer {
                    x: k.1,
                    t_x: f64::from_bits(k.2),
                    t: f64::from_bits(k.3),
                };
                predict(&fit.params, &c, clv.horizon_months, month, clv.monthly_discount_rate)
            });
            (k, pred)
        })
        .collect();
    distinct.extend(computed);
    tracing::debug!(
        histories = n_keys,
        ms = started.elapsed().as_millis() as u64,
        "CLV: predictions computed"
    );
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    let n = rows.len();
    let (mut p_alive, mut expected, mut avg_value, mut value) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut unevaluated = 0usize;
    for r in rows {
        let pred = distinct.get(&key(r)).copied().flatten();
        let avg = by_segment
            .get(&r.segment.as_deref())
            .and_then(|f| f.gg.as_ref().ok())
            .and_then(|g| g.params.expected_average_value(r.customer.x, r.monetary.unwrap_or(0.0)));
        let e = pred.and_then(|q| finite(q.expected_purchases));
        if pred.is_some() && e.is_none() {
            unevaluated += 1;
        }
        p_alive.push(pred.and_then(|q| finite(q.p_alive)));
        expected.push(e);
        avg_value.push(avg);
        value.push(match (pred, avg) {
            (Some(q), Some(m)) => finite(q.discounted_purchases * m),
            _ => None,
        });
    }
    if unevaluated > 0 {
        tracing::warn!(
            customers = unevaluated,
            "CLV: expected purchases could not be evaluated (null)"
        );
    }
    let df = df!(
        "account_id" => rows.iter().map(|r| r.account_id.as_str()).collect::<Vec<_>>(),
        "frequency" => rows.iter().map(|r| r.customer.x).collect::<Vec<_>>(),
        "recency" => rows.iter().map(|r| r.customer.t_x).collect::<Vec<_>>(),
        "t" => rows.iter().map(|r| r.customer.t).collect::<Vec<_>>(),
        "monetary_value" => rows.iter().map(|r| r.monetary).collect::<Vec<_>>(),
        "p_alive" => p_alive,
        "expected_purchases" => expected,
        "expected_avg_value" => avg_value,
        "clv" => value,
    )?;
    Ok(df.lazy().with_column(as_of_col(p)))
}

/// A customer's history within its segment: (segment, x, t_x bits, T bits).
type Key<'a> = (Option<&'a str>, u32, u64, u64);

fn key(r: &Row) -> Key<'_> {
    (
        r.segment.as_deref(),
        r.customer.x,
        r.customer.t_x.to_bits(),
        r.customer.t.to_bits(),
    )
}

// Retention.
//
// Customer retention by acquisition cohort, and churn.

fn retention_kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "retention",
        family: Family::Customers,
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
                ("k", DataType::Int64),
                ("period_start", DataType::Date),
                ("cohort_size", DataType::Int64),
                ("active", DataType::Int64),
                ("retention_rate", DataType::Float64),
                ("churned", DataType::Int64),
                ("churn_rate", DataType::Float64),
            ]
        },
        key: &["cohort_start", "k"],
        build: retention,
        spark: Spark::sql(include_str!("spark/retention.sql")),
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
