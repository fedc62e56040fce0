-- deal_snapshot: every deal created at or before as_of as it stood at as_of (status, stage and
-- close from its stage events, see `deals`), with its own columns, its age (to its close, or to
-- as_of while open), its days in its current stage (open deals with a stage event only) and the
-- count and first instant of its stage events at or before as_of.
WITH ev AS (
    SELECT opportunity_id, count(*) AS stage_events, min(entered_at) AS first_stage_at
    FROM events
    GROUP BY opportunity_id
)
SELECT d.opportunity_id, d.account_id, d.owner_id, o.lead_id, d.source, d.campaign_id, d.region,
       d.status, d.pipeline, d.stage, d.amount_base, d.created_at, d.closed_at, d.expected_close_date,
       d.loss_reason,
       (unix_micros(COALESCE(d.closed_at, {{as_of_ts}})) - unix_micros(d.created_at)) / 8.64e10 AS age_days,
       d.stage_entered_at,
       CASE WHEN d.status = 'open'
            THEN ({{as_of_us}} - unix_micros(d.stage_entered_at)) / 8.64e10 END AS days_in_stage,
       COALESCE(ev.stage_events, 0) AS stage_events,
       ev.first_stage_at
FROM deals d
JOIN opps o ON o.opportunity_id = d.opportunity_id
LEFT JOIN ev ON ev.opportunity_id = d.opportunity_id
