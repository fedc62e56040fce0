-- The funnel family's shared views, run once before the family's KPIs.

-- stage_km_t (stage_duration, stage_duration_survival): the Kaplan-Meier event table of time in
-- stage, per non-terminal stage of each pipeline, all and by owner_id: one row per distinct visit duration with
-- its completed visits (events), censored visits and at_risk = the group's visits lasting at
-- least that long (a visit censored at t is at risk at t). Durations are grouped on exact
-- microseconds. The product-limit estimate itself is the entry point's `kaplan_meier` step.
-- Lazy: computed on first use, once for both KPIs.
CACHE LAZY TABLE stage_km_t AS
SELECT pipeline, stage, dimension, dimension_value, days_us / 8.64e10 AS t_days,
       CAST(sum(n) OVER (PARTITION BY pipeline, stage, dimension, dimension_value ORDER BY days_us DESC
                         ROWS UNBOUNDED PRECEDING) AS BIGINT) AS at_risk,
       events, censored
FROM (
    SELECT pipeline, stage, days_us,
           CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' ELSE 'all' END AS dimension,
           CASE WHEN grouping(owner_id) = 0 THEN owner_id END AS dimension_value,
           count_if(completed) AS events, count_if(NOT completed) AS censored, count(*) AS n
    FROM visits
    GROUP BY GROUPING SETS ((pipeline, stage, days_us), (pipeline, stage, owner_id, days_us))
) g;
