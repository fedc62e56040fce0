"""Agreement check and results table of benches/compare/run.sh.

Usage: python -m reference.compare WORK STORE AS_OF SCALE THREADS RUNS ENGINE... [--catalog BIN|FILE]

Takes the KPIs, keys and columns from the catalog (`crm-kpi list --json` of --catalog, default
$CRM_KPI_CATALOG, else $CRM_KPI_BIN). Fails (exit 1) when a KPI of the catalog has no reference
in an engine (DuckDB or pandas), when a reference or an engine's output names a KPI that is not
in the catalog, and on any mismatch. Compares every KPI of crm-kpi's output (WORK/crm-kpi.1)
with the DuckDB (WORK/duckdb.1) and pandas (WORK/pandas.1) results using the cross-check's
key-by-key comparison (exact to 1e-9, except the columns of common.TOLERANCES, whose tolerance
and largest difference are printed), then prints medians of wall time, CPU time (user + sys)
and peak RSS per engine, and the ratios.
"""

import argparse
import os
import platform
import statistics
import sys

import duckdb
import pyarrow.parquet as pq

from . import duckdb as ref_duckdb
from . import pandas as ref_pandas
from .common import (
    TOLERANCES,
    US_PER_DAY,
    column_problems,
    compare,
    fetch,
    is_float_type,
    load_catalog,
    output_path,
    output_relation,
    registry_problems,
    value_columns,
    within_tolerance,
)

ENGINES = {"duckdb": ref_duckdb, "pandas": ref_pandas}


def times(work, engine, runs):
    rows = []
    for i in range(1, runs + 1):
        p = f"{work}/time.{engine}.{i}"
        if os.path.exists(p):
            wall, user, sys_, rss_kb = open(p).read().split()[-4:]
            rows.append((float(wall), float(user) + float(sys_), int(rss_kb) / 1024.0))
    if not rows:
        return None
    return tuple(statistics.median(r[k] for r in rows) for k in range(3))


# Above this many rows a KPI is compared inside DuckDB: the cross-check's row-by-row comparison
# holds both sides as Python dicts (stage_duration_survival has 23M rows at scale l).
BIG = int(os.environ.get("COMPARE_SQL_ROWS", 1_000_000))


