-- stage_funnel: how far deals created at or before as_of got down the funnel. Steps: the
-- pipeline's non-terminal stages in order (the chain), then its won stage(s); lost stages are
-- left out. reached = deals with an event into the step at or before as_of (`any`), or into
-- the step and every earlier chain step, in any order (`ordered`; for a won step: the whole
-- chain). All deals and by owner_id, campaign_id and created_period (one grouping set each;
-- a null value is its own row); every step is listed for every value, 0 when nobody reached it.
WITH steps AS (
    SELECT stage, stage_index, terminal IS NULL AS in_chain,
           CAST(row_number() OVER (ORDER BY terminal IS NOT NULL, stage_index) - 1 AS INT) AS step
    FROM stages
    WHERE terminal IS NULL OR terminal = 'won'),
n_chain AS (SELECT CAST(count_if(in_chain) AS INT) AS n FROM steps),
-- Per deal with an event into a step: the steps it entered, and `prefix` = how many chain
-- steps it entered from the first one on without a gap (chain steps come first: 0 .. n - 1).
entered AS (
    SELECT opportunity_id, steps_in,
           array_min(filter(sequence(0, n), k -> k = n OR NOT array_contains(steps_in, k))) AS prefix
    FROM (SELECT e.opportunity_id, array_sort(collect_set(s.step)) AS steps_in
          FROM events e JOIN steps s ON s.stage = e.stage
          GROUP BY e.opportunity_id) t
    CROSS JOIN n_chain),
-- Deals counted per dimension values and pattern of steps entered (few patterns), before they
-- meet the steps.
patterns AS (
    SELECT d.owner_id, d.campaign_id, CAST({{period(d.created_at)}} AS STRING) AS created_period,
           COALESCE(t.steps_in, array()) AS steps_in, COALESCE(t.prefix, 0) AS prefix, count(*) AS deals
    FROM deals d LEFT JOIN entered t ON t.opportunity_id = d.opportunity_id
    GROUP BY 1, 2, 3, 4, 5),
-- One row per pattern and step (a handful of steps).
flags AS (
    SELECT p.owner_id, p.campaign_id, p.created_period, p.deals, s.stage, s.stage_index, s.step,
           array_contains(p.steps_in, s.step) AS reached_any,
           CASE WHEN s.in_chain THEN s.step < p.prefix
                ELSE array_contains(p.steps_in, s.step) AND p.prefix = c.n END AS reached_ordered
    FROM patterns p CROSS JOIN steps s CROSS JOIN n_chain c),
counts AS (
    SELECT stage, stage_index, step,
           CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' WHEN grouping(campaign_id) = 0 THEN 'campaign_id'
                WHEN grouping(created_period) = 0 THEN 'created_period' ELSE 'all' END AS dimension,
           CASE WHEN grouping(owner_id) = 0 THEN owner_id WHEN grouping(campaign_id) = 0 THEN campaign_id
                WHEN grouping(created_period) = 0 THEN created_period END AS dimension_value,
           CAST(COALESCE(sum(CASE WHEN reached_any THEN deals END), 0) AS BIGINT) AS n_any,
           CAST(COALESCE(sum(CASE WHEN reached_ordered THEN deals END), 0) AS BIGINT) AS n_ordered
    FROM flags
    GROUP BY GROUPING SETS ((stage, stage_index, step), (stage, stage_index, step, owner_id),
                            (stage, stage_index, step, campaign_id), (stage, stage_index, step, created_period))),
modes AS (
    SELECT m.mode, c.dimension, c.dimension_value, c.stage, c.stage_index, c.step,
           CASE WHEN m.mode = 'any' THEN c.n_any ELSE c.n_ordered END AS reached
    FROM counts c
    CROSS JOIN (SELECT explode(array('any', 'ordered')) AS mode) m)
SELECT mode, dimension, dimension_value, stage, stage_index, reached,
       lead(reached) OVER w / NULLIF(reached, 0) AS next_stage_rate,
       reached / NULLIF(first_value(reached) OVER w, 0) AS from_first_rate
FROM modes
WINDOW w AS (PARTITION BY mode, dimension, dimension_value ORDER BY step)
