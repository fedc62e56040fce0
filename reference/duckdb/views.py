"""The DuckDB engine's context and the views every family reads.

`Db` holds a DuckDB connection over one store as of one date, the configuration and the
pipeline. `setup` creates, following the definitions of `crm-kpi list --long` and
docs/decisions.md:
- one view `<table>_all` per store table (its Parquet files; an empty table of the canonical
  columns when the store has none);
- as_of = the end of the AS_OF day in UTC (the references cut periods in UTC only); rows whose
  main timestamp is later are dropped;
- where the export (status, closed_at, stage, updated_at) and the deal's whole stage history
  (all times, not only up to as_of) disagree (`deal_history`): the export's close wins
  (`export_close`) when the export says won/lost and the deal has no won/lost event at all, or
  its closed_at is later than every event of the history (won/lost or not: a reopening logged
  after the export's close is the later word) and the history does not end in a won/lost event
  of the export's outcome; a deal the export says open whose history ends in a won/lost
  event is reopened by one added event (`reopen_at`, `reopen_stage`): at updated_at when later
  than that event, else one microsecond after it, into the export's stage when it is an open
  stage of the pipeline, else the deal's last open stage in its history, else the pipeline's
  first stage. In the history "last" orders by time, then a won/lost event after any other,
  then the later stage of the pipeline;
- a deal's state at an instant T: closed by the export (its status and closed_at) when the
  export's close wins and closed_at <= T, whatever its events say; else the last event at or
  before T (the added reopening event included; ties on time: the later stage of the pipeline)
  decides, a terminal stage closing the deal at that event (`deals`, `closed`);
- a visit is one stage event (the added reopening event included); it ends at the deal's next
  event, or at its close at as_of when that comes from the export, or is censored at as_of
  (`visits`); `events` holds the logged events only (stage_funnel, deal_snapshot's
  stage_events), `deal_events` adds the reopening events;
- periods are calendar months cut in UTC; durations are days = microseconds / 86_400e6;
- snapshot instants: the end of every month from the first deal's creation month, then as_of
  (`snaps`).
"""

from ..common import (
    SEP,
    TABLE_COLUMNS,
    US_PER_DAY,
    duckdb_columns,
    duckdb_missing_columns,
    store_files,
    store_pipeline,
)


class Db:
    """A DuckDB connection over a store as of a date (YYYY-MM-DD), with the configuration, the
    pipeline (the store's stages, else the config's) and a cache for intermediates that are
    computed in Python."""

    def __init__(self, con, store, as_of, cfg):
        cfg.require_utc("reference.duckdb")
        self.con = con
        self.store = store
        self.as_of = as_of
        self.cfg = cfg
        # Stages are named `pipeline + SEP + name` when there are several pipelines (every rule
        # below then reads a stage by one unique name; outputs split it back): see `stages`.
        self.pipeline = store_pipeline(store, cfg).qualified()
        self.cache = {}


def sql_str(x):
    return "'" + str(x).replace("'", "''") + "'"


def sql_list(xs):
    return "(" + ", ".join(sql_str(x) for x in xs) + ")" if xs else "(NULL)"


