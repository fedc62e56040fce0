"""DuckDB references of the customers and revenue KPIs: new_vs_existing, lost_reengagement,
revenue, clv_historical, clv_segments, retention, clv_predictive, clv_model.

Written from the definitions of `crm-kpi list --long` (monthly grain, UTC), not from the Rust code:
- new_vs_existing: a deal is an existing customer's when its account had a won deal or a paid
  order before the deal's creation;
- lost_reengagement: the re-engagement window of the config's [reengagement] days after the loss;
- orders count if ordered_at <= as_of; paid_at after as_of counts as not paid;
- a refund is a row with is_refund = true; it counts -|amount_base| (whatever its stored sign) in
  the period and account it is recorded in, and is not an order;
- an account's first order is its earliest non-refund order at or before as_of;
- retention activity is a paid (at as_of) non-refund order, in the month of its ordered_at; a
  month is observable when its last instant is at or before as_of;
- clv_predictive and clv_model: the RFM (frequency, recency, t, monetary_value) in SQL, exactly;
  the model fits and predictions are reference/clv_fit.py's (numpy/scipy), on this RFM.
"""

import sys
import time

import numpy as np

from .. import clv_fit
from ..common import REENGAGEMENT_LOOKAHEAD_DAYS
from .views import by_dims


def setup(db):
    db.con.execute("""
        CREATE TABLE rev_orders AS
            SELECT order_id, account_id, ordered_at, region, channel, due_at,
                   COALESCE(is_refund, false) AS refund,
                   CASE WHEN COALESCE(is_refund, false) THEN -abs(amount_base) ELSE amount_base END AS amt,
                   CASE WHEN paid_at <= as_of_ts() THEN paid_at END AS paid_at,
                   month_of(ordered_at) AS period_start
            FROM orders_all WHERE ordered_at <= as_of_ts();
        -- Source of each account's first converted lead (converted at or before as_of).
        CREATE TABLE rev_source AS
            SELECT account_id, source FROM (
                SELECT account_id, source,
                       row_number() OVER (PARTITION BY account_id ORDER BY converted_at, created_at, lead_id) AS rn
                FROM leads_all
                WHERE created_at <= as_of_ts() AND converted_at <= as_of_ts() AND account_id IS NOT NULL)
            WHERE rn = 1;
        CREATE TABLE rev_clv AS
            SELECT c.account_id,
                   CAST(c.first_at AS DATE) AS first_order_date,
                   CAST(c.last_at AS DATE) AS last_order_date,
                   c.orders, c.revenue,
                   c.revenue / c.orders AS mean_order_value,
                   days_between(c.first_at, as_of_ts()) AS tenure_days,
                   month_of(c.first_at) AS cohort_start,
                   s.source
            FROM (SELECT account_id,
                         min(ordered_at) FILTER (WHERE NOT refund) AS first_at,
                         max(ordered_at) FILTER (WHERE NOT refund) AS last_at,
                         count(*) FILTER (WHERE NOT refund) AS orders,
                         sum(amt) AS revenue
                  FROM rev_orders GROUP BY account_id) c
            LEFT JOIN rev_source s USING (account_id)
            WHERE c.orders > 0;
    """)


def revenue(db):
    select = (
        "period_start, "
        "count(*) FILTER (WHERE NOT refund) AS orders, "
        "COALESCE(sum(amt), 0) AS revenue, "
        "COALESCE(sum(amt) FILTER (WHERE NOT refund AND paid_at IS NOT NULL), 0) AS paid, "
        "COALESCE(sum(amt) FILTER (WHERE NOT refund AND paid_at IS NULL), 0) AS unpaid, "
        "COALESCE(sum(amt) FILTER (WHERE NOT refund AND paid_at IS NULL AND due_at < as_of_ts()), 0) AS overdue, "
        "count(*) FILTER (WHERE refund) AS refunds, "
        "COALESCE(-sum(amt) FILTER (WHERE refund), 0) AS refunded, "
        "count(DISTINCT account_id) FILTER (WHERE NOT refund) AS customers, "
        "COALESCE(sum(amt) FILTER (WHERE is_new), 0) AS new_customer_revenue, "
        "COALESCE(sum(amt) FILTER (WHERE NOT is_new), 0) AS recurring_revenue"
    )
    rows = """
        (SELECT o.*, COALESCE(f.first_period = o.period_start, false) AS is_new
         FROM rev_orders o
         LEFT JOIN (SELECT account_id, month_of(min(ordered_at)) AS first_period
                    FROM rev_orders WHERE NOT refund GROUP BY account_id) f USING (account_id))
    """
    body = by_dims(rows, select, ["period_start"], ["region", "channel"])
    return f"""
        SELECT *, CASE WHEN customers = 0 THEN NULL ELSE revenue / customers END AS revenue_per_customer
        FROM ({body})
    """


