"""DuckDB references of the funnel and pipeline KPIs: stage_funnel, stage_duration,
stage_duration_survival, pipeline_snapshot, deal_size, win_rate, loss_reasons, sales_cycle,
forecast_vs_actual, sales_velocity.

Written from the definitions of `crm-kpi list --long`, not from the Rust code, over the views
of views.py (deals, closed, visits, snaps, open_snaps). The Kaplan-Meier tables are in km.py.
"""

from .km import KaplanMeier
from .views import by_dims, dims_union, open_snapshots, plain, sql_list, sql_str


def stage_funnel(db):
    steps = db.pipeline.funnel_steps()
    flags = ", ".join(f"COALESCE(bool_or(stage = {sql_str(s)}), false) AS a{k}" for k, (s, *_) in enumerate(steps))
    per_step = []
    for k, (s, p, idx, in_chain) in enumerate(steps):
        chain = [j for j, (_, q, _, c) in enumerate(steps) if c and q == p]
        required = [f"a{j}" for j in chain if j < k] if in_chain else [f"a{j}" for j in chain]
        ordered = " AND ".join([f"a{k}"] + required)
        per_step.append(
            f"SELECT opportunity_id, owner_id, campaign_id, created_period, {sql_str(s)} AS stage, "
            f"{sql_str(p)} AS pipeline, {idx} AS stage_index, {k} AS step, a{k} AS f_any, "
            f"({ordered}) AS f_ordered FROM funnel_deal"
        )
    counts = by_dims(
        "funnel_grid",
        "stage, pipeline, stage_index, step, SUM(f_any::INT) AS n_any, SUM(f_ordered::INT) AS n_ordered",
        ["stage", "pipeline", "stage_index", "step"],
        ["owner_id", "campaign_id", "created_period"],
    )
    w = "PARTITION BY mode, dimension, dimension_value, pipeline"
    return plain(f"""
        WITH touched AS (SELECT opportunity_id, {flags} FROM events GROUP BY opportunity_id),
        funnel_deal AS (
            SELECT d.opportunity_id, d.owner_id, d.campaign_id,
                   strftime(month_of(d.created_at), '%Y-%m-%d') AS created_period,
                   {", ".join(f"COALESCE(t.a{k}, false) AS a{k}" for k in range(len(steps)))}
            FROM deals d LEFT JOIN touched t USING (opportunity_id)),
        funnel_grid AS ({" UNION ALL ".join(per_step)}),
        counts AS ({counts}),
        modes AS (SELECT 'any' AS mode, dimension, dimension_value, stage, pipeline, stage_index, step,
                         n_any AS reached
                  FROM counts
                  UNION ALL
                  SELECT 'ordered', dimension, dimension_value, stage, pipeline, stage_index, step, n_ordered
                  FROM counts)
        SELECT mode, dimension, dimension_value, pipeline, stage, stage_index, reached,
               CASE WHEN reached = 0 THEN NULL ELSE lead(reached) OVER ({w} ORDER BY step) / reached END
                 AS next_stage_rate,
               CASE WHEN first = 0 THEN NULL ELSE reached / first END AS from_first_rate
        FROM (SELECT *, first_value(reached) OVER ({w} ORDER BY step) AS first FROM modes)
    """)


def stage_duration_sql():
    """stage_duration's columns but the Kaplan-Meier medians."""
    c = "CASE WHEN completed THEN days END"
    return (
        "SELECT * FROM ("
        + by_dims(
            "visits",
            "pipeline, stage, COUNT(*) AS visits, SUM(completed::INT) AS completed, "
            "SUM((NOT completed)::INT) AS censored, "
            f"AVG({c}) AS mean_days, quantile_cont({c}, 0.25) AS p25_days, quantile_cont({c}, 0.5) AS median_days, "
            f"quantile_cont({c}, 0.75) AS p75_days, quantile_cont({c}, 0.9) AS p90_days",
            ["pipeline", "stage"],
            ["owner_id"],
        )
        + ")"
    )


