"""Cross-check crm-kpi's KPI outputs against the same definitions written independently in
DuckDB SQL (and, for Kaplan-Meier, a small Python product-limit estimator) over the same store
files.

Usage: crosscheck.py STORE OUT AS_OF [KPI,...]   (AS_OF = YYYY-MM-DD; the run must use
--as-of AS_OF and the default config: UTC, monthly grain, default pipeline, deal_size_buckets
[10000, 50000], stale_after_days 30, reengagement 90-180 days). Every KPI of the catalog is
checked unless a comma-separated list is given. Exits 1 on any mismatch.

       crosscheck.py --perturb GEN_DIR OUT_DIR   copies generated Parquet files, adding the edge
cases the generator does not produce (crosscheck.sh does it when EDGE=1): closed deals without a
terminal event (fallback close), deals without any stage event, two events of a deal at the same
instant (also a terminal one), zero amounts, forecasts without a category and zero forecasts.

The SQL follows the definitions of `crm-kpi list --long` and docs/decisions.md:
- as_of = the end of the AS_OF day in UTC; rows whose main timestamp is later are dropped;
- a deal's state at an instant T comes from its stage events: the last event at or before T
  decides (ties on time: the later stage of the pipeline), a terminal stage closes the deal at
  that event; a deal with no terminal event anywhere in its history is closed from its
  status/closed_at when closed_at <= T;
- a visit is one stage event; it ends at the deal's next event, or at its (fallback) close, or
  is censored at as_of;
- periods are calendar months cut in UTC; durations are days = microseconds / 86_400e6.
"""

import datetime
import json
import math
import numbers
import os
import sys
import time
from collections import defaultdict

import duckdb

# The default pipeline of crm-kpi.toml: (name, probability, terminal).
PIPELINE = [
    ("prospecting", 0.1, None),
    ("qualification", 0.2, None),
    ("proposal", 0.5, None),
    ("negotiation", 0.8, None),
    ("closed_won", 1.0, "won"),
    ("closed_lost", 0.0, "lost"),
]
STAGES = [s for s, _, _ in PIPELINE]
WON_STAGES = [s for s, _, t in PIPELINE if t == "won"]
LOST_STAGES = [s for s, _, t in PIPELINE if t == "lost"]
BUCKETS = (10000.0, 50000.0)
STALE_AFTER_DAYS = 30
REENGAGE_MIN, REENGAGE_MAX, REENGAGE_LOOKAHEAD = 90, 180, 30
US_PER_DAY = 86_400_000_000
Z_95 = 1.959963984540054


def sql_list(xs):
    return "(" + ", ".join(f"'{x}'" for x in xs) + ")"


def files(store, table):
    m = json.load(open(f"{store}/_manifest.json"))
    t = m["tables"].get(table)
    return [f"{store}/{f['path']}" for f in t["files"]] if t else []


# Canonical columns of the tables read here, for stores where a table has no file.
EMPTY = {
    "leads": "lead_id VARCHAR, created_at TIMESTAMPTZ, source VARCHAR, campaign_id VARCHAR, owner_id VARCHAR, "
    "region VARCHAR, qualified_at TIMESTAMPTZ, converted_at TIMESTAMPTZ, account_id VARCHAR, "
    "disqualified_at TIMESTAMPTZ",
    "accounts": "account_id VARCHAR, created_at TIMESTAMPTZ, name VARCHAR, region VARCHAR, segment VARCHAR, "
    "industry VARCHAR",
    "opportunities": "opportunity_id VARCHAR, account_id VARCHAR, created_at TIMESTAMPTZ, owner_id VARCHAR, "
    "status VARCHAR, closed_at TIMESTAMPTZ, expected_close_date DATE, lead_id VARCHAR, campaign_id VARCHAR, "
    "loss_reason VARCHAR, region VARCHAR, amount_base DOUBLE",
    "stage_events": "opportunity_id VARCHAR, stage VARCHAR, entered_at TIMESTAMPTZ",
    "orders": "order_id VARCHAR, account_id VARCHAR, ordered_at TIMESTAMPTZ, amount DOUBLE, currency VARCHAR, "
    "opportunity_id VARCHAR, paid_at TIMESTAMPTZ, due_at TIMESTAMPTZ, region VARCHAR, channel VARCHAR, "
    "is_refund BOOLEAN, amount_base DOUBLE",
    "activities": "activity_id VARCHAR, owner_id VARCHAR, kind VARCHAR, occurred_at TIMESTAMPTZ, outcome VARCHAR, "
    "duration_s BIGINT, lead_id VARCHAR, opportunity_id VARCHAR, account_id VARCHAR",
    "targets": "scope VARCHAR, scope_kind VARCHAR, period_start DATE, grain VARCHAR, metric VARCHAR, value DOUBLE",
    "campaigns": "campaign_id VARCHAR, name VARCHAR, channel VARCHAR, spend DOUBLE, currency VARCHAR, "
    "started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, spend_base DOUBLE",
    "forecasts": "owner_id VARCHAR, period_start DATE, grain VARCHAR, category VARCHAR, "
    "submitted_at TIMESTAMPTZ, amount_base DOUBLE",
    "reps": "rep_id VARCHAR, name VARCHAR, team VARCHAR, region VARCHAR, manager_id VARCHAR, active_from DATE, "
    "active_to DATE",
}


