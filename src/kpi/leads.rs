//! Lead KPIs: lead_volume, lead_velocity_rate, lead_conversion, cohort_conversion,
//! campaign_performance; and [`lead_conversions`], the one definition of a lead's conversion
//! that every KPI needing "converted" uses.

use polars::lazy::dsl;
use polars::prelude::*;

use crate::kpi::spark::Spark;

use crate::config::ConvertedEvent;
use crate::kpi::periods::{
    current_period_start, explode_dates, period_complete, period_ordinal, period_start, periods_to_as_of,
};
use crate::kpi::rules::{is_refund, is_won};
use crate::kpi::{Family, Inputs, Kpi, Params, as_of_col, by_dimensions, group_keys, ratio, utc};

/// The conversion rule, shared by the definitions of every KPI that counts conversions.
macro_rules! converted_rule {
    () => {
        "A lead converts at the instant set by the config's `lead_converted_event` (default `won`): \
        `opportunity` = the earlier of the lead's converted_at and the created_at of its first \
        opportunity (opportunities.lead_id); `won` = the earliest close of its opportunities won at \
        as_of (deal status from stage events, as in win_rate); `paid_order` = the earliest paid_at \
        of a non-refund order of the lead's account_id (leads.account_id) at or after the lead's \
        created_at. Conversions after as_of do not count."
    };
}

/// The lead dimensions every breakdown offers.
const LEAD_DIMS: [&str; 4] = ["source", "campaign_id", "owner_id", "region"];

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "lead_volume",
            family: Family::Leads,
            grain: "one row per period per dimension value (all, source, campaign_id, owner_id, region)",
            definition: "Lead events per period (cut in the configured timezone at the run's grain): \
                new_leads = leads created in the period, qualified_leads = leads whose qualified_at \
                is in the period, disqualified_leads = leads whose disqualified_at is in the period \
                (each counted in the period of its own timestamp; milestones after as_of are not \
                known yet). Broken down by the lead's source, campaign_id, owner_id and region (a \
                null value is its own row). Periods or values with none of the three events have \
                no row.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("new_leads", DataType::Int64),
                    ("qualified_leads", DataType::Int64),
                    ("disqualified_leads", DataType::Int64),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: lead_volume,
            spark: Spark::sql(include_str!("spark/lead_volume.sql")),
        },
        Kpi {
            name: "lead_velocity_rate",
            family: Family::Leads,
            grain: "one row per period, from the first period with a lead to as_of's period",
            definition: "qualified_leads = leads whose qualified_at (at or before as_of) is in the \
                period; prev_qualified_leads = the same for the previous period (null for the first \
                period of the range, which was not observed); lvr = (qualified_leads - \
                prev_qualified_leads) / prev_qualified_leads, null when the previous period has 0 \
                (or is not observed). Periods are dense from the first period in which a lead was \
                created or qualified up to as_of's period (a period without qualified leads is 0). \
                complete = the period's last local day ended at or before as_of (as_of's own period \
                is partial unless as_of is its last instant).",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("qualified_leads", DataType::Int64),
                    ("prev_qualified_leads", DataType::Int64),
                    ("lvr", DataType::Float64),
                    ("complete", DataType::Boolean),
                ]
            },
            key: &["period_start"],
            build: lead_velocity_rate,
            spark: Spark::sql(include_str!("spark/lead_velocity_rate.sql")),
        },
        Kpi {
            name: "lead_conversion",
            family: Family::Leads,
            grain: "one row per dimension value (all, source, campaign_id, owner_id, region, period)",
            definition: concat!(
                "leads = leads created at or before as_of; converted = those converted at or before \
                as_of; conversion_rate = converted / leads; median_days_to_convert (linear \
                interpolation between the two middle values for an even count) and \
                mean_days_to_convert over the converted leads (null when none). Dimensions: the \
                lead's source, campaign_id, owner_id, region (null values are their own row) and \
                period = the start of the lead's created period as 'YYYY-MM-DD'. days to convert = \
                (conversion instant - created_at) in days (fractional, may be 0). ",
                converted_rule!()
            ),
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("leads", DataType::Int64),
                    ("converted", DataType::Int64),
                    ("conversion_rate", DataType::Float64),
                    ("median_days_to_convert", DataType::Float64),
                    ("mean_days_to_convert", DataType::Float64),
                ]
            },
            key: &["dimension", "dimension_value"],
            build: lead_conversion,
            spark: Spark::sql(include_str!("spark/lead_conversion.sql")),
        },
        Kpi {
            name: "cohort_conversion",
            family: Family::Leads,
            grain: "one row per cohort (created period) per dimension value (all, source) per k = 0 .. \
                periods from the cohort to as_of's period",
            definition: concat!(
                "Cohort = the leads created in a period (at or before as_of); cohort_size = their \
                count. For k = 0, 1, ... up to as_of's period: converted_cum = cohort leads converted \
                by the end of period cohort + k (a conversion dated before the cohort's period \
                counts from k = 0), conversion_rate_cum = converted_cum / cohort_size. Both are \
                null while period cohort + k has not ended at as_of (not fully observable); those \
                rows are still listed. ",
                converted_rule!()
            ),
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("cohort_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("cohort_size", DataType::Int64),
                    ("k", DataType::Int64),
                    ("converted_cum", DataType::Int64),
                    ("conversion_rate_cum", DataType::Float64),
                ]
            },
            key: &["cohort_start", "dimension", "dimension_value", "k"],
            build: cohort_conversion,
            spark: Spark::sql(include_str!("spark/cohort_conversion.sql")),
        },
        Kpi {
            name: "campaign_performance",
            family: Family::Leads,
            grain: "one row per campaign",
            definition: "Campaigns: every campaign of the campaigns table whose started_at is null or \
                at or before as_of, plus every campaign_id referenced by a lead or a deal at as_of \
                (a campaign missing from the table has null channel and spend; a referenced campaign \
                that starts after as_of keeps its channel and spend). leads = leads with that \
                campaign_id created at or before as_of; qualified = those with qualified_at at or \
                before as_of; deals = opportunities created at or before as_of attributed to the \
                campaign: their own campaign_id, else (null) the campaign_id of their lead; \
                won_deals = those won at as_of (status from stage events); won_revenue = their \
                amount_base sum (0 when none); spend = the campaign's whole spend_base, not \
                pro-rated to as_of (null when unknown); cost_per_lead = spend / leads; \
                cost_per_acquisition = spend / won_deals; roi = (won_revenue - spend) / spend; each \
                null over a zero or null denominator.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("campaign_id", DataType::String),
                    ("channel", DataType::String),
                    ("leads", DataType::Int64),
                    ("qualified", DataType::Int64),
                    ("deals", DataType::Int64),
                    ("won_deals", DataType::Int64),
                    ("won_revenue", DataType::Float64),
                    ("spend", DataType::Float64),
                    ("cost_per_lead", DataType::Float64),
                    ("cost_per_acquisition", DataType::Float64),
                    ("roi", DataType::Float64),
                ]
            },
            key: &["campaign_id"],
            build: campaign_performance,
            spark: Spark::sql(include_str!("spark/campaign_performance.sql")),
        },
    ]
}

