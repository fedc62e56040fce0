//! Pipeline KPIs: the open pipeline per stage at each period end (reconstructed from stage
//! events), and the size of won deals.
//!
//! Also home of the helpers that reconstruct a deal's state at a past instant, shared with
//! `reps` (sales velocity) and `forecast` (pipeline forecast).

use polars::prelude::*;

use crate::kpi::inputs::stage_frame;
use crate::kpi::periods::{Grain, period_start, period_start_of_date};
use crate::kpi::{Inputs, Kpi, Params, as_of_col, by_dimensions, utc};

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "pipeline_snapshot",
            family: "funnel and pipeline",
            grain: "one row per snapshot date per stage",
            definition: "Open pipeline per stage at as_of and at the end (last local day, end of that day) of \
                every period from the first deal's creation period up to the period before as_of's. A deal \
                counts at a snapshot instant T when it was created at or before T and is open at T, \
                reconstructed from its stage events, not from its current stage: its last stage event at or \
                before T is not terminal (a deal without any terminal event in its history is closed from its \
                closed_at instead). Its stage is that last event's stage; a deal open without any stage \
                event yet is reported under a null stage (weighted_amount null). open_deals, amount (base \
                currency, current amount), weighted_amount = sum of amount x the stage's configured win \
                probability (0-1), mean_age_days = mean days from creation to T. Every non-terminal \
                configured stage has a row at every snapshot (0 deals, null age when empty).",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("snapshot_at", DataType::Date),
                    ("stage", DataType::String),
                    ("open_deals", DataType::UInt32),
                    ("amount", DataType::Float64),
                    ("weighted_amount", DataType::Float64),
                    ("mean_age_days", DataType::Float64),
                ]
            },
            key: &["snapshot_at", "stage"],
            build: pipeline_snapshot,
        },
        Kpi {
            name: "deal_size",
            family: "funnel and pipeline",
            grain: "one row per close period per dimension value (all, owner_id)",
            definition: "Deals won in the period (status at as_of, close date cut in the configured timezone): \
                won deals, mean and median amount in base currency, and the bucket mix by the configured \
                deal_size_buckets [b0, ..., bn]: small = amount < b0, medium = b0 <= amount < bn, large = \
                amount >= bn (with a single threshold medium is always 0). Deals without a base amount are \
                counted in won_deals but in no bucket.",
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("period_start", DataType::Date),
                    ("dimension", DataType::String),
                    ("dimension_value", DataType::String),
                    ("won_deals", DataType::UInt32),
                    ("mean_amount", DataType::Float64),
                    ("median_amount", DataType::Float64),
                    ("small", DataType::UInt32),
                    ("medium", DataType::UInt32),
                    ("large", DataType::UInt32),
                ]
            },
            key: &["period_start", "dimension", "dimension_value"],
            build: deal_size,
        },
    ]
}

/// The length of one period of `grain`, as a polars duration string.
pub(crate) fn period_every(grain: Grain) -> &'static str {
    match grain {
        Grain::Week => "1w",
        Grain::Month => "1mo",
        Grain::Quarter => "3mo",
        Grain::Year => "1y",
    }
}

/// The first day of as_of's period, as a `Date` expression.
pub(crate) fn current_period_start(p: &Params) -> Expr {
    period_start_of_date(as_of_col(p), p.grain, &p.config)
}

/// Every period start from `first` (a period start, `Date`) to as_of's period, as a list of
/// dates (empty when `first` is later; null when `first` is null). Explode it with
/// [`explode_dates`].
pub(crate) fn periods_to_as_of(first: Expr, p: &Params) -> PolarsResult<Expr> {
    date_ranges(
        Some(first),
        Some(current_period_start(p)),
        Some(Duration::parse(period_every(p.grain))),
        None,
        ClosedWindow::Both,
    )
}

/// One row per date of the list column `c`; rows with an empty or null list are dropped.
pub(crate) fn explode_dates(lf: LazyFrame, c: &str) -> LazyFrame {
    lf.explode(
        cols([c]),
        ExplodeOptions {
            empty_as_null: false,
            keep_nulls: false,
        },
    )
    .filter(col(c).is_not_null())
}