def setup(con, store, as_of):
    for t, cols in EMPTY.items():
        fs = files(store, t)
        if fs:
            src = f"read_parquet({fs!r}, hive_partitioning = false, union_by_name = true)"
            con.execute(f"CREATE VIEW {t}_all AS SELECT * FROM {src}")
        else:
            con.execute(f"CREATE TABLE {t}_all ({cols})")
    # End of the as_of day, UTC (the default config's timezone).
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE MACRO as_of_ts() AS (TIMESTAMPTZ '{as_of} 23:59:59.999999+00')")
    con.execute(f"CREATE MACRO as_of_date() AS (DATE '{as_of}')")
    con.execute(f"CREATE MACRO cur_period() AS (DATE '{as_of[:8]}01')")
    # Month of a timestamp (UTC) or a date, as a DATE.
    con.execute("CREATE MACRO month_of(x) AS CAST(date_trunc('month', x) AS DATE)")
    con.execute("CREATE MACRO us(x) AS epoch_us(x)")
    con.execute(f"CREATE MACRO days_between(a, b) AS ((epoch_us(b) - epoch_us(a)) / {US_PER_DAY}.0)")
    rows = ", ".join(
        f"('{s}', {i}, {p!r}, {'true' if t else 'false'})" for i, (s, p, t) in enumerate(PIPELINE)
    )
    con.execute(
        "CREATE TABLE stages(stage VARCHAR, stage_index INT, probability DOUBLE, terminal BOOLEAN); "
        f"INSERT INTO stages VALUES {rows}"
    )
    terminal = sql_list(WON_STAGES + LOST_STAGES)
    con.execute(f"""
        CREATE VIEW opps AS SELECT * FROM opportunities_all WHERE created_at <= as_of_ts();
        CREATE TABLE events AS SELECT e.opportunity_id, e.stage, e.entered_at FROM stage_events_all e
            WHERE e.entered_at <= as_of_ts() AND e.opportunity_id IN (SELECT opportunity_id FROM opps);
        -- One event per deal and instant: on equal times the later stage of the pipeline wins.
        CREATE TABLE events_last_per_instant AS
            SELECT opportunity_id, stage, entered_at FROM (
              SELECT e.*, row_number() OVER (PARTITION BY opportunity_id, entered_at
                     ORDER BY s.stage_index DESC NULLS LAST) AS rn
              FROM events e LEFT JOIN stages s USING (stage)) WHERE rn = 1;
        CREATE TABLE last_event AS
            SELECT opportunity_id, last_stage, stage_entered_at FROM (
              SELECT opportunity_id, stage AS last_stage, entered_at AS stage_entered_at,
                     row_number() OVER (PARTITION BY opportunity_id ORDER BY entered_at DESC) AS rn
              FROM events_last_per_instant) WHERE rn = 1;
        CREATE TABLE has_terminal AS SELECT DISTINCT opportunity_id FROM stage_events_all
            WHERE stage IN {terminal};
        CREATE TABLE deals AS
            SELECT o.opportunity_id, o.account_id, o.owner_id, o.region, o.amount_base, o.created_at,
                   o.loss_reason, o.campaign_id, o.expected_close_date, l.source,
                   le.last_stage AS stage, le.stage_entered_at,
                   CASE WHEN le.last_stage IN {sql_list(WON_STAGES)} THEN 'won'
                        WHEN le.last_stage IN {sql_list(LOST_STAGES)} THEN 'lost'
                        WHEN h.opportunity_id IS NULL AND o.status IN ('won', 'lost')
                             AND o.closed_at <= as_of_ts() THEN o.status
                        ELSE 'open' END AS status,
                   CASE WHEN le.last_stage IN {terminal} THEN le.stage_entered_at
                        WHEN h.opportunity_id IS NULL AND o.status IN ('won', 'lost')
                             AND o.closed_at <= as_of_ts() THEN o.closed_at END AS closed_at
            FROM opps o
            LEFT JOIN last_event le USING (opportunity_id)
            LEFT JOIN has_terminal h USING (opportunity_id)
            LEFT JOIN (SELECT lead_id, source FROM leads_all WHERE created_at <= as_of_ts()) l USING (lead_id);
        CREATE VIEW closed AS
            SELECT *, month_of(closed_at) AS period_start,
                   epoch(closed_at - created_at) / 86400.0 AS days
            FROM deals WHERE status IN ('won', 'lost');
        -- Visits to non-terminal stages: each event at or before as_of; it ends at the deal's next
        -- event (ties on time ordered by pipeline position), else at the deal's close (a deal
        -- closed without a terminal event), else it is censored at as_of.
        CREATE TABLE visits AS
            SELECT v.opportunity_id, v.stage, d.owner_id, v.entered_at,
                   COALESCE(v.next_at, d.closed_at) AS exited_at,
                   COALESCE(v.next_at, d.closed_at) IS NOT NULL AS completed,
                   us(COALESCE(v.next_at, d.closed_at, as_of_ts())) - us(v.entered_at) AS days_us,
                   days_between(v.entered_at, COALESCE(v.next_at, d.closed_at, as_of_ts())) AS days
            FROM (SELECT e.*, s.terminal,
                         lead(e.entered_at) OVER (PARTITION BY e.opportunity_id
                                                  ORDER BY e.entered_at, s.stage_index) AS next_at
                  FROM events e LEFT JOIN stages s USING (stage)) v
            JOIN deals d USING (opportunity_id)
            WHERE v.terminal = false;
        -- Snapshot instants: the end of every month from the first deal's creation month to the
        -- month before as_of's, then as_of itself.
        CREATE TABLE snaps AS
            SELECT CAST(m + INTERVAL 1 MONTH - INTERVAL 1 DAY AS DATE) AS snapshot_at,
                   CAST(m AS DATE) AS period_start,
                   CAST(CAST(m + INTERVAL 1 MONTH AS DATE) AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND AS t
            FROM (SELECT unnest(generate_series(
                      CAST(month_of((SELECT min(created_at) FROM opps)) AS TIMESTAMP),
                      CAST(cur_period() AS TIMESTAMP) - INTERVAL 1 MONTH, INTERVAL 1 MONTH)) AS m)
            UNION ALL SELECT as_of_date(), cur_period(), as_of_ts();
    """)


