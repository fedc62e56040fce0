//! The as-of inputs every KPI reads: the store's tables with nothing after `as_of`, and the
//! shared intermediates several KPIs use (each deal's state at as_of, stage visits).
//!
//! The shared intermediates are collected once, on first use, and every later reader scans the
//! collected frame: polars' common-subplan elimination does not merge one plan across the KPIs
//! of a `collect_all` (nor across collects), so as lazy plans they were recomputed by every KPI
//! reading them (benches/README.md has the numbers).
//!
//! As-of rules:
//! - a row counts only if its main timestamp is at or before as_of (leads.created_at,
//!   opportunities.created_at, stage_events.entered_at, orders.ordered_at,
//!   activities.occurred_at, accounts.created_at, forecasts.submitted_at); later milestone
//!   timestamps on a row that counts (a lead's qualified_at, an order's paid_at, ...) are
//!   nulled, as if not yet known;
//! - a deal's status, stage and close date at as_of come from its stage events, not from its
//!   current fields: the last event at or before as_of decides; a terminal won/lost stage
//!   closes the deal at that event. A deal with no terminal event anywhere in its history
//!   falls back to its `status` and `closed_at` fields when `closed_at <= as_of`;
//! - amounts are the current ones (the canonical schema keeps no amount history).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use polars::prelude::*;

use crate::config::Terminal;
use crate::error::StoreError;
use crate::kpi::periods::{current_period_start, day_end, explode_dates, period_end, period_every, period_start};
use crate::kpi::rules::is_open;
use crate::kpi::{Params, as_of_col};
use crate::schema;
use crate::store::Store;

#[derive(Clone)]
pub struct Inputs {
    pub leads: LazyFrame,
    pub accounts: LazyFrame,
    pub opportunities: LazyFrame,
    pub stage_events: LazyFrame,
    pub orders: LazyFrame,
    pub activities: LazyFrame,
    pub reps: LazyFrame,
    pub targets: LazyFrame,
    pub forecasts: LazyFrame,
    pub campaigns: LazyFrame,
    pub fx_rates: LazyFrame,
    /// Engine of the shared intermediates' collects (the run's engine).
    pub engine: Engine,
    shared: Arc<Shared>,
}

/// What the shared intermediates are built from, and those already collected.
struct Shared {
    params: Params,
    /// Stage events of every time (a deal with a terminal event anywhere in its history).
    events_all: LazyFrame,
    /// Collected frames, each with whether it is kept for the whole run.
    frames: Mutex<HashMap<&'static str, (DataFrame, bool)>>,
    /// The shared frames read since the last `forget_unused`.
    used: Mutex<Vec<&'static str>>,
    /// Other results computed once per run (the fitted CLV models), by name.
    values: Mutex<HashMap<&'static str, Arc<dyn std::any::Any + Send + Sync>>>,
}

/// A plan as every collect of a run takes it: without polars' CHECK_ORDER_OBSERVE, a pass
/// that drops a sort whose order only a float sum reads (a sum is order-free in exact
/// arithmetic, not in floating point); with it, clv_segments' sums differed from run to run.
pub fn reproducible(lf: LazyFrame) -> LazyFrame {
    lf.with_check_order(false)
}

/// All unfiltered store tables, lazily.
pub struct Tables {
    pub scans: std::collections::HashMap<&'static str, LazyFrame>,
}

impl Tables {
    pub fn from_store(store: &Store) -> Result<Tables, StoreError> {
        let mut scans = std::collections::HashMap::new();
        for def in schema::TABLES {
            scans.insert(def.name, store.scan_table(def)?);
        }
        Ok(Tables { scans })
    }

