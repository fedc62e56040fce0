-- The reps family's shared views.

-- Rep targets per run period, owner and metric (period_start, owner_id, metric, target): a
-- target counts in the run period that holds its whole span [period_start, period_start + its
-- grain) (a target spanning several run periods is left out, not prorated); where targets of
-- several grains fit one period for one rep and metric, only the coarsest grain is summed;
-- periods after as_of's are dropped. A target without a grain spans a year.
CREATE OR REPLACE TEMP VIEW rep_targets AS
WITH t AS (
    SELECT scope AS owner_id, metric, value,
           {{period(period_start)}} AS period_start,
           {{period(CASE grain WHEN 'week'    THEN date_add(period_start, 6)
                               WHEN 'month'   THEN date_sub(add_months(period_start, 1), 1)
                               WHEN 'quarter' THEN date_sub(add_months(period_start, 3), 1)
                               ELSE date_sub(add_months(period_start, 12), 1) END)}} AS last_period,
           CASE grain WHEN 'week' THEN 0 WHEN 'month' THEN 1 WHEN 'quarter' THEN 2 ELSE 3 END AS size
    FROM targets_all
    WHERE scope_kind = 'rep'
),
fitting AS (
    SELECT *, max(size) OVER (PARTITION BY metric, period_start, owner_id) AS coarsest
    FROM t
    WHERE period_start = last_period AND period_start <= {{cur_period}}
)
SELECT period_start, owner_id, metric, COALESCE(sum(value), 0D) AS target
FROM fitting
WHERE size = coarsest
GROUP BY period_start, owner_id, metric;
