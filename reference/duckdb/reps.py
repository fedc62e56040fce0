"""DuckDB references of the reps and activity KPIs: open_deals_per_rep, rep_scorecard, activity
(monthly grain in UTC).

Written from the definitions in `crm-kpi list --long`, not from the Rust code:
- open_deals_per_rep: the deals open at as_of (views.py's `deals`) per owner, with the reps
  table's team;
- rep_scorecard: DENSE_RANK over (won_amount DESC, won_deals DESC), the open pipeline from
  views.py's `open_snaps`;
- activity: first touches by one min over (occurred_at, activity_id, owner_id) per lead and per
  account.
"""

from .views import open_snapshots


def targets_sql(metric):
    """Rep targets of `metric` per month: a target counts in the month containing its whole span;
    only the coarsest fitting grain per rep and month; months up to as_of's."""
    return f"""
        SELECT period_start, owner_id, SUM(value) AS target FROM (
            SELECT *, max(size) OVER (PARTITION BY period_start, owner_id) AS max_size FROM (
                SELECT month_of(t.period_start) AS period_start, t.scope AS owner_id, t.value,
                       CASE t.grain WHEN 'week' THEN 0 WHEN 'month' THEN 1 WHEN 'quarter' THEN 2 ELSE 3 END AS size,
                       CAST(t.period_start + CASE t.grain WHEN 'week' THEN INTERVAL 7 DAY
                                                          WHEN 'month' THEN INTERVAL 1 MONTH
                                                          WHEN 'quarter' THEN INTERVAL 3 MONTH
                                                          ELSE INTERVAL 1 YEAR END - INTERVAL 1 DAY AS DATE) AS last_day
                FROM targets_all t
                WHERE t.scope_kind = 'rep' AND t.metric = '{metric}')
            WHERE month_of(last_day) = period_start AND period_start <= cur_period())
        WHERE size = max_size
        GROUP BY 1, 2
    """


def open_deals_per_rep(db):
    return f"""
        SELECT d.owner_id, d.pipeline, r.team, COUNT(*) AS open_deals, COALESCE(SUM(d.amount_base), 0) AS amount,
               AVG(days_between(d.created_at, as_of_ts())) AS mean_age_days,
               SUM((days_between(COALESCE(d.stage_entered_at, d.created_at), as_of_ts())
                    >= {db.cfg.stale_after_days})::INT) AS stale_deals,
               CASE WHEN r.team IS NULL THEN NULL
                    ELSE COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY r.team, d.pipeline) END AS team_share
        FROM deals d
        LEFT JOIN (SELECT DISTINCT rep_id, team FROM reps_all) r ON r.rep_id = d.owner_id
        WHERE d.status = 'open'
        GROUP BY d.owner_id, d.pipeline, r.team
    """


def rep_scorecard(db):
    return f"""
        WITH c AS (
            SELECT period_start, owner_id,
                   COALESCE(SUM(amount_base) FILTER (WHERE status = 'won'), 0) AS won_amount,
                   count_if(status = 'won') AS won_deals, count_if(status = 'lost') AS lost_deals,
                   AVG(amount_base) FILTER (WHERE status = 'won') AS mean_deal_size,
                   quantile_cont(days, 0.5) FILTER (WHERE status = 'won') AS median_cycle_days
            FROM closed GROUP BY 1, 2),
        op AS (SELECT o.period_start, d.owner_id AS owner_id, COUNT(*) AS open_deals,
                      COALESCE(SUM(d.amount_base), 0) AS open_pipeline
               FROM {open_snapshots(db)} o JOIN deals d USING (opportunity_id) GROUP BY 1, 2),
        tg AS ({targets_sql("revenue")}),
        k AS (SELECT period_start, owner_id FROM c UNION SELECT period_start, owner_id FROM op
              UNION SELECT period_start, owner_id FROM tg),
        j AS (
            SELECT k.period_start, k.owner_id, r.team,
                   COALESCE(c.won_amount, 0) AS won_amount, COALESCE(c.won_deals, 0) AS won_deals,
                   COALESCE(c.lost_deals, 0) AS lost_deals, c.mean_deal_size, c.median_cycle_days,
                   COALESCE(op.open_deals, 0) AS open_deals, COALESCE(op.open_pipeline, 0) AS open_pipeline,
                   tg.target
            FROM k
            LEFT JOIN c ON c.period_start = k.period_start AND c.owner_id = k.owner_id
            LEFT JOIN op ON op.period_start = k.period_start AND op.owner_id = k.owner_id
            LEFT JOIN tg ON tg.period_start = k.period_start AND tg.owner_id = k.owner_id
            LEFT JOIN (SELECT DISTINCT rep_id, team FROM reps_all) r ON r.rep_id = k.owner_id)
        SELECT *,
               CASE WHEN won_deals + lost_deals = 0 THEN NULL ELSE won_deals / (won_deals + lost_deals) END AS win_rate,
               CASE WHEN target IS NULL OR target = 0 THEN NULL ELSE won_amount / target END AS attainment,
               dense_rank() OVER (PARTITION BY period_start ORDER BY won_amount DESC, won_deals DESC) AS rank,
               CASE WHEN team IS NULL THEN NULL
                    ELSE SUM(won_amount) OVER (PARTITION BY period_start, team) END AS team_won_amount,
               CASE WHEN team IS NULL OR SUM(won_amount) OVER (PARTITION BY period_start, team) = 0 THEN NULL
                    ELSE won_amount / SUM(won_amount) OVER (PARTITION BY period_start, team) END AS share_of_team
        FROM j
    """


