-- Win rate per owner over the latest run's close periods, best first.
-- Reads the `win_rate` KPI output (run `crm-kpi run` first).
SELECT dimension_value AS owner_id,
       SUM(won) AS won,
       SUM(lost) AS lost,
       CAST(SUM(won) AS DOUBLE) / (SUM(won) + SUM(lost)) AS win_rate
FROM win_rate
WHERE dimension = 'owner_id'
GROUP BY dimension_value
ORDER BY win_rate DESC, owner_id