def clv_segments(db):
    select = (
        "count(*) AS customers, avg(revenue) AS mean_clv, median(revenue) AS median_clv, sum(revenue) AS total_revenue"
    )
    return f"""
        SELECT * FROM ({by_dims("rev_clv", select, [], ["cohort_start", "source"])})
        WHERE customers > 0
    """


def retention(db):
    return """
        -- Acquired by the first paid non-refund order; active afterwards in any period with a
        -- non-refund order, paid or not.
        WITH coh AS (
            SELECT account_id, min(period_start) AS cohort_start FROM rev_orders
            WHERE NOT refund AND paid_at IS NOT NULL GROUP BY account_id),
        act AS (
            SELECT DISTINCT o.account_id, o.period_start FROM rev_orders o JOIN coh c USING (account_id)
            WHERE NOT o.refund AND o.period_start >= c.cohort_start),
        acts AS (SELECT a.account_id, a.period_start, c.cohort_start FROM act a JOIN coh c USING (account_id)),
        active AS (SELECT cohort_start, period_start, count(*) AS n FROM acts GROUP BY 1, 2),
        -- Active in a month, not in the next one: churned in the next month.
        churn AS (
            SELECT cohort_start, CAST(period_start + INTERVAL 1 MONTH AS DATE) AS period_start, count(*) AS n
            FROM acts a
            WHERE NOT EXISTS (SELECT 1 FROM act b WHERE b.account_id = a.account_id
                                                   AND b.period_start = a.period_start + INTERVAL 1 MONTH)
            GROUP BY 1, 2),
        grid AS (
            SELECT s.cohort_start, s.cohort_size, CAST(g.p AS DATE) AS period_start
            FROM (SELECT cohort_start, count(*) AS cohort_size FROM coh GROUP BY 1) s,
                 LATERAL (SELECT unnest(generate_series(CAST(s.cohort_start AS TIMESTAMP),
                                                        CAST(cur_period() AS TIMESTAMP), INTERVAL 1 MONTH)) AS p) g),
        cells AS (
            SELECT g.*, datediff('month', g.cohort_start, g.period_start) AS k,
                   CAST(g.period_start + INTERVAL 1 MONTH AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND <= as_of_ts() AS obs,
                   COALESCE(a.n, 0) AS n_active, COALESCE(p.n, 0) AS n_prev, COALESCE(c.n, 0) AS n_churned
            FROM grid g
            LEFT JOIN active a ON a.cohort_start = g.cohort_start AND a.period_start = g.period_start
            LEFT JOIN active p ON p.cohort_start = g.cohort_start
                              AND p.period_start = CAST(g.period_start - INTERVAL 1 MONTH AS DATE)
            LEFT JOIN churn c ON c.cohort_start = g.cohort_start AND c.period_start = g.period_start)
        SELECT cohort_start, k, period_start, cohort_size,
               CASE WHEN obs THEN n_active END AS active,
               CASE WHEN obs THEN n_active / cohort_size END AS retention_rate,
               CASE WHEN obs AND k > 0 THEN n_churned END AS churned,
               CASE WHEN obs AND k > 0 AND n_prev > 0 THEN n_churned / n_prev END AS churn_rate
        FROM cells
    """


def new_vs_existing(db):
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