def _km(db):
    if "km" not in db.cache:
        db.cache["km"] = KaplanMeier(db.con)
    return db.cache["km"]


def stage_duration(db):
    return plain(_km(db).duration(stage_duration_sql()))


def stage_duration_survival(db):
    # Visits are of known stages only: the stage gives the pipeline.
    return plain(f"SELECT *, NULL::VARCHAR AS pipeline FROM ({_km(db).survival()})")


def pipeline_snapshot(db):
    # A stage without a probability (a store's stage list may not know it): no weighted amount
    # of its open deals.
    unknown = sql_list([s.name for s in db.pipeline.stages if s.probability is None])
    return plain(f"""
        WITH op AS (SELECT snapshot_at, t, opportunity_id, snap_pipeline, snap_stage, snap_prob
                    FROM {open_snapshots(db)}),
        agg AS (
            SELECT op.snapshot_at, COALESCE(op.snap_pipeline, d.pipeline) AS pipeline, op.snap_stage AS stage,
                   COUNT(*) AS open_deals,
                   COALESCE(SUM(d.amount_base), 0) AS amount,
                   CASE WHEN op.snap_stage IS NULL OR op.snap_stage IN {unknown} THEN NULL
                        ELSE COALESCE(SUM(d.amount_base * op.snap_prob), 0) END AS weighted_amount,
                   AVG(days_between(d.created_at, op.t)) AS mean_age_days
            FROM op JOIN deals d USING (opportunity_id) GROUP BY 1, 2, 3),
        grid AS (SELECT snapshot_at, pipeline, stage FROM snaps CROSS JOIN stages WHERE NOT terminal
                 UNION SELECT snapshot_at, pipeline, stage FROM agg)
        SELECT g.snapshot_at, g.pipeline, g.stage, COALESCE(a.open_deals, 0) AS open_deals,
               COALESCE(a.amount, 0) AS amount,
               CASE WHEN a.open_deals IS NULL THEN 0.0 ELSE a.weighted_amount END AS weighted_amount,
               a.mean_age_days
        FROM grid g LEFT JOIN agg a ON a.snapshot_at = g.snapshot_at AND a.pipeline = g.pipeline
             AND a.stage IS NOT DISTINCT FROM g.stage
    """)


def deal_size(db):
    buckets = db.cfg.deal_size_buckets
    lo, hi = buckets[0], buckets[-1]
    return (
        "SELECT * FROM ("
        + by_dims(
            "(SELECT * FROM closed WHERE status = 'won')",
            "period_start, COUNT(*) AS won_deals, AVG(amount_base) AS mean_amount, "
            "quantile_cont(amount_base, 0.5) AS median_amount, "
            f"COALESCE(SUM((amount_base < {lo!r})::INT), 0) AS small, "
            f"COALESCE(SUM((amount_base >= {lo!r} AND amount_base < {hi!r})::INT), 0) AS medium, "
            f"COALESCE(SUM((amount_base >= {hi!r})::INT), 0) AS large",
            ["period_start"],
            ["owner_id", "pipeline"],
        )
        + ")"
    )


def win_rate(db):
    return (
        "SELECT *, CASE WHEN won + lost = 0 THEN NULL ELSE won / (won + lost) END AS win_rate, "
        "CASE WHEN won_amount + lost_amount = 0 THEN NULL ELSE won_amount / (won_amount + lost_amount) END "
        "AS amount_win_rate "
        "FROM ("
        + dims_union(
            "period_start, SUM((status = 'won')::INT)::DOUBLE AS won, SUM((status = 'lost')::INT)::DOUBLE AS lost, "
            "COALESCE(SUM(amount_base) FILTER (WHERE status = 'won'), 0) AS won_amount, "
            "COALESCE(SUM(amount_base) FILTER (WHERE status = 'lost'), 0) AS lost_amount",
            ["owner_id", "source", "region", "pipeline"],
            "period_start",
        )
        + ")"
    )


