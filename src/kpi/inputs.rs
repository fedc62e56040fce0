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
//!   closes the deal at that event. Where the export (`status`, `closed_at`, `stage`,
//!   `updated_at`) and the whole history disagree, [`export_vs_history`] settles it: the
//!   export's close wins from `closed_at` on when it is later than every won/lost event (or
//!   there is none), and a deal the export shows open after a won/lost last event gets the
//!   reopening event its history lacks (docs/decisions.md, "When the export and the history
//!   disagree");
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
            // The reopening events the history lacks (at or before as_of) count as events.
            let reopened = self
                .export_vs_history()?
                .filter(col("reopen_at").lt_eq(self.shared.params.as_of_lit()))
                .select([
                    col("opportunity_id"),
                    col("reopen_stage").alias("stage"),
                    col("reopen_at").alias("entered_at"),
                ]);
            let events = concat(
                [
                    self.stage_events
                        .clone()
                        .select([col("opportunity_id"), col("stage"), col("entered_at")]),
                    reopened,
                ],
                UnionArgs::default(),
            )?;
            Ok(resolve_stages(
                events,
                self.opportunities.clone(),
                &self.shared.params.config,
                &["terminal"],
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

    /// The deals (created at or before as_of) whose export and history disagree in a way that
    /// changes their state (see [`export_vs_history`]): opportunity_id, export_close (bool),
    /// reopen_at, reopen_stage. Kept for the whole run; small.
    pub fn export_vs_history(&self) -> PolarsResult<LazyFrame> {
        self.collect_once("export_vs_history", true, || {
            Ok(export_vs_history(
                self.opportunities.clone(),
                self.shared.events_all.clone(),
                &self.shared.params.config,
            )
            .filter(col("export_close").or(col("reopen_at").is_not_null()))
            .select([
                col("opportunity_id"),
                col("export_close"),
                col("reopen_at"),
                col("reopen_stage"),
            ]))
        })
    }

    /// One row per deal created at or before as_of: its state at as_of. Columns: the
    /// opportunity's own (opportunity_id, account_id, owner_id, created_at, amount_base, lead_id,
    /// campaign_id, loss_reason, product, region, expected_close_date, forecast_category) plus
    /// `source` (of its lead), `pipeline` (that of its last event at or before as_of; without
    /// one, the export's when configured, else the first pipeline), `stage` and
    /// `stage_entered_at` (last event at or before as_of),
    /// `status` (open/won/lost at as_of) and `closed_at` (at as_of; null while open).
    /// Kept for the whole run: most families read it.
    pub fn deals(&self) -> PolarsResult<LazyFrame> {
        self.collect_once("deals", true, || {
            Ok(deal_state(
                self.ordered_events()?,
                self.opportunities.clone(),
                self.export_vs_history()?,
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

/// Each deal's state at as_of (see `Inputs::deals`) from its ordered as-of events (reopening
/// events included) and the export's close where it wins (`export_vs_history`).
fn deal_state(
    ordered_events: LazyFrame,
    opportunities: LazyFrame,
    export_vs_history: LazyFrame,
    leads: LazyFrame,
    p: &Params,
) -> LazyFrame {
    let cfg = &p.config;
    // Last event at or before as_of per deal.
    let last = ordered_events
        .group_by([col("opportunity_id")])
        .agg([
            col("stage").last().alias("last_stage"),
            col("entered_at").last().alias("stage_entered_at"),
            col("stage_index").last().alias("__last_index"),
        ])
        .join(
            stage_frame(cfg).select([
                col("stage_index").alias("__last_index"),
                col("outcome").alias("__last_outcome"),
                col("pipeline").alias("__last_pipeline"),
            ]),
            [col("__last_index")],
            [col("__last_index")],
            JoinArgs::new(JoinType::Left),
        );
    let source = leads.select([col("lead_id"), col("source")]);
    // The export's close, where it wins, from closed_at on: before any event's verdict.
    let export_closed = col("export_close").and(col("closed_at").lt_eq(p.as_of_lit()));
    opportunities
        .join(
            last,
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            export_vs_history.select([col("opportunity_id"), col("export_close")]),
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
        .with_column(col("export_close").fill_null(lit(false)))
        .with_columns([
            when(export_closed.clone())
                .then(col("status"))
                .when(col("__last_outcome").is_not_null())
                .then(col("__last_outcome"))
                .otherwise(lit("open"))
                .alias("status_as_of"),
            when(export_closed)
                .then(col("closed_at"))
                .when(col("__last_outcome").is_not_null())
                .then(col("stage_entered_at"))
                .otherwise(lit(NULL).cast(crate::kpi::utc()))
                .alias("closed_at_as_of"),
            coalesce(&[col("__last_pipeline"), deal_pipeline(cfg)]).alias("__pipeline_as_of"),
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
            col("__pipeline_as_of").alias("pipeline"),
            col("last_stage").alias("stage"),
            col("stage_entered_at"),
            col("status_as_of").alias("status"),
            col("closed_at_as_of").alias("closed_at"),
        ])
}

/// How each deal's export (`status`, `closed_at`, `stage`, `updated_at`) and its whole stage
/// history (`events_all`: every time, not only up to as_of) agree; the rule of
/// docs/decisions.md, "When the export and the history disagree". One row per opportunity of
/// `opportunities`:
/// - `export_close`: the export's won/lost close wins from `closed_at` on: the deal has no
///   won/lost event, or `closed_at` is later than every event of its history and the history
///   does not end in a won/lost event of the same outcome;
/// - `reopen_at`, `reopen_stage`: the export says open but the history ends in a won/lost
///   event: the reopening event the history lacks, at `updated_at` when later than that event,
///   else one microsecond after it, into the export's `stage` when it is an open stage of the
///   pipeline, else the deal's last open stage, else the pipeline's first stage (null
///   otherwise);
/// - `disagreement`: the kind, for `validate` (null when they agree): "export_close" (the
///   export's close after the history's won/lost events wins), "reopened" (reopened without
///   an event), "history_close" (the export says closed, a later won/lost event or a later
///   reopening in the history decides), "close_date" (same outcome, the export's closed_at is
///   later than the event's time, which is kept).
///
/// On equal times a won/lost event counts as later than an open-stage one (then the later
/// stage of the pipeline). Events are packed into one integer key per event (time, then rank),
/// so the per-deal maxima are plain integer aggregations.
pub fn export_vs_history(opportunities: LazyFrame, events_all: LazyFrame, cfg: &crate::config::Config) -> LazyFrame {
    // key = time_us * 2048 + rank, rank = 1 + stage_index (+ 1024 for a won/lost stage);
    // stage_index < 1023 (checked by the configuration).
    let ts = col("entered_at").cast(DataType::Int64);
    let terminal = col("outcome").is_not_null();
    let rank = col("stage_index").cast(DataType::Int64).fill_null(lit(-1i64))
        + lit(1i64)
        + when(terminal.clone()).then(lit(1024i64)).otherwise(lit(0i64));
    let key = ts.clone() * lit(2048i64) + rank;
    let open_known = col("stage_index").is_not_null().and(terminal.clone().not());
    let nul = || lit(NULL).cast(DataType::Int64);
    let per_deal = resolve_stages(
        events_all.select([col("opportunity_id"), col("stage"), col("entered_at")]),
        opportunities.clone(),
        cfg,
        &["outcome"],
    )
    .select([
        col("opportunity_id"),
        key.clone().alias("__key"),
        ts.clone().alias("__ts"),
        when(terminal.clone())
            .then(key.clone())
            .otherwise(nul())
            .alias("__term_key"),
        when(terminal).then(ts.clone()).otherwise(nul()).alias("__term_ts"),
        when(open_known.clone()).then(key).otherwise(nul()).alias("__open_key"),
        when(open_known).then(ts).otherwise(nul()).alias("__open_ts"),
    ])
    .group_by([col("opportunity_id")])
    .agg([
        col("__key").max().alias("__last_key"),
        col("__ts").max().alias("__last_ts"),
        col("__term_key").max(),
        col("__term_ts").max(),
        col("__open_key").max(),
        col("__open_ts").max(),
    ])
    .with_columns([
        (col("__term_key") - col("__term_ts") * lit(2048i64) - lit(1025i64)).alias("__term_index"),
        (col("__open_key") - col("__open_ts") * lit(2048i64) - lit(1i64)).alias("__open_index"),
        col("__term_key")
            .eq(col("__last_key"))
            .fill_null(lit(false))
            .alias("__last_is_term"),
    ]);
    let by_index = |name: &str, c: &str| {
        stage_frame(cfg).select([
            col("stage_index").cast(DataType::Int64).alias(name),
            col(c).alias(format!("{name}_{c}").as_str()),
        ])
    };
    let open_stages: Vec<String> = cfg
        .stages
        .iter()
        .filter(|s| s.terminal.is_none())
        .map(|s| s.name.clone())
        .collect();
    // Each pipeline's first stage.
    let first_stages = stage_frame(cfg)
        .group_by([col("pipeline")])
        .agg([col("stage").first().alias("__first_stage")]);
    let closed_us = col("closed_at").cast(DataType::Int64);
    let has_term = col("__term_ts").is_not_null();
    let same_outcome = col("__term_index_outcome").eq(col("status")).fill_null(lit(false));
    let export_says_closed = col("status").is_in(lit(Series::new("s".into(), ["won", "lost"])).implode(false), false);
    // Later than every event (a reopening logged after the export's close is the later word).
    let later = closed_us.clone().gt(col("__last_ts")).fill_null(lit(false));
    let export_close = export_says_closed.clone().and(
        has_term
            .clone()
            .not()
            .or(later.clone().and(col("__last_is_term").and(same_outcome.clone()).not())),
    );
    let reopen = col("status").eq(lit("open")).and(col("__last_is_term"));
    let after_event = col("__term_ts") + lit(1i64);
    let updated_us = col("updated_at").cast(DataType::Int64);
    let reopen_us = when(updated_us.clone().gt(after_event.clone()))
        .then(updated_us)
        .otherwise(after_event);
    let export_stage = when(col("stage").is_in(lit(Series::new("s".into(), open_stages)).implode(false), false))
        .then(col("stage"))
        .otherwise(lit(NULL).cast(DataType::String));
    opportunities
        .select([
            col("opportunity_id"),
            col("status"),
            col("closed_at"),
            col("stage"),
            col("updated_at"),
            deal_pipeline(cfg).alias("__pipeline"),
        ])
        .join(
            first_stages,
            [col("__pipeline")],
            [col("pipeline")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            per_deal,
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("__last_is_term").fill_null(lit(false)))
        .join(
            by_index("__term_index", "outcome"),
            [col("__term_index")],
            [col("__term_index")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            by_index("__open_index", "stage"),
            [col("__open_index")],
            [col("__open_index")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            export_close.clone().alias("export_close"),
            when(reopen.clone())
                .then(reopen_us.cast(crate::kpi::utc()))
                .otherwise(lit(NULL).cast(crate::kpi::utc()))
                .alias("reopen_at"),
            when(reopen.clone())
                .then(coalesce(&[
                    export_stage,
                    col("__open_index_stage"),
                    col("__first_stage"),
                ]))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("reopen_stage"),
            when(export_close.clone().and(has_term.clone()))
                .then(lit("export_close"))
                .when(reopen)
                .then(lit("reopened"))
                .when(
                    export_says_closed
                        .clone()
                        .and(has_term)
                        .and(export_close.not())
                        .and(col("__last_is_term").not().or(same_outcome.clone().not())),
                )
                .then(lit("history_close"))
                .when(
                    export_says_closed
                        .and(col("__last_is_term"))
                        .and(same_outcome)
                        .and(later),
                )
                .then(lit("close_date"))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("disagreement"),
        ])
        .select([
            col("opportunity_id"),
            col("export_close"),
            col("reopen_at"),
            col("reopen_stage"),
            col("disagreement"),
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

/// The configured stages, every pipeline's: pipeline, stage, stage_index (0-based position in
/// the whole list: a pipeline's stages are consecutive), probability, terminal (bool), outcome
/// ("won"/"lost"/null).
pub fn stage_frame(cfg: &crate::config::Config) -> LazyFrame {
    let pipelines: Vec<&str> = cfg.stages.iter().map(|s| s.pipeline.as_str()).collect();
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
    df!("pipeline" => pipelines, "stage" => names, "stage_index" => idx, "probability" => prob, "terminal" => term, "outcome" => outcome)
        .expect("stage frame")
        .lazy()
}

/// A deal's pipeline as its export names it, when configured; else the default (first) one.
pub(crate) fn deal_pipeline(cfg: &crate::config::Config) -> Expr {
    let names: Vec<&str> = cfg.pipeline_names();
    when(col("pipeline").is_in(lit(Series::new("p".into(), names)).implode(false), false))
        .then(col("pipeline"))
        .otherwise(lit(cfg.default_pipeline()))
}

/// Adds `stage_index` (null for a stage no pipeline has) and the stage frame's columns `extra`
/// to rows with `opportunity_id` and `stage` (a stage name). A stage is looked up in its
/// deal's pipeline (`opportunities.pipeline`, see [`deal_pipeline`]); a stage that pipeline
/// lacks is the first configured stage of that name (the deal moved between pipelines, or its
/// export names none). With one pipeline, one join on the name.
pub(crate) fn resolve_stages(
    rows: LazyFrame,
    opportunities: LazyFrame,
    cfg: &crate::config::Config,
    extra: &[&str],
) -> LazyFrame {
    let extra_cols = || extra.iter().map(|c| col(*c)).collect::<Vec<_>>();
    if cfg.pipeline_names().len() == 1 {
        let right = stage_frame(cfg).select(
            [col("stage"), col("stage_index")]
                .into_iter()
                .chain(extra_cols())
                .collect::<Vec<_>>(),
        );
        return rows.join(right, [col("stage")], [col("stage")], JoinArgs::new(JoinType::Left));
    }
    let stages = stage_frame(cfg);
    let resolved = rows
        .join(
            opportunities.select([col("opportunity_id"), deal_pipeline(cfg).alias("__deal_pipeline")]),
            [col("opportunity_id")],
            [col("opportunity_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            stages.clone().select([
                col("pipeline").alias("__deal_pipeline"),
                col("stage"),
                col("stage_index").alias("__exact"),
            ]),
            [col("__deal_pipeline"), col("stage")],
            [col("__deal_pipeline"), col("stage")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            stages
                .clone()
                .group_by([col("stage")])
                .agg([col("stage_index").min().alias("__any")]),
            [col("stage")],
            [col("stage")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(coalesce(&[col("__exact"), col("__any")]).alias("stage_index"))
        .drop(cols(["__deal_pipeline", "__exact", "__any"]));
    if extra.is_empty() {
        return resolved;
    }
    resolved.join(
        stages.select([col("stage_index")].into_iter().chain(extra_cols()).collect::<Vec<_>>()),
        [col("stage_index")],
        [col("stage_index")],
        JoinArgs::new(JoinType::Left),
    )
}

/// Keeps the rows whose deal is open at the instant `__t`, and adds `__stage` (the stage of its
/// last event at or before `__t`, null if none), `__probability` and `__pipeline` (that stage's
/// pipeline, else the row's `pipeline`).
///
/// `rows` needs `opportunity_id`, `__t` (Datetime(us, UTC)), `created_at`, `closed_at` (the
/// deal's close at as_of, null while open) and `pipeline`, and no `__stage` column. `__t` must be at or before
/// as_of. The rule is the one of `inputs.rs`, applied at `__t`: a deal closed at as_of with
/// `closed_at <= __t` is closed at `__t` (its closing event, or the export's close, is the last
/// word up to as_of); any other deal is open at `__t` unless its last event at or before `__t`
/// (reopening events included) is terminal (a deal won, then reopened before as_of, for
/// instance). A deal closed by its export is closed from its `closed_at` on, so the first test
/// decides it from there; before, its events do.
/// Amounts are the current ones (no amount history is kept).
pub(crate) fn open_at(rows: LazyFrame, i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let stages = stage_frame(&p.config);
    // Events sorted by deal, time and pipeline position: the backward as-of join takes the last
    // row at or before `__t`, so on equal times the later stage wins (as in `inputs.rs`).
    let events = i.ordered_events()?.select([
        col("opportunity_id"),
        col("entered_at").alias("__entered_at"),
        col("stage").alias("__stage"),
        col("stage_index").alias("__stage_index"),
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
                col("stage_index").alias("__stage_index"),
                col("pipeline").alias("__stage_pipeline"),
                col("probability").alias("__probability"),
                col("terminal").alias("__terminal"),
            ]),
            [col("__stage_index")],
            [col("__stage_index")],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col("__terminal").fill_null(lit(false)).not())
        .with_column(coalesce(&[col("__stage_pipeline"), col("pipeline")]).alias("__pipeline"))
        .drop(cols([
            "__terminal",
            "__entered_at",
            "__stage_index",
            "__stage_pipeline",
        ])))
}

/// One row per deal per snapshot at which it is open: the end of every past period (from the
/// deal's creation period to the period before as_of's) and as_of itself. Columns:
/// `snapshot_at` (Date), `period_start` (of the snapshot's period), `__t` (the instant),
/// owner_id, created_at, amount_base, `pipeline` (of its stage at the instant; without one, the
/// deal's at as_of), `__stage`, `__probability`.
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
        col("pipeline"),
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
    let past = open_at(past, i, p)?.drop(cols(["pipeline"]));
    // At as_of the deal's state is the shared one of `Inputs::deals`.
    let now = base
        .filter(is_open())
        .with_columns([
            as_of_col(p).alias("snapshot_at"),
            cur.alias("period_start"),
            p.as_of_lit().alias("__t"),
        ])
        .join(
            stage_frame(cfg).select([col("pipeline"), col("stage"), col("probability").alias("__probability")]),
            [col("pipeline"), col("stage")],
            [col("pipeline"), col("stage")],
            JoinArgs::new(JoinType::Left),
        )
        .rename(["stage", "pipeline"], ["__stage", "__pipeline"], true)
        .drop(cols(["status"]));
    // No opportunity_id: the readers count and sum, and the frame is kept for several KPIs.
    let select = [
        "snapshot_at",
        "period_start",
        "__t",
        "owner_id",
        "created_at",
        "amount_base",
        "__pipeline",
        "__stage",
        "__probability",
    ]
    .map(col);
    Ok(
        concat([past.select(select.clone()), now.select(select)], UnionArgs::default())?.rename(
            ["__pipeline"],
            ["pipeline"],
            true,
        ),
    )
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