def open_at(pairs):
    """The rows of `pairs` (a query with opportunity_id and t, a TIMESTAMPTZ <= as_of) whose deal is
    open at t, with snap_stage (stage of its last event at or before t; null without any) and
    snap_prob (that stage's probability)."""
    return f"""
        SELECT p.*, e.stage AS snap_stage, s.probability AS snap_prob
        FROM ({pairs}) p
        ASOF LEFT JOIN events_last_per_instant e
            ON p.opportunity_id = e.opportunity_id AND p.t >= e.entered_at
        LEFT JOIN stages s ON s.stage = e.stage
        JOIN opps o ON o.opportunity_id = p.opportunity_id
        LEFT JOIN has_terminal h ON h.opportunity_id = p.opportunity_id
        WHERE o.created_at <= p.t
          AND NOT COALESCE(s.terminal, false)
          AND NOT (h.opportunity_id IS NULL AND o.status IN ('won', 'lost') AND o.closed_at <= p.t)
    """


def by_dims(src, select, group, dims):
    """UNION ALL of `select` over `src` grouped by `group` (list) for the `all` row and then per
    dimension, with dimension / dimension_value columns."""
    def g(extra):
        cols = group + extra
        return f" GROUP BY {', '.join(cols)}" if cols else ""
    parts = [f"SELECT 'all' AS dimension, NULL::VARCHAR AS dimension_value, {select} FROM {src}{g([])}"]
    for d in dims:
        parts.append(f"SELECT '{d}', CAST({d} AS VARCHAR), {select} FROM {src}{g([d])}")
    return " UNION ALL ".join(parts)


def dims_union(select, dims, group):
    return by_dims("closed", select, [group], dims)


# ---------------------------------------------------------------------------------------------
# Funnel

FUNNEL_STEPS = [(s, i, True) for i, (s, _, t) in enumerate(PIPELINE) if t is None] + [
    (s, i, False) for i, (s, _, t) in enumerate(PIPELINE) if t == "won"
]


def stage_funnel_sql():
    flags = ", ".join(
        f"COALESCE(bool_or(stage = '{s}'), false) AS a{k}" for k, (s, _, _) in enumerate(FUNNEL_STEPS)
    )
    chain = [k for k, (_, _, c) in enumerate(FUNNEL_STEPS) if c]
    per_step = []
    for k, (s, idx, in_chain) in enumerate(FUNNEL_STEPS):
        required = [f"a{j}" for j in chain if j < k] if in_chain else [f"a{j}" for j in chain]
        ordered = " AND ".join([f"a{k}"] + required)
        per_step.append(
            f"SELECT opportunity_id, owner_id, campaign_id, created_period, '{s}' AS stage, "
            f"{idx} AS stage_index, {k} AS step, a{k} AS f_any, ({ordered}) AS f_ordered FROM funnel_deal"
        )
    counts = by_dims(
        "funnel_grid",
        "stage, stage_index, step, SUM(f_any::INT) AS n_any, SUM(f_ordered::INT) AS n_ordered",
        ["stage", "stage_index", "step"],
        ["owner_id", "campaign_id", "created_period"],
    )
    return f"""
        WITH touched AS (SELECT opportunity_id, {flags} FROM events GROUP BY opportunity_id),
        funnel_deal AS (
            SELECT d.opportunity_id, d.owner_id, d.campaign_id,
                   strftime(month_of(d.created_at), '%Y-%m-%d') AS created_period,
                   {", ".join(f"COALESCE(t.a{k}, false) AS a{k}" for k in range(len(FUNNEL_STEPS)))}
            FROM deals d LEFT JOIN touched t USING (opportunity_id)),
        funnel_grid AS ({" UNION ALL ".join(per_step)}),
        counts AS ({counts}),
        modes AS (SELECT 'any' AS mode, dimension, dimension_value, stage, stage_index, step, n_any AS reached FROM counts
                  UNION ALL
                  SELECT 'ordered', dimension, dimension_value, stage, stage_index, step, n_ordered FROM counts)
        SELECT mode, dimension, dimension_value, stage, stage_index, reached,
               CASE WHEN reached = 0 THEN NULL ELSE
                 lead(reached) OVER (PARTITION BY mode, dimension, dimension_value ORDER BY step) / reached END
                 AS next_stage_rate,
               CASE WHEN first = 0 THEN NULL ELSE reached / first END AS from_first_rate
        FROM (SELECT *, max(CASE WHEN step = 0 THEN reached END)
                          OVER (PARTITION BY mode, dimension, dimension_value) AS first FROM modes)
    """


