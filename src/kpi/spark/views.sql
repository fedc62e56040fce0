-- The views every family reads: the store's tables as of as_of and the deal state, following
-- the definitions of `crm-kpi list --long` and docs/decisions.md (the same rules as
-- src/kpi/inputs.rs):
-- - rows whose main timestamp is later than as_of are not known yet;
-- - the stages are the store's `stages` table when it holds any (sorted by position, nulls
--   last, then name; the named pipelines in the order of their first stage, each with its own
--   stages and those naming no pipeline, a name once per pipeline; without any named
--   pipeline, one "default"), else the configuration's; a stage is known by (pipeline, stage)
--   and stage_index is its position in the whole list;
-- - a stage event is read in its deal's pipeline (the export's when configured, else the
--   first); a stage that pipeline lacks is the first stage of that name (the deal moved);
-- - a deal's pipeline at as_of is that of its last event's stage, else its own;
-- - a deal's state at an instant T comes from its stage events: the last event at or before T
--   decides (ties on time: the later stage of the pipeline), a terminal stage closes the deal
--   at that event; where the export and the whole history disagree (`history`), the export's
--   close wins from closed_at on (closed_at <= T), and a deal the export shows open after a
--   won/lost last event gets the reopening event its history lacks (docs/decisions.md, "When
--   the export and the history disagree");
-- - a visit is one stage event; it ends at the deal's next event, or at its (fallback) close,
--   or is censored at as_of;
-- - durations are days = microseconds / 86,400,000,000 (a DOUBLE);
-- - snapshot instants: the end of every period from the first deal's creation period to the
--   period before as_of's, then as_of itself.
-- The shared tables every family reads are checkpointed (`-- checkpoint:`): with their whole
-- lineage, each KPI's plan carried the views' joins and the catalog on the sample store took
-- 208 s instead of 82 s (local[2]); as rows, 82 s.

CREATE OR REPLACE TEMP VIEW config_stages AS {{config_stages}};

CACHE TABLE stages AS
WITH s AS (
    SELECT stage, pipeline, probability, terminal,
           row_number() OVER (ORDER BY position ASC NULLS LAST, stage) AS rn
    FROM stages_all WHERE stage IS NOT NULL),
named AS (SELECT pipeline, min(rn) AS first_rn FROM s WHERE pipeline IS NOT NULL GROUP BY pipeline),
pipes AS (
    SELECT pipeline, first_rn FROM named
    UNION ALL
    SELECT 'default', 0 WHERE NOT EXISTS (SELECT 1 FROM named)),
x AS (
    SELECT p.pipeline, p.first_rn, s.stage, s.probability, s.terminal, s.rn,
           row_number() OVER (PARTITION BY p.pipeline, s.stage ORDER BY s.rn) AS k
    FROM s JOIN pipes p ON s.pipeline IS NULL OR s.pipeline = p.pipeline)
SELECT pipeline, stage, CAST(row_number() OVER (ORDER BY first_rn, rn) - 1 AS INT) AS stage_index,
       probability, terminal
FROM x WHERE k = 1
UNION ALL
SELECT pipeline, stage, CAST(position AS INT), probability, terminal FROM config_stages
WHERE NOT EXISTS (SELECT 1 FROM stages_all WHERE stage IS NOT NULL);

-- Each deal's pipeline: the export's when it is a configured one, else the first.
-- checkpoint: deal_pipeline
CACHE TABLE deal_pipeline AS
SELECT o.opportunity_id,
       COALESCE(p.pipeline, (SELECT pipeline FROM stages WHERE stage_index = 0)) AS pipeline
FROM opportunities_all o
LEFT JOIN (SELECT DISTINCT pipeline FROM stages) p ON p.pipeline = o.pipeline;

-- Every stage event with its stage_index: the stage of that name in its deal's pipeline, else
-- the first stage of that name (null for a stage no pipeline has).
CREATE OR REPLACE TEMP VIEW events_all_r AS
SELECT e.opportunity_id, e.stage, e.entered_at, COALESCE(x.stage_index, n.stage_index) AS stage_index
FROM stage_events_all e
LEFT JOIN deal_pipeline dp ON dp.opportunity_id = e.opportunity_id
LEFT JOIN stages x ON x.pipeline = dp.pipeline AND x.stage = e.stage
LEFT JOIN (SELECT stage, min(stage_index) AS stage_index FROM stages GROUP BY stage) n ON n.stage = e.stage;

CREATE OR REPLACE TEMP VIEW opps AS
SELECT * FROM opportunities_all WHERE created_at <= {{as_of_ts}};

-- checkpoint: events
CACHE TABLE events AS
SELECT e.opportunity_id, e.stage, e.entered_at, e.stage_index
FROM events_all_r e LEFT SEMI JOIN opps o ON o.opportunity_id = e.opportunity_id
WHERE e.entered_at <= {{as_of_ts}};

-- Each deal's whole history (every time, not only up to as_of) against its export: the last
-- event (on equal times a won/lost event counts as later, then the later stage of the
-- pipeline), the last won/lost one and the last one in an open stage of the pipeline.
-- export_close: the export's won/lost close wins from closed_at on (no won/lost event at all,
-- or closed_at later than every event and the history does not end in a won/lost event of the
-- same outcome).
-- reopen_at/reopen_stage: the export says open but the history ends won/lost: the reopening
-- event it lacks, at updated_at when later than that event, else one microsecond after it,
-- into the export's stage when an open stage of the pipeline, else the last open stage, else
-- the pipeline's first stage.
-- checkpoint: history
CACHE TABLE history AS
WITH h AS (
    SELECT e.opportunity_id,
           max(struct(e.entered_at AS at, s.terminal IS NOT NULL AS term, COALESCE(s.stage_index, -1) AS idx)) AS last_ev,
           max(CASE WHEN s.terminal IS NOT NULL
                    THEN struct(e.entered_at AS at, s.stage_index AS idx, s.terminal AS outcome) END) AS last_term,
           max(CASE WHEN s.stage IS NOT NULL AND s.terminal IS NULL
                    THEN struct(e.entered_at AS at, s.stage_index AS idx, s.stage AS stage) END) AS last_open
    FROM events_all_r e LEFT JOIN stages s ON s.stage_index = e.stage_index
    GROUP BY e.opportunity_id),