    /// From in-memory frames (tests): missing tables are empty with the canonical schema.
    pub fn from_frames(frames: Vec<(&'static str, DataFrame)>) -> Tables {
        let mut scans: std::collections::HashMap<&'static str, LazyFrame> =
            frames.into_iter().map(|(n, d)| (n, d.lazy())).collect();
        for def in schema::TABLES {
            scans
                .entry(def.name)
                .or_insert_with(|| DataFrame::empty_with_schema(&def.polars_schema()).lazy());
        }
        Tables { scans }
    }

    fn get(&self, name: &str) -> LazyFrame {
        self.scans[name].clone()
    }
}

fn not_after(c: &str, p: &Params) -> Expr {
    col(c).lt_eq(p.as_of_lit())
}

/// Nulls a milestone timestamp that lies after as_of.
fn known(c: &str, p: &Params) -> Expr {
    when(not_after(c, p))
        .then(col(c))
        .otherwise(lit(NULL).cast(crate::kpi::utc()))
        .alias(c)
}

impl Inputs {
    pub fn new(t: &Tables, p: &Params) -> Inputs {
        let leads = t.get("leads").filter(not_after("created_at", p)).with_columns([
            known("qualified_at", p),
            known("converted_at", p),
            known("disqualified_at", p),
        ]);
        let opportunities = t.get("opportunities").filter(not_after("created_at", p));
        let events_all = t.get("stage_events");
        let stage_events = events_all.clone().filter(not_after("entered_at", p)).semi_join(
            opportunities.clone(),
            col("opportunity_id"),
            col("opportunity_id"),
        );
        let orders = t
            .get("orders")
            .filter(not_after("ordered_at", p))
            .with_columns([known("paid_at", p)]);
        let activities = t.get("activities").filter(not_after("occurred_at", p));
        let accounts = t.get("accounts").filter(not_after("created_at", p));
        let forecasts = t.get("forecasts").filter(not_after("submitted_at", p));
        Inputs {
            leads,
            accounts,
            opportunities,
            stage_events,
            orders,
            activities,
            reps: t.get("reps"),
            targets: t.get("targets"),
            forecasts,
            campaigns: t.get("campaigns"),
            fx_rates: t.get("fx_rates"),
            engine: Engine::Auto,
            shared: Arc::new(Shared {
                params: p.clone(),
                events_all,
                frames: Mutex::new(HashMap::new()),
                used: Mutex::new(Vec::new()),
                values: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The intermediate `name`, collected from `plan()` on its first use; a scan of the
    /// collected frame. For a frame several KPIs (or several dimensions of one KPI) read:
    /// collected once, it is not recomputed by each reader. Kept until a family that does not
    /// read it is planned (see [`Inputs::forget_unused`]).
    pub fn shared(
        &self,
        name: &'static str,
        plan: impl FnOnce() -> PolarsResult<LazyFrame>,
    ) -> PolarsResult<LazyFrame> {
        self.collect_once(name, false, plan)
    }

    /// A value computed once per run and shared by the KPIs that read it (the CLV fits of
    /// clv_model and clv_predictive): `make` runs on the first call for `name`.
    pub fn computed_once<T: std::any::Any + Send + Sync>(
        &self,
        name: &'static str,
        make: impl FnOnce() -> PolarsResult<T>,
    ) -> PolarsResult<Arc<T>> {
        let values = || self.shared.values.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = values().get(name).cloned()
            && let Ok(v) = v.downcast::<T>()
        {
            return Ok(v);
        }
        // Not locked while computing: `make` may read shared frames.
        let v = Arc::new(make()?);
        values().insert(name, v.clone());
        Ok(v)
    }

    /// As [`Inputs::shared`], but `keep`: never forgotten, for a frame most families read.
    fn collect_once(
        &self,
        name: &'static str,
        keep: bool,
        plan: impl FnOnce() -> PolarsResult<LazyFrame>,
    ) -> PolarsResult<LazyFrame> {
        let frames = || self.shared.frames.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut used = self.shared.used.lock().unwrap_or_else(|e| e.into_inner());
            if !used.contains(&name) {
                used.push(name);
            }
        }
        if let Some((df, _)) = frames().get(name) {
            return Ok(df.clone().lazy());
        }
        // Not locked while collecting: `plan` may read other shared frames (whose own collects
        // are logged first and counted in this one's time).
        let t = std::time::Instant::now();
        let df = reproducible(plan()?).collect_with_engine(self.engine)?.unwrap_single();
        tracing::debug!(
            frame = name,
            rows = df.height(),
            ms = t.elapsed().as_millis() as u64,
            "shared frame collected"
        );
        frames().insert(name, (df.clone(), keep));
        Ok(df.lazy())
    }

    /// Forgets the shared frames not read since the last call, except those kept for the run
    /// (scans already planned keep theirs alive until collected). Returns the names of those
    /// read.
    pub fn forget_unused(&self) -> Vec<&'static str> {
        let used = std::mem::take(&mut *self.shared.used.lock().unwrap_or_else(|e| e.into_inner()));
        self.shared
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, (_, keep)| *keep || used.contains(name));
        used
    }

    /// Stage events at or before as_of (opportunity_id, stage, entered_at) with the stage's
    /// stage_index and terminal flag, sorted by opportunity_id, entered_at, stage_index: on
    /// equal times the later stage counts as the later event. Only the columns its readers use:
    /// at scale l it is 20M rows, held through the funnel family.
    pub fn ordered_events(&self) -> PolarsResult<LazyFrame> {
        self.shared("ordered_events", || {
            Ok(self
                .stage_events
                .clone()
                .select([col("opportunity_id"), col("stage"), col("entered_at")])
                .join(
                    stage_frame(&self.shared.params.config),
                    [col("stage")],
                    [col("stage")],
                    JoinArgs::new(JoinType::Left),
                )
                .select([
                    col("opportunity_id"),
                    col("stage"),
                    col("entered_at"),
                    col("stage_index"),
                    col("terminal"),
                ])
                .sort(
                    ["opportunity_id", "entered_at", "stage_index"],
                    SortMultipleOptions::default(),
                ))
        })
    }

    /// One row per deal created at or before as_of: its state at as_of. Columns: the
    /// opportunity's own (opportunity_id, account_id, owner_id, created_at, amount_base, lead_id,
    /// campaign_id, loss_reason, product, region, expected_close_date, forecast_category) plus
    /// `source` (of its lead), `stage` and `stage_entered_at` (last event at or before as_of),
    /// `status` (open/won/lost at as_of) and `closed_at` (at as_of; null while open).
    /// Kept for the whole run: most families read it.
    pub fn deals(&self) -> PolarsResult<LazyFrame> {
        self.collect_once("deals", true, || {
            Ok(deal_state(
                self.ordered_events()?,
                self.opportunities.clone(),
                self.shared.events_all.clone(),
                self.leads.clone(),
                &self.shared.params,
            ))
        })
    }

    /// One row per stage event at or before as_of (a visit to a stage): opportunity_id,
    /// owner_id (the deal's), stage, stage_index (position in the configured pipeline),
    /// terminal (bool), entered_at,
    /// exited_at (the deal's next event, or its close; null while still in the stage at as_of).
    /// A plan, not a shared frame: its one reader (the funnel's shared stage visits) is itself
    /// collected once, and a collected copy would sit beside it (1 GB at scale l).
    pub fn visits(&self) -> PolarsResult<LazyFrame> {
        Ok(stage_visits(self.ordered_events()?, self.deals()?))
    }
}

/// Each deal's state at as_of (see `Inputs::deals`) from its ordered as-of events.
fn deal_state(
    ordered_events: LazyFrame,
    opportunities: LazyFrame,
    events_all: LazyFrame,
    leads: LazyFrame,
    p: &Params,
) -> LazyFrame {
    let cfg = &p.config;
    let stages_of = |t: Terminal| -> Vec<String> {
        cfg.stages
            .iter()
            .filter(|s| s.terminal == Some(t))
            .map(|s| s.name.clone())
            .collect()
    };
    let won_stages = stages_of(Terminal::Won);
    let lost_stages = stages_of(Terminal::Lost);
    let in_list = |c: &str, v: &[String]| col(c).is_in(lit(Series::new("s".into(), v)).implode(false), false);

    // Last event at or before as_of per deal.
    let last = ordered_events.group_by([col("opportunity_id")]).agg([
        col("stage").last().alias("last_stage"),
        col("entered_at").last().alias("stage_entered_at"),
    ]);
    // Deals with a terminal event anywhere in their history use events as the truth.
    let terminal_ever = events_all
        .filter(in_list("stage", &won_stages).or(in_list("stage", &lost_stages)))
        .select([col("opportunity_id")])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(true).alias("has_terminal"));
    let source = leads.select([col("lead_id"), col("source")]);
    let fallback_closed = col("has_terminal")
        .not()
        .and(col("status").is_in(lit(Series::new("s".into(), ["won", "lost"])).implode(false), false))
        .and(col("closed_at").lt_eq(p.as_of_lit()));
    opportunities
        .join(
            last,
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            terminal_ever,
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            source,
            [col("lead_id")],
            [col("lead_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("has_terminal").fill_null(lit(false)))
        .with_columns([
            when(in_list("last_stage", &won_stages))
                .then(lit("won"))
                .when(in_list("last_stage", &lost_stages))
                .then(lit("lost"))
                .when(fallback_closed.clone())
                .then(col("status"))
                .otherwise(lit("open"))
                .alias("status_as_of"),
            when(in_list("last_stage", &won_stages).or(in_list("last_stage", &lost_stages)))
                .then(col("stage_entered_at"))
                .when(fallback_closed)
                .then(col("closed_at"))
                .otherwise(lit(NULL).cast(crate::kpi::utc()))
                .alias("closed_at_as_of"),
        ])
        .select([
            col("opportunity_id"),
            col("account_id"),
            col("owner_id"),
            col("created_at"),
            col("amount_base"),
            col("lead_id"),
            col("campaign_id"),
            col("source"),
            col("region"),
            col("product"),
            col("loss_reason"),
            col("expected_close_date"),
            col("forecast_category"),
            col("last_stage").alias("stage"),
            col("stage_entered_at"),
            col("status_as_of").alias("status"),
            col("closed_at_as_of").alias("closed_at"),
        ])
}

/// Visits (see `Inputs::visits`): in the sorted events the next event of the same deal ends
/// the visit; the last visit of a deal closed without a terminal event ends at its close.
fn stage_visits(ordered_events: LazyFrame, deals: LazyFrame) -> LazyFrame {
    ordered_events
        .with_columns([
            col("opportunity_id").shift(lit(-1)).alias("__next_opp"),
            col("entered_at").shift(lit(-1)).alias("__next_at"),
        ])
        .join(
            deals.select([
                col("opportunity_id"),
                col("owner_id"),
                col("closed_at").alias("__closed_at"),
            ]),
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            when(col("__next_opp").eq(col("opportunity_id")))
                .then(col("__next_at"))
                .when(col("terminal").not())
                .then(col("__closed_at"))
                .otherwise(lit(NULL).cast(crate::kpi::utc()))
                .alias("exited_at"),
        )
        .select([
            col("opportunity_id"),
            col("owner_id"),
            col("stage"),
            col("stage_index"),
            col("terminal"),
            col("entered_at"),
            col("exited_at"),
        ])
}

/// The configured pipeline: stage, stage_index (0-based), probability, terminal (bool),
/// outcome ("won"/"lost"/null).
pub fn stage_frame(cfg: &crate::config::Config) -> LazyFrame {
    let names: Vec<&str> = cfg.stages.iter().map(|s| s.name.as_str()).collect();
    let idx: Vec<u32> = (0..cfg.stages.len() as u32).collect();
    let prob: Vec<Option<f64>> = cfg.stages.iter().map(|s| s.probability).collect();
    let term: Vec<bool> = cfg.stages.iter().map(|s| s.terminal.is_some()).collect();
    let outcome: Vec<Option<&str>> = cfg
        .stages
        .iter()
        .map(|s| match s.terminal {
            Some(Terminal::Won) => Some("won"),
            Some(Terminal::Lost) => Some("lost"),
            None => None,
        })
        .collect();
    df!("stage" => names, "stage_index" => idx, "probability" => prob, "terminal" => term, "outcome" => outcome)
        .expect("stage frame")
        .lazy()
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
        .filter(is_open())
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
pub(crate) fn snapshot_dates(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
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
