"""Cross-check crm-kpi's KPI outputs against the DuckDB references (reference/duckdb/) over the
same store files. Run by scripts/crosscheck.sh, from the repository root.

Usage: python -m reference.crosscheck STORE OUT AS_OF [KPI,...] [--catalog BIN|FILE] [--config FILE]

The run must use --as-of AS_OF and the same crm-kpi.toml (--config, default: $CRM_KPI_CONFIG,
else the repository's). The catalog (`crm-kpi list --json` of --catalog, default
$CRM_KPI_CATALOG, else $CRM_KPI_BIN) gives the KPIs, their keys and columns. It fails (exit 1)
when a KPI of the catalog has no reference in an engine (DuckDB or pandas), when a reference
names a KPI that is not in the catalog, and on any mismatch. Every KPI of the catalog is
compared unless a comma-separated list is given. With both predictive CLV KPIs it also
evaluates clv_predictive at crm-kpi's own fitted parameters (clv_model's), exactly.

       python -m reference.crosscheck --perturb GEN_DIR OUT_DIR [--config FILE]
copies generated Parquet files, adding the edge cases the generator does not produce
(crosscheck.sh does it when EDGE=1), each on the deals of one bucket of
hash(opportunity_id) % 40: closed deals without a terminal event (1: the export's close), deals
without any stage event (2), two events of a deal at the same instant (3; 8: the terminal one, then earlier than the
export's closed_at), deals with their first event only (4), zero amounts (7), and the export
disagreeing with the history (docs/decisions.md): the other outcome exported 30 days after the
terminal event (11: the export's close wins from then on), a lost deal (no won event) reopened
into an open stage 10 days after the lost event and exported won 60 days after it (12: the
export's close, later than the reopening, wins), a closed deal exported open with no reopening
event (13: in the last open stage, updated_at 20 days after the terminal event; 14: its
generated, terminal, stage and a null updated_at), the same outcome exported with a closed_at 7
days after the event (15: the event's time stays), the other outcome exported 5 days before the
terminal event, not before the deal's creation (16: the history wins), a lost deal (no won
event) reopened into an open stage 40 days after the lost event and exported won 20 days after
it, between the close and the reopening (17: the reopening is the later word, the history wins).
An `updated_at` column is added when the generated opportunities have none.
Forecasts: without a category and zero amounts.
"""

import argparse
import glob
import os
import shutil
import sys
import time

import duckdb

from . import clv_fit
from . import duckdb as ref_duckdb
from . import pandas as ref_pandas
from .common import (
    compare,
    load_catalog,
    load_config,
    read_output,
    registry_problems,
    within_tolerance,
)
from .duckdb import customers as duckdb_customers
from .duckdb.views import sql_list, sql_str


