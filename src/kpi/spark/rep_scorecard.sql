-- rep_scorecard: per period and owner, the deals closed in the period (status at as_of), the
-- owner's deals open at the period's end (as_of for as_of's period, `open_snaps`) and the
-- owner's revenue target (`rep_targets`), with the owner's dense rank in the period (won amount,
-- then won deals, both descending) and the share of the team's won amount.
-- Like crm-kpi, the parts are joined on owner_id with `=`: a null owner keeps its row but
-- matches none of them (zero counts and amounts).
WITH closed_by_owner AS (
    SELECT period_start, owner_id,
           COALESCE(sum(CASE WHEN status = 'won' THEN amount_base END), 0D) AS won_amount,
           count_if(status = 'won')                                         AS won_deals,
           count_if(status = 'lost')                                        AS lost_deals,
           avg(CASE WHEN status = 'won' THEN amount_base END)               AS mean_deal_size,
           percentile(CASE WHEN status = 'won' THEN days END, 0.5)          AS median_cycle_days
    FROM closed
    GROUP BY period_start, owner_id
),
open_by_owner AS (
    SELECT o.period_start, d.owner_id,
           count(*)                         AS open_deals,
           COALESCE(sum(d.amount_base), 0D) AS open_pipeline
    FROM open_snaps o
    JOIN deals d ON d.opportunity_id = o.opportunity_id
    GROUP BY o.period_start, d.owner_id
),
targets AS (
    SELECT period_start, owner_id, target FROM rep_targets WHERE metric = 'revenue'
),
keys AS (
    SELECT period_start, owner_id FROM closed_by_owner
    UNION
    SELECT period_start, owner_id FROM open_by_owner
    UNION
    SELECT period_start, owner_id FROM targets
),
card AS (
    SELECT k.period_start, k.owner_id, r.team,
           COALESCE(c.won_amount, 0D)    AS won_amount,
           COALESCE(c.won_deals, 0)      AS won_deals,
           COALESCE(c.lost_deals, 0)     AS lost_deals,
           c.mean_deal_size, c.median_cycle_days,
           COALESCE(o.open_deals, 0)     AS open_deals,
           COALESCE(o.open_pipeline, 0D) AS open_pipeline,
           t.target
    FROM keys k
    LEFT JOIN closed_by_owner c ON c.period_start = k.period_start AND c.owner_id = k.owner_id
    LEFT JOIN open_by_owner o   ON o.period_start = k.period_start AND o.owner_id = k.owner_id
    LEFT JOIN targets t         ON t.period_start = k.period_start AND t.owner_id = k.owner_id
    LEFT JOIN reps_all r        ON r.rep_id = k.owner_id
),
ranked AS (
    SELECT *,
           CAST(won_deals AS DOUBLE) / NULLIF(won_deals + lost_deals, 0) AS win_rate,
           won_amount / NULLIF(target, 0D)                                AS attainment,
           dense_rank() OVER (PARTITION BY period_start ORDER BY won_amount DESC, won_deals DESC) AS rank,
           CASE WHEN team IS NOT NULL
                THEN sum(won_amount) OVER (PARTITION BY period_start, team) END AS team_won_amount
    FROM card
)
SELECT period_start, owner_id, team, won_amount, won_deals, lost_deals, win_rate, mean_deal_size,
       median_cycle_days, open_deals, open_pipeline, target, attainment, rank, team_won_amount,
       won_amount / NULLIF(team_won_amount, 0D) AS share_of_team
FROM ranked
