-- trends: the headline series per period (run grain, cut in the configured timezone) over dense
-- periods from the first period with data for any series to as_of's period (counts and sums 0
-- in an empty period, win_rate and mean_deal_size null), with the previous period's value, the
-- value one year back (52 / 12 / 4 / 1 periods), their changes (null over a 0 or null base) and
-- the trailing 12 periods (null while fewer than 12 periods of the range exist).

-- Orders known at as_of per (period, account): net revenue (refunds included as stored) and
-- whether the account bought (a non-refund order) in the period. One pass over the orders,
-- read by the per-period sums and the trailing active customers.
CACHE TABLE trends_account_periods AS
SELECT {{period(ordered_at)}} AS period_start, account_id,
       sum(amount_base) AS revenue, bool_or(NOT COALESCE(is_refund, false)) AS bought
FROM orders_all
WHERE ordered_at <= {{as_of_ts}}
GROUP BY 1, 2;

WITH created AS (
    SELECT {{period(created_at)}} AS period_start, count(*) AS new_leads
    FROM leads_all WHERE created_at <= {{as_of_ts}}
    GROUP BY 1),
qualified AS (
    SELECT {{period(qualified_at)}} AS period_start, count(*) AS qualified_leads
    FROM leads_all WHERE created_at <= {{as_of_ts}} AND qualified_at <= {{as_of_ts}}
    GROUP BY 1),
closes AS (
    SELECT period_start, count_if(status = 'won') AS won, count_if(status = 'lost') AS lost,
           sum(CASE WHEN status = 'won' THEN amount_base END) AS won_revenue,
           -- Won deals with a base amount (the mean deal size leaves the others out).
           count(CASE WHEN status = 'won' THEN amount_base END) AS won_amounted
    FROM closed GROUP BY period_start),
ordered AS (
    SELECT period_start, sum(revenue) AS order_revenue, count_if(bought) AS active_customers
    FROM trends_account_periods GROUP BY period_start),
-- Distinct buyers over the trailing 12 periods without pairing periods with purchases: an
-- account's purchase period p counts for the windows ending at p .. up to (not including) its
-- next purchase period or p + 12 periods, whichever comes first: +1 at p, -1 there, and a
-- running total over the periods (positions on the grain's grid).
buys AS (
    SELECT {{period_ordinal(period_start)}} AS ord,
           lead({{period_ordinal(period_start)}}) OVER (PARTITION BY account_id ORDER BY period_start) AS next_ord
    FROM trends_account_periods WHERE bought),
flows AS (
    SELECT ord, 1 AS delta FROM buys
    UNION ALL
    SELECT least(COALESCE(next_ord, ord + 12), ord + 12), -1 FROM buys),
steps AS (SELECT ord, sum(delta) AS delta FROM flows GROUP BY ord),
bounds AS (
    SELECT min(period_start) AS first_period FROM (
        SELECT period_start FROM created UNION ALL SELECT period_start FROM qualified
        UNION ALL SELECT period_start FROM closes UNION ALL SELECT period_start FROM ordered)),
grid AS (
    SELECT explode(sequence(first_period, {{cur_period}}, {{period_step}})) AS period_start
    FROM bounds WHERE first_period IS NOT NULL),
wide AS (
    SELECT g.period_start,
           row_number() OVER (ORDER BY g.period_start) AS idx,
           CAST(COALESCE(c.new_leads, 0) AS DOUBLE) AS new_leads,
           CAST(COALESCE(q.qualified_leads, 0) AS DOUBLE) AS qualified_leads,
           CAST(COALESCE(d.won, 0) AS DOUBLE) AS won,
           CAST(COALESCE(d.lost, 0) AS DOUBLE) AS lost,
           COALESCE(d.won_revenue, 0D) AS won_revenue,
           CAST(COALESCE(d.won_amounted, 0) AS DOUBLE) AS won_amounted,
           COALESCE(o.order_revenue, 0D) AS order_revenue,
           CAST(COALESCE(o.active_customers, 0) AS DOUBLE) AS active_customers,
           CAST(sum(COALESCE(s.delta, 0)) OVER (ORDER BY g.period_start ROWS UNBOUNDED PRECEDING) AS DOUBLE)
               AS active_running
    FROM grid g
    LEFT JOIN created c   ON c.period_start = g.period_start
    LEFT JOIN qualified q ON q.period_start = g.period_start
    LEFT JOIN closes d    ON d.period_start = g.period_start
    LEFT JOIN ordered o   ON o.period_start = g.period_start
    LEFT JOIN steps s     ON s.ord = {{period_ordinal(g.period_start)}}),
trailing AS (
    SELECT *,
           CASE WHEN idx >= 12 THEN sum(new_leads)       OVER w12 END AS t_new_leads,
           CASE WHEN idx >= 12 THEN sum(qualified_leads) OVER w12 END AS t_qualified_leads,
           CASE WHEN idx >= 12 THEN sum(won)             OVER w12 END AS t_won,
           CASE WHEN idx >= 12 THEN sum(lost)            OVER w12 END AS t_lost,
           CASE WHEN idx >= 12 THEN sum(won_revenue)     OVER w12 END AS t_won_revenue,
           CASE WHEN idx >= 12 THEN sum(won_amounted)    OVER w12 END AS t_won_amounted,
           CASE WHEN idx >= 12 THEN sum(order_revenue)   OVER w12 END AS t_order_revenue,
           CASE WHEN idx >= 12 THEN active_running END AS t_active_customers
    FROM wide
    WINDOW w12 AS (ORDER BY period_start ROWS BETWEEN 11 PRECEDING AND CURRENT ROW)),
long AS (
    SELECT period_start,
           stack(8,
                 'new_leads',        new_leads,                             t_new_leads,
                 'qualified_leads',  qualified_leads,                       t_qualified_leads,
                 'deals_won',        won,                                   t_won,
                 'won_revenue',      won_revenue,                           t_won_revenue,
                 'win_rate',         won / NULLIF(won + lost, 0D),          t_won / NULLIF(t_won + t_lost, 0D),
                 'mean_deal_size',   won_revenue / NULLIF(won_amounted, 0D), t_won_revenue / NULLIF(t_won_amounted, 0D),
                 'order_revenue',    order_revenue,                         t_order_revenue,
                 'active_customers', active_customers,                      t_active_customers)
               AS (series, value, trailing_12)
    FROM trailing),
shifted AS (
    SELECT *,
           lag(value, 1) OVER (PARTITION BY series ORDER BY period_start) AS prev_value,
           -- One year back: 52 weeks, 12 months, 4 quarters or 1 year.
           lag(value, CASE {{grain}} WHEN 'week' THEN 52 WHEN 'month' THEN 12 WHEN 'quarter' THEN 4 ELSE 1 END)
               OVER (PARTITION BY series ORDER BY period_start) AS prev_year_value
    FROM long)
SELECT series, period_start,
       -- Complete when the period's last local day ended at or before as_of (the end of its day).
       date_sub({{next_period(period_start)}}, 1) <= {{as_of_date}} AS complete,
       value, prev_value, prev_year_value,
       (value - prev_value) / NULLIF(prev_value, 0D) AS pop_change,
       (value - prev_year_value) / NULLIF(prev_year_value, 0D) AS yoy_change,
       trailing_12
FROM shifted