def stage_duration_sql():
    c = "CASE WHEN completed THEN days END"
    return "SELECT * FROM (" + by_dims(
        "visits",
        "stage, COUNT(*) AS visits, SUM(completed::INT) AS completed, SUM((NOT completed)::INT) AS censored, "
        f"AVG({c}) AS mean_days, quantile_cont({c}, 0.25) AS p25_days, quantile_cont({c}, 0.5) AS median_days, "
        f"quantile_cont({c}, 0.75) AS p75_days, quantile_cont({c}, 0.9) AS p90_days",
        ["stage"],
        ["owner_id"],
    ) + ")"


def kaplan_meier(obs):
    """Product-limit estimate over (duration_us, event) pairs: one step per distinct duration,
    (t_us, at_risk, events, censored, S, ci_low, ci_high). A subject censored at t is at risk at t;
    log-log (exponential Greenwood) 95% band."""
    obs = sorted(obs)
    n = len(obs)
    steps, s, g, i = [], 1.0, 0.0, 0
    while i < n:
        t = obs[i][0]
        j = i
        while j < n and obs[j][0] == t:
            j += 1
        d = sum(1 for k in range(i, j) if obs[k][1])
        c = (j - i) - d
        at_risk = n - i
        if d:
            s *= 1.0 - d / at_risk
            if at_risk > d:
                g += d / (at_risk * (at_risk - d))
        if s >= 1.0:
            lo, hi = 1.0, 1.0
        elif s <= 0.0:
            lo, hi = 0.0, 0.0
        else:
            ln_s = math.log(s)
            half = Z_95 * math.sqrt(g) / abs(ln_s)
            cc = math.log(-ln_s)
            lo, hi = math.exp(-math.exp(cc + half)), math.exp(-math.exp(cc - half))
        steps.append((t, at_risk, d, c, s, lo, hi))
        i = j
    return steps


def first_at_or_below(steps, idx, q=0.5):
    for st in steps:
        if st[idx] <= q:
            return st[0] / US_PER_DAY
    return None


_KM = {}


def km_groups(con):
    if id(con) in _KM:
        return _KM[id(con)]
    groups = defaultdict(list)
    cur = con.execute("SELECT stage, owner_id, days_us, completed FROM visits")
    # In batches: at scale l the visits are 20M rows.
    while batch := cur.fetchmany(1_000_000):
        for stage, owner, days_us, completed in batch:
            groups[(stage, "all", None)].append((days_us, completed))
            groups[(stage, "owner_id", owner)].append((days_us, completed))
    _KM[id(con)] = {k: kaplan_meier(v) for k, v in groups.items()}
    return _KM[id(con)]


def stage_duration_ref(con):
    cols, rows = fetch(con, stage_duration_sql())
    km = km_groups(con)
    for r in rows:
        steps = km[(r["stage"], r["dimension"], r["dimension_value"])]
        r["km_median_days"] = first_at_or_below(steps, 4)
        r["km_median_ci_low"] = first_at_or_below(steps, 5)
        r["km_median_ci_high"] = first_at_or_below(steps, 6)
    return cols + ["km_median_days", "km_median_ci_low", "km_median_ci_high"], rows


def stage_duration_survival_ref(con):
    cols = ["stage", "dimension", "dimension_value", "t_days", "at_risk", "events", "censored",
            "survival", "ci_low", "ci_high"]
    rows = []
    for (stage, dim, val), steps in km_groups(con).items():
        for t, n, d, c, s, lo, hi in steps:
            rows.append(dict(zip(cols, (stage, dim, val, t / US_PER_DAY, n, d, c, s, lo, hi))))
    return cols, rows


# ---------------------------------------------------------------------------------------------
# Pipeline

