-- forecast_vs_actual: per period (up to as_of's) and owner, the latest commit forecast of the
-- run grain submitted at or before as_of, the pipeline forecast (deals expected to close in the
-- period, open at the end of the previous period, weighted by the probability of their stage
-- there) and the amount won in the period (status at as_of).
-- Like crm-kpi, the three parts are joined on owner_id with `=`: a null owner keeps its row but
-- matches none of them (null forecast, 0 pipeline and actual).
WITH submitted AS (
    -- The latest submission wins; equal submission times: the larger amount (null smallest).
    SELECT period_start, owner_id,
           max_by(amount_base, struct(submitted_at, amount_base)) AS submitted_forecast
    FROM (SELECT {{period(period_start)}} AS period_start, owner_id, amount_base, submitted_at
          FROM forecasts_all
          WHERE submitted_at <= {{as_of_ts}} AND grain = {{grain}}
            AND (category = 'commit' OR category IS NULL))
    WHERE period_start <= {{cur_period}}
    GROUP BY period_start, owner_id
),
pipeline AS (
    -- Each deal once: at the end of the period before the one its expected close falls in (a
    -- deal open there without a stage event counts 0).
    SELECT d.period_start, d.owner_id,
           COALESCE(sum(d.amount_base * o.snap_prob), 0D) AS pipeline_forecast
    FROM (SELECT opportunity_id, owner_id, amount_base, {{period(expected_close_date)}} AS period_start
          FROM deals
          WHERE expected_close_date IS NOT NULL) d
    JOIN open_snaps o
      ON o.opportunity_id = d.opportunity_id
     AND o.period_start < {{cur_period}}
     AND {{next_period(o.period_start)}} = d.period_start
    GROUP BY d.period_start, d.owner_id
),
actual AS (
    SELECT period_start, owner_id, COALESCE(sum(amount_base), 0D) AS actual
    FROM closed
    WHERE status = 'won'
    GROUP BY period_start, owner_id
),
keys AS (
    SELECT period_start, owner_id FROM submitted
    UNION
    SELECT period_start, owner_id FROM pipeline
    UNION
    SELECT period_start, owner_id FROM actual
)
SELECT k.period_start, k.owner_id, s.submitted_forecast,
       COALESCE(p.pipeline_forecast, 0D)                                  AS pipeline_forecast,
       COALESCE(a.actual, 0D)                                             AS actual,
       COALESCE(a.actual, 0D) / NULLIF(s.submitted_forecast, 0D)          AS attainment,
       COALESCE(a.actual, 0D) - s.submitted_forecast                      AS error
FROM keys k
LEFT JOIN submitted s ON s.period_start = k.period_start AND s.owner_id = k.owner_id
LEFT JOIN pipeline p  ON p.period_start = k.period_start AND p.owner_id = k.owner_id
LEFT JOIN actual a    ON a.period_start = k.period_start AND a.owner_id = k.owner_id