def activity(db):
    return f"""
        WITH a AS (SELECT * FROM activities_all WHERE occurred_at <= as_of_ts()),
        -- A first touch: the earliest activity (then the smallest activity_id) of a lead or of an
        -- account, one min over (occurred_at, activity_id, owner_id) per lead and per account;
        -- an activity first for both its lead and its account counts once.
        first_touch AS (
            SELECT DISTINCT f.* FROM (
                SELECT min({{'t': occurred_at, 'id': activity_id, 'owner': owner_id}}) AS f
                FROM a WHERE lead_id IS NOT NULL GROUP BY lead_id
                UNION ALL
                SELECT min({{'t': occurred_at, 'id': activity_id, 'owner': owner_id}})
                FROM a WHERE account_id IS NOT NULL GROUP BY account_id)),
        nc AS (SELECT month_of(t) AS period_start, owner AS owner_id, COUNT(*) AS new_contacts
               FROM first_touch GROUP BY 1, 2),
        per AS (
            SELECT p.*, COALESCE(nc.new_contacts, 0) AS new_contacts FROM (
                SELECT month_of(occurred_at) AS period_start, owner_id,
                       count_if(kind = 'call') AS calls,
                       count_if(kind = 'call' AND outcome = 'connected') AS connected_calls,
                       count_if(kind = 'email') AS emails, count_if(kind = 'meeting') AS meetings,
                       count_if(kind = 'visit') AS visits, count_if(kind = 'task') AS tasks
                FROM a GROUP BY 1, 2) p
            LEFT JOIN nc ON nc.period_start = p.period_start AND nc.owner_id IS NOT DISTINCT FROM p.owner_id),
        tg AS ({targets_sql("calls")}),
        k AS (SELECT period_start, owner_id FROM per UNION SELECT period_start, owner_id FROM tg)
        SELECT k.period_start, k.owner_id,
               COALESCE(calls, 0) AS calls, COALESCE(connected_calls, 0) AS connected_calls,
               CASE WHEN COALESCE(calls, 0) = 0 THEN NULL ELSE connected_calls / calls END AS connect_rate,
               COALESCE(emails, 0) AS emails, COALESCE(meetings, 0) AS meetings, COALESCE(visits, 0) AS visits,
               COALESCE(tasks, 0) AS tasks, COALESCE(new_contacts, 0) AS new_contacts,
               tg.target AS calls_target,
               CASE WHEN tg.target IS NULL OR tg.target = 0 THEN NULL ELSE COALESCE(calls, 0) / tg.target END
                 AS calls_attainment
        FROM k
        LEFT JOIN per ON per.period_start = k.period_start AND per.owner_id = k.owner_id
        LEFT JOIN tg ON tg.period_start = k.period_start AND tg.owner_id = k.owner_id
    """


KPIS = {
    "open_deals_per_rep": open_deals_per_rep,
    "rep_scorecard": rep_scorecard,
    "activity": activity,
}
