-- clv_segments: historical CLV (clv_historical's revenue per account) over all accounts, per
-- cohort_start (as YYYY-MM-DD) and per source (accounts without one in a null-value row):
-- accounts, mean, median (linear interpolation) and total revenue. No rows without accounts.
SELECT dimension, dimension_value, customers, mean_clv, median_clv, total_revenue
FROM (
    SELECT CASE WHEN grouping(cohort_start) = 0 THEN 'cohort_start'
                WHEN grouping(source) = 0 THEN 'source' ELSE 'all' END AS dimension,
           CASE WHEN grouping(cohort_start) = 0 THEN CAST(cohort_start AS STRING)
                WHEN grouping(source) = 0 THEN source END AS dimension_value,
           count(*)                AS customers,
           avg(revenue)            AS mean_clv,
           percentile(revenue, 0.5) AS median_clv,
           sum(revenue)            AS total_revenue
    FROM cust_values
    GROUP BY GROUPING SETS ((), (cohort_start), (source))
) g
WHERE customers > 0
