-- cohort_conversion: leads by created period (cohort), all and by source; for k = 0 .. as_of's
-- period, the cohort's leads converted by the end of period cohort + k (a conversion dated
-- before the cohort's period counts from k = 0), and that over the cohort's size. Both are null
-- while period cohort + k has not ended at as_of (as_of's own period ends only if as_of is its
-- last day); those rows are still listed.
-- The leads are read once, grouped at (cohort, source, conversion offset); the `all` and
-- `source` cells are rolled up from those few rows, then accumulated along k over the small
-- cohort x k grid.
WITH l AS (
    SELECT {{period(created_at)}} AS cohort_start, source,
           {{period(converted_at)}} AS conv_period
    FROM leads_conv),
fine AS (
    SELECT cohort_start, source,
           -- Periods from the cohort to the conversion (null: not converted; greatest would
           -- skip a null).
           CASE WHEN conv_period IS NOT NULL
                THEN greatest({{period_ordinal(conv_period)}} - {{period_ordinal(cohort_start)}}, 0) END AS j,
           count(*) AS n
    FROM l GROUP BY 1, 2, 3),
cells AS (
    SELECT cohort_start,
           CASE WHEN grouping(source) = 0 THEN 'source' ELSE 'all' END AS dimension,
           source AS dimension_value, j, sum(n) AS n
    FROM fine
    GROUP BY GROUPING SETS ((cohort_start, j), (cohort_start, source, j))),
sizes AS (
    SELECT cohort_start, dimension, dimension_value, sum(n) AS cohort_size
    FROM cells GROUP BY 1, 2, 3),
grid AS (
    SELECT cohort_start, dimension, dimension_value, cohort_size,
           explode(sequence(0L, {{period_ordinal({{cur_period}})}} - {{period_ordinal(cohort_start)}})) AS k
    FROM sizes),
cum AS (
    SELECT g.*,
           sum(COALESCE(c.n, 0)) OVER (PARTITION BY g.cohort_start, g.dimension, g.dimension_value
                                       ORDER BY g.k ROWS UNBOUNDED PRECEDING) AS raw_cum
    FROM grid g
    LEFT JOIN cells c ON c.cohort_start = g.cohort_start AND c.dimension = g.dimension
                     AND c.dimension_value <=> g.dimension_value AND c.j = g.k),
observed AS (
    SELECT *,
           -- Period cohort + k has ended: it is before as_of's period, or it is as_of's period
           -- and as_of is that period's last day.
           k < {{period_ordinal({{cur_period}})}} - {{period_ordinal(cohort_start)}}
           OR date_sub({{next_period({{cur_period}})}}, 1) <= {{as_of_date}} AS ended
    FROM cum)
SELECT cohort_start, dimension, dimension_value, cohort_size, k,
       CASE WHEN ended THEN raw_cum END AS converted_cum,
       CASE WHEN ended THEN raw_cum / cohort_size END AS conversion_rate_cum
FROM observed
