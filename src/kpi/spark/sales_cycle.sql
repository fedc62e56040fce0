-- sales_cycle: days from creation to close of the deals closed in each period (status at
-- as_of, close cut in the configured timezone), won and lost apart, all and by owner_id and pipeline (one
-- grouping set each): count, mean, median and p90 with linear interpolation.
SELECT period_start,
       status AS outcome,
       CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' WHEN grouping(pipeline) = 0 THEN 'pipeline' ELSE 'all' END AS dimension,
       CASE WHEN grouping(owner_id) = 0 THEN owner_id WHEN grouping(pipeline) = 0 THEN pipeline END AS dimension_value,
       count(*) AS deals,
       avg(days) AS mean_days,
       percentile(days, 0.5D) AS median_days,
       percentile(days, 0.9D) AS p90_days
FROM closed
GROUP BY GROUPING SETS ((period_start, status), (period_start, status, owner_id), (period_start, status, pipeline))
