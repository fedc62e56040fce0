"""DuckDB reference queries for the trends and rep KPIs (loaded by crosscheck.py): trends,
rep_scorecard and activity, monthly grain in UTC (the crosscheck's default config).

Written from the definitions in `crm-kpi list --long`, not from the Rust code:
- trends: window functions over a dense month grid (LAG for the previous / prior-year value, a
  ROWS BETWEEN 11 PRECEDING frame for the trailing sums) and a range join for the trailing
  distinct active customers;
- rep_scorecard: DENSE_RANK over (won_amount DESC, won_deals DESC), the open pipeline from the
  crosscheck's own `snaps` and `open_at`;
- activity: first touches by ROW_NUMBER over (occurred_at, activity_id) per lead and per account.
"""


def targets_sql(metric):
    """Rep targets of `metric` per month: a target counts in the month containing its whole span;
    only the coarsest fitting grain per rep and month; months up to as_of's."""
    return f"""
        SELECT period_start, owner_id, SUM(value) AS target FROM (
            SELECT *, max(size) OVER (PARTITION BY period_start, owner_id) AS max_size FROM (
                SELECT month_of(t.period_start) AS period_start, t.scope AS owner_id, t.value,
                       CASE t.grain WHEN 'week' THEN 0 WHEN 'month' THEN 1 WHEN 'quarter' THEN 2 ELSE 3 END AS size,
                       CAST(t.period_start + CASE t.grain WHEN 'week' THEN INTERVAL 7 DAY
                                                          WHEN 'month' THEN INTERVAL 1 MONTH
                                                          WHEN 'quarter' THEN INTERVAL 3 MONTH
                                                          ELSE INTERVAL 1 YEAR END - INTERVAL 1 DAY AS DATE) AS last_day
                FROM targets_all t
                WHERE t.scope_kind = 'rep' AND t.metric = '{metric}')
            WHERE month_of(last_day) = period_start AND period_start <= cur_period())
        WHERE size = max_size
        GROUP BY 1, 2
    """