def setup(db):
    con, as_of, pipeline = db.con, db.as_of, db.pipeline
    for t in TABLE_COLUMNS:
        fs = store_files(db.store, t)
        if fs:
            src = f"read_parquet({fs!r}, hive_partitioning = false, union_by_name = true)"
            have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
            con.execute(f"CREATE VIEW {t}_all AS SELECT *{duckdb_missing_columns(t, have)} FROM {src}")
        else:
            con.execute(f"CREATE TABLE {t}_all ({duckdb_columns(t)})")
    # End of the as_of day, UTC.
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE MACRO as_of_ts() AS (TIMESTAMPTZ '{as_of} 23:59:59.999999+00')")
    con.execute(f"CREATE MACRO as_of_date() AS (DATE '{as_of}')")
    con.execute(f"CREATE MACRO cur_period() AS (DATE '{as_of[:8]}01')")
    # Month of a timestamp (UTC) or a date, as a DATE: truncated as a plain (zone-less) timestamp
    # rebuilt from its epoch microseconds, about 10x faster than date_trunc on a TIMESTAMPTZ, which
    # goes through ICU's calendar even in UTC (0.07 s against 0.75 s over 5.7M activities).
    con.execute("CREATE MACRO month_of(x) AS CAST(date_trunc('month', make_timestamp(epoch_us(x))) AS DATE)")
    con.execute("CREATE MACRO us(x) AS epoch_us(x)")
    con.execute(f"CREATE MACRO days_between(a, b) AS ((epoch_us(b) - epoch_us(a)) / {US_PER_DAY}.0)")
    # stages: `stage` is the (qualified) name the rules read, `name` the stage's own, `pipeline`
    # its pipeline, stage_index its position in the whole list.
    con.execute(
        "CREATE TABLE stages(stage VARCHAR, stage_index INT, probability DOUBLE, terminal BOOLEAN, "
        "pipeline VARCHAR, name VARCHAR)"
    )
    if pipeline.stages:
        rows = ", ".join(
            f"({sql_str(s.name)}, {i}, {'NULL' if s.probability is None else repr(float(s.probability))}, "
            f"{'true' if s.terminal else 'false'}, {sql_str(s.pipeline)}, {sql_str(s.name.split(SEP)[-1])})"
            for i, s in enumerate(pipeline.stages)
        )
        con.execute(f"INSERT INTO stages VALUES {rows}")
    # Each deal's pipeline: its export's when configured, else the first (docs/decisions.md,
    # "Pipelines"). With several pipelines, every stage name of the store (the events' and the
    # export's) is read as a stage of the deal's pipeline, else of the first pipeline that has
    # it (the deal moved), else kept (a stage no pipeline has).
    have = {r[0] for r in con.execute("DESCRIBE opportunities_all").fetchall()}
    names = sql_list(pipeline.pipelines)
    first_pipeline = sql_str(pipeline.pipelines[0])
    own = "o.pipeline" if "pipeline" in have else "NULL"
    con.execute(f"""
        CREATE TABLE deal_pipeline AS
            SELECT o.opportunity_id, CASE WHEN {own} IN {names} THEN {own} ELSE {first_pipeline} END AS pipeline
            FROM opportunities_all o;
        CREATE TABLE first_stage_named AS SELECT name, arg_min(stage, stage_index) AS stage FROM stages GROUP BY name;
    """)
    if pipeline.multi:
        con.execute("ALTER VIEW stage_events_all RENAME TO stage_events_raw")
        con.execute("ALTER VIEW opportunities_all RENAME TO opportunities_raw")
        joins = """LEFT JOIN deal_pipeline dp ON dp.opportunity_id = r.opportunity_id
                LEFT JOIN stages x ON x.pipeline = dp.pipeline AND x.name = r.stage
                LEFT JOIN first_stage_named n ON n.name = r.stage"""
        con.execute(f"""
            CREATE TABLE stage_events_all AS
                SELECT r.opportunity_id, COALESCE(x.stage, n.stage, r.stage) AS stage, r.entered_at
                FROM stage_events_raw r {joins};
            CREATE TABLE opportunities_all AS
                SELECT r.* REPLACE (COALESCE(x.stage, n.stage, r.stage) AS stage)
                FROM opportunities_raw r {joins};
        """)
    terminal = sql_list(pipeline.won + pipeline.lost)
    # The export's own stage and last modification (a store written before they were kept has
    # neither: no open stage to reopen into, and reopening one microsecond after the close).
    extra = ", ".join(
        f"NULL::{t} AS {c}" for c, t in (("stage", "VARCHAR"), ("updated_at", "TIMESTAMPTZ")) if c not in have
    )
    # The first stage of the deal's pipeline.
    first_stage = "(SELECT arg_min(s.stage, s.stage_index) FROM stages s WHERE s.pipeline = dp.pipeline)"
    con.execute(f"""
        CREATE VIEW opps AS SELECT *{", " + extra if extra else ""} FROM opportunities_all
            WHERE created_at <= as_of_ts();
        -- The logged stage events at or before as_of (stage_funnel, deal_snapshot.stage_events).
        CREATE TABLE events AS SELECT e.opportunity_id, e.stage, e.entered_at FROM stage_events_all e
            WHERE e.entered_at <= as_of_ts() AND e.opportunity_id IN (SELECT opportunity_id FROM opps);
        -- Export against history, per deal over all its stage events (any time). Last = latest
        -- time, then a won/lost event after any other stage, then the later stage of the
        -- pipeline (a stage the pipeline does not know first).
        CREATE TABLE deal_history AS
        WITH e AS (
            SELECT e.opportunity_id, e.stage, e.entered_at, s.stage_index,
                   CASE WHEN e.stage IN {sql_list(pipeline.won)} THEN 'won'
                        WHEN e.stage IN {sql_list(pipeline.lost)} THEN 'lost' END AS outcome
            FROM stage_events_all e LEFT JOIN stages s USING (stage)
            WHERE e.opportunity_id IN (SELECT opportunity_id FROM opps)),
        h AS (
            SELECT opportunity_id,
                   max(entered_at) AS last_event_at,
                   max(entered_at) FILTER (WHERE outcome IS NOT NULL) AS last_term_at,
                   arg_max(outcome, (entered_at, stage_index)) FILTER (WHERE outcome IS NOT NULL)
                       AS last_outcome,
                   arg_max(outcome IS NOT NULL,
                           (entered_at, outcome IS NOT NULL, COALESCE(stage_index, -1))) AS last_is_term,
                   arg_max(stage, (entered_at, stage_index))
                       FILTER (WHERE outcome IS NULL AND stage_index IS NOT NULL) AS last_open_stage
            FROM e GROUP BY opportunity_id)
        SELECT o.opportunity_id, h.last_event_at, h.last_term_at, h.last_outcome,
               COALESCE(h.last_is_term, false) AS last_is_term,
               o.status IN ('won', 'lost')
                   AND (h.last_term_at IS NULL
                        OR (o.closed_at IS NOT NULL AND o.closed_at > h.last_event_at
                            AND NOT (h.last_is_term AND h.last_outcome = o.status))) AS export_close,
               CASE WHEN o.status = 'open' AND h.last_is_term THEN
                   CASE WHEN o.updated_at IS NOT NULL AND o.updated_at > h.last_term_at + INTERVAL 1 MICROSECOND
                        THEN o.updated_at ELSE h.last_term_at + INTERVAL 1 MICROSECOND END END AS reopen_at,
               CASE WHEN o.status = 'open' AND h.last_is_term THEN
                   COALESCE(CASE WHEN o.stage IN (SELECT stage FROM stages WHERE NOT terminal) THEN o.stage END,
                            h.last_open_stage, {first_stage}) END AS reopen_stage
        FROM opps o LEFT JOIN h USING (opportunity_id) LEFT JOIN deal_pipeline dp USING (opportunity_id);
        -- The events of each deal's state, visits and snapshots: the logged ones and the added
        -- reopening event, at or before as_of.
        CREATE TABLE deal_events AS
            SELECT opportunity_id, stage, entered_at FROM events
            UNION ALL
            SELECT opportunity_id, reopen_stage, reopen_at FROM deal_history WHERE reopen_at <= as_of_ts();
        -- One event per deal and instant: on equal times the later stage of the pipeline wins
        -- (a stage the pipeline does not know comes first). Aggregates, not windows: no sort.
        CREATE TABLE events_last_per_instant AS
            SELECT e.opportunity_id, arg_max(e.stage, COALESCE(s.stage_index, -1)) AS stage, e.entered_at
            FROM deal_events e LEFT JOIN stages s USING (stage) GROUP BY e.opportunity_id, e.entered_at;
        CREATE TABLE last_event AS
            SELECT opportunity_id, arg_max(stage, entered_at) AS last_stage, max(entered_at) AS stage_entered_at
            FROM events_last_per_instant GROUP BY opportunity_id;
        -- The export's close, when it wins, is checked first: from closed_at on the deal is
        -- closed with the export's status, whatever its last event.
        CREATE TABLE deals AS
            SELECT o.opportunity_id, o.account_id, o.owner_id, o.region, o.amount_base, o.created_at,
                   o.loss_reason, o.campaign_id, o.expected_close_date, l.source,
                   COALESCE(ls.pipeline, dp.pipeline) AS pipeline,
                   le.last_stage AS stage, le.stage_entered_at,
                   CASE WHEN x.export_close AND o.closed_at <= as_of_ts() THEN o.status
                        WHEN le.last_stage IN {sql_list(pipeline.won)} THEN 'won'
                        WHEN le.last_stage IN {sql_list(pipeline.lost)} THEN 'lost'
                        ELSE 'open' END AS status,
                   CASE WHEN x.export_close AND o.closed_at <= as_of_ts() THEN o.closed_at
                        WHEN le.last_stage IN {terminal} THEN le.stage_entered_at END AS closed_at
            FROM opps o
            JOIN deal_history x USING (opportunity_id)
            LEFT JOIN last_event le USING (opportunity_id)
            LEFT JOIN stages ls ON ls.stage = le.last_stage
            JOIN deal_pipeline dp USING (opportunity_id)
            LEFT JOIN (SELECT lead_id, source FROM leads_all WHERE created_at <= as_of_ts()) l USING (lead_id);
        CREATE VIEW closed AS
            SELECT *, month_of(closed_at) AS period_start,
                   epoch(closed_at - created_at) / 86400.0 AS days
            FROM deals WHERE status IN ('won', 'lost');
        -- Visits to non-terminal stages: each event at or before as_of (the added reopening event
        -- included); it ends at the deal's next event (ties on time ordered by pipeline position),
        -- else at the deal's close (a close by the export), else it is censored at as_of.
        CREATE TABLE visits AS
            SELECT v.opportunity_id, v.pipeline, v.stage, d.owner_id, v.entered_at,
                   COALESCE(v.next_at, d.closed_at) AS exited_at,
                   COALESCE(v.next_at, d.closed_at) IS NOT NULL AS completed,
                   us(COALESCE(v.next_at, d.closed_at, as_of_ts())) - us(v.entered_at) AS days_us,
                   days_between(v.entered_at, COALESCE(v.next_at, d.closed_at, as_of_ts())) AS days
            FROM (SELECT e.*, s.terminal, s.pipeline,
                         lead(e.entered_at) OVER (PARTITION BY e.opportunity_id
                                                  ORDER BY e.entered_at, s.stage_index) AS next_at
                  FROM deal_events e LEFT JOIN stages s USING (stage)) v
            JOIN deals d USING (opportunity_id)
            WHERE v.terminal = false;
        -- Snapshot instants: the end of every month from the first deal's creation month to the
        -- month before as_of's, then as_of itself.
        CREATE TABLE snaps AS
            SELECT CAST(m + INTERVAL 1 MONTH - INTERVAL 1 DAY AS DATE) AS snapshot_at,
                   CAST(m AS DATE) AS period_start,
                   CAST(CAST(m + INTERVAL 1 MONTH AS DATE) AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND AS t
            FROM (SELECT unnest(generate_series(
                      CAST(month_of((SELECT min(created_at) FROM opps)) AS TIMESTAMP),
                      CAST(cur_period() AS TIMESTAMP) - INTERVAL 1 MONTH, INTERVAL 1 MONTH)) AS m)
            UNION ALL SELECT as_of_date(), cur_period(), as_of_ts();
    """)