def perturb(src, dst, cfg):
    os.makedirs(dst, exist_ok=True)
    for f in glob.glob(f"{src}/*.parquet"):
        shutil.copy(f, dst)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    pl = cfg.pipeline
    terminal = sql_list(pl.won + pl.lost)
    h = "hash(opportunity_id) % 40"
    # Each deal's last terminal event in the generated history (time, outcome) and last lost event.
    hist = f"""(SELECT opportunity_id,
                   max(entered_at) FILTER (WHERE stage IN {terminal}) AS term_at,
                   arg_max(CASE WHEN stage IN {sql_list(pl.won)} THEN 'won' ELSE 'lost' END, entered_at)
                       FILTER (WHERE stage IN {terminal}) AS term_outcome,
                   max(entered_at) FILTER (WHERE stage IN {sql_list(pl.lost)}) AS lost_at,
                   max(entered_at) FILTER (WHERE stage IN {sql_list(pl.won)}) AS won_at
               FROM '{src}/stage_events.parquet' GROUP BY opportunity_id)"""
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{src}/opportunities.parquet'").fetchall()]
    closed = "(t.term_at IS NOT NULL AND o.status = t.term_outcome)"  # closed, export and history agreeing
    lost = f"({closed} AND t.won_at IS NULL AND t.lost_at IS NOT NULL)"  # lost, without a won event
    reopened_stage = sql_str(pl.open[-1])
    edits = {
        "amount": f"CASE WHEN {h} = 7 THEN 0.0 ELSE o.amount END",
        "status": f"""CASE WHEN {h} IN (11, 16) AND {closed} THEN CASE o.status WHEN 'won' THEN 'lost' ELSE 'won' END
                          WHEN {h} IN (12, 17) AND {lost} THEN 'won'
                          WHEN {h} IN (13, 14) AND {closed} THEN 'open'
                          ELSE o.status END""",
        "closed_at": f"""CASE WHEN {h} = 11 AND {closed} THEN t.term_at + INTERVAL 30 DAY
                             WHEN {h} = 12 AND {lost} THEN t.lost_at + INTERVAL 60 DAY
                             WHEN {h} = 17 AND {lost} THEN t.lost_at + INTERVAL 20 DAY
                             WHEN {h} IN (13, 14) AND {closed} THEN NULL
                             WHEN {h} = 15 AND {closed} THEN t.term_at + INTERVAL 7 DAY
                             WHEN {h} = 16 AND {closed} THEN greatest(o.created_at, t.term_at - INTERVAL 5 DAY)
                             ELSE o.closed_at END""",
        "stage": f"CASE WHEN {h} = 13 AND {closed} THEN {reopened_stage} ELSE o.stage END",
        "updated_at": f"""CASE WHEN {h} = 13 AND {closed} THEN t.term_at + INTERVAL 20 DAY
                              WHEN {h} = 14 AND {closed} THEN NULL
                              ELSE {"o.updated_at" if "updated_at" in cols else "NULL::TIMESTAMPTZ"} END""",
    }
    select = [f"{edits[c]} AS {c}" if c in edits else f"o.{c}" for c in cols]
    select += [f"{edits[c]} AS {c}" for c in ("stage", "updated_at") if c not in cols]
    con.execute(f"""COPY (SELECT {", ".join(select)}
        FROM '{src}/opportunities.parquet' o LEFT JOIN {hist} t USING (opportunity_id)
        ) TO '{dst}/opportunities.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (
        WITH e AS (SELECT *, row_number() OVER (PARTITION BY opportunity_id ORDER BY entered_at) AS rn,
                          lag(entered_at) OVER (PARTITION BY opportunity_id ORDER BY entered_at) AS prev
                   FROM '{src}/stage_events.parquet')
        SELECT * EXCLUDE (rn, prev) REPLACE (
            CASE WHEN {h} = 3 AND rn = 2 THEN prev                       -- tie between two stages
                 WHEN {h} = 8 AND stage IN {terminal} THEN prev          -- close tie
                 ELSE entered_at END AS entered_at)
        FROM e
        WHERE NOT ({h} = 1 AND stage IN {terminal})  -- fallback close
          AND NOT ({h} = 2)                          -- no stage event
          AND NOT ({h} = 4 AND rn > 1)               -- first stage only
        UNION ALL BY NAME                            -- reopened 10 (12) or 40 (17) days after the lost event
        SELECT opportunity_id,
               CASE WHEN {h} = 12 THEN {sql_str(pl.open[1 if len(pl.open) > 1 else 0])}
                    ELSE {sql_str(pl.open[0])} END AS stage,
               lost_at + CASE WHEN {h} = 12 THEN INTERVAL 10 DAY ELSE INTERVAL 40 DAY END AS entered_at
        FROM {hist} WHERE {h} IN (12, 17) AND won_at IS NULL AND lost_at IS NOT NULL
          AND opportunity_id IN (SELECT opportunity_id FROM '{src}/opportunities.parquet' WHERE status = 'lost')
        ) TO '{dst}/stage_events.parquet' (FORMAT parquet)""")
    f = "hash(owner_id || CAST(period_start AS VARCHAR))"
    con.execute(f"""COPY (SELECT * REPLACE (
            CASE WHEN {f} % 5 = 0 AND category = 'commit' THEN NULL ELSE category END AS category,
            CASE WHEN {f} % 7 = 0 THEN 0.0 ELSE amount END AS amount)
        FROM '{src}/forecasts.parquet') TO '{dst}/forecasts.parquet' (FORMAT parquet)""")


