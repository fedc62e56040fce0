-- activity: per owner and period of occurred_at, the activities at or before as_of by kind,
-- connected calls, new contacts (activities that are the first touch of their lead or of
-- their account) and the owner's calls target (`rep_targets`).
-- Like crm-kpi, the parts are joined on owner_id with `=`: a null owner keeps its row but
-- matches none of them (zero counts).
WITH acts AS (
    SELECT activity_id, owner_id, kind, outcome, lead_id, account_id,
           {{period(occurred_at)}} AS period_start, occurred_at
    FROM activities_all
    WHERE occurred_at <= {{as_of_ts}}
),
per_owner AS (
    SELECT period_start, owner_id,
           count_if(kind = 'call')                           AS calls,
           count_if(kind = 'call' AND outcome = 'connected') AS connected_calls,
           count_if(kind = 'email')                          AS emails,
           count_if(kind = 'meeting')                        AS meetings,
           count_if(kind = 'visit')                          AS visits,
           count_if(kind = 'task')                           AS tasks
    FROM acts
    GROUP BY period_start, owner_id
),
-- The first touch of every lead and of every account (one pass, one grouping set each): its
-- earliest activity, ties at the same instant broken by the smallest activity_id (an activity
-- without an id is never chosen over one with an id, and is never a first touch itself).
first_touch AS (
    SELECT f
    FROM (SELECT CASE WHEN grouping(lead_id) = 0 THEN lead_id ELSE account_id END AS touched,
                 min(struct(occurred_at, activity_id IS NULL AS no_id, activity_id, owner_id, period_start)) AS f
          FROM acts
          WHERE lead_id IS NOT NULL OR account_id IS NOT NULL
          GROUP BY GROUPING SETS ((lead_id), (account_id)))
    WHERE touched IS NOT NULL
),
-- An activity first for both its lead and its account counts once.
new_contacts AS (
    SELECT period_start, owner_id, count(*) AS new_contacts
    FROM (SELECT DISTINCT f.activity_id, f.owner_id, f.period_start
          FROM first_touch
          WHERE f.activity_id IS NOT NULL)
    GROUP BY period_start, owner_id
),
targets AS (
    SELECT period_start, owner_id, target FROM rep_targets WHERE metric = 'calls'
),
keys AS (
    SELECT period_start, owner_id FROM per_owner
    UNION
    SELECT period_start, owner_id FROM targets
)
SELECT k.period_start, k.owner_id,
       COALESCE(p.calls, 0)                                            AS calls,
       COALESCE(p.connected_calls, 0)                                  AS connected_calls,
       CAST(p.connected_calls AS DOUBLE) / NULLIF(p.calls, 0)          AS connect_rate,
       COALESCE(p.emails, 0)                                           AS emails,
       COALESCE(p.meetings, 0)                                         AS meetings,
       COALESCE(p.visits, 0)                                           AS visits,
       COALESCE(p.tasks, 0)                                            AS tasks,
       COALESCE(n.new_contacts, 0)                                     AS new_contacts,
       t.target                                                        AS calls_target,
       COALESCE(p.calls, 0) / NULLIF(t.target, 0D)                     AS calls_attainment
FROM keys k
LEFT JOIN per_owner p    ON p.period_start = k.period_start AND p.owner_id = k.owner_id
LEFT JOIN new_contacts n ON n.period_start = k.period_start AND n.owner_id = k.owner_id
LEFT JOIN targets t      ON t.period_start = k.period_start AND t.owner_id = k.owner_id
