"""DuckDB references of the leads KPIs: lead_volume, lead_velocity_rate, lead_conversion,
cohort_conversion, campaign_performance.

Written from the definitions of `crm-kpi list --long` (monthly grain, UTC), not from the Rust
code:
- a lead counts when created_at <= as_of; its qualified_at / disqualified_at count only when at
  or before as_of;
- "converted" follows the config's lead_converted_event: `won` (the earliest close of the lead's
  deals won at as_of, from views.py's `deals`), `opportunity` (the earlier of the lead's
  converted_at and its first opportunity's created_at) or `paid_order` (the first paid_at of a
  non-refund order of the lead's account at or after the lead's creation). Conversions after
  as_of do not count;
- periods are calendar months; a month is complete when its last microsecond is <= as_of.
"""

from .views import by_dims

DIMS = ["source", "campaign_id", "owner_id", "region"]


def conversions_sql(mode):
    if mode == "won":
        return """
            SELECT l.lead_id, min(d.closed_at) AS converted_at
            FROM leads_asof l
            JOIN opps o ON o.lead_id = l.lead_id
            JOIN deals d ON d.opportunity_id = o.opportunity_id
            WHERE d.status = 'won'
            GROUP BY l.lead_id"""
    if mode == "opportunity":
        return """
            SELECT lead_id, CASE WHEN own IS NULL THEN first_opp
                                 WHEN first_opp IS NULL THEN own
                                 WHEN own < first_opp THEN own ELSE first_opp END AS converted_at
            FROM (SELECT l.lead_id, any_value(l.converted_at) AS own, min(o.created_at) AS first_opp
                  FROM leads_asof l LEFT JOIN opps o ON o.lead_id = l.lead_id
                  GROUP BY l.lead_id)"""
    if mode == "paid_order":
        return """
            SELECT l.lead_id, min(o.paid_at) AS converted_at
            FROM leads_asof l
            JOIN orders_all o ON o.account_id = l.account_id AND o.paid_at >= l.created_at
            WHERE o.ordered_at <= as_of_ts() AND o.paid_at <= as_of_ts() AND NOT COALESCE(o.is_refund, false)
            GROUP BY l.lead_id"""
    raise SystemExit(f"reference.duckdb: unknown lead_converted_event {mode!r}")


def setup(db):
    def known(c):
        return f"CASE WHEN {c} <= as_of_ts() THEN {c} END AS {c}"

    db.con.execute(f"""
        CREATE TABLE leads_asof AS
            SELECT lead_id, created_at, source, campaign_id, owner_id, region, account_id,
                   {known("qualified_at")}, {known("disqualified_at")}, {known("converted_at")}
            FROM leads_all WHERE created_at <= as_of_ts();
        CREATE TABLE lead_conv AS
            SELECT * FROM ({conversions_sql(db.cfg.lead_converted_event)})
            WHERE converted_at IS NOT NULL AND converted_at <= as_of_ts();
        CREATE TABLE leads_conv AS
            SELECT l.lead_id, l.created_at, l.source, l.campaign_id, l.owner_id, l.region,
                   strftime(month_of(l.created_at), '%Y-%m-%d') AS period,
                   c.converted_at, days_between(l.created_at, c.converted_at) AS days
            FROM leads_asof l LEFT JOIN lead_conv c USING (lead_id);
        -- Month m ends at its last microsecond.
        CREATE MACRO month_complete(m) AS
            (CAST(CAST(m + INTERVAL 1 MONTH AS DATE) AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND <= as_of_ts());
    """)


def lead_volume(db):
    dims = ", ".join(DIMS)
    events = f"""(
        SELECT month_of(created_at) AS period_start, 'new' AS kind, {dims} FROM leads_asof
        UNION ALL SELECT month_of(qualified_at), 'qualified', {dims} FROM leads_asof WHERE qualified_at IS NOT NULL
        UNION ALL SELECT month_of(disqualified_at), 'disqualified', {dims} FROM leads_asof
                  WHERE disqualified_at IS NOT NULL) ev"""
    return by_dims(
        events,
        "period_start, COUNT(*) FILTER (WHERE kind = 'new') AS new_leads, "
        "COUNT(*) FILTER (WHERE kind = 'qualified') AS qualified_leads, "
        "COUNT(*) FILTER (WHERE kind = 'disqualified') AS disqualified_leads",
        ["period_start"],
        DIMS,
    )


def lead_velocity_rate(db):
    return """
        WITH bounds AS (
            SELECT least(min(month_of(created_at)), COALESCE(min(month_of(qualified_at)), min(month_of(created_at))))
                   AS first FROM leads_asof),
        months AS (
            SELECT CAST(unnest(generate_series(CAST(first AS TIMESTAMP), CAST(cur_period() AS TIMESTAMP),
                                               INTERVAL 1 MONTH)) AS DATE) AS period_start
            FROM bounds WHERE first IS NOT NULL),
        q AS (SELECT month_of(qualified_at) AS period_start, COUNT(*) AS n FROM leads_asof
              WHERE qualified_at IS NOT NULL GROUP BY 1),
        series AS (
            SELECT m.period_start, COALESCE(q.n, 0) AS qualified_leads,
                   lag(COALESCE(q.n, 0)) OVER (ORDER BY m.period_start) AS prev_qualified_leads
            FROM months m LEFT JOIN q USING (period_start))
        SELECT period_start, qualified_leads, prev_qualified_leads,
               CASE WHEN prev_qualified_leads = 0 OR prev_qualified_leads IS NULL THEN NULL
                    ELSE (qualified_leads - prev_qualified_leads) / prev_qualified_leads::DOUBLE END AS lvr,
               month_complete(period_start) AS complete
        FROM series
    """


