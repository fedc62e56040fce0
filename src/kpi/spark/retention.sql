-- retention: accounts acquired by their first paid (at as_of) non-refund order, in the period
-- of its ordered_at (cohort_start); afterwards active in any period with a non-refund order,
-- paid or not. One cell per cohort and k = 0 .. as_of's period; a cell whose period has not
-- ended at as_of has null active, retention_rate, churned and churn_rate. churned = active in
-- k-1 but not in k; churn_rate = churned / active in k-1 (null when none).
WITH cohorts AS (
    SELECT account_id, min(period_start) AS cohort_start
    FROM cust_orders
    WHERE NOT refund AND paid_at IS NOT NULL
    GROUP BY account_id),
-- One row per account and period with a non-refund order from its cohort on, with whether it
-- was also active in the period before.
activity AS (
    SELECT cohort_start, k, lag(k) OVER (PARTITION BY account_id ORDER BY k) = k - 1 AS stayed
    FROM (SELECT DISTINCT o.account_id, c.cohort_start,
                 {{period_ordinal(o.period_start)}} - {{period_ordinal(c.cohort_start)}} AS k
          FROM cust_orders o JOIN cohorts c ON c.account_id = o.account_id
          WHERE NOT o.refund) a
    WHERE k >= 0),
cells AS (
    SELECT cohort_start, k, count(*) AS active, count_if(stayed) AS stayed
    FROM activity
    GROUP BY cohort_start, k),
grid AS (
    SELECT s.cohort_start, s.cohort_size, p.period_start,
           {{period_ordinal(p.period_start)}} - {{period_ordinal(s.cohort_start)}} AS k
    FROM (SELECT cohort_start, count(*) AS cohort_size FROM cohorts GROUP BY cohort_start) s
    LATERAL VIEW explode(sequence(s.cohort_start, {{cur_period}}, {{period_step}})) p AS period_start),
joined AS (
    SELECT g.cohort_start, g.k, g.period_start, g.cohort_size,
           {{period_end(g.period_start)}} <= {{as_of_ts}} AS observable,
           COALESCE(c.active, 0L) AS n_active,
           COALESCE(c.stayed, 0L) AS n_stayed,
           lag(COALESCE(c.active, 0L)) OVER (PARTITION BY g.cohort_start ORDER BY g.k) AS n_before
    FROM grid g
    LEFT JOIN cells c ON c.cohort_start = g.cohort_start AND c.k = g.k)
SELECT cohort_start, k, period_start, cohort_size,
       CASE WHEN observable THEN n_active END                                         AS active,
       CASE WHEN observable THEN CAST(n_active AS DOUBLE) / NULLIF(cohort_size, 0) END AS retention_rate,
       CASE WHEN observable AND k > 0 THEN n_before - n_stayed END                     AS churned,
       CASE WHEN observable AND k > 0 THEN CAST(n_before - n_stayed AS DOUBLE) / NULLIF(n_before, 0) END
                                                                                       AS churn_rate
FROM joined