def pipeline_snapshot_sql():
    pairs = "SELECT s.snapshot_at, s.t, o.opportunity_id FROM snaps s JOIN opps o ON o.created_at <= s.t"
    return f"""
        WITH op AS ({open_at(pairs)}),
        agg AS (
            SELECT op.snapshot_at, op.snap_stage AS stage, COUNT(*) AS open_deals,
                   COALESCE(SUM(d.amount_base), 0) AS amount,
                   CASE WHEN op.snap_stage IS NULL THEN NULL
                        ELSE COALESCE(SUM(d.amount_base * op.snap_prob), 0) END AS weighted_amount,
                   AVG(days_between(d.created_at, op.t)) AS mean_age_days
            FROM op JOIN deals d USING (opportunity_id) GROUP BY 1, 2),
        grid AS (SELECT snapshot_at, stage FROM snaps CROSS JOIN stages WHERE NOT terminal
                 UNION SELECT snapshot_at, stage FROM agg)
        SELECT g.snapshot_at, g.stage, COALESCE(a.open_deals, 0) AS open_deals, COALESCE(a.amount, 0) AS amount,
               CASE WHEN a.open_deals IS NULL THEN 0.0 ELSE a.weighted_amount END AS weighted_amount,
               a.mean_age_days
        FROM grid g LEFT JOIN agg a ON a.snapshot_at = g.snapshot_at AND a.stage IS NOT DISTINCT FROM g.stage
    """


def deal_size_sql():
    lo, hi = BUCKETS[0], BUCKETS[-1]
    return "SELECT * FROM (" + by_dims(
        "(SELECT * FROM closed WHERE status = 'won')",
        "period_start, COUNT(*) AS won_deals, AVG(amount_base) AS mean_amount, "
        "quantile_cont(amount_base, 0.5) AS median_amount, "
        f"COALESCE(SUM((amount_base < {lo})::INT), 0) AS small, "
        f"COALESCE(SUM((amount_base >= {lo} AND amount_base < {hi})::INT), 0) AS medium, "
        f"COALESCE(SUM((amount_base >= {hi})::INT), 0) AS large",
        ["period_start"],
        ["owner_id"],
    ) + ")"


# ---------------------------------------------------------------------------------------------
# Reps

def open_deals_per_rep_sql():
    return f"""
        SELECT d.owner_id, r.team, COUNT(*) AS open_deals, COALESCE(SUM(d.amount_base), 0) AS amount,
               AVG(days_between(d.created_at, as_of_ts())) AS mean_age_days,
               SUM((days_between(COALESCE(d.stage_entered_at, d.created_at), as_of_ts())
                    >= {STALE_AFTER_DAYS})::INT) AS stale_deals,
               CASE WHEN r.team IS NULL THEN NULL
                    ELSE COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY r.team) END AS team_share
        FROM deals d
        LEFT JOIN (SELECT DISTINCT rep_id, team FROM reps_all) r ON r.rep_id = d.owner_id
        WHERE d.status = 'open'
        GROUP BY d.owner_id, r.team
    """


def sales_velocity_sql():
    pairs = ("SELECT s.period_start, s.t, d.opportunity_id, d.owner_id FROM snaps s "
             "JOIN deals d ON d.created_at <= s.t")
    opened = by_dims("op", "period_start, COUNT(*) AS open_deals", ["period_start"], ["owner_id"])
    closed = by_dims(
        "closed",
        "period_start, SUM((status = 'won')::INT) AS won, SUM((status = 'lost')::INT) AS lost, "
        "AVG(amount_base) FILTER (WHERE status = 'won') AS mean_won_amount, "
        "AVG(days_between(created_at, closed_at)) FILTER (WHERE status = 'won') AS mean_cycle_days",
        ["period_start"],
        ["owner_id"],
    )
    return f"""
        WITH op AS ({open_at(pairs)}), o AS ({opened}), c AS ({closed}),
        j AS (
            SELECT COALESCE(o.period_start, c.period_start) AS period_start,
                   COALESCE(o.dimension, c.dimension) AS dimension,
                   COALESCE(o.dimension_value, c.dimension_value) AS dimension_value,
                   COALESCE(o.open_deals, 0) AS open_deals,
                   CASE WHEN COALESCE(c.won, 0) + COALESCE(c.lost, 0) = 0 THEN NULL
                        ELSE c.won / (c.won + c.lost) END AS win_rate,
                   c.mean_won_amount, c.mean_cycle_days
            FROM o FULL OUTER JOIN c ON o.period_start = c.period_start AND o.dimension = c.dimension
                 AND o.dimension_value IS NOT DISTINCT FROM c.dimension_value)
        SELECT *, CASE WHEN mean_cycle_days IS NULL OR mean_cycle_days = 0 OR win_rate IS NULL
                            OR mean_won_amount IS NULL THEN NULL
                       ELSE open_deals * win_rate * mean_won_amount / mean_cycle_days END AS velocity
        FROM j
    """


# ---------------------------------------------------------------------------------------------
# Forecast

