"""Cross-check crm-kpi's KPI outputs against the same definitions written independently in
DuckDB SQL over the same store files.

Usage: crosscheck.py STORE OUT AS_OF   (AS_OF = YYYY-MM-DD; the run must use --as-of AS_OF,
the default config: UTC, monthly grain, default pipeline). Exits 1 on any mismatch.
"""

import json
import math
import sys

import duckdb

STAGES = ["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"]
WON, LOST = "closed_won", "closed_lost"


def files(store, table):
    m = json.load(open(f"{store}/_manifest.json"))
    t = m["tables"].get(table)
    return [f"{store}/{f['path']}" for f in t["files"]] if t else []


def setup(con, store, as_of):
    for t in ["leads", "opportunities", "stage_events"]:
        fs = files(store, t)
        con.execute(f"CREATE VIEW {t}_all AS SELECT * FROM read_parquet({fs!r}, hive_partitioning = false)")
    # End of the as_of day, UTC (the default config's timezone).
    con.execute(f"SET TimeZone = 'UTC'")
    con.execute(f"CREATE MACRO as_of_ts() AS (TIMESTAMPTZ '{as_of} 23:59:59.999999+00')")
    stage_idx = ", ".join(f"('{s}', {i})" for i, s in enumerate(STAGES))
    con.execute(f"CREATE TABLE stages(stage VARCHAR, stage_index INT); INSERT INTO stages VALUES {stage_idx}")
    con.execute("""
        CREATE VIEW opps AS SELECT * FROM opportunities_all WHERE created_at <= as_of_ts();
        CREATE VIEW events AS SELECT e.* FROM stage_events_all e
            WHERE e.entered_at <= as_of_ts() AND e.opportunity_id IN (SELECT opportunity_id FROM opps);
        CREATE VIEW last_event AS
            SELECT opportunity_id, stage AS last_stage, entered_at AS stage_entered_at FROM (
              SELECT e.*, row_number() OVER (PARTITION BY opportunity_id
                     ORDER BY entered_at DESC, s.stage_index DESC) AS rn
              FROM events e JOIN stages s USING (stage)) WHERE rn = 1;
        CREATE VIEW has_terminal AS SELECT DISTINCT opportunity_id FROM stage_events_all
            WHERE stage IN ('closed_won', 'closed_lost');
        CREATE VIEW deals AS
            SELECT o.opportunity_id, o.owner_id, o.region, o.amount_base, o.created_at, o.loss_reason,
                   l.source,
                   CASE WHEN le.last_stage = 'closed_won' THEN 'won'
                        WHEN le.last_stage = 'closed_lost' THEN 'lost'
                        WHEN h.opportunity_id IS NULL AND o.status IN ('won', 'lost')
                             AND o.closed_at <= as_of_ts() THEN o.status
                        ELSE 'open' END AS status,
                   CASE WHEN le.last_stage IN ('closed_won', 'closed_lost') THEN le.stage_entered_at
                        WHEN h.opportunity_id IS NULL AND o.status IN ('won', 'lost')
                             AND o.closed_at <= as_of_ts() THEN o.closed_at END AS closed_at
            FROM opps o
            LEFT JOIN last_event le USING (opportunity_id)
            LEFT JOIN has_terminal h USING (opportunity_id)
            LEFT JOIN (SELECT lead_id, source FROM leads_all WHERE created_at <= as_of_ts()) l USING (lead_id);
        CREATE VIEW closed AS
            SELECT *, CAST(date_trunc('month', closed_at) AS DATE) AS period_start,
                   epoch(closed_at - created_at) / 86400.0 AS days
            FROM deals WHERE status IN ('won', 'lost');
    """)


def dims_union(select, dims, group):
    parts = [f"SELECT 'all' AS dimension, NULL::VARCHAR AS dimension_value, {select} FROM closed GROUP BY {group}"]
    for d in dims:
        parts.append(f"SELECT '{d}', CAST({d} AS VARCHAR), {select} FROM closed GROUP BY {group}, {d}")
    return " UNION ALL ".join(parts)


QUERIES = {
    "win_rate": (
        ["period_start", "dimension", "dimension_value"],
        "SELECT *, CASE WHEN won + lost = 0 THEN NULL ELSE won / (won + lost) END AS win_rate, "
        "CASE WHEN won_amount + lost_amount = 0 THEN NULL ELSE won_amount / (won_amount + lost_amount) END AS amount_win_rate "
        "FROM (" + dims_union(
            "period_start, SUM((status = 'won')::INT)::DOUBLE AS won, SUM((status = 'lost')::INT)::DOUBLE AS lost, "
            "COALESCE(SUM(amount_base) FILTER (WHERE status = 'won'), 0) AS won_amount, "
            "COALESCE(SUM(amount_base) FILTER (WHERE status = 'lost'), 0) AS lost_amount",
            ["owner_id", "source", "region"], "period_start") + ")",
    ),
    "loss_reasons": (
        ["period_start", "loss_reason"],
        "SELECT period_start, loss_reason, lost, lost_amount, lost / SUM(lost) OVER (PARTITION BY period_start) AS share FROM ("
        "SELECT period_start, COALESCE(loss_reason, 'unspecified') AS loss_reason, COUNT(*)::DOUBLE AS lost, "
        "SUM(amount_base) AS lost_amount FROM closed WHERE status = 'lost' GROUP BY 1, 2)",
    ),
    "sales_cycle": (
        ["period_start", "outcome", "dimension", "dimension_value"],
        "SELECT * FROM (" + dims_union(
            "period_start, status AS outcome, COUNT(*)::DOUBLE AS deals, AVG(days) AS mean_days, "
            "quantile_cont(days, 0.5) AS median_days, quantile_cont(days, 0.9) AS p90_days",
            ["owner_id"], "period_start, status") + ")",
    ),
}


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, float) and math.isnan(a):
            return False
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)), abs(float(b)))
    return str(a) == str(b)


def main():
    store, out, as_of = sys.argv[1:4]
    con = duckdb.connect()
    setup(con, store, as_of)
    bad = 0
    for kpi, (key, sql) in QUERIES.items():
        mine = con.execute(f"SELECT * FROM read_parquet('{out}/{kpi}/as_of={as_of}/part-0.parquet')").df()
        ref = con.execute(sql).df()
        cols = [c for c in ref.columns if c not in key]
        k = lambda r: tuple("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)[:10] if "period" in n else str(v) for n, v in zip(key, r))
        ref_rows = {k([row[c] for c in key]): row for _, row in ref.astype(object).where(ref.notna(), None).iterrows()}
        mine_rows = {k([row[c] for c in key]): row for _, row in mine.astype(object).where(mine.notna(), None).iterrows()}
        mism = 0
        for key_v in set(ref_rows) | set(mine_rows):
            r, m = ref_rows.get(key_v), mine_rows.get(key_v)
            if r is None or m is None:
                mism += 1
                if mism <= 5:
                    print(f"  {kpi}: row {key_v} only in {'crm-kpi' if r is None else 'duckdb'}")
                continue
            for c in cols:
                if not same(r[c], m[c]):
                    mism += 1
                    if mism <= 5:
                        print(f"  {kpi}: {key_v} {c}: duckdb {r[c]} vs crm-kpi {m[c]}")
        print(f"{kpi:<20} rows {len(mine_rows):>6} (duckdb {len(ref_rows)}): {'OK' if mism == 0 else f'{mism} MISMATCHES'}")
        bad += mism
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
