-- win_rate: deals closed in each period (status at as_of, close cut in the configured
-- timezone), all and by owner_id, source, region and pipeline (one grouping set each).
SELECT period_start, dimension, dimension_value, won, lost,
       CAST(won AS DOUBLE) / NULLIF(won + lost, 0) AS win_rate,
       won_amount, lost_amount,
       won_amount / NULLIF(won_amount + lost_amount, 0D) AS amount_win_rate
FROM (
    SELECT period_start,
           CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' WHEN grouping(source) = 0 THEN 'source'
                WHEN grouping(region) = 0 THEN 'region' WHEN grouping(pipeline) = 0 THEN 'pipeline'
                ELSE 'all' END AS dimension,
           CASE WHEN grouping(owner_id) = 0 THEN owner_id WHEN grouping(source) = 0 THEN source
                WHEN grouping(region) = 0 THEN region WHEN grouping(pipeline) = 0 THEN pipeline END AS dimension_value,
           count_if(status = 'won') AS won, count_if(status = 'lost') AS lost,
           COALESCE(sum(CASE WHEN status = 'won' THEN amount_base END), 0D) AS won_amount,
           COALESCE(sum(CASE WHEN status = 'lost' THEN amount_base END), 0D) AS lost_amount
    FROM closed
    GROUP BY GROUPING SETS ((period_start), (period_start, owner_id), (period_start, source), (period_start, region),
                            (period_start, pipeline))
) g
