//! Reps and activity: open deals per rep at as_of, the rep scorecard (leaderboard per period),
//! and rep activity (calls, connects, emails, meetings, visits, tasks and new contacts) against
//! targets.

use polars::prelude::*;

use crate::kpi::spark::Spark;

use crate::kpi::inputs::open_snapshots;
use crate::kpi::periods::{current_period_start, period_start, period_start_of_date};
use crate::kpi::rules::{is_lost, is_open, is_won};
use crate::kpi::{Family, Inputs, Kpi, Params, as_of_col, ratio, stable_sum};

pub fn kpis() -> Vec<Kpi> {
    [rep_kpis(), activity_kpis()].concat()
}

fn rep_kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "open_deals_per_rep",
            family: Family::Reps,
            grain: "one row per owner and pipeline with open deals at as_of",
            definition: "Deals open at as_of per owner and pipeline (the deal's at as_of: that of its last \
                stage event, without one its own): open_deals, amount (base currency), mean_age_days \
                (days from creation to as_of), stale_deals (open deals with no stage change for at least \
                stale_after_days days before as_of, counted from the last stage event, or from creation \
                when there is none), team from the reps table (null when the owner is not a rep or has no \
                team) and team_share = the owner's open deals / the open deals of the owner's team in the \
                same pipeline (null without a team).",
            version: 2,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("owner_id", DataType::String),
                    ("pipeline", DataType::String),
                    ("team", DataType::String),
                    ("open_deals", DataType::Int64),
                    ("amount", DataType::Float64),
                    ("mean_age_days", DataType::Float64),
                    ("stale_deals", DataType::Int64),
                    ("team_share", DataType::Float64),
                ]
            },
            key: &["owner_id", "pipeline"],
            build: open_deals_per_rep,
            spark: Spark::sql(include_str!("spark/open_deals_per_rep.sql")),
        },
        Kpi {
            name: "rep_scorecard",
            family: Family::Reps,
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
                    ("won_deals", DataType::Int64),
                    ("lost_deals", DataType::Int64),
                    ("win_rate", DataType::Float64),
                    ("mean_deal_size", DataType::Float64),
                    ("median_cycle_days", DataType::Float64),
                    ("open_deals", DataType::Int64),
                    ("open_pipeline", DataType::Float64),
                    ("target", DataType::Float64),
                    ("attainment", DataType::Float64),
                    ("rank", DataType::Int64),
                    ("team_won_amount", DataType::Float64),
                    ("share_of_team", DataType::Float64),
                ]
            },
            key: &["period_start", "owner_id"],
            build: rep_scorecard,
            spark: Spark::sql(include_str!("spark/rep_scorecard.sql")),
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
        .filter(is_open())
        .group_by([col("owner_id"), col("pipeline")])
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
                .otherwise(ratio(
                    col("open_deals"),
                    col("open_deals").sum().over([col("team"), col("pipeline")])?,
                ))
                .alias("team_share"),
            as_of_col(p),
        ]))
}

fn rep_scorecard(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let keys = || [col("period_start"), col("owner_id")];
    let won = || is_won();
    let closed = i
        .deals()?
        .filter(won().or(is_lost()))
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
            is_lost().sum().alias("lost_deals"),
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

fn activity_kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "activity",
        family: Family::Reps,
        grain: "one row per owner per period in which the owner logged an activity or has a calls target",
        definition: "Activities at or before as_of per owner (the activity's owner_id) and period of \
            occurred_at (cut in the configured timezone): calls, emails, meetings, visits and tasks = \
            activities of that kind; connected_calls = calls with outcome 'connected'; connect_rate = \
            connected_calls / calls (null without calls). new_contacts = activities that are the first \
            touch of their lead or of their account: for every lead_id (and separately every \
            account_id) the earliest activity of any kind and any owner at or before as_of referencing \
            it is its first touch (ties at the same instant: the smallest activity_id); an activity \
            counts once even when it is the first touch of both its lead and its account; activities \
            with neither are never new contacts. calls_target = sum of targets.value with scope_kind \
            'rep', scope = owner, metric 'calls' whose whole span lies inside the period (the rule of \
            rep_scorecard: no proration, coarsest fitting grain only, nothing after as_of's period), \
            null when none fits; calls_attainment = calls / calls_target (null without a target or \
            with a 0 target). An owner with a calls target but no activity in the period has a row \
            with zero counts.",
        version: 1,
        columns: || {
            vec![
                ("as_of", DataType::Date),
                ("period_start", DataType::Date),
                ("owner_id", DataType::String),
                ("calls", DataType::Int64),
                ("connected_calls", DataType::Int64),
                ("connect_rate", DataType::Float64),
                ("emails", DataType::Int64),
                ("meetings", DataType::Int64),
                ("visits", DataType::Int64),
                ("tasks", DataType::Int64),
                ("new_contacts", DataType::Int64),
                ("calls_target", DataType::Float64),
                ("calls_attainment", DataType::Float64),
            ]
        },
        key: &["period_start", "owner_id"],
        build: activity,
        spark: Spark::sql(include_str!("spark/activity.sql")),
    }]
}