def forecast_vs_actual_sql():
    pairs = ("SELECT month_of(expected_close_date) AS period_start, "
             "CAST(month_of(expected_close_date) AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND AS t, "
             "opportunity_id, owner_id, amount_base FROM deals "
             "WHERE expected_close_date IS NOT NULL AND month_of(expected_close_date) <= cur_period()")
    return f"""
        WITH sub AS (
            SELECT period_start, owner_id, amount_base AS submitted_forecast FROM (
                SELECT owner_id, month_of(period_start) AS period_start, amount_base,
                       row_number() OVER (PARTITION BY owner_id, month_of(period_start)
                                          ORDER BY submitted_at DESC, amount_base DESC NULLS LAST) AS rn
                FROM forecasts_all
                WHERE submitted_at <= as_of_ts() AND grain = 'month'
                  AND (category = 'commit' OR category IS NULL))
            WHERE rn = 1 AND period_start <= cur_period()),
        pipe AS (
            SELECT period_start, owner_id, COALESCE(SUM(amount_base * COALESCE(snap_prob, 0)), 0) AS pipeline_forecast
            FROM ({open_at(pairs)}) GROUP BY 1, 2),
        act AS (SELECT period_start, owner_id, SUM(amount_base) AS actual FROM closed WHERE status = 'won' GROUP BY 1, 2),
        k AS (SELECT period_start, owner_id FROM sub UNION SELECT period_start, owner_id FROM pipe
              UNION SELECT period_start, owner_id FROM act)
        SELECT k.period_start, k.owner_id, s.submitted_forecast,
               COALESCE(p.pipeline_forecast, 0) AS pipeline_forecast, COALESCE(a.actual, 0) AS actual,
               CASE WHEN s.submitted_forecast = 0 THEN NULL ELSE COALESCE(a.actual, 0) / s.submitted_forecast END AS attainment,
               COALESCE(a.actual, 0) - s.submitted_forecast AS error
        FROM k
        LEFT JOIN sub s ON s.period_start = k.period_start AND s.owner_id IS NOT DISTINCT FROM k.owner_id
        LEFT JOIN pipe p ON p.period_start = k.period_start AND p.owner_id IS NOT DISTINCT FROM k.owner_id
        LEFT JOIN act a ON a.period_start = k.period_start AND a.owner_id IS NOT DISTINCT FROM k.owner_id
    """


# ---------------------------------------------------------------------------------------------
# Customers

def new_vs_existing_sql():
    return """
        WITH fw AS (SELECT account_id, min(closed_at) AS first_won FROM deals WHERE status = 'won' GROUP BY 1),
        fp AS (SELECT account_id, min(paid_at) AS first_paid FROM orders_all
               WHERE ordered_at <= as_of_ts() AND paid_at <= as_of_ts() AND NOT COALESCE(is_refund, false)
               GROUP BY 1),
        typed AS (
            SELECT d.*, CASE WHEN fw.first_won < d.created_at OR fp.first_paid < d.created_at
                             THEN 'existing' ELSE 'new' END AS customer_type
            FROM deals d LEFT JOIN fw ON fw.account_id = d.account_id
                         LEFT JOIN fp ON fp.account_id = d.account_id),
        cr AS (SELECT month_of(created_at) AS period_start, customer_type, COUNT(*) AS deals FROM typed GROUP BY 1, 2),
        wn AS (SELECT month_of(closed_at) AS period_start, customer_type, COUNT(*) AS won_deals,
                      COALESCE(SUM(amount_base), 0) AS won_amount
               FROM typed WHERE status = 'won' GROUP BY 1, 2)
        SELECT COALESCE(cr.period_start, wn.period_start) AS period_start,
               COALESCE(cr.customer_type, wn.customer_type) AS customer_type,
               COALESCE(cr.deals, 0) AS deals, COALESCE(wn.won_deals, 0) AS won_deals,
               COALESCE(wn.won_amount, 0) AS won_amount
        FROM cr FULL OUTER JOIN wn ON cr.period_start = wn.period_start AND cr.customer_type = wn.customer_type
    """


def lost_reengagement_sql():
    return f"""
        SELECT * FROM (
            SELECT opportunity_id, account_id, owner_id, loss_reason, lost_at,
                   lost_at + {REENGAGE_MIN} AS follow_up_from, lost_at + {REENGAGE_MAX} AS follow_up_until,
                   CASE WHEN lost_at + {REENGAGE_MIN} <= as_of_date() AND as_of_date() <= lost_at + {REENGAGE_MAX}
                          THEN 'due'
                        WHEN lost_at + {REENGAGE_MIN} > as_of_date()
                         AND lost_at + {REENGAGE_MIN} <= as_of_date() + {REENGAGE_LOOKAHEAD} THEN 'upcoming'
                   END AS status
            FROM (SELECT *, CAST(closed_at AS DATE) AS lost_at FROM deals WHERE status = 'lost'))
        WHERE status IS NOT NULL
    """