/// Whether the period starting at `start` had ended at as_of (its last local instant is at or
/// before as_of).
pub(crate) fn period_complete(start: Expr, p: &Params) -> Expr {
    day_end(period_end(start, p.grain), p).lt_eq(p.as_of_lit())
}

/// The last day of the period starting at `start` (a `Date` expression).
pub(crate) fn period_end(start: Expr, grain: Grain) -> Expr {
    start
        .dt()
        .offset_by(lit(period_every(grain)))
        .dt()
        .offset_by(lit("-1d"))
}

/// The UTC instant a local calendar day starts (local midnight; where midnight does not exist
/// because of a DST jump, the day starts an hour later).
pub(crate) fn day_start(date: Expr, p: &Params) -> Expr {
    let tz = crate::kpi::tz_name(p.tz());
    let naive = date.cast(DataType::Datetime(TimeUnit::Microseconds, None));
    let local = |e: Expr| {
        e.dt()
            .replace_time_zone(Some(tz.clone()), lit("earliest"), NonExistent::Null)
    };
    coalesce(&[local(naive.clone()), local(naive.dt().offset_by(lit("1h")))])
        .dt()
        .convert_time_zone(TimeZone::UTC)
        .cast(utc())
}

/// The last instant (µs) of a local calendar day, in UTC.
pub(crate) fn day_end(date: Expr, p: &Params) -> Expr {
    day_start(date.dt().offset_by(lit("1d")), p).dt().offset_by(lit("-1us"))
}

/// Keeps the rows whose deal is open at the instant `__t`, and adds `__stage` (the stage of its
/// last event at or before `__t`, null if none) and `__probability`.
///
/// `rows` needs `opportunity_id`, `__t` (Datetime(us, UTC)), `created_at` and `closed_at` (the
/// deal's close at as_of, null while open) and no `__stage` column. `__t` must be at or before
/// as_of. The rule is the one of `inputs.rs`, applied at `__t`: a deal closed at as_of with
/// `closed_at <= __t` is closed at `__t` (its closing event, or its fallback close, is the last
/// word up to as_of); any other deal is open at `__t` unless its last event at or before `__t`
/// is terminal (a deal won, then reopened before as_of, for instance). A deal without any
/// terminal event closes only through the fallback, so the first test already decides it.
/// Amounts are the current ones (no amount history is kept).
pub(crate) fn open_at(rows: LazyFrame, i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let stages = stage_frame(&p.config);
    // Events sorted by deal, time and pipeline position: the backward as-of join takes the last
    // row at or before `__t`, so on equal times the later stage wins (as in `inputs.rs`).
    let events = i.ordered_events()?.select([
        col("opportunity_id"),
        col("entered_at").alias("__entered_at"),
        col("stage").alias("__stage"),
    ]);
    let asof = AsOfOptions {
        strategy: AsofStrategy::Backward,
        left_by: Some(vec!["opportunity_id".into()]),
        right_by: Some(vec!["opportunity_id".into()]),
        allow_eq: true,
        ..Default::default()
    };
    Ok(rows
        .filter(
            col("created_at")
                .lt_eq(col("__t"))
                .and(col("closed_at").is_null().or(col("closed_at").gt(col("__t")))),
        )
        .sort(["opportunity_id", "__t"], SortMultipleOptions::default())
        .join(
            events,
            [col("__t")],
            [col("__entered_at")],
            JoinArgs::new(JoinType::AsOf(Box::new(asof))),
        )
        .join(
            stages.select([
                col("stage").alias("__stage"),
                col("probability").alias("__probability"),
                col("terminal").alias("__terminal"),
            ]),
            [col("__stage")],
            [col("__stage")],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col("__terminal").fill_null(lit(false)).not())
        .drop(cols(["__terminal", "__entered_at"])))
}

/// One row per deal per snapshot at which it is open: the end of every past period (from the
/// deal's creation period to the period before as_of's) and as_of itself. Columns:
/// `snapshot_at` (Date), `period_start` (of the snapshot's period), `__t` (the instant),
/// owner_id, created_at, amount_base, `__stage`, `__probability`.
/// Shared: pipeline_snapshot, sales_velocity and rep_scorecard read it.
pub(crate) fn open_snapshots(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    i.shared("open_snapshots", || open_snapshots_plan(i, p))
}