/// One row per lead created at or before as_of that converted at or before as_of: `lead_id`,
/// `converted_at` (Datetime(us, UTC)), by the config's `lead_converted_event`:
/// - `opportunity`: the earlier of the lead's `converted_at` and the `created_at` of its first
///   opportunity (`opportunities.lead_id`);
/// - `won`: the earliest `closed_at` of its opportunities won at as_of (`Inputs::deals`);
/// - `paid_order`: the earliest `paid_at` of a non-refund order of the lead's `account_id` at or
///   after the lead's `created_at`.
///
/// Leads that did not convert have no row.
pub fn lead_conversions(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    Ok(leads_with_conversion(i, p)?
        .filter(col("converted_at").is_not_null())
        .select([col("lead_id"), col("converted_at")]))
}

/// Every lead at as_of (lead_id, created_at, its dimensions) with its conversion instant by
/// the rule of [`lead_conversions`] in place of its own `converted_at` field (null when not
/// converted at as_of), and `__days` to it. Collected once and shared by the lead KPIs, so the
/// leads are scanned once and never joined to themselves; only the columns they read are kept.
fn leads_with_conversion(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    i.shared("leads_with_conversion", || {
        let keep = ["lead_id", "created_at", "converted_at", "__days"]
            .into_iter()
            .chain(LEAD_DIMS)
            .map(col)
            .collect::<Vec<_>>();
        Ok(leads_with_conversion_plan(i, p)?.select(keep))
    })
}