def lead_conversion(db):
    return by_dims(
        "leads_conv",
        "COUNT(*) AS leads, COUNT(converted_at) AS converted, "
        "CASE WHEN COUNT(*) = 0 THEN NULL ELSE COUNT(converted_at) / COUNT(*)::DOUBLE END AS conversion_rate, "
        "quantile_cont(days, 0.5) AS median_days_to_convert, avg(days) AS mean_days_to_convert",
        [],
        DIMS + ["period"],
    )


def cohort_conversion(db):
    # k counts months after the cohort's; cell (cohort, k) counts the conversions before the first
    # instant of month cohort + k + 1, i.e. in a month at most cohort + k (so one dated before
    # the cohort counts from k = 0). Conversions are counted per (cohort, month offset) and
    # summed along k over the small cohort x k grid, not over a lead x k grid (20M rows at m).
    return """
        WITH l AS (SELECT month_of(created_at) AS cohort, source,
                          CASE WHEN converted_at IS NOT NULL
                               THEN greatest(datediff('month', month_of(created_at), month_of(converted_at)), 0)
                          END AS j
                   FROM leads_conv),
        sizes AS (SELECT cohort, 'all' AS dimension, NULL::VARCHAR AS dimension_value, COUNT(*) AS cohort_size
                  FROM l GROUP BY 1
                  UNION ALL
                  SELECT cohort, 'source', source, COUNT(*) FROM l GROUP BY 1, 3),
        conv AS (SELECT cohort, 'all' AS dimension, NULL::VARCHAR AS dimension_value, j, COUNT(*) AS n
                 FROM l WHERE j IS NOT NULL GROUP BY 1, 4
                 UNION ALL
                 SELECT cohort, 'source', source, j, COUNT(*) FROM l WHERE j IS NOT NULL GROUP BY 1, 3, 4),
        grid AS (SELECT s.*, unnest(generate_series(0, datediff('month', s.cohort, cur_period()))) AS k FROM sizes s),
        cells AS (
            SELECT g.cohort AS cohort_start, g.dimension, g.dimension_value, g.cohort_size, g.k,
                   CAST(SUM(COALESCE(c.n, 0)) OVER (PARTITION BY g.cohort, g.dimension, g.dimension_value ORDER BY g.k
                                               ROWS UNBOUNDED PRECEDING) AS BIGINT) AS raw_cum
            FROM grid g LEFT JOIN conv c ON c.cohort = g.cohort AND c.dimension = g.dimension
                 AND c.dimension_value IS NOT DISTINCT FROM g.dimension_value AND c.j = g.k)
        SELECT cohort_start, dimension, dimension_value, cohort_size, k,
               CASE WHEN month_complete(CAST(cohort_start + to_months(CAST(k AS INTEGER)) AS DATE))
                    THEN raw_cum END AS converted_cum,
               CASE WHEN month_complete(CAST(cohort_start + to_months(CAST(k AS INTEGER)) AS DATE))
                    THEN raw_cum / cohort_size::DOUBLE END AS conversion_rate_cum
        FROM cells
    """


def campaign_performance(db):
    return """
        WITH deal_campaign AS (
            SELECT d.opportunity_id, d.status, d.amount_base,
                   COALESCE(o.campaign_id, l.campaign_id) AS campaign_id
            FROM deals d JOIN opps o USING (opportunity_id)
            LEFT JOIN leads_asof l ON l.lead_id = o.lead_id),
        ids AS (
            SELECT campaign_id FROM campaigns_all WHERE started_at IS NULL OR started_at <= as_of_ts()
            UNION SELECT campaign_id FROM leads_asof WHERE campaign_id IS NOT NULL
            UNION SELECT campaign_id FROM deal_campaign WHERE campaign_id IS NOT NULL),
        lc AS (SELECT campaign_id, COUNT(*) AS leads, COUNT(qualified_at) AS qualified
               FROM leads_asof GROUP BY 1),
        dc AS (SELECT campaign_id, COUNT(*) AS deals, COUNT(*) FILTER (WHERE status = 'won') AS won_deals,
                      COALESCE(SUM(amount_base) FILTER (WHERE status = 'won'), 0) AS won_revenue
               FROM deal_campaign GROUP BY 1),
        t AS (
            SELECT ids.campaign_id, c.channel, COALESCE(lc.leads, 0) AS leads,
                   COALESCE(lc.qualified, 0) AS qualified, COALESCE(dc.deals, 0) AS deals,
                   COALESCE(dc.won_deals, 0) AS won_deals, COALESCE(dc.won_revenue, 0) AS won_revenue,
                   c.spend_base AS spend
            FROM ids
            LEFT JOIN campaigns_all c USING (campaign_id)
            LEFT JOIN lc USING (campaign_id)
            LEFT JOIN dc USING (campaign_id))
        SELECT *,
               CASE WHEN leads = 0 THEN NULL ELSE spend / leads END AS cost_per_lead,
               CASE WHEN won_deals = 0 THEN NULL ELSE spend / won_deals END AS cost_per_acquisition,
               CASE WHEN spend = 0 THEN NULL ELSE (won_revenue - spend) / spend END AS roi
        FROM t
    """


KPIS = {
    "lead_volume": lead_volume,
    "lead_velocity_rate": lead_velocity_rate,
    "lead_conversion": lead_conversion,
    "cohort_conversion": cohort_conversion,
    "campaign_performance": campaign_performance,
}
