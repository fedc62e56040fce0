-- sales_velocity: per period, all and by owner_id and pipeline (open deals in the pipeline of
-- their stage at the period's end, closed ones in theirs at as_of), velocity = open_deals x win_rate x
-- mean_won_amount / mean_cycle_days, where open_deals are the deals open at the period's end
-- (as_of for as_of's period, `open_snaps`) and the other factors come from the deals closed in
-- the period (status at as_of). One aggregation over the open and the closed deals together.
WITH facts AS (
    SELECT o.period_start, d.owner_id, COALESCE(o.snap_pipeline, d.pipeline) AS pipeline, true AS is_open,
           CAST(NULL AS STRING) AS status, CAST(NULL AS DOUBLE) AS amount_base, CAST(NULL AS DOUBLE) AS days
    FROM open_snaps o
    JOIN deals d ON d.opportunity_id = o.opportunity_id
    UNION ALL
    SELECT period_start, owner_id, pipeline, false, status, amount_base, days
    FROM closed
),
agg AS (
    SELECT period_start,
           CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' WHEN grouping(pipeline) = 0 THEN 'pipeline' ELSE 'all' END AS dimension,
           CASE WHEN grouping(owner_id) = 0 THEN owner_id WHEN grouping(pipeline) = 0 THEN pipeline END AS dimension_value,
           count_if(is_open)                                     AS open_deals,
           count_if(status = 'won')                              AS won,
           count_if(status = 'lost')                             AS lost,
           avg(CASE WHEN status = 'won' THEN amount_base END)    AS mean_won_amount,
           avg(CASE WHEN status = 'won' THEN days END)           AS mean_cycle_days
    FROM facts
    GROUP BY GROUPING SETS ((period_start), (period_start, owner_id), (period_start, pipeline))
),
-- crm-kpi joins its per-owner parts on owner_id with `=`, which a null owner never matches:
-- that row keeps its key but none of the values.
factors AS (
    SELECT period_start, dimension, dimension_value,
           CASE WHEN NOT unmatched THEN open_deals ELSE 0 END                           AS open_deals,
           CASE WHEN NOT unmatched THEN CAST(won AS DOUBLE) / NULLIF(won + lost, 0) END AS win_rate,
           CASE WHEN NOT unmatched THEN mean_won_amount END                             AS mean_won_amount,
           CASE WHEN NOT unmatched THEN mean_cycle_days END                             AS mean_cycle_days
    FROM (SELECT *, dimension = 'owner_id' AND dimension_value IS NULL AS unmatched FROM agg)
)
SELECT period_start, dimension, dimension_value, open_deals, win_rate, mean_won_amount, mean_cycle_days,
       open_deals * win_rate * mean_won_amount / NULLIF(mean_cycle_days, 0D) AS velocity
FROM factors