x AS (
    SELECT o.opportunity_id, o.status, o.closed_at, o.updated_at, os.stage AS export_open_stage,
           fs.stage AS first_stage,
           h.last_ev.at AS last_at, h.last_term.at AS term_at, h.last_term.outcome AS term_outcome, h.last_open.stage AS last_open_stage,
           COALESCE(h.last_ev.term, false) AS last_is_term
    FROM opps o
    LEFT JOIN h ON h.opportunity_id = o.opportunity_id
    LEFT JOIN (SELECT DISTINCT stage FROM stages WHERE terminal IS NULL) os ON os.stage = o.stage
    LEFT JOIN deal_pipeline dp ON dp.opportunity_id = o.opportunity_id
    LEFT JOIN (SELECT pipeline, min_by(stage, stage_index) AS stage FROM stages GROUP BY pipeline) fs
           ON fs.pipeline = dp.pipeline)
SELECT opportunity_id,
       status IN ('won', 'lost')
         AND (term_at IS NULL
              OR COALESCE(closed_at > last_at AND NOT (last_is_term AND term_outcome = status), false)) AS export_close,
       CASE WHEN status = 'open' AND last_is_term
            THEN CASE WHEN unix_micros(updated_at) > unix_micros(term_at) + 1 THEN updated_at
                      ELSE timestamp_micros(unix_micros(term_at) + 1) END END AS reopen_at,
       CASE WHEN status = 'open' AND last_is_term
            THEN COALESCE(export_open_stage, last_open_stage, first_stage) END AS reopen_stage
FROM x;

