-- lead_volume: per period (cut in the configured timezone at the run's grain), leads created,
-- qualified and disqualified in it, each counted in the period of its own timestamp (known at
-- as_of), all and by source, campaign_id, owner_id and region (a null value is its own row).
-- Only periods and values with at least one event have a row.
WITH ev AS (
    SELECT {{period(created_at)}} AS period_start, 1 AS is_new, 0 AS is_qualified, 0 AS is_disqualified,
           source, campaign_id, owner_id, region
    FROM leads_asof
    UNION ALL
    SELECT {{period(qualified_at)}}, 0, 1, 0, source, campaign_id, owner_id, region
    FROM leads_asof WHERE qualified_at IS NOT NULL
    UNION ALL
    SELECT {{period(disqualified_at)}}, 0, 0, 1, source, campaign_id, owner_id, region
    FROM leads_asof WHERE disqualified_at IS NOT NULL)
SELECT period_start,
       CASE WHEN grouping(source) = 0      THEN 'source'
            WHEN grouping(campaign_id) = 0 THEN 'campaign_id'
            WHEN grouping(owner_id) = 0    THEN 'owner_id'
            WHEN grouping(region) = 0      THEN 'region'
            ELSE 'all' END AS dimension,
       CASE WHEN grouping(source) = 0      THEN source
            WHEN grouping(campaign_id) = 0 THEN campaign_id
            WHEN grouping(owner_id) = 0    THEN owner_id
            WHEN grouping(region) = 0      THEN region END AS dimension_value,
       sum(is_new) AS new_leads, sum(is_qualified) AS qualified_leads,
       sum(is_disqualified) AS disqualified_leads
FROM ev
GROUP BY GROUPING SETS ((period_start), (period_start, source), (period_start, campaign_id),
                        (period_start, owner_id), (period_start, region))