def loss_reasons(db):
    return (
        "SELECT period_start, loss_reason, lost, lost_amount, lost / SUM(lost) OVER (PARTITION BY period_start) "
        "AS share FROM ("
        "SELECT period_start, COALESCE(loss_reason, 'unspecified') AS loss_reason, COUNT(*)::DOUBLE AS lost, "
        "SUM(amount_base) AS lost_amount FROM closed WHERE status = 'lost' GROUP BY 1, 2)"
    )


def sales_cycle(db):
    return (
        "SELECT * FROM ("
        + dims_union(
            "period_start, status AS outcome, COUNT(*)::DOUBLE AS deals, AVG(days) AS mean_days, "
            "quantile_cont(days, 0.5) AS median_days, quantile_cont(days, 0.9) AS p90_days",
            ["owner_id", "pipeline"],
            "period_start, status",
        )
        + ")"
    )


def forecast_vs_actual(db):
    # The pipeline forecast of month m: the deals expected to close in m that are open at the last
    # instant before m, i.e. at the month-end snapshot of the month before. Rows per pipeline
    # (`pk`); with several pipelines also for all of them (pk = chr(31), pipeline null), where
    # forecasts naming no pipeline are compared; with one, such forecasts are that pipeline's.
    multi = db.pipeline.multi
    no_pipeline = "chr(31)" if multi else sql_str(db.pipeline.pipelines[0])
    pairs = f"""
        SELECT d.period_start, d.owner_id, COALESCE(o.snap_pipeline, d.pipeline) AS pipeline,
               d.amount_base * COALESCE(o.snap_prob, 0) AS w
        FROM (SELECT month_of(expected_close_date) AS period_start, opportunity_id, owner_id, amount_base,
                     pipeline
              FROM deals WHERE expected_close_date IS NOT NULL AND month_of(expected_close_date) <= cur_period()) d
        JOIN {open_snapshots(db)} o ON o.opportunity_id = d.opportunity_id
             AND o.period_start = CAST(d.period_start - INTERVAL 1 MONTH AS DATE)"""

    def per_pipeline(rows, value, name):
        total = f"COALESCE(SUM({value}), 0)"
        one = f"SELECT period_start, owner_id, pipeline AS pk, {total} AS {name} FROM {rows} GROUP BY 1, 2, 3"
        if not multi:
            return one
        return f"{one} UNION ALL SELECT period_start, owner_id, chr(31), {total} FROM {rows} GROUP BY 1, 2"

    return f"""
        WITH sub AS (
            SELECT period_start, owner_id, pk, amount_base AS submitted_forecast FROM (
                SELECT owner_id, month_of(period_start) AS period_start, amount_base,
                       COALESCE(pipeline, {no_pipeline}) AS pk,
                       row_number() OVER (PARTITION BY owner_id, month_of(period_start),
                                                       COALESCE(pipeline, {no_pipeline})
                                          ORDER BY submitted_at DESC, amount_base DESC NULLS LAST) AS rn
                FROM forecasts_all
                WHERE submitted_at <= as_of_ts() AND grain = 'month'
                  AND (category = 'commit' OR category IS NULL))
            WHERE rn = 1 AND period_start <= cur_period()),
        pairs AS ({pairs}),
        won AS (SELECT period_start, owner_id, pipeline, amount_base FROM closed WHERE status = 'won'),
        pipe AS ({per_pipeline("pairs", "w", "pipeline_forecast")}),
        act AS ({per_pipeline("won", "amount_base", "actual")}),
        k AS (SELECT period_start, owner_id, pk FROM sub UNION SELECT period_start, owner_id, pk FROM pipe
              UNION SELECT period_start, owner_id, pk FROM act)
        SELECT k.period_start, k.owner_id, NULLIF(k.pk, chr(31)) AS pipeline, s.submitted_forecast,
               COALESCE(p.pipeline_forecast, 0) AS pipeline_forecast, COALESCE(a.actual, 0) AS actual,
               CASE WHEN s.submitted_forecast = 0 THEN NULL
                    ELSE COALESCE(a.actual, 0) / s.submitted_forecast END AS attainment,
               COALESCE(a.actual, 0) - s.submitted_forecast AS error
        FROM k
        LEFT JOIN sub s ON s.period_start = k.period_start AND s.owner_id IS NOT DISTINCT FROM k.owner_id
             AND s.pk = k.pk
        LEFT JOIN pipe p ON p.period_start = k.period_start AND p.owner_id IS NOT DISTINCT FROM k.owner_id
             AND p.pk = k.pk
        LEFT JOIN act a ON a.period_start = k.period_start AND a.owner_id IS NOT DISTINCT FROM k.owner_id
             AND a.pk = k.pk
    """