-- The events of the deal state: the stage events at or before as_of and the reopening events
-- the histories lack (stage_funnel and deal_snapshot count the logged `events` only).
-- checkpoint: state_events
CACHE TABLE state_events AS
SELECT opportunity_id, stage, entered_at, stage_index FROM events
UNION ALL
SELECT h.opportunity_id, h.reopen_stage, h.reopen_at, COALESCE(x.stage_index, n.stage_index)
FROM history h
LEFT JOIN deal_pipeline dp ON dp.opportunity_id = h.opportunity_id
LEFT JOIN stages x ON x.pipeline = dp.pipeline AND x.stage = h.reopen_stage
LEFT JOIN (SELECT stage, min(stage_index) AS stage_index FROM stages GROUP BY stage) n ON n.stage = h.reopen_stage
WHERE h.reopen_at <= {{as_of_ts}};

-- One event per deal and instant: on equal times the later stage of the pipeline wins (a
-- stage the pipeline does not know comes first).
-- checkpoint: events_last_per_instant
CACHE TABLE events_last_per_instant AS
SELECT e.opportunity_id, max_by(struct(e.stage AS stage, e.stage_index AS stage_index),
                                struct(COALESCE(e.stage_index, -1), e.stage)) AS ev, e.entered_at
FROM state_events e
GROUP BY e.opportunity_id, e.entered_at;

CREATE OR REPLACE TEMP VIEW last_event AS
SELECT opportunity_id, max_by(ev.stage, entered_at) AS last_stage, max_by(ev.stage_index, entered_at) AS last_index,
       max(entered_at) AS stage_entered_at
FROM events_last_per_instant GROUP BY opportunity_id;

-- checkpoint: deals
CACHE TABLE deals AS
SELECT o.opportunity_id, o.account_id, o.owner_id, o.region, o.amount_base, o.created_at,
       o.loss_reason, o.campaign_id, o.expected_close_date, l.source,
       COALESCE(ls.pipeline, dp.pipeline) AS pipeline,
       le.last_stage AS stage, le.stage_entered_at,
       CASE WHEN h.export_close AND o.closed_at <= {{as_of_ts}} THEN o.status
            WHEN ls.terminal = 'won' THEN 'won'
            WHEN ls.terminal = 'lost' THEN 'lost'
            ELSE 'open' END AS status,
       CASE WHEN h.export_close AND o.closed_at <= {{as_of_ts}} THEN o.closed_at
            WHEN ls.terminal IS NOT NULL THEN le.stage_entered_at END AS closed_at
FROM opps o
LEFT JOIN last_event le ON le.opportunity_id = o.opportunity_id
LEFT JOIN stages ls ON ls.stage_index = le.last_index
LEFT JOIN deal_pipeline dp ON dp.opportunity_id = o.opportunity_id
LEFT JOIN history h ON h.opportunity_id = o.opportunity_id
LEFT JOIN (SELECT lead_id, source FROM leads_all WHERE created_at <= {{as_of_ts}}) l ON l.lead_id = o.lead_id;

-- Closed deals with the period of their close and their cycle in days.
CREATE OR REPLACE TEMP VIEW closed AS
SELECT *, {{period(closed_at)}} AS period_start,
       (unix_micros(closed_at) - unix_micros(created_at)) / 8.64e10 AS days
FROM deals WHERE status IN ('won', 'lost');

-- Visits to the pipeline's open stages: each event at or before as_of; it ends at the deal's
-- next event (ties on time ordered by pipeline position; reopening events included), else at
-- the deal's close (a deal closed by its export), else it is censored at as_of.
-- checkpoint: visits
CACHE TABLE visits AS
SELECT v.opportunity_id, v.pipeline, v.stage, d.owner_id, v.entered_at,
       COALESCE(v.next_at, d.closed_at) AS exited_at,
       COALESCE(v.next_at, d.closed_at) IS NOT NULL AS completed,
       unix_micros(COALESCE(v.next_at, d.closed_at, {{as_of_ts}})) - unix_micros(v.entered_at) AS days_us,
       (unix_micros(COALESCE(v.next_at, d.closed_at, {{as_of_ts}})) - unix_micros(v.entered_at)) / 8.64e10 AS days