def lost_reengagement(db):
    lo, hi, ahead = db.cfg.reengagement_min_days, db.cfg.reengagement_max_days, REENGAGEMENT_LOOKAHEAD_DAYS
    return f"""
        SELECT * FROM (
            SELECT opportunity_id, account_id, owner_id, loss_reason, lost_at,
                   lost_at + {lo} AS follow_up_from, lost_at + {hi} AS follow_up_until,
                   CASE WHEN lost_at + {lo} <= as_of_date() AND as_of_date() <= lost_at + {hi}
                          THEN 'due'
                        WHEN lost_at + {lo} > as_of_date()
                         AND lost_at + {lo} <= as_of_date() + {ahead} THEN 'upcoming'
                   END AS status
            FROM (SELECT *, CAST(closed_at AS DATE) AS lost_at FROM deals WHERE status = 'lost'))
        WHERE status IS NOT NULL
    """


def clv_historical(db):
    return "SELECT * FROM rev_clv"


def rfm_sql(unit_days):
    """One row per account with a non-refund order at or before as_of: frequency = purchase days
    - 1, recency and t in units of `unit_days` days, monetary_value = mean spend of the repeat
    days (spend in whole micro-units per order, summed as integers)."""
    return f"""
        WITH o AS (
            SELECT account_id, CAST(ordered_at AS DATE) AS day,
                   CAST(ROUND(amount_base * 1e6) AS BIGINT) AS micros
            FROM orders_all
            WHERE ordered_at <= as_of_ts() AND NOT COALESCE(is_refund, false)),
        d AS (SELECT account_id, day, SUM(micros) AS spend FROM o GROUP BY account_id, day),
        f AS (SELECT account_id, MIN(day) AS first_day, MAX(day) AS last_day, COUNT(*) AS n
              FROM d GROUP BY account_id),
        r AS (SELECT d.account_id, SUM(d.spend) AS repeat_spend
              FROM d JOIN f ON d.account_id = f.account_id AND d.day > f.first_day
              GROUP BY d.account_id)
        SELECT f.account_id, CAST(n - 1 AS INTEGER) AS frequency,
               (last_day - first_day) / {unit_days!r} AS recency,
               (as_of_date() - first_day) / {unit_days!r} AS t,
               CASE WHEN n > 1 THEN CAST(r.repeat_spend AS DOUBLE) / 1e6 / (n - 1) END AS monetary_value
        FROM f LEFT JOIN r ON f.account_id = r.account_id
        ORDER BY f.account_id"""


def clv_inputs(db):
    """(the RFM as DuckDB columns, the RFM as float arrays, the fits), computed once per Db."""
    if "clv" not in db.cache:
        clv_fit.require_supported(db.cfg, "reference.duckdb")
        t0 = time.perf_counter()
        d = db.con.execute(rfm_sql(db.cfg.clv_unit_days)).fetchnumpy()
        t1 = time.perf_counter()
        m = np.ma.filled(np.ma.asarray(d["monetary_value"], dtype=np.float64), np.nan)
        rfm = (d["frequency"].astype(np.float64), d["recency"], d["t"], m)
        fits = clv_fit.fit_models(*rfm)
        print(f"duckdb-kpi clv: RFM (SQL) {t1 - t0:.3f} s, fits {time.perf_counter() - t1:.3f} s", file=sys.stderr)
        db.cache["clv"] = (d, rfm, fits)
    return db.cache["clv"]


def clv_model(db):
    return clv_fit.model_columns(clv_inputs(db)[2])


def clv_predictive(db):
    return clv_predictive_with(db, clv_inputs(db)[2])


def clv_predictive_with(db, fits):
    """clv_predictive's columns at the given fits (clv_fit.fit_models' shape)."""
    d, rfm, _ = clv_inputs(db)
    t0 = time.perf_counter()
    pred = clv_fit.predict(fits, *rfm, cfg=db.cfg)
    print(f"duckdb-kpi clv: predictions {time.perf_counter() - t0:.3f} s", file=sys.stderr)
    cols = {c: d[c] for c in ["account_id", "frequency", "recency", "t", "monetary_value"]}
    cols.update(pred)
    return cols


KPIS = {
    "new_vs_existing": new_vs_existing,
    "lost_reengagement": lost_reengagement,
    "revenue": revenue,
    "clv_historical": clv_historical,
    "clv_segments": clv_segments,
    "retention": retention,
    "clv_predictive": clv_predictive,
    "clv_model": clv_model,
}
