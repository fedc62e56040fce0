-- Win rate per owner over the close periods of the latest as_of run at month grain, best
-- first. Reads the `win_rate` KPI output (run `crm-kpi run` first); every run adds an as_of
-- (and grain) partition, so pick one: summing across them counts each deal once per run.
SELECT dimension_value AS owner_id,
       SUM(won) AS won,
       SUM(lost) AS lost,
       CAST(SUM(won) AS DOUBLE) / (SUM(won) + SUM(lost)) AS win_rate
FROM win_rate
WHERE dimension = 'owner_id'
  AND grain = 'month'
  AND as_of IN (SELECT MAX(as_of) FROM win_rate WHERE grain = 'month')
GROUP BY dimension_value
ORDER BY win_rate DESC, owner_id