fn leads_with_conversion_plan(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let leads = i.leads.clone();
    let lead_id = || [col("lead_id")];
    let converted = match p.config.lead_converted_event {
        ConvertedEvent::Opportunity => {
            let first_opp = i
                .opportunities
                .clone()
                .group_by(lead_id())
                .agg([col("created_at").min().alias("__first")]);
            leads
                .join(first_opp, lead_id(), lead_id(), JoinArgs::new(JoinType::Left))
                // min_horizontal ignores nulls: either milestone alone converts the lead.
                .with_column(
                    dsl::min_horizontal([col("converted_at"), col("__first")])
                        .expect("two inputs")
                        .alias("__first"),
                )
        }
        ConvertedEvent::Won => {
            let first_won = i
                .deals()?
                // Deals without a lead form a null group, which finds no lead below.
                .filter(is_won())
                .group_by(lead_id())
                .agg([col("closed_at").min().alias("__first")]);
            leads.join(first_won, lead_id(), lead_id(), JoinArgs::new(JoinType::Left))
        }
        ConvertedEvent::PaidOrder => {
            // The first paid order of the lead's account at or after its creation: a forward
            // as-of join per account (no fan-out of leads x orders). Leads without an account
            // find no order.
            let paid = i
                .orders
                .clone()
                .filter(
                    col("paid_at")
                        .is_not_null()
                        .and(col("account_id").is_not_null())
                        .and(is_refund().not()),
                )
                .select([col("account_id"), col("paid_at").alias("__first")])
                .sort(["__first"], SortMultipleOptions::default());
            let asof = AsOfOptions {
                strategy: AsofStrategy::Forward,
                left_by: Some(vec!["account_id".into()]),
                right_by: Some(vec!["account_id".into()]),
                allow_eq: true,
                ..Default::default()
            };
            leads.sort(["created_at"], SortMultipleOptions::default()).join(
                paid,
                [col("created_at")],
                [col("__first")],
                JoinArgs::new(JoinType::AsOf(Box::new(asof))),
            )
        }
    };
    Ok(converted
        .with_column(
            when(col("__first").lt_eq(p.as_of_lit()))
                .then(col("__first"))
                .otherwise(lit(NULL).cast(utc()))
                .alias("converted_at"),
        )
        .drop(cols(["__first"]))
        .with_column(
            (col("converted_at") - col("created_at"))
                .dt()
                .total_days(true)
                .alias("__days"),
        ))
}

fn lead_volume(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let events = [
        ("created_at", "new_leads"),
        ("qualified_at", "qualified_leads"),
        ("disqualified_at", "disqualified_leads"),
    ];
    let base = i.leads.clone().select(
        LEAD_DIMS
            .iter()
            .map(|d| col(*d))
            .chain(
                events
                    .iter()
                    .map(|(ts, _)| period_start(col(*ts), p.grain, cfg).alias(format!("__p_{ts}"))),
            )
            .collect::<Vec<_>>(),
    );
    let counts = [col("new_leads"), col("qualified_leads"), col("disqualified_leads")];
    Ok(by_dimensions(&LEAD_DIMS, |d| {
        let parts: Vec<LazyFrame> = events
            .iter()
            .map(|(ts, name)| {
                let pc = format!("__p_{ts}");
                base.clone()
                    .filter(col(&pc).is_not_null())
                    .group_by(
                        std::iter::once(col(&pc).alias("period_start"))
                            .chain(d.map(col))
                            .collect::<Vec<_>>(),
                    )
                    .agg([len().alias(*name)])
            })
            .collect();
        Ok(concat_lf_diagonal(parts, UnionArgs::default())?
            .group_by(group_keys(&["period_start"], d))
            .agg(counts.clone().map(|c| c.fill_null(lit(0u32)).sum())))
    })?
    .with_column(as_of_col(p)))
}

