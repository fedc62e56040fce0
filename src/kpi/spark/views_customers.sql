-- The customers family's shared views: orders as of as_of, each account's historical value,
-- and the per-customer RFM summary the two CLV model KPIs fit on. The larger ones are cached
-- lazily: built on first use, so a run of only some of the family's KPIs does not pay for the
-- others.

-- Orders known at as_of (ordered_at <= as_of), with a payment after as_of not known yet.
-- A refund is a row with is_refund = true: it counts -|amount_base| whatever its stored sign,
-- and is not an order.
CACHE LAZY TABLE cust_orders AS
SELECT order_id, account_id, ordered_at, region, channel, due_at,
       COALESCE(is_refund, false) AS refund,
       CASE WHEN COALESCE(is_refund, false) THEN -abs(amount_base) ELSE amount_base END AS amt,
       amount_base,
       CASE WHEN paid_at <= {{as_of_ts}} THEN paid_at END AS paid_at,
       {{period(ordered_at)}} AS period_start
FROM orders_all
WHERE ordered_at <= {{as_of_ts}};

-- One row per account with a non-refund order (clv_historical's rows, clv_segments' input).
-- source: the account's first converted lead (converted_at at or before as_of), earliest
-- converted_at, then created_at, then lead_id.
CACHE LAZY TABLE cust_values AS
WITH first_source AS (
    SELECT account_id, source
    FROM (SELECT account_id, source,
                 row_number() OVER (PARTITION BY account_id ORDER BY converted_at, created_at, lead_id) AS rn
          FROM leads_all
          WHERE created_at <= {{as_of_ts}} AND converted_at <= {{as_of_ts}} AND account_id IS NOT NULL)
    WHERE rn = 1),
per_account AS (
    SELECT account_id,
           min(CASE WHEN NOT refund THEN ordered_at END) AS first_at,
           max(CASE WHEN NOT refund THEN ordered_at END) AS last_at,
           count_if(NOT refund)                          AS orders,
           COALESCE(sum(amt), 0D)                        AS revenue
    FROM cust_orders
    GROUP BY account_id)
SELECT c.account_id,
       to_date(c.first_at)                                          AS first_order_date,
       to_date(c.last_at)                                           AS last_order_date,
       c.orders,
       c.revenue,
       c.revenue / c.orders                                         AS mean_order_value,
       (unix_micros({{as_of_ts}}) - unix_micros(c.first_at)) / 8.64e10 AS tenure_days,
       {{period(c.first_at)}}                                       AS cohort_start,
       s.source
FROM per_account c
LEFT JOIN first_source s ON s.account_id = c.account_id
WHERE c.orders > 0;

-- The CLV models' input, one row per customer (account with a non-refund order at or before
-- as_of): purchase days are local calendar dates of ordered_at; spend is summed per day in
-- whole micro-units (each order rounded half away from zero), so the sums are exact;
-- frequency = purchase days - 1, recency = last - first day, t = as_of's date - first day (in
-- clv.time_unit), monetary_value = mean spend of the repeat days (null without any). segment:
-- 'all', the account's segment, or the source of the account's first lead (leads created at or
-- before as_of: earliest created_at, then lead_id), per clv.segment_by; null is a group too.
CACHE LAZY TABLE cust_rfm AS
WITH days AS (
    SELECT account_id, to_date(ordered_at) AS day,
           COALESCE(sum(CAST(round(amount_base * 1e6D) AS BIGINT)), 0L) AS spend
    FROM cust_orders
    WHERE NOT refund
    GROUP BY account_id, to_date(ordered_at)),
per_account AS (
    SELECT account_id, count(*) AS n, min(day) AS first_day, max(day) AS last_day,
           sum(spend) AS total_spend, min_by(spend, day) AS first_spend
    FROM days
    GROUP BY account_id),
first_lead AS (
    SELECT account_id, min_by(source, struct(created_at, lead_id)) AS source
    FROM leads_all
    WHERE created_at <= {{as_of_ts}} AND account_id IS NOT NULL
    GROUP BY account_id),
account_segment AS (
    SELECT account_id, first(segment) AS segment
    FROM accounts_all
    WHERE created_at <= {{as_of_ts}}
    GROUP BY account_id)
SELECT r.account_id,
       CASE {{clv_segment_by}} WHEN 'none' THEN 'all' WHEN 'segment' THEN a.segment ELSE l.source END AS segment,
       r.n - 1                                                                  AS frequency,
       CAST(date_diff(r.last_day, r.first_day) AS DOUBLE) / {{clv_unit_days}}   AS recency,
       CAST(date_diff({{as_of_date}}, r.first_day) AS DOUBLE) / {{clv_unit_days}} AS t,
       CASE WHEN r.n > 1 THEN CAST(r.total_spend - r.first_spend AS DOUBLE) / 1e6D / CAST(r.n - 1 AS DOUBLE) END
                                                                                AS monetary_value
FROM per_account r
LEFT JOIN first_lead l      ON {{clv_segment_by}} = 'source'  AND l.account_id = r.account_id
LEFT JOIN account_segment a ON {{clv_segment_by}} = 'segment' AND a.account_id = r.account_id
WHERE r.account_id IS NOT NULL;