def sales_velocity(db):
    pairs = (
        "SELECT o.period_start, d.owner_id, COALESCE(o.snap_pipeline, d.pipeline) AS pipeline "
        f"FROM {open_snapshots(db)} o JOIN deals d USING (opportunity_id)"
    )
    opened = by_dims("op", "period_start, COUNT(*) AS open_deals", ["period_start"], ["owner_id", "pipeline"])
    closed = by_dims(
        "closed",
        "period_start, SUM((status = 'won')::INT) AS won, SUM((status = 'lost')::INT) AS lost, "
        "AVG(amount_base) FILTER (WHERE status = 'won') AS mean_won_amount, "
        "AVG(days_between(created_at, closed_at)) FILTER (WHERE status = 'won') AS mean_cycle_days",
        ["period_start"],
        ["owner_id", "pipeline"],
    )
    return f"""
        WITH op AS ({pairs}), o AS ({opened}), c AS ({closed}),
        j AS (
            SELECT COALESCE(o.period_start, c.period_start) AS period_start,
                   COALESCE(o.dimension, c.dimension) AS dimension,
                   COALESCE(o.dimension_value, c.dimension_value) AS dimension_value,
                   COALESCE(o.open_deals, 0) AS open_deals,
                   CASE WHEN COALESCE(c.won, 0) + COALESCE(c.lost, 0) = 0 THEN NULL
                        ELSE c.won / (c.won + c.lost) END AS win_rate,
                   c.mean_won_amount, c.mean_cycle_days
            FROM o FULL OUTER JOIN c ON o.period_start = c.period_start AND o.dimension = c.dimension
                 AND o.dimension_value IS NOT DISTINCT FROM c.dimension_value)
        SELECT *, CASE WHEN mean_cycle_days IS NULL OR mean_cycle_days = 0 OR win_rate IS NULL
                            OR mean_won_amount IS NULL THEN NULL
                       ELSE open_deals * win_rate * mean_won_amount / mean_cycle_days END AS velocity
        FROM j
    """


def deal_snapshot(db):
    return plain("""
        SELECT d.opportunity_id, d.account_id, d.owner_id, o.lead_id, d.source, d.campaign_id, d.region,
               d.status, d.pipeline, d.stage, d.amount_base, d.created_at, d.closed_at, d.expected_close_date,
               d.loss_reason,
               epoch(COALESCE(d.closed_at, as_of_ts()) - d.created_at) / 86400.0 AS age_days,
               d.stage_entered_at,
               CASE WHEN d.status = 'open' THEN epoch(as_of_ts() - d.stage_entered_at) / 86400.0 END
                   AS days_in_stage,
               COALESCE(e.n, 0) AS stage_events, e.first_at AS first_stage_at
        FROM deals d
        JOIN opps o USING (opportunity_id)
        LEFT JOIN (SELECT opportunity_id, COUNT(*) AS n, MIN(entered_at) AS first_at FROM events GROUP BY 1) e
            USING (opportunity_id)
    """)


KPIS = {
    "deal_snapshot": deal_snapshot,
    "stage_funnel": stage_funnel,
    "stage_duration": stage_duration,
    "stage_duration_survival": stage_duration_survival,
    "pipeline_snapshot": pipeline_snapshot,
    "deal_size": deal_size,
    "win_rate": win_rate,
    "loss_reasons": loss_reasons,
    "sales_cycle": sales_cycle,
    "forecast_vs_actual": forecast_vs_actual,
    "sales_velocity": sales_velocity,
}