/// The dense periods from the first period of any of `first_of` (timestamp columns of the
/// leads) to as_of's period: `period_start` (Date) and `complete` (the period's last local day
/// ended at or before as_of). Empty without leads.
fn lead_calendar(i: &Inputs, p: &Params, first_of: &[&str]) -> PolarsResult<LazyFrame> {
    let firsts: Vec<Expr> = first_of
        .iter()
        .map(|c| period_start(col(*c), p.grain, &p.config).min())
        .collect();
    let firsts_row = i
        .leads
        .clone()
        .select([dsl::min_horizontal(firsts)?.alias("__first"), len().alias("__n")])
        .filter(col("__n").gt(lit(0)).and(col("__first").is_not_null()))
        .select([periods_to_as_of(col("__first"), p)?.alias("period_start")]);
    Ok(
        explode_dates(firsts_row, "period_start")
            .with_column(period_complete(col("period_start"), p).alias("complete")),
    )
}

fn lead_velocity_rate(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let qualified = i
        .leads
        .clone()
        .filter(col("qualified_at").is_not_null())
        .group_by([period_start(col("qualified_at"), p.grain, &p.config).alias("period_start")])
        .agg([len().alias("qualified_leads")]);
    let on = [col("period_start")];
    Ok(lead_calendar(i, p, &["created_at", "qualified_at"])?
        .join(qualified, on.clone(), on, JoinArgs::new(JoinType::Left))
        .with_column(col("qualified_leads").fill_null(lit(0u32)))
        .sort(["period_start"], SortMultipleOptions::default())
        .with_column(col("qualified_leads").shift(lit(1)).alias("prev_qualified_leads"))
        .with_columns([
            ratio(
                col("qualified_leads").cast(DataType::Float64) - col("prev_qualified_leads").cast(DataType::Float64),
                col("prev_qualified_leads"),
            )
            .alias("lvr"),
            as_of_col(p),
        ]))
}

fn lead_conversion(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let base = leads_with_conversion(i, p)?.select(
        LEAD_DIMS
            .iter()
            .map(|d| col(*d))
            .chain([
                // A Date here: `by_dimensions` writes it as 'YYYY-MM-DD' after grouping.
                period_start(col("created_at"), p.grain, &p.config).alias("period"),
                col("converted_at"),
                col("__days"),
            ])
            .collect::<Vec<_>>(),
    );
    let aggs = [
        len().alias("leads"),
        col("converted_at").count().alias("converted"),
        col("__days").median().alias("median_days_to_convert"),
        col("__days").mean().alias("mean_days_to_convert"),
    ];
    let dims: Vec<&'static str> = LEAD_DIMS.iter().copied().chain(["period"]).collect();
    Ok(by_dimensions(&dims, |d| {
        Ok(match d {
            // The `all` row: an aggregate over every lead (none without leads).
            None => base.clone().select(aggs.clone()).filter(col("leads").gt(lit(0))),
            Some(d) => base.clone().group_by([col(d)]).agg(aggs.clone()),
        })
    })?
    .with_columns([
        ratio(col("converted"), col("leads")).alias("conversion_rate"),
        as_of_col(p),
    ]))
}