QUERIES = {
    "stage_funnel": (["mode", "dimension", "dimension_value", "stage_index"], stage_funnel_sql),
    "stage_duration": (["stage", "dimension", "dimension_value"], stage_duration_ref),
    "stage_duration_survival": (["stage", "dimension", "dimension_value", "t_days"], stage_duration_survival_ref),
    "pipeline_snapshot": (["snapshot_at", "stage"], pipeline_snapshot_sql),
    "deal_size": (["period_start", "dimension", "dimension_value"], deal_size_sql),
    "win_rate": (
        ["period_start", "dimension", "dimension_value"],
        lambda: "SELECT *, CASE WHEN won + lost = 0 THEN NULL ELSE won / (won + lost) END AS win_rate, "
        "CASE WHEN won_amount + lost_amount = 0 THEN NULL ELSE won_amount / (won_amount + lost_amount) END AS amount_win_rate "
        "FROM (" + dims_union(
            "period_start, SUM((status = 'won')::INT)::DOUBLE AS won, SUM((status = 'lost')::INT)::DOUBLE AS lost, "
            "COALESCE(SUM(amount_base) FILTER (WHERE status = 'won'), 0) AS won_amount, "
            "COALESCE(SUM(amount_base) FILTER (WHERE status = 'lost'), 0) AS lost_amount",
            ["owner_id", "source", "region"], "period_start") + ")",
    ),
    "loss_reasons": (
        ["period_start", "loss_reason"],
        lambda: "SELECT period_start, loss_reason, lost, lost_amount, lost / SUM(lost) OVER (PARTITION BY period_start) AS share FROM ("
        "SELECT period_start, COALESCE(loss_reason, 'unspecified') AS loss_reason, COUNT(*)::DOUBLE AS lost, "
        "SUM(amount_base) AS lost_amount FROM closed WHERE status = 'lost' GROUP BY 1, 2)",
    ),
    "sales_cycle": (
        ["period_start", "outcome", "dimension", "dimension_value"],
        lambda: "SELECT * FROM (" + dims_union(
            "period_start, status AS outcome, COUNT(*)::DOUBLE AS deals, AVG(days) AS mean_days, "
            "quantile_cont(days, 0.5) AS median_days, quantile_cont(days, 0.9) AS p90_days",
            ["owner_id"], "period_start, status") + ")",
    ),
    "open_deals_per_rep": (["owner_id"], open_deals_per_rep_sql),
    "sales_velocity": (["period_start", "dimension", "dimension_value"], sales_velocity_sql),
    "forecast_vs_actual": (["period_start", "owner_id"], forecast_vs_actual_sql),
    "new_vs_existing": (["period_start", "customer_type"], new_vs_existing_sql),
    "lost_reengagement": (["opportunity_id"], lost_reengagement_sql),
}


# Per-family reference queries live in scripts/crosscheck_<family>.py. Each defines
# `queries(cc)` -> {kpi: (key, build)}, where `cc` is this module (for its helpers: fetch,
# dims_union, sql_list, ...) and `build` is either a function returning SQL, or one taking the
# connection and returning (columns, rows) like `fetch`. An optional `setup(cc, con)` creates
# shared views after the main setup.
EXTENSIONS = ["crosscheck_leads", "crosscheck_trends", "crosscheck_revenue", "crosscheck_clv"]
CONNECTION_BUILDS = set()
EXTENSION_SETUPS = []


def load_extensions():
    import importlib
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    me = sys.modules[__name__]
    for name in EXTENSIONS:
        mod = importlib.import_module(name)
        for kpi, (key, build, takes_con) in mod.queries(me).items():
            QUERIES[kpi] = (key, build)
            if takes_con:
                CONNECTION_BUILDS.add(build)
        if hasattr(mod, "setup"):
            EXTENSION_SETUPS.append(mod.setup)


def fetch(con, sql):
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return cols, [dict(zip(cols, r)) for r in cur.fetchall()]


def is_nan(v):
    return isinstance(v, float) and math.isnan(v)


def key_part(name, v):
    if v is None:
        return "<null>"
    if is_nan(v):
        return "<NaN>"
    if name == "t_days":
        # Durations are whole microseconds on both sides: key on them, not on the float.
        return str(round(float(v) * US_PER_DAY))
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()[:10]
    return str(v)


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (datetime.date, datetime.datetime)) or isinstance(b, (datetime.date, datetime.datetime)):
        return str(a)[:10] == str(b)[:10]
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return False
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return str(a) == str(b)


