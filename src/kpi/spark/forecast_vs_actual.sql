-- forecast_vs_actual: per period (up to as_of's), owner and pipeline, the latest commit forecast
-- of the run grain submitted at or before as_of, the pipeline forecast (deals expected to close
-- in the period, open at the end of the previous period, weighted by the probability of their
-- stage there) and the amount won in the period (status at as_of).
-- Pipelines: the forecast's own; the pipeline of the deal's stage at the snapshot (without one,
-- the deal's) for the pipeline forecast; the deal's at as_of for the actual. A forecast naming no
-- pipeline is the only pipeline's when there is one; with several it is for all of them: the
-- rows whose key `pk` is chr(31) (pipeline null in the output) sum every pipeline's.
-- Like crm-kpi, the three parts are joined on owner_id with `=`: a null owner keeps its row but
-- matches none of them (null forecast, 0 pipeline and actual).
WITH pipes AS (
    SELECT count(DISTINCT pipeline) > 1 AS multi, min_by(pipeline, stage_index) AS first_pipeline
    FROM stages
),
submitted AS (
    -- The latest submission wins; equal submission times: the larger amount (null smallest).
    SELECT period_start, owner_id, pk,
           max_by(amount_base, struct(submitted_at, amount_base)) AS submitted_forecast
    FROM (SELECT {{period(period_start)}} AS period_start, owner_id, amount_base, submitted_at,
                 COALESCE(f.pipeline, CASE WHEN p.multi THEN chr(31) ELSE p.first_pipeline END) AS pk
          FROM forecasts_all f CROSS JOIN pipes p
          WHERE submitted_at <= {{as_of_ts}} AND grain = {{grain}}
            AND (category = 'commit' OR category IS NULL))
    WHERE period_start <= {{cur_period}}
    GROUP BY period_start, owner_id, pk
),
weighted AS (
    -- Each deal once: at the end of the period before the one its expected close falls in (a
    -- deal open there without a stage event counts 0).
    SELECT d.period_start, d.owner_id, COALESCE(o.snap_pipeline, d.pipeline) AS pipeline,
           d.amount_base * o.snap_prob AS w
    FROM (SELECT opportunity_id, owner_id, amount_base, pipeline,
                 {{period(expected_close_date)}} AS period_start
          FROM deals
          WHERE expected_close_date IS NOT NULL) d
    JOIN open_snaps o
      ON o.opportunity_id = d.opportunity_id
     AND o.period_start < {{cur_period}}
     AND {{next_period(o.period_start)}} = d.period_start
),
pipeline AS (
    SELECT period_start, owner_id, pipeline AS pk, COALESCE(sum(w), 0D) AS pipeline_forecast
    FROM weighted
    GROUP BY period_start, owner_id, pipeline
    UNION ALL
    SELECT period_start, owner_id, chr(31), COALESCE(sum(w), 0D)
    FROM weighted
    WHERE (SELECT multi FROM pipes)
    GROUP BY period_start, owner_id
),
won AS (
    SELECT period_start, owner_id, pipeline, amount_base FROM closed WHERE status = 'won'
),
actual AS (
    SELECT period_start, owner_id, pipeline AS pk, COALESCE(sum(amount_base), 0D) AS actual
    FROM won
    GROUP BY period_start, owner_id, pipeline
    UNION ALL
    SELECT period_start, owner_id, chr(31), COALESCE(sum(amount_base), 0D)
    FROM won
    WHERE (SELECT multi FROM pipes)
    GROUP BY period_start, owner_id
),
keys AS (
    SELECT period_start, owner_id, pk FROM submitted
    UNION
    SELECT period_start, owner_id, pk FROM pipeline
    UNION
    SELECT period_start, owner_id, pk FROM actual
)
SELECT k.period_start, k.owner_id, NULLIF(k.pk, chr(31))                   AS pipeline,
       s.submitted_forecast,
       COALESCE(p.pipeline_forecast, 0D)                                  AS pipeline_forecast,
       COALESCE(a.actual, 0D)                                             AS actual,
       COALESCE(a.actual, 0D) / NULLIF(s.submitted_forecast, 0D)          AS attainment,
       COALESCE(a.actual, 0D) - s.submitted_forecast                      AS error
FROM keys k
LEFT JOIN submitted s ON s.period_start = k.period_start AND s.owner_id = k.owner_id AND s.pk = k.pk
LEFT JOIN pipeline p  ON p.period_start = k.period_start AND p.owner_id = k.owner_id AND p.pk = k.pk
LEFT JOIN actual a    ON a.period_start = k.period_start AND a.owner_id = k.owner_id AND a.pk = k.pk
