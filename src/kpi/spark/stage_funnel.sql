-- stage_funnel: how far deals created at or before as_of got down each pipeline's funnel.
-- Steps, per pipeline: its non-terminal stages in order (the chain), then its won stage(s);
-- lost stages are left out. reached = deals with an event into the step at or before as_of
-- (`any`; an event is read in its deal's pipeline, see `events`), or into the step and every
-- earlier chain step of the pipeline, in any order (`ordered`; for a won step: the whole
-- chain). All deals and by owner_id, campaign_id and created_period (one grouping set each; a
-- null value is its own row); every step of every pipeline is listed for every value, 0 when
-- nobody reached it. stage_index is the stage's position in its pipeline.
WITH steps AS (
    SELECT s.pipeline, s.stage, s.stage_index - p.first_index AS local_index, s.terminal IS NULL AS in_chain,
           CAST(row_number() OVER (PARTITION BY s.pipeline ORDER BY s.terminal IS NOT NULL, s.stage_index) - 1 AS INT) AS step,
           s.stage_index
    FROM stages s
    JOIN (SELECT pipeline, min(stage_index) AS first_index FROM stages GROUP BY pipeline) p ON p.pipeline = s.pipeline
    WHERE s.terminal IS NULL OR s.terminal = 'won'),
n_chain AS (SELECT pipeline, CAST(count_if(in_chain) AS INT) AS n FROM steps GROUP BY pipeline),
-- Per deal and pipeline with an event into a step: the steps it entered, and `prefix` = how
-- many chain steps it entered from the first one on without a gap (chain steps come first:
-- 0 .. n - 1).
entered AS (
    SELECT t.opportunity_id, t.pipeline, steps_in,
           array_min(filter(sequence(0, c.n), k -> k = c.n OR NOT array_contains(steps_in, k))) AS prefix
    FROM (SELECT e.opportunity_id, s.pipeline, array_sort(collect_set(s.step)) AS steps_in
          FROM events e JOIN steps s ON s.stage_index = e.stage_index
          GROUP BY e.opportunity_id, s.pipeline) t
    JOIN n_chain c ON c.pipeline = t.pipeline),
-- Deals counted per dimension values, pipeline and pattern of steps entered (few patterns),
-- before they meet the steps; a deal without any step entered has one row without pipeline.
patterns AS (
    SELECT d.owner_id, d.campaign_id, CAST({{period(d.created_at)}} AS STRING) AS created_period,
           t.pipeline, COALESCE(t.steps_in, array()) AS steps_in, COALESCE(t.prefix, 0) AS prefix, count(*) AS deals
    FROM deals d LEFT JOIN entered t ON t.opportunity_id = d.opportunity_id
    GROUP BY 1, 2, 3, 4, 5, 6),
-- One row per pattern and step (a handful of steps).
flags AS (
    SELECT p.owner_id, p.campaign_id, p.created_period, p.deals, s.pipeline, s.stage, s.local_index, s.step,
           p.pipeline <=> s.pipeline AND array_contains(p.steps_in, s.step) AS reached_any,
           p.pipeline <=> s.pipeline AND
           CASE WHEN s.in_chain THEN s.step < p.prefix
                ELSE array_contains(p.steps_in, s.step) AND p.prefix = c.n END AS reached_ordered
    FROM patterns p CROSS JOIN steps s JOIN n_chain c ON c.pipeline = s.pipeline),
counts AS (
    SELECT pipeline, stage, local_index, step,
           CASE WHEN grouping(owner_id) = 0 THEN 'owner_id' WHEN grouping(campaign_id) = 0 THEN 'campaign_id'
                WHEN grouping(created_period) = 0 THEN 'created_period' ELSE 'all' END AS dimension,
           CASE WHEN grouping(owner_id) = 0 THEN owner_id WHEN grouping(campaign_id) = 0 THEN campaign_id
                WHEN grouping(created_period) = 0 THEN created_period END AS dimension_value,
           CAST(COALESCE(sum(CASE WHEN reached_any THEN deals END), 0) AS BIGINT) AS n_any,
           CAST(COALESCE(sum(CASE WHEN reached_ordered THEN deals END), 0) AS BIGINT) AS n_ordered
    FROM flags
    GROUP BY GROUPING SETS ((pipeline, stage, local_index, step), (pipeline, stage, local_index, step, owner_id),
                            (pipeline, stage, local_index, step, campaign_id),
                            (pipeline, stage, local_index, step, created_period))),
modes AS (
    SELECT m.mode, c.dimension, c.dimension_value, c.pipeline, c.stage, c.local_index, c.step,
           CASE WHEN m.mode = 'any' THEN c.n_any ELSE c.n_ordered END AS reached
    FROM counts c
    CROSS JOIN (SELECT explode(array('any', 'ordered')) AS mode) m)
SELECT mode, dimension, dimension_value, pipeline, stage, CAST(local_index AS BIGINT) AS stage_index, reached,
       lead(reached) OVER w / NULLIF(reached, 0) AS next_stage_rate,
       reached / NULLIF(first_value(reached) OVER w, 0) AS from_first_rate
FROM modes
WINDOW w AS (PARTITION BY mode, dimension, dimension_value, pipeline ORDER BY step)
