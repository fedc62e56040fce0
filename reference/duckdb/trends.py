"""DuckDB reference of the trends KPI: monthly headline series with previous-period,
prior-year and trailing-12 comparisons (monthly grain in UTC).

Written from the definition in `crm-kpi list --long`, not from the Rust code: window functions
over a dense month grid (LAG for the previous / prior-year value, a ROWS BETWEEN 11 PRECEDING
frame for the trailing sums) and a range join for the trailing distinct active customers.
"""


def trends(db):
    series = [
        ("new_leads", "new_leads", "t_new_leads"),
        ("qualified_leads", "qualified_leads", "t_qualified_leads"),
        ("deals_won", "won", "t_won"),
        ("won_revenue", "won_revenue", "t_won_revenue"),
        (
            "win_rate",
            "CASE WHEN won + lost = 0 THEN NULL ELSE won / (won + lost) END",
            "CASE WHEN t_won + t_lost = 0 THEN NULL ELSE t_won / (t_won + t_lost) END",
        ),
        (
            "mean_deal_size",
            "mean_deal_size",
            "CASE WHEN t_won_amounted = 0 THEN NULL ELSE t_won_revenue / t_won_amounted END",
        ),
        ("order_revenue", "order_revenue", "t_order_revenue"),
        ("active_customers", "active_customers", "t_active"),
    ]
    additive = ["new_leads", "qualified_leads", "won", "lost", "won_revenue", "won_amounted", "order_revenue"]
    trailing = ", ".join(
        f"CASE WHEN idx >= 12 THEN SUM({c}) OVER (ORDER BY period_start ROWS BETWEEN 11 PRECEDING AND CURRENT ROW)"
        f" END AS t_{c}"
        for c in additive
    )
    long = " UNION ALL ".join(
        f"SELECT '{name}' AS series, period_start, idx, CAST({v} AS DOUBLE) AS value, "
        f"CAST({t} AS DOUBLE) AS trailing_12 FROM w"
        for name, v, t in series
    )
    return f"""
        WITH lds AS (SELECT * FROM leads_all WHERE created_at <= as_of_ts()),
        nl AS (SELECT month_of(created_at) AS period_start, COUNT(*) AS n FROM lds GROUP BY 1),
        ql AS (SELECT month_of(qualified_at) AS period_start, COUNT(*) AS n FROM lds
               WHERE qualified_at <= as_of_ts() GROUP BY 1),
        cl AS (SELECT period_start, count_if(status = 'won') AS won, count_if(status = 'lost') AS lost,
                      SUM(amount_base) FILTER (WHERE status = 'won') AS won_revenue,
                      COUNT(amount_base) FILTER (WHERE status = 'won') AS won_amounted,
                      AVG(amount_base) FILTER (WHERE status = 'won') AS mean_deal_size
               FROM closed GROUP BY 1),
        ords AS (SELECT *, NOT COALESCE(is_refund, false) AS buy FROM orders_all WHERE ordered_at <= as_of_ts()),
        orv AS (SELECT month_of(ordered_at) AS period_start, SUM(amount_base) AS order_revenue,
                       COUNT(DISTINCT account_id) FILTER (WHERE buy) AS active_customers
                FROM ords GROUP BY 1),
        firstp AS (SELECT min(period_start) AS first FROM (
            SELECT period_start FROM nl UNION ALL SELECT period_start FROM ql
            UNION ALL SELECT period_start FROM cl UNION ALL SELECT period_start FROM orv)),
        grid AS (SELECT CAST(unnest(generate_series(CAST(first AS TIMESTAMP), CAST(cur_period() AS TIMESTAMP),
                                                    INTERVAL 1 MONTH)) AS DATE) AS period_start
                 FROM firstp WHERE first IS NOT NULL),
        buys AS (SELECT DISTINCT account_id, month_of(ordered_at) AS m FROM ords WHERE buy),
        act12 AS (SELECT g.period_start, COUNT(DISTINCT b.account_id) AS n
                  FROM grid g LEFT JOIN buys b
                    ON b.m <= g.period_start AND b.m > CAST(g.period_start - INTERVAL 12 MONTH AS DATE)
                  GROUP BY 1),
        base AS (
            SELECT g.period_start, row_number() OVER (ORDER BY g.period_start) AS idx,
                   COALESCE(nl.n, 0)::DOUBLE AS new_leads, COALESCE(ql.n, 0)::DOUBLE AS qualified_leads,
                   COALESCE(cl.won, 0)::DOUBLE AS won, COALESCE(cl.lost, 0)::DOUBLE AS lost,
                   COALESCE(cl.won_revenue, 0) AS won_revenue, COALESCE(cl.won_amounted, 0)::DOUBLE AS won_amounted,
                   cl.mean_deal_size, COALESCE(orv.order_revenue, 0) AS order_revenue,
                   COALESCE(orv.active_customers, 0)::DOUBLE AS active_customers, a.n::DOUBLE AS act12
            FROM grid g LEFT JOIN nl USING (period_start) LEFT JOIN ql USING (period_start)
            LEFT JOIN cl USING (period_start) LEFT JOIN orv USING (period_start)
            LEFT JOIN act12 a USING (period_start)),
        w AS (SELECT *, {trailing}, CASE WHEN idx >= 12 THEN act12 END AS t_active FROM base),
        l AS ({long}),
        s AS (SELECT *, lag(value, 1) OVER (PARTITION BY series ORDER BY period_start) AS prev_value,
                        lag(value, 12) OVER (PARTITION BY series ORDER BY period_start) AS prev_year_value
              FROM l)
        SELECT series, period_start,
               CAST(period_start + INTERVAL 1 MONTH AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND <= as_of_ts() AS complete,
               value, prev_value, prev_year_value,
               CASE WHEN prev_value = 0 THEN NULL ELSE (value - prev_value) / prev_value END AS pop_change,
               CASE WHEN prev_year_value = 0 THEN NULL
                    ELSE (value - prev_year_value) / prev_year_value END AS yoy_change,
               trailing_12
        FROM s
    """


KPIS = {"trends": trends}
