//! Rep activity: calls, connects, emails, meetings, visits, tasks and new contacts against
//! targets.

use polars::prelude::*;

use crate::kpi::periods::period_start;
use crate::kpi::reps::rep_targets;
use crate::kpi::{Inputs, Kpi, Params, as_of_col, ratio};

pub fn kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "activity",
        family: "reps and activity",
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
                ("calls", DataType::UInt32),
                ("connected_calls", DataType::UInt32),
                ("connect_rate", DataType::Float64),
                ("emails", DataType::UInt32),
                ("meetings", DataType::UInt32),
                ("visits", DataType::UInt32),
                ("tasks", DataType::UInt32),
                ("new_contacts", DataType::UInt32),
                ("calls_target", DataType::Float64),
                ("calls_attainment", DataType::Float64),
            ]
        },
        key: &["period_start", "owner_id"],
        build: activity,
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
