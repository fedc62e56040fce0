-- pipeline_snapshot: the deals open at each snapshot instant (`open_snaps`: every past period's
-- end and as_of) per stage of their last event at that instant, with their current amount,
-- amount x the stage's probability and mean age at the instant, per pipeline (the stage's; a
-- deal without a known stage is in its pipeline at as_of). Every open stage of every
-- pipeline has a row at every snapshot (0 deals, null age when empty); deals without a stage
-- event yet are under a null stage.
WITH agg AS (
    SELECT o.snapshot_at, COALESCE(o.snap_pipeline, d.pipeline) AS pipeline, o.snap_stage AS stage,
           count(*)                                 AS open_deals,
           COALESCE(sum(d.amount_base), 0D)         AS amount,
           -- Null when no deal of the row has a probability (no stage, or a stage the
           -- pipeline does not know); deals without an amount add nothing.
           CASE WHEN count(o.snap_prob) > 0
                THEN COALESCE(sum(d.amount_base * o.snap_prob), 0D) END AS weighted_amount,
           avg((unix_micros(o.t) - unix_micros(d.created_at)) / 8.64e10) AS mean_age_days
    FROM open_snaps o
    JOIN deals d ON d.opportunity_id = o.opportunity_id
    GROUP BY o.snapshot_at, COALESCE(o.snap_pipeline, d.pipeline), o.snap_stage
),
grid AS (
    SELECT s.snapshot_at, st.pipeline, st.stage
    FROM snaps s CROSS JOIN stages st
    WHERE st.terminal IS NULL
    UNION
    SELECT snapshot_at, pipeline, stage FROM agg
)
SELECT g.snapshot_at, g.pipeline, g.stage,
       COALESCE(a.open_deals, 0) AS open_deals,
       COALESCE(a.amount, 0D)    AS amount,
       -- An empty configured stage weighs 0.
       CASE WHEN a.open_deals IS NULL AND g.stage IS NOT NULL THEN 0D
            ELSE a.weighted_amount END AS weighted_amount,
       a.mean_age_days
FROM grid g
LEFT JOIN agg a ON a.snapshot_at = g.snapshot_at AND a.pipeline = g.pipeline AND a.stage <=> g.stage
