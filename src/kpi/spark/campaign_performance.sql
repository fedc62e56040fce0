-- campaign_performance: one row per campaign of the campaigns table started at or before as_of
-- (or with no start), plus every campaign_id a lead or a deal references at as_of (missing from
-- the table: null channel and spend). Deals are attributed to their own campaign_id, else to
-- their lead's; spend is the campaign's whole spend_base; ratios are null over a zero or null
-- denominator.
WITH lead_counts AS (
    SELECT campaign_id, count(*) AS leads, count(qualified_at) AS qualified
    FROM leads_asof WHERE campaign_id IS NOT NULL
    GROUP BY campaign_id),
deal_campaign AS (
    SELECT d.status, d.amount_base, COALESCE(o.campaign_id, l.campaign_id) AS campaign_id
    FROM deals d
    JOIN opps o ON o.opportunity_id = d.opportunity_id
    LEFT JOIN leads_asof l ON l.lead_id = o.lead_id),
deal_counts AS (
    SELECT campaign_id, count(*) AS deals, count_if(status = 'won') AS won_deals,
           COALESCE(sum(CASE WHEN status = 'won' THEN amount_base END), 0D) AS won_revenue
    FROM deal_campaign WHERE campaign_id IS NOT NULL
    GROUP BY campaign_id),
ids AS (
    SELECT campaign_id FROM campaigns_all WHERE started_at IS NULL OR started_at <= {{as_of_ts}}
    UNION
    SELECT campaign_id FROM lead_counts
    UNION
    SELECT campaign_id FROM deal_counts),
t AS (
    SELECT i.campaign_id, c.channel,
           COALESCE(lc.leads, 0) AS leads, COALESCE(lc.qualified, 0) AS qualified,
           COALESCE(dc.deals, 0) AS deals, COALESCE(dc.won_deals, 0) AS won_deals,
           COALESCE(dc.won_revenue, 0D) AS won_revenue, c.spend_base AS spend
    FROM ids i
    LEFT JOIN campaigns_all c ON c.campaign_id = i.campaign_id
    LEFT JOIN lead_counts lc ON lc.campaign_id = i.campaign_id
    LEFT JOIN deal_counts dc ON dc.campaign_id = i.campaign_id)
SELECT campaign_id, channel, leads, qualified, deals, won_deals, won_revenue, spend,
       spend / NULLIF(leads, 0) AS cost_per_lead,
       spend / NULLIF(won_deals, 0) AS cost_per_acquisition,
       (won_revenue - spend) / NULLIF(spend, 0D) AS roi
FROM t