def clv_at_crm_parameters(db, spec, out, as_of):
    """clv_predictive evaluated at crm-kpi's fitted parameters (its clv_model output) on the
    SQL RFM, compared exactly: checks the formulas, the unit conversion and the discounted sum
    apart from the fits."""
    model = read_output(db.con, out, "clv_model", as_of)
    if model is None:
        print(f"{'clv_predictive':<24} no clv_model output to take the parameters from")
        return 1
    fits = clv_fit.fits_from_model_rows(model[1])
    ref = ref_duckdb.rows(db, duckdb_customers.clv_predictive_with(db, fits))
    return compare(db.con, spec, ref, out, as_of, "duckdb", label="clv_predictive at crm-kpi's parameters")


def main():
    if "--perturb" in sys.argv[1:]:
        p = argparse.ArgumentParser(prog="python -m reference.crosscheck --perturb")
        p.add_argument("--perturb", nargs=2, metavar=("GEN_DIR", "OUT_DIR"), required=True)
        p.add_argument("--config")
        a = p.parse_args()
        perturb(*a.perturb, load_config(a.config))
        return
    p = argparse.ArgumentParser(prog="python -m reference.crosscheck", description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("out")
    p.add_argument("as_of", help="YYYY-MM-DD, as given to crm-kpi run --as-of")
    p.add_argument("kpis", nargs="?", default="", help="comma-separated KPIs to compare (default: all)")
    p.add_argument("--catalog", help="a crm-kpi binary or its `list --json` output (default: $CRM_KPI_BIN)")
    p.add_argument("--config", help="crm-kpi.toml (default: $CRM_KPI_CONFIG, else the repository's)")
    a = p.parse_args()

    catalog = load_catalog(a.catalog)
    specs = {k["name"]: k for k in catalog}
    cfg = load_config(a.config)
    problems = []
    for engine, package in (("duckdb", ref_duckdb), ("pandas", ref_pandas)):
        problems += registry_problems(catalog, engine, {f: m.KPIS for f, m in package.FAMILIES.items()})
    for line in problems:
        print(f"REGISTRY {line}")

    only = [k for k in a.kpis.split(",") if k] or list(specs)
    unknown = [k for k in only if k not in specs]
    if unknown:
        sys.exit(f"not KPIs of the catalog: {', '.join(unknown)}")
    db = ref_duckdb.connect(a.store, a.as_of, cfg)
    bad = checked = agreeing = 0
    for kpi in only:
        fn = ref_duckdb.KPIS.get(kpi)
        if fn is None:
            continue  # reported above
        t0 = time.time()
        checked += 1
        try:
            ref = ref_duckdb.rows(db, fn(db))
        except Exception as e:  # a broken reference query is a failure, not a pass
            print(f"{kpi:<24} duckdb reference failed: {e}")
            bad += 1
            continue
        ref = within_tolerance(db.con, specs[kpi], ref, a.out, a.as_of, "duckdb")
        mism = compare(db.con, specs[kpi], ref, a.out, a.as_of, "duckdb")
        if kpi == "clv_predictive" and "clv_model" in only and "clv_predictive" in ref_duckdb.KPIS:
            mism += clv_at_crm_parameters(db, specs[kpi], a.out, a.as_of)
        bad += mism
        agreeing += mism == 0
        if os.environ.get("CROSSCHECK_TIMING"):
            print(f"    ({time.time() - t0:.1f}s)")
    failed = bool(bad or problems)
    print(
        f"crosscheck: {agreeing} of {checked} KPIs agree with the DuckDB references"
        + (f"; {len(problems)} registry problem(s) (REGISTRY lines above)" if problems else "")
        + ("; FAILED" if failed else "")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