fn open_snapshots_plan(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let cur = current_period_start(p);
    let base = i.deals()?.select([
        col("opportunity_id"),
        col("owner_id"),
        col("created_at"),
        col("closed_at"),
        col("amount_base"),
        col("stage"),
        col("status"),
    ]);
    // A deal can be open only at the ends of the periods from its creation period up to, not
    // including, its close period (at as_of) and the current period.
    let closed_ps = period_start(col("closed_at"), p.grain, cfg);
    let until = when(col("closed_at").is_null().or(closed_ps.clone().gt(cur.clone())))
        .then(cur.clone())
        .otherwise(closed_ps);
    let ranges = date_ranges(
        Some(period_start(col("created_at"), p.grain, cfg)),
        Some(until),
        Some(Duration::parse(period_every(p.grain))),
        None,
        ClosedWindow::Left,
    )?;
    let past = explode_dates(
        base.clone()
            .drop(cols(["stage", "status"]))
            .with_column(ranges.alias("period_start")),
        "period_start",
    )
    .with_column(period_end(col("period_start"), p.grain).alias("snapshot_at"))
    .with_column(day_end(col("snapshot_at"), p).alias("__t"));
    let past = open_at(past, i, p)?;
    // At as_of the deal's state is the shared one of `Inputs::deals`.
    let now = base
        .filter(col("status").eq(lit("open")))
        .with_columns([
            as_of_col(p).alias("snapshot_at"),
            cur.alias("period_start"),
            p.as_of_lit().alias("__t"),
        ])
        .join(
            stage_frame(cfg).select([col("stage"), col("probability").alias("__probability")]),
            [col("stage")],
            [col("stage")],
            JoinArgs::new(JoinType::Left),
        )
        .rename(["stage"], ["__stage"], true)
        .drop(cols(["status"]));
    // No opportunity_id: the readers count and sum, and the frame is kept for several KPIs.
    let select = [
        "snapshot_at",
        "period_start",
        "__t",
        "owner_id",
        "created_at",
        "amount_base",
        "__stage",
        "__probability",
    ]
    .map(col);
    concat([past.select(select.clone()), now.select(select)], UnionArgs::default())
}

/// Every snapshot date (Date column `snapshot_at`): the end of every period from the first
/// deal's creation period up to the period before as_of's, then as_of's date.
fn snapshot_dates(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cur = current_period_start(p);
    let first = period_start(col("created_at"), p.grain, &p.config)
        .min()
        .fill_null(cur.clone());
    let past = i
        .deals()?
        .select([first.alias("__first")])
        .select([polars::lazy::dsl::date_range(
            Some(col("__first").first()),
            Some(cur),
            Some(Duration::parse(period_every(p.grain))),
            None,
            ClosedWindow::Left,
        )?
        .alias("period_start")])
        .select([period_end(col("period_start"), p.grain).alias("snapshot_at")]);
    let now = DataFrame::empty().lazy().select([as_of_col(p).alias("snapshot_at")]);
    concat([past, now], UnionArgs::default())
}

fn pipeline_snapshot(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let open = open_snapshots(i, p)?;
    let agg = open
        .with_column((col("__t") - col("created_at")).dt().total_days(true).alias("__age"))
        .group_by([col("snapshot_at"), col("__stage").alias("stage")])
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
    let open_stages: Vec<&str> = p
        .config
        .stages
        .iter()
        .filter(|s| s.terminal.is_none())
        .map(|s| s.name.as_str())
        .collect();
    let stages = df!("stage" => open_stages)?.lazy();
    let grid = snapshot_dates(i, p)?.cross_join(stages, None);
    let keys = concat(
        [grid, agg.clone().select([col("snapshot_at"), col("stage")])],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let on = [col("snapshot_at"), col("stage")];
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
        .filter(col("status").eq(lit("won")))
        .with_column(period_start(col("closed_at"), p.grain, &p.config).alias("period_start"));
    by_dimensions(&["owner_id"], |d| {
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