def trends_sql():
    series = [
        ("new_leads", "new_leads", "t_new_leads"),
        ("qualified_leads", "qualified_leads", "t_qualified_leads"),
        ("deals_won", "won", "t_won"),
        ("won_revenue", "won_revenue", "t_won_revenue"),
        ("win_rate", "CASE WHEN won + lost = 0 THEN NULL ELSE won / (won + lost) END",
         "CASE WHEN t_won + t_lost = 0 THEN NULL ELSE t_won / (t_won + t_lost) END"),
        ("mean_deal_size", "mean_deal_size",
         "CASE WHEN t_won_amounted = 0 THEN NULL ELSE t_won_revenue / t_won_amounted END"),
        ("order_revenue", "order_revenue", "t_order_revenue"),
        ("active_customers", "active_customers", "t_active"),
    ]
    additive = ["new_leads", "qualified_leads", "won", "lost", "won_revenue", "won_amounted", "order_revenue"]
    trailing = ", ".join(
        f"CASE WHEN idx >= 12 THEN SUM({c}) OVER (ORDER BY period_start ROWS BETWEEN 11 PRECEDING AND CURRENT ROW) "
        f"END AS t_{c}"
        for c in additive
    )
    long = " UNION ALL ".join(
        f"SELECT '{name}' AS series, period_start, idx, CAST({v} AS DOUBLE) AS value, CAST({t} AS DOUBLE) AS trailing_12 "
        "FROM w"
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
               CASE WHEN prev_year_value = 0 THEN NULL ELSE (value - prev_year_value) / prev_year_value END AS yoy_change,
               trailing_12
        FROM s
    """


def rep_scorecard_sql(cc):
    pairs = ("SELECT s.period_start, s.t, d.opportunity_id, d.owner_id FROM snaps s "
             "JOIN deals d ON d.created_at <= s.t")
    return f"""
        WITH c AS (
            SELECT period_start, owner_id,
                   COALESCE(SUM(amount_base) FILTER (WHERE status = 'won'), 0) AS won_amount,
                   count_if(status = 'won') AS won_deals, count_if(status = 'lost') AS lost_deals,
                   AVG(amount_base) FILTER (WHERE status = 'won') AS mean_deal_size,
                   quantile_cont(days, 0.5) FILTER (WHERE status = 'won') AS median_cycle_days
            FROM closed GROUP BY 1, 2),
        op AS (SELECT o.period_start, o.owner_id, COUNT(*) AS open_deals,
                      COALESCE(SUM(d.amount_base), 0) AS open_pipeline
               FROM ({cc.open_at(pairs)}) o JOIN deals d USING (opportunity_id) GROUP BY 1, 2),
        tg AS ({targets_sql('revenue')}),
        k AS (SELECT period_start, owner_id FROM c UNION SELECT period_start, owner_id FROM op
              UNION SELECT period_start, owner_id FROM tg),
        j AS (
            SELECT k.period_start, k.owner_id, r.team,
                   COALESCE(c.won_amount, 0) AS won_amount, COALESCE(c.won_deals, 0) AS won_deals,
                   COALESCE(c.lost_deals, 0) AS lost_deals, c.mean_deal_size, c.median_cycle_days,
                   COALESCE(op.open_deals, 0) AS open_deals, COALESCE(op.open_pipeline, 0) AS open_pipeline,
                   tg.target
            FROM k
            LEFT JOIN c ON c.period_start = k.period_start AND c.owner_id = k.owner_id
            LEFT JOIN op ON op.period_start = k.period_start AND op.owner_id = k.owner_id
            LEFT JOIN tg ON tg.period_start = k.period_start AND tg.owner_id = k.owner_id
            LEFT JOIN (SELECT DISTINCT rep_id, team FROM reps_all) r ON r.rep_id = k.owner_id)
        SELECT *,
               CASE WHEN won_deals + lost_deals = 0 THEN NULL ELSE won_deals / (won_deals + lost_deals) END AS win_rate,
               CASE WHEN target IS NULL OR target = 0 THEN NULL ELSE won_amount / target END AS attainment,
               dense_rank() OVER (PARTITION BY period_start ORDER BY won_amount DESC, won_deals DESC) AS rank,
               CASE WHEN team IS NULL THEN NULL
                    ELSE SUM(won_amount) OVER (PARTITION BY period_start, team) END AS team_won_amount,
               CASE WHEN team IS NULL OR SUM(won_amount) OVER (PARTITION BY period_start, team) = 0 THEN NULL
                    ELSE won_amount / SUM(won_amount) OVER (PARTITION BY period_start, team) END AS share_of_team
        FROM j
    """


def activity_sql():
    return f"""
        WITH a AS (SELECT * FROM activities_all WHERE occurred_at <= as_of_ts()),
        first_touch AS (
            SELECT activity_id FROM (
                SELECT activity_id, row_number() OVER (PARTITION BY lead_id ORDER BY occurred_at, activity_id) AS rn
                FROM a WHERE lead_id IS NOT NULL) WHERE rn = 1
            UNION
            SELECT activity_id FROM (
                SELECT activity_id, row_number() OVER (PARTITION BY account_id ORDER BY occurred_at, activity_id) AS rn
                FROM a WHERE account_id IS NOT NULL) WHERE rn = 1),
        per AS (
            SELECT month_of(a.occurred_at) AS period_start, a.owner_id,
                   count_if(kind = 'call') AS calls,
                   count_if(kind = 'call' AND outcome = 'connected') AS connected_calls,
                   count_if(kind = 'email') AS emails, count_if(kind = 'meeting') AS meetings,
                   count_if(kind = 'visit') AS visits, count_if(kind = 'task') AS tasks,
                   count_if(f.activity_id IS NOT NULL) AS new_contacts
            FROM a LEFT JOIN first_touch f USING (activity_id) GROUP BY 1, 2),
        tg AS ({targets_sql('calls')}),
        k AS (SELECT period_start, owner_id FROM per UNION SELECT period_start, owner_id FROM tg)
        SELECT k.period_start, k.owner_id,
               COALESCE(calls, 0) AS calls, COALESCE(connected_calls, 0) AS connected_calls,
               CASE WHEN COALESCE(calls, 0) = 0 THEN NULL ELSE connected_calls / calls END AS connect_rate,
               COALESCE(emails, 0) AS emails, COALESCE(meetings, 0) AS meetings, COALESCE(visits, 0) AS visits,
               COALESCE(tasks, 0) AS tasks, COALESCE(new_contacts, 0) AS new_contacts,
               tg.target AS calls_target,
               CASE WHEN tg.target IS NULL OR tg.target = 0 THEN NULL ELSE COALESCE(calls, 0) / tg.target END
                 AS calls_attainment
        FROM k
        LEFT JOIN per ON per.period_start = k.period_start AND per.owner_id = k.owner_id
        LEFT JOIN tg ON tg.period_start = k.period_start AND tg.owner_id = k.owner_id
    """


def queries(cc):
    """{kpi: (key columns, build, build_takes_connection)}"""
    return {
        "trends": (["series", "period_start"], trends_sql, False),
        "rep_scorecard": (["period_start", "owner_id"], lambda: rep_scorecard_sql(cc), False),
        "activity": (["period_start", "owner_id"], activity_sql, False),
    }
