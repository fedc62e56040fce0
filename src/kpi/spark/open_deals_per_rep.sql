-- open_deals_per_rep: the deals open at as_of per owner and pipeline (the deal's at as_of): count, amount, mean age, stale deals
-- (the last stage event, or the creation of a deal without any, at least stale_after_days days
-- before as_of), the owner's team from the reps table and its share of the team's open deals in
-- the pipeline.
WITH per_owner AS (
    SELECT owner_id, pipeline,
           count(*)                                                  AS open_deals,
           COALESCE(sum(amount_base), 0D)                            AS amount,
           avg(({{as_of_us}} - unix_micros(created_at)) / 8.64e10)  AS mean_age_days,
           count_if(({{as_of_us}} - unix_micros(COALESCE(stage_entered_at, created_at))) / 8.64e10
                    >= {{stale_after_days}})                         AS stale_deals
    FROM deals
    WHERE status = 'open'
    GROUP BY owner_id, pipeline
)
SELECT p.owner_id, p.pipeline, r.team, p.open_deals, p.amount, p.mean_age_days, p.stale_deals,
       CASE WHEN r.team IS NOT NULL
            THEN p.open_deals / sum(p.open_deals) OVER (PARTITION BY r.team, p.pipeline) END AS team_share
FROM per_owner p
LEFT JOIN reps_all r ON r.rep_id = p.owner_id