fn cohort_conversion(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let cur = period_ordinal(current_period_start(p), p.grain);
    // As_of's own period is observable only if as_of is its last instant.
    let cur_complete = period_complete(current_period_start(p), p);
    // Each lead: its cohort and, converted, the k of its conversion period (a conversion dated
    // before its cohort's period counts from k = 0).
    let base = leads_with_conversion(i, p)?
        .select([
            col("source"),
            period_start(col("created_at"), p.grain, cfg).alias("cohort_start"),
            period_start(col("converted_at"), p.grain, cfg).alias("__conv_start"),
        ])
        .with_column(period_ordinal(col("cohort_start"), p.grain).alias("__cord"))
        .with_column(
            (period_ordinal(col("__conv_start"), p.grain) - col("__cord"))
                .clip_min(lit(0i64))
                .alias("__kconv"),
        );
    // One pass over the leads, at the finest level (cohort, source, k; null k = not
    // converted), then the `all` and `source` cells rolled up from these few rows (each fine row
    // paired with both dimensions, so the leads are read once); the cohort sizes and the
    // conversion counts both come from the cells.
    let dims = df!("dimension" => ["all", "source"])?.lazy();
    let cells = base
        .group_by([col("cohort_start"), col("__cord"), col("__kconv"), col("source")])
        .agg([len().alias("__n")])
        .cross_join(dims, None)
        .with_column(
            when(col("dimension").eq(lit("source")))
                .then(col("source"))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("dimension_value"),
        )
        .group_by([
            col("cohort_start"),
            col("__cord"),
            col("dimension"),
            col("dimension_value"),
            col("__kconv"),
        ])
        .agg([col("__n").sum()]);
    let sizes = cells
        .clone()
        .group_by([
            col("cohort_start"),
            col("__cord"),
            col("dimension"),
            col("dimension_value"),
        ])
        .agg([col("__n").sum().alias("cohort_size")]);
    let conversions = cells.filter(col("__kconv").is_not_null()).select([
        col("cohort_start"),
        col("dimension"),
        col("dimension_value"),
        col("__kconv").alias("k"),
        col("__n"),
    ]);
    // The cohorts' rows for k = 0 .. as_of's period.
    let grid = sizes
        .with_column(
            int_ranges(
                lit(0i64),
                cur.clone() - col("__cord") + lit(1i64),
                lit(1i64),
                DataType::Int64,
            )
            .alias("k"),
        )
        .explode(
            cols(["k"]),
            ExplodeOptions {
                empty_as_null: false,
                keep_nulls: false,
            },
        );
    let on = [col("cohort_start"), col("dimension"), col("dimension_value"), col("k")];
    let part = vec![col("cohort_start"), col("dimension"), col("dimension_value")];
    let at = col("__cord") + col("k");
    let observable = at.clone().lt(cur.clone()).or(at.eq(cur).and(cur_complete));
    Ok(grid
        .join(
            conversions,
            on.clone(),
            on,
            JoinArgs {
                nulls_equal: true,
                ..JoinArgs::new(JoinType::Left)
            },
        )
        .with_column(col("__n").fill_null(lit(0u32)))
        .with_column(
            col("__n")
                .cum_sum(false)
                .over_with_options(
                    Some(part),
                    Some((vec![col("k")], SortOptions::default())),
                    WindowMapping::default(),
                )?
                .alias("__cum"),
        )
        .with_column(
            when(observable)
                .then(col("__cum"))
                .otherwise(lit(NULL).cast(DataType::UInt32))
                .alias("converted_cum"),
        )
        .with_columns([
            ratio(col("converted_cum"), col("cohort_size")).alias("conversion_rate_cum"),
            as_of_col(p),
        ]))
}

fn campaign_performance(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let id = || [col("campaign_id")];
    let table = i.campaigns.clone().select([
        col("campaign_id"),
        col("channel"),
        col("spend_base").alias("spend"),
        col("started_at"),
    ]);
    let leads = i
        .leads
        .clone()
        .filter(col("campaign_id").is_not_null())
        .group_by(id())
        .agg([len().alias("leads"), col("qualified_at").count().alias("qualified")]);
    // A deal's campaign: its own, else its lead's.
    let lead_campaign = i
        .leads
        .clone()
        .select([col("lead_id"), col("campaign_id").alias("__lead_campaign")]);
    let won = is_won();
    let deals = i
        .deals()?
        .select([col("lead_id"), col("campaign_id"), col("status"), col("amount_base")])
        .join(
            lead_campaign,
            [col("lead_id")],
            [col("lead_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(coalesce(&[col("campaign_id"), col("__lead_campaign")]).alias("campaign_id"))
        .filter(col("campaign_id").is_not_null())
        .group_by(id())
        .agg([
            len().alias("deals"),
            won.clone().sum().alias("won_deals"),
            col("amount_base").filter(won).sum().alias("won_revenue"),
        ]);
    let started = table
        .clone()
        .filter(col("started_at").is_null().or(col("started_at").lt_eq(p.as_of_lit())))
        .select(id());
    let ids = concat(
        [started, leads.clone().select(id()), deals.clone().select(id())],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let left = || JoinArgs::new(JoinType::Left);
    Ok(ids
        .join(table.drop(cols(["started_at"])), id(), id(), left())
        .join(leads, id(), id(), left())
        .join(deals, id(), id(), left())
        .with_columns([
            col("leads").fill_null(lit(0u32)),
            col("qualified").fill_null(lit(0u32)),
            col("deals").fill_null(lit(0u32)),
            col("won_deals").fill_null(lit(0u32)),
            col("won_revenue").fill_null(lit(0.0)),
        ])
        .with_columns([
            ratio(col("spend"), col("leads")).alias("cost_per_lead"),
            ratio(col("spend"), col("won_deals")).alias("cost_per_acquisition"),
            ratio(col("won_revenue") - col("spend"), col("spend")).alias("roi"),
            as_of_col(p),
        ]))
}