def open_snapshots(db):
    """The table `open_snaps`, made once: one row per snapshot instant of `snaps` and deal open
    at it, with period_start, snapshot_at, t, opportunity_id, snap_stage
    and snap_prob. Read by pipeline_snapshot, sales_velocity, rep_scorecard and
    forecast_vs_actual.

    A deal is open at an instant t when it was created at or before t, it has not been closed
    by the export at or before t (a deal whose export's close wins, `deal_history.export_close`,
    with closed_at <= t; one without a closed_at is never open), and its last event at or
    before t (the added reopening event included; on equal times the later stage of the
    pipeline) is not a terminal stage (a deal without an event is open, in no stage; an unknown
    stage is open, without a probability). snap_stage is the stage of that last event,
    snap_prob its probability.

    Built from each deal's open intervals instead of pairing every deal with every snapshot
    (8M pairs at scale m, 0.7M of them open): a deal's events (`deal_events`, per instant) cut
    its life into half-open segments [entered_at, next event) with the event's stage, plus one
    before its first event with no stage; a segment is open unless its stage is terminal, and it
    starts no earlier than the deal's creation and ends no later than the export's close (when
    it wins). A month-end instant (the month's last
    microsecond) lies in [a, b) exactly when its month is between a's month and the month
    before b's; the as_of instant when b is null or later than as_of."""
    if db.cache.get("open_snaps"):
        return "open_snaps"
    db.con.execute("""
        CREATE TABLE open_snaps AS
        WITH seg AS (
            SELECT opportunity_id, stage, entered_at AS seg_start,
                   lead(entered_at) OVER (PARTITION BY opportunity_id ORDER BY entered_at) AS seg_end
            FROM events_last_per_instant
            UNION ALL
            SELECT o.opportunity_id, NULL, NULL, f.first_at
            FROM opps o LEFT JOIN (SELECT opportunity_id, min(entered_at) AS first_at
                                   FROM events_last_per_instant GROUP BY 1) f USING (opportunity_id)),
        iv AS (
            SELECT seg.opportunity_id, seg.stage, s.pipeline, s.probability,
                   CASE WHEN seg.seg_start IS NULL OR seg.seg_start < o.created_at THEN o.created_at
                        ELSE seg.seg_start END AS a,
                   CASE WHEN fb.c IS NULL THEN seg.seg_end WHEN seg.seg_end IS NULL THEN fb.c
                        ELSE least(seg.seg_end, fb.c) END AS b
            FROM seg
            JOIN opps o USING (opportunity_id)
            LEFT JOIN stages s ON s.stage = seg.stage
            JOIN deal_history x ON x.opportunity_id = seg.opportunity_id
            CROSS JOIN LATERAL (SELECT CASE WHEN x.export_close THEN o.closed_at END AS c) fb
            WHERE NOT COALESCE(s.terminal, false)
              AND NOT (x.export_close AND o.closed_at IS NULL)),
        live AS (SELECT * FROM iv WHERE b IS NULL OR a < b),
        months AS (
            SELECT opportunity_id, stage, pipeline, probability,
                   unnest(generate_series(
                       year(month_of(a)) * 12 + month(month_of(a)) - 1,
                       CASE WHEN b IS NULL OR month_of(b) > cur_period()
                            THEN year(cur_period()) * 12 + month(cur_period()) - 2
                            ELSE year(month_of(b)) * 12 + month(month_of(b)) - 2 END)) AS k
            FROM live)
        SELECT s.period_start, s.snapshot_at, s.t, m.opportunity_id, m.pipeline AS snap_pipeline,
               m.stage AS snap_stage, m.probability AS snap_prob
        FROM months m JOIN snaps s ON s.period_start = make_date(CAST(m.k // 12 AS INT), CAST(m.k % 12 + 1 AS INT), 1)
        UNION ALL
        SELECT cur_period(), as_of_date(), as_of_ts(), opportunity_id, pipeline, stage, probability
        FROM live WHERE b IS NULL OR b > as_of_ts()
    """)
    db.cache["open_snaps"] = True
    return "open_snaps"


