-- lead_velocity_rate: leads qualified (at or before as_of) per period, over dense periods from
-- the first period in which a lead was created or qualified to as_of's period (an empty period
-- is 0); lvr = growth over the previous period, null for the first period (not observed) and
-- over a previous period of 0.
WITH bounds AS (
    SELECT least(min({{period(created_at)}}), min({{period(qualified_at)}})) AS first_period
    FROM leads_asof),
periods AS (
    SELECT explode(sequence(first_period, {{cur_period}}, {{period_step}})) AS period_start
    FROM bounds WHERE first_period IS NOT NULL),
qualified AS (
    SELECT {{period(qualified_at)}} AS period_start, count(*) AS n
    FROM leads_asof WHERE qualified_at IS NOT NULL
    GROUP BY 1),
series AS (
    SELECT p.period_start, COALESCE(q.n, 0) AS qualified_leads,
           lag(COALESCE(q.n, 0)) OVER (ORDER BY p.period_start) AS prev_qualified_leads
    FROM periods p LEFT JOIN qualified q ON q.period_start = p.period_start)
SELECT period_start, qualified_leads, prev_qualified_leads,
       CAST(qualified_leads - prev_qualified_leads AS DOUBLE) / NULLIF(prev_qualified_leads, 0) AS lvr,
       -- Complete when the period's last local day ended at or before as_of (the end of its day).
       date_sub({{next_period(period_start)}}, 1) <= {{as_of_date}} AS complete
FROM series