def compare_in_sql(con, spec, ref_path, out, as_of, engine):
    """common.compare's rules as one DuckDB query: rows matched on the key (nulls equal), the
    catalog's columns present on both sides, numbers equal to 1e-9 relative (at least 1e-9
    absolute), anything else exactly; counts mismatching values and unmatched rows."""
    kpi, key = spec["name"], spec["key"]
    mine = output_path(out, kpi, as_of)
    if not os.path.exists(mine):
        print(f"{kpi:<24} no output at {mine}")
        return 1
    ref_types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{ref_path}')").fetchall()}
    mine_rel = output_relation(out, kpi, as_of)
    mine_cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {mine_rel}").fetchall()}
    problems = column_problems(spec, [c for c in ref_types if c != "as_of"], mine_cols, engine)
    for line in problems:
        print(line)
    mism = len(problems)
    if any(c not in ref_types or c not in mine_cols for c in key):
        print(f"{kpi:<24} {mism} MISMATCHES (key columns missing)")
        return mism
    checks = []
    for name in value_columns(spec):
        if name not in ref_types or name not in mine_cols:
            continue
        a, b = f'r."{name}"', f'm."{name}"'
        if any(t in ref_types[name] for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL")):
            checks.append(
                f"NOT (({a} IS NULL AND {b} IS NULL) OR (NOT isnan({a}::DOUBLE) AND NOT isnan({b}::DOUBLE)"
                f" AND abs({a}::DOUBLE - {b}::DOUBLE) <= 1e-9 * greatest(1.0, abs({a}::DOUBLE), abs({b}::DOUBLE))))"
            )
        else:
            checks.append(f"{a}::VARCHAR IS DISTINCT FROM {b}::VARCHAR")
    types = {c["name"]: c["type"] for c in spec["columns"]}

    def key_sql(side, k):
        # As common.key_part: a float key is a duration of whole microseconds, keyed on those.
        if is_float_type(types.get(k)):
            return f'round({side}."{k}" * {US_PER_DAY})::BIGINT'
        return f'{side}."{k}"::VARCHAR'

    on = " AND ".join(f"{key_sql('r', k)} IS NOT DISTINCT FROM {key_sql('m', k)}" for k in key)
    differ = " + ".join(f"COALESCE(({c})::INT, 1)" for c in checks) or "0"
    only = con.execute(f"""
        SELECT COUNT(*) FILTER (WHERE r.__row IS NULL), COUNT(*) FILTER (WHERE m.__row IS NULL),
               COALESCE(SUM(CASE WHEN r.__row IS NOT NULL AND m.__row IS NOT NULL THEN {differ} END), 0),
               COUNT(m.__row)
        FROM (SELECT *, true AS __row FROM read_parquet('{ref_path}')) r
        FULL OUTER JOIN (SELECT *, true AS __row FROM {mine_rel}) m ON {on}""").fetchone()
    only_mine, only_ref, values, n_mine = only
    n_ref = con.execute(f"SELECT COUNT(*) FROM read_parquet('{ref_path}')").fetchone()[0]
    if only_mine or only_ref:
        print(f"  {kpi}: {only_mine} rows only in crm-kpi, {only_ref} only in {engine}")
    mism += only_mine + only_ref + values
    verdict = "OK" if mism == 0 else f"{mism} MISMATCHES"
    print(f"{kpi:<24} rows {n_mine:>7} ({engine} {n_ref}): {verdict} (compared in SQL)")
    return mism


def agreement(work, catalog, as_of, engine):
    """(mismatching values/rows, KPIs without output, outputs not in the catalog) between
    crm-kpi and `engine`; None when the engine did not run."""
    d = f"{work}/{engine}.1"
    if not os.path.isdir(d):
        return None
    con = duckdb.connect()
    bad, missing = 0, []
    names = {k["name"] for k in catalog}
    extra = sorted(f[: -len(".parquet")] for f in os.listdir(d) if f.endswith(".parquet") and f[:-8] not in names)
    for spec in catalog:
        kpi = spec["name"]
        path = f"{d}/{kpi}.parquet"
        if not os.path.exists(path):
            missing.append(kpi)
            continue
        n = con.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()[0]
        if n > BIG and kpi not in TOLERANCES:
            print(f"[{engine}] ", end="")
            bad += compare_in_sql(con, spec, path, f"{work}/crm-kpi.1", as_of, engine)
            continue
        ref = fetch(con, f"SELECT * FROM read_parquet('{path}')")
        ref = within_tolerance(con, spec, ref, f"{work}/crm-kpi.1", as_of, engine)
        print(f"[{engine}] ", end="")
        bad += compare(con, spec, ref, f"{work}/crm-kpi.1", as_of, engine)
    return bad, missing, extra


def reproducible(work, names):
    """KPIs whose output differs between crm-kpi's runs 1 and 2 (None with a single run)."""
    if not os.path.isdir(f"{work}/crm-kpi.2"):
        return None

    def read(run, k):
        return pq.read_table(f"{work}/crm-kpi.{run}/{k}", partitioning=None)

    return [k for k in names if not read(1, k).equals(read(2, k))]


def columns_read_bytes(work):
    """The in-memory size of the columns the catalog reads (`scan_floor size`), or None."""
    p = f"{work}/size.txt"
    if not os.path.exists(p):
        return None
    for line in open(p):
        if line.startswith("columns read "):
            return int(line.split()[2])
    return None


def main():
    p = argparse.ArgumentParser(prog="python -m reference.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("work")
    p.add_argument("store")
    p.add_argument("as_of")
    p.add_argument("scale")
    p.add_argument("threads")
    p.add_argument("runs", type=int)
    p.add_argument("engines", nargs="+")
    p.add_argument("--catalog", help="a crm-kpi binary or its `list --json` output (default: $CRM_KPI_BIN)")
    a = p.parse_args()
    work, as_of, runs, engines = a.work, a.as_of, a.runs, a.engines
    catalog = load_catalog(a.catalog)
    names = [k["name"] for k in catalog]
    problems = []
    for engine, package in ENGINES.items():
        problems += registry_problems(catalog, engine, {f: m.KPIS for f, m in package.FAMILIES.items()})
    for line in problems:
        print(f"REGISTRY {line}")
    results = {e: agreement(work, catalog, as_of, e) for e in ENGINES if e in engines}
    t = {e: times(work, e, runs) for e in engines}

    print()
    print(f"scale {a.scale}, as of {as_of}, {a.threads} threads, median of {runs} runs (engines alternated)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}")
    print()
    print("| engine | wall s | cpu s | peak RSS MiB | KPIs agreeing with crm-kpi |")
    print("|---|---:|---:|---:|---|")
    for e in engines:
        if t[e] is None:
            continue
        wall, cpu, rss = t[e]
        if results.get(e) is not None:
            bad, missing, extra = results[e]
            agree = f"{len(names) - len(missing)} of {len(names)} checked, {bad} mismatches" + (
                f", {len(missing)} without a reference" if missing else ""
            )
        elif e == "crm-kpi":
            agree = f"{len(names)} KPIs of the catalog"
        else:
            agree = ""
        print(f"| {e} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {agree} |")
    print()
    base = t.get("crm-kpi")
    if base:
        if t.get("duckdb"):
            print(f"DuckDB / crm-kpi wall: {t['duckdb'][0] / base[0]:.2f}x (target >= 1.5x)")
        if t.get("pandas"):
            print(f"pandas / crm-kpi wall: {t['pandas'][0] / base[0]:.2f}x (target >= 5x at scale m)")
        if t.get("scan"):
            print(f"crm-kpi / scan floor wall: {base[0] / t['scan'][0]:.2f}x (target <= 5x)")
        size = columns_read_bytes(work)
        if size:
            print(
                f"crm-kpi peak RSS / in-memory size of the columns read ({size / 2**20:.0f} MiB): "
                f"{base[2] * 2**20 / size:.2f}x (target <= 2x)"
            )
    differing = reproducible(work, names)
    if differing is not None:
        print(
            f"crm-kpi runs 1 and 2: {len(names) - len(differing)} of {len(names)} KPIs identical"
            + (f"; differing: {', '.join(differing)}" if differing else "")
        )
    failed = bool(problems) or bool(differing)
    for e, r in results.items():
        if r is None:
            continue
        bad, missing, extra = r
        if missing:
            print(f"{e}: no output for KPI(s) of the catalog: {', '.join(missing)}")
        if extra:
            print(f"{e}: output for KPI(s) not in the catalog: {', '.join(extra)}")
        failed = failed or bad > 0 or bool(missing) or bool(extra)
    if failed:
        print("compare: FAILED")
        sys.exit(1)


if __name__ == "__main__":
    main()