def plain(sql):
    """`sql`'s rows with their (qualified) `stage` split back: `pipeline` = the stage's pipeline,
    else the row's own `pipeline` (a stage no pipeline knows, or none), and `stage` = the stage's
    own name."""
    return f"""
        SELECT q.* EXCLUDE (stage, pipeline), COALESCE(st.pipeline, q.pipeline) AS pipeline,
               COALESCE(st.name, q.stage) AS stage
        FROM ({sql}) q LEFT JOIN stages st ON st.stage = q.stage"""


def by_dims(src, select, group, dims):
    """`select` over `src` grouped by `group` (list) for the `all` row and then per dimension,
    with dimension / dimension_value columns: one aggregation with a grouping set per dimension
    (one pass over `src`, not a UNION ALL of one query per dimension)."""
    sets = ", ".join("(" + ", ".join(group + extra) + ")" for extra in [[]] + [[d] for d in dims])
    if dims:
        name = "CASE " + " ".join(f"WHEN grouping({d}) = 0 THEN '{d}'" for d in dims) + " ELSE 'all' END"
        value = "CASE " + " ".join(f"WHEN grouping({d}) = 0 THEN CAST({d} AS VARCHAR)" for d in dims) + " END"
    else:
        name, value = "'all'", "NULL::VARCHAR"
    return (
        f"SELECT {name} AS dimension, {value} AS dimension_value, {select} FROM {src} GROUP BY GROUPING SETS ({sets})"
    )


def dims_union(select, dims, group):
    """by_dims over the closed deals."""
    return by_dims("closed", select, [group], dims)