/// The activities that are the first touch of the value of `c` (lead_id or account_id):
/// earliest occurred_at, ties broken by the smallest activity_id, with their owner_id and
/// occurred_at: the activities at their value's earliest time, then the smallest id among them.
/// The activities at the earliest time are found by a window on the in-memory engine and by a
/// group-by joined back on the streaming one: the window is faster (activity alone at scale m,
/// 3.1 s and 1.5 GB against 2.2 s and 0.8 GB) but does not stream (at scale l the reps and
/// activity family took 29 s and 9.2 GB against 22 s and 8.7 GB). A sort within each group
/// streams in neither and held every group at scale l.
fn first_touches(acts: &LazyFrame, c: &str, engine: Engine) -> PolarsResult<LazyFrame> {
    let touched = acts
        .clone()
        .select([col(c), col("occurred_at"), col("activity_id"), col("owner_id")])
        .filter(col(c).is_not_null());
    let at_earliest = if engine == Engine::Streaming {
        let earliest = touched
            .clone()
            .group_by([col(c)])
            .agg([col("occurred_at").min().alias("__first_at")]);
        touched.join(
            earliest,
            [col(c), col("occurred_at")],
            [col(c), col("__first_at")],
            JoinArgs::new(JoinType::Inner),
        )
    } else {
        touched.filter(col("occurred_at").eq(col("occurred_at").min().over([col(c)])?))
    };
    let smallest = at_earliest
        .clone()
        .group_by([col(c)])
        .agg([col("activity_id").min().alias("__first_id")]);
    Ok(at_earliest
        .join(
            smallest,
            [col(c), col("activity_id")],
            [col(c), col("__first_id")],
            JoinArgs::new(JoinType::Semi),
        )
        .select([col("activity_id"), col("owner_id"), col("occurred_at")]))
}

const COUNTS: [&str; 7] = [
    "calls",
    "connected_calls",
    "emails",
    "meetings",
    "visits",
    "tasks",
    "new_contacts",
];

fn activity(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let keys = || [col("period_start"), col("owner_id")];
    let acts = i.activities.clone().select([
        col("activity_id"),
        col("owner_id"),
        col("kind"),
        col("outcome"),
        col("occurred_at"),
        col("lead_id"),
        col("account_id"),
    ]);
    // New contacts are counted from the first touches themselves (each carries its owner and
    // time), not by joining them back onto every activity by id: at scale l that join probed
    // 57M string ids.
    let new_contacts = concat(
        [
            first_touches(&acts, "lead_id", i.engine)?,
            first_touches(&acts, "account_id", i.engine)?,
        ],
        UnionArgs::default(),
    )?
    .unique(Some(cols(["activity_id"])), UniqueKeepStrategy::Any)
    .with_column(period_start(col("occurred_at"), p.grain, &p.config).alias("period_start"))
    .group_by(keys())
    .agg([len().cast(DataType::UInt32).alias("new_contacts")]);
    let kind = |k: &str| col("kind").eq(lit(k.to_string()));
    let counted = |e: Expr, name: &str| e.sum().cast(DataType::UInt32).alias(name);
    let per = acts
        .with_column(period_start(col("occurred_at"), p.grain, &p.config).alias("period_start"))
        .group_by(keys())
        .agg([
            counted(kind("call"), "calls"),
            counted(
                kind("call").and(col("outcome").eq(lit("connected")).fill_null(lit(false))),
                "connected_calls",
            ),
            counted(kind("email"), "emails"),
            counted(kind("meeting"), "meetings"),
            counted(kind("visit"), "visits"),
            counted(kind("task"), "tasks"),
        ]);
    let targets = rep_targets(i, p, "calls")?.rename(["target"], ["calls_target"], true);
    let rows = concat(
        [per.clone().select(keys()), targets.clone().select(keys())],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let left = |a: LazyFrame, b: LazyFrame| a.join(b, keys(), keys(), JoinArgs::new(JoinType::Left));
    Ok(left(left(left(rows, per), new_contacts), targets)
        .with_columns(COUNTS.map(|c| col(c).fill_null(lit(0u32))))
        .with_columns([
            ratio(col("connected_calls"), col("calls")).alias("connect_rate"),
            ratio(col("calls"), col("calls_target")).alias("calls_attainment"),
            as_of_col(p),
        ]))
}