FROM (SELECT e.opportunity_id, s.pipeline, e.stage, e.entered_at, s.stage_index, s.terminal, s.stage IS NOT NULL AS known,
             lead(e.entered_at) OVER (PARTITION BY e.opportunity_id
                                      ORDER BY e.entered_at, COALESCE(s.stage_index, -1)) AS next_at
      FROM state_events e LEFT JOIN stages s ON s.stage_index = e.stage_index) v
JOIN deals d ON d.opportunity_id = v.opportunity_id
WHERE v.known AND v.terminal IS NULL;

-- Snapshot instants: the end of every period from the first deal's creation period to the
-- period before as_of's (snapshot_at its last local day, t its last microsecond), then as_of.
CACHE TABLE snaps AS
SELECT date_sub({{next_period(m)}}, 1) AS snapshot_at, m AS period_start, {{period_end(m)}} AS t
FROM (SELECT explode(sequence({{period((SELECT min(created_at) FROM opps))}}, {{cur_period}}, {{period_step}})) AS m)
WHERE m < {{cur_period}}
UNION ALL
SELECT {{as_of_date}}, {{cur_period}}, {{as_of_ts}};

-- One row per snapshot instant and deal open at it (period_start, snapshot_at, t,
-- opportunity_id, snap_pipeline (null without a known stage: the deal's at as_of then),
-- snap_stage, snap_prob). A deal is open at t when it was created at or before
-- t, its last event at or before t (on equal times the later stage of the pipeline) is not a
-- terminal stage (a deal without an event is open, in no stage; an unknown stage is open,
-- without a probability), and it has not been closed by its export's close at closed_at <= t
-- (`history`; one closed by its status without a closed_at and without any won/lost event is
-- never open).
-- Built from each deal's open intervals [a, b): its events cut its life into segments
-- [entered_at, next event) with the event's stage, plus one before its first event with no
-- stage; a segment is open unless its stage is terminal; it starts no earlier than the deal's
-- creation and ends no later than its export's close.
-- checkpoint: open_snaps
CACHE TABLE open_snaps AS
WITH seg AS (
    SELECT opportunity_id, ev.stage, ev.stage_index, entered_at AS seg_start,
           lead(entered_at) OVER (PARTITION BY opportunity_id ORDER BY entered_at) AS seg_end
    FROM events_last_per_instant
    UNION ALL
    SELECT o.opportunity_id, CAST(NULL AS STRING), CAST(NULL AS INT), CAST(NULL AS TIMESTAMP), f.first_at
    FROM opps o LEFT JOIN (SELECT opportunity_id, min(entered_at) AS first_at
                           FROM events_last_per_instant GROUP BY opportunity_id) f
         ON f.opportunity_id = o.opportunity_id),
iv AS (
    SELECT seg.opportunity_id, seg.stage, s.pipeline, s.probability,
           CASE WHEN seg.seg_start IS NULL OR seg.seg_start < o.created_at THEN o.created_at
                ELSE seg.seg_start END AS a,
           CASE WHEN fb IS NULL THEN seg.seg_end WHEN seg.seg_end IS NULL THEN fb
                ELSE least(seg.seg_end, fb) END AS b
    FROM seg
    JOIN (SELECT o.*, CASE WHEN h.export_close THEN o.closed_at END AS fb,
                 h.export_close AND o.closed_at IS NULL AS never_open
          FROM opps o JOIN history h ON h.opportunity_id = o.opportunity_id) o
         ON o.opportunity_id = seg.opportunity_id
    LEFT JOIN stages s ON s.stage_index = seg.stage_index
    WHERE s.terminal IS NULL AND NOT o.never_open),
live AS (SELECT * FROM iv WHERE b IS NULL OR a < b)
SELECT s.period_start, s.snapshot_at, s.t, l.opportunity_id, l.pipeline AS snap_pipeline, l.stage AS snap_stage,
       l.probability AS snap_prob
FROM live l JOIN snaps s ON s.t >= l.a AND (l.b IS NULL OR s.t < l.b);
