-- stage_duration: visits to the pipeline's non-terminal stages (views.sql `visits`: one per
-- stage event at or before as_of), per stage of each pipeline, all and by owner_id (one grouping set each):
-- visits, completed (ended by another event or the deal's close by as_of) and censored (still
-- in the stage at as_of); mean and p25 / median / p75 / p90 (linear interpolation) of the
-- completed durations in days only. The Kaplan-Meier median and its 95% CI over all visits are
-- added by the entry point's `kaplan_meier_median` step from the event table stage_km_t
-- (views_funnel.sql), with the same fit as stage_duration_survival.
-- post: kaplan_meier_median
SELECT pipeline, stage,
       CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' ELSE 'all' END AS dimension,
       CASE WHEN grouping(owner_id) = 0 THEN owner_id END AS dimension_value,
       count(*) AS visits,
       count_if(completed) AS completed,
       count_if(NOT completed) AS censored,
       avg(done_days) AS mean_days,
       percentile(done_days, 0.25D) AS p25_days,
       percentile(done_days, 0.5D) AS median_days,
       percentile(done_days, 0.75D) AS p75_days,
       percentile(done_days, 0.9D) AS p90_days
FROM (SELECT pipeline, stage, owner_id, completed, CASE WHEN completed THEN days END AS done_days FROM visits) v
GROUP BY GROUPING SETS ((pipeline, stage), (pipeline, stage, owner_id))
