-- lead_conversion: leads known at as_of and those converted at or before as_of (by the
-- configured lead_converted_event, see views_leads.sql), with the median (linear
-- interpolation) and mean days to convert over the converted ones; all and by source,
-- campaign_id, owner_id, region and created period ('YYYY-MM-DD'), null values their own row.
WITH l AS (
    SELECT source, campaign_id, owner_id, region,
           CAST({{period(created_at)}} AS STRING) AS period, converted_at, days
    FROM leads_conv)
SELECT CASE WHEN grouping(source) = 0      THEN 'source'
            WHEN grouping(campaign_id) = 0 THEN 'campaign_id'
            WHEN grouping(owner_id) = 0    THEN 'owner_id'
            WHEN grouping(region) = 0      THEN 'region'
            WHEN grouping(period) = 0      THEN 'period'
            ELSE 'all' END AS dimension,
       CASE WHEN grouping(source) = 0      THEN source
            WHEN grouping(campaign_id) = 0 THEN campaign_id
            WHEN grouping(owner_id) = 0    THEN owner_id
            WHEN grouping(region) = 0      THEN region
            WHEN grouping(period) = 0      THEN period END AS dimension_value,
       count(*) AS leads,
       count(converted_at) AS converted,
       count(converted_at) / NULLIF(count(*), 0) AS conversion_rate,
       percentile(days, 0.5) AS median_days_to_convert,
       avg(days) AS mean_days_to_convert
FROM l
GROUP BY GROUPING SETS ((), (source), (campaign_id), (owner_id), (region), (period))
-- No `all` row without leads.
HAVING count(*) > 0