def compare(con, kpi, key, ref, out, as_of, ref_name="duckdb"):
    path = f"{out}/{kpi}/as_of={as_of}/part-0.parquet"
    if not os.path.exists(path):
        print(f"{kpi:<24} no output at {path}")
        return 1
    mine_cols, mine = fetch(con, f"SELECT * FROM read_parquet('{path}')")
    ref_cols, ref_rows = ref
    cols = [c for c in ref_cols if c not in key]
    missing = [c for c in cols if c not in mine_cols]
    mism = 0
    for c in missing:
        print(f"  {kpi}: column {c} missing from crm-kpi's output")
        mism += 1
    cols = [c for c in cols if c in mine_cols]
    k = lambda r: tuple(key_part(n, r[n]) for n in key)
    ref_by, mine_by = {}, {}
    for r in ref_rows:
        if k(r) in ref_by:
            mism += 1
            print(f"  {kpi}: duplicate duckdb key {k(r)}")
        ref_by[k(r)] = r
    for r in mine:
        if k(r) in mine_by:
            mism += 1
            print(f"  {kpi}: duplicate crm-kpi key {k(r)}")
        mine_by[k(r)] = r
        if any(is_nan(v) for v in r.values()):
            mism += 1
            print(f"  {kpi}: NaN in crm-kpi row {k(r)}")
        if not same(r["as_of"], datetime.date.fromisoformat(as_of)):
            mism += 1
            print(f"  {kpi}: as_of {r['as_of']} in crm-kpi row {k(r)}")
    shown = 0
    for key_v in sorted(set(ref_by) | set(mine_by)):
        r, m = ref_by.get(key_v), mine_by.get(key_v)
        if r is None or m is None:
            mism += 1
            if shown < 8:
                shown += 1
                print(f"  {kpi}: row {key_v} only in {'crm-kpi' if r is None else ref_name}")
            continue
        for c in cols:
            if not same(r[c], m[c]):
                mism += 1
                if shown < 8:
                    shown += 1
                    print(f"  {kpi}: {key_v} {c}: {ref_name} {r[c]!r} vs crm-kpi {m[c]!r}")
    print(f"{kpi:<24} rows {len(mine_by):>7} ({ref_name} {len(ref_by)}): {'OK' if mism == 0 else f'{mism} MISMATCHES'}")
    return mism


def perturb(src, dst):
    import glob
    import shutil
    os.makedirs(dst, exist_ok=True)
    for f in glob.glob(f"{src}/*.parquet"):
        shutil.copy(f, dst)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    h = "hash(opportunity_id) % 40"
    con.execute(f"""COPY (SELECT * REPLACE (CASE WHEN {h} = 7 THEN 0.0 ELSE amount END AS amount)
        FROM '{src}/opportunities.parquet') TO '{dst}/opportunities.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (
        WITH e AS (SELECT *, row_number() OVER (PARTITION BY opportunity_id ORDER BY entered_at) AS rn,
                          lag(entered_at) OVER (PARTITION BY opportunity_id ORDER BY entered_at) AS prev
                   FROM '{src}/stage_events.parquet')
        SELECT * EXCLUDE (rn, prev) REPLACE (
            CASE WHEN {h} = 3 AND rn = 2 THEN prev                       -- tie between two stages
                 WHEN {h} = 8 AND stage IN {sql_list(WON_STAGES + LOST_STAGES)} THEN prev  -- close tie
                 ELSE entered_at END AS entered_at)
        FROM e
        WHERE NOT ({h} = 1 AND stage IN {sql_list(WON_STAGES + LOST_STAGES)})  -- fallback close
          AND NOT ({h} = 2)                                                   -- no stage event
          AND NOT ({h} = 4 AND rn > 1)                                        -- first stage only
        ) TO '{dst}/stage_events.parquet' (FORMAT parquet)""")
    f = "hash(owner_id || CAST(period_start AS VARCHAR))"
    con.execute(f"""COPY (SELECT * REPLACE (
            CASE WHEN {f} % 5 = 0 AND category = 'commit' THEN NULL ELSE category END AS category,
            CASE WHEN {f} % 7 = 0 THEN 0.0 ELSE amount END AS amount)
        FROM '{src}/forecasts.parquet') TO '{dst}/forecasts.parquet' (FORMAT parquet)""")


def main():
    if sys.argv[1:2] == ["--perturb"]:
        perturb(sys.argv[2], sys.argv[3])
        return
    store, out, as_of = sys.argv[1:4]
    load_extensions()
    only = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[4] else list(QUERIES)
    unknown = [x for x in only if x not in QUERIES]
    if unknown:
        sys.exit(f"unknown KPI(s): {', '.join(unknown)}")
    con = duckdb.connect()
    setup(con, store, as_of)
    me = sys.modules[__name__]
    for ext_setup in EXTENSION_SETUPS:
        ext_setup(me, con)
    bad = 0
    for kpi in only:
        key, build = QUERIES[kpi]
        t0 = time.time()
        try:
            ref = build(con) if build in (stage_duration_ref, stage_duration_survival_ref) or build in CONNECTION_BUILDS else fetch(con, build())
        except Exception as e:  # a broken reference query is a failure, not a pass
            print(f"{kpi:<24} duckdb reference failed: {e}")
            bad += 1
            continue
        bad += compare(con, kpi, key, ref, out, as_of)
        if os.environ.get("CROSSCHECK_TIMING"):
            print(f"    ({time.time() - t0:.1f}s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
