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
/// occurred_at. In plain aggregations and joins (the earliest time per value, the activities at
/// that time, the smallest id among them), which the streaming engine runs in bounded memory; a
/// sort within each group does not stream and held every group at scale l.
fn first_touches(acts: &LazyFrame, c: &str) -> LazyFrame {
    let touched = acts
        .clone()
        .select([col(c), col("occurred_at"), col("activity_id"), col("owner_id")])
        .filter(col(c).is_not_null());
    let earliest = touched
        .clone()
        .group_by([col(c)])
        .agg([col("occurred_at").min().alias("__first_at")]);
    let at_earliest = touched.join(
        earliest,
        [col(c), col("occurred_at")],
        [col(c), col("__first_at")],
        JoinArgs::new(JoinType::Inner),
    );
    let smallest = at_earliest
        .clone()
        .group_by([col(c)])
        .agg([col("activity_id").min().alias("__first_id")]);
    at_earliest
        .join(
            smallest,
            [col(c), col("activity_id")],
            [col(c), col("__first_id")],
            JoinArgs::new(JoinType::Semi),
        )
        .select([col("activity_id"), col("owner_id"), col("occurred_at")])
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
        [first_touches(&acts, "lead_id"), first_touches(&acts, "account_id")],
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
