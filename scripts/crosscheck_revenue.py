"""DuckDB reference queries for the revenue KPIs (loaded by crosscheck.py): revenue,
clv_historical, clv_segments, retention.

Written from the definitions of `crm-kpi list --long` (monthly grain, UTC, as crosscheck.py runs):
- orders count if ordered_at <= as_of; paid_at after as_of counts as not paid;
- a refund is a row with is_refund = true; it counts -|amount_base| (whatever its stored sign) in
  the period and account it is recorded in, and is not an order;
- an account's first order is its earliest non-refund order at or before as_of;
- retention activity is a paid (at as_of) non-refund order, in the month of its ordered_at; a
  month is observable when its last instant is at or before as_of.
"""


def setup(cc, con):
    con.execute("""
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


def revenue_sql(cc):
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
    body = cc.by_dims(rows, select, ["period_start"], ["region", "channel"])
    return f"""
        SELECT *, CASE WHEN customers = 0 THEN NULL ELSE revenue / customers END AS revenue_per_customer
        FROM ({body})
    """


def clv_segments_sql(cc):
    select = ("count(*) AS customers, avg(revenue) AS mean_clv, median(revenue) AS median_clv, "
              "sum(revenue) AS total_revenue")
    return f"""
        SELECT * FROM ({cc.by_dims("rev_clv", select, [], ["cohort_start", "source"])})
        WHERE customers > 0
    """


def retention_sql():
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


def queries(cc):
    """{kpi: (key columns, build, build_takes_connection)}"""
    return {
        "revenue": (["period_start", "dimension", "dimension_value"], lambda: revenue_sql(cc), False),
        "clv_historical": (["account_id"], lambda: "SELECT * FROM rev_clv", False),
        "clv_segments": (["dimension", "dimension_value"], lambda: clv_segments_sql(cc), False),
        "retention": (["cohort_start", "k"], retention_sql, False),
    }
