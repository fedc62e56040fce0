"""Agreement check and results table of benches/compare/run.sh.

Usage: report.py WORK STORE AS_OF SCALE THREADS RUNS ENGINE...
Compares every KPI of crm-kpi's output (WORK/crm-kpi.1) with the DuckDB (WORK/duckdb.1) and
pandas (WORK/pandas.1) results using the cross-check's key-by-key comparison (exact to 1e-9,
except the columns of TOLERANCES, whose tolerance and largest difference are printed), then prints
medians of wall time, CPU time (user + sys) and peak RSS per engine, and the ratios.
"""

import math
import os
import platform
import statistics
import sys

import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import crosscheck as cc  # noqa: E402


# Columns compared with a relative tolerance instead of the cross-check's exact 1e-9, per KPI.
# The predictive CLV engines each fit their own models: two maximum-likelihood optimizers agree
# only to the flatness of the likelihood. Estimates 1e-5 and standard errors 2e-3 (a
# finite-difference Hessian on both sides), as in scripts/crosscheck_clv.py; log_likelihood
# and n_customers stay exact (the likelihood is flat at the optimum). The predictions inherit
# the estimates' differences, amplified for heavy buyers by the exponent r + frequency of the
# BG/NBD terms: moving every estimate by 1e-5 (the estimates' tolerance) moves p_alive,
# expected_purchases and clv by up to 1.1e-4 at scale tiny and s and 1.4e-4 at m (frequency up
# to 171), expected_avg_value by 6e-5. So 3e-4: what the estimates' tolerance implies, with a
# margin of 2x, and still tight enough to catch a wrong month length (4.345 weeks instead of
# 30.4375 / 7 = 4.348 is 7e-4 relative), discount or horizon. The RFM columns (frequency, recency, t,
# monetary_value) stay exact.
TOLERANCES = {
    "clv_model": {"value": 1e-5, "std_err": 2e-3},
    "clv_predictive": {"p_alive": 3e-4, "expected_purchases": 3e-4, "expected_avg_value": 3e-4, "clv": 3e-4},
}


def rel_diff(a, b):
    a, b = float(a), float(b)
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def within_tolerance(con, kpi, key, ref, out, as_of, engine):
    """`ref` with each tolerance column's value replaced by crm-kpi's where the two agree within
    the column's relative tolerance, so that cc.compare's exact check passes them (values beyond
    it are kept and reported as mismatches). Prints, per column, the tolerance and the largest
    relative difference seen."""
    tols = TOLERANCES.get(kpi)
    path = f"{out}/{kpi}/as_of={as_of}/part-0.parquet"
    if not tols or not os.path.exists(path):
        return ref
    cols, rows = ref
    k = lambda r: tuple(cc.key_part(n, r[n]) for n in key)
    mine = {k(r): r for r in cc.fetch(con, f"SELECT * FROM read_parquet('{path}')")[1]}
    worst = {c: (0.0, None) for c in tols}
    n = {c: 0 for c in tols}
    beyond = {c: 0 for c in tols}
    snapped = []
    for r in rows:
        m = mine.get(k(r))
        r = dict(r)
        for c, tol in tols.items():
            if m is None or c not in r or c not in m or r[c] is None or m[c] is None:
                continue
            d = rel_diff(r[c], m[c])
            if math.isnan(d):
                continue
            n[c] += 1
            if d > worst[c][0]:
                worst[c] = (d, k(r))
            if d <= tol:
                r[c] = m[c]
            else:
                beyond[c] += 1
        snapped.append(r)
    for c, tol in tols.items():
        d, at = worst[c]
        print(f"[{engine}]   {kpi}.{c}: tolerance {tol:g} relative, max relative difference {d:.2e} over {n[c]} "
              f"values" + (f" (at {at})" if at else "") + (f", {beyond[c]} BEYOND" if beyond[c] else ""))
    return cols, snapped


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


def compare_in_sql(con, kpi, key, ref_path, out, as_of, ref_name):
    """cc.compare's rules as one DuckDB query: rows matched on the key (nulls equal), every
    reference column present in crm-kpi's output, numbers equal to 1e-9 relative (at least 1e-9
    absolute), anything else exactly; counts mismatching values and unmatched rows."""
    mine = f"{out}/{kpi}/as_of={as_of}/part-0.parquet"
    if not os.path.exists(mine):
        print(f"{kpi:<24} no output at {mine}")
        return 1
    ref_schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{ref_path}')").fetchall()
    mine_cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{mine}')").fetchall()}
    mism = 0
    checks = []
    for name, typ, *_ in ref_schema:
        if name in key:
            continue
        if name not in mine_cols:
            print(f"  {kpi}: column {name} missing from crm-kpi's output")
            mism += 1
            continue
        a, b = f'r."{name}"', f'm."{name}"'
        if any(t in typ for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL")):
            checks.append(f"NOT (({a} IS NULL AND {b} IS NULL) OR (NOT isnan({a}::DOUBLE) AND NOT isnan({b}::DOUBLE)"
                          f" AND abs({a}::DOUBLE - {b}::DOUBLE) <= 1e-9 * greatest(1.0, abs({a}::DOUBLE), abs({b}::DOUBLE))))")
        else:
            checks.append(f"{a}::VARCHAR IS DISTINCT FROM {b}::VARCHAR")
    def key_sql(side, k):
        # As cc.key_part: durations are whole microseconds on both sides, keyed on those.
        if k == "t_days":
            return f'round({side}."{k}" * {cc.US_PER_DAY})::BIGINT'
        return f'{side}."{k}"::VARCHAR'
    on = " AND ".join(f"{key_sql('r', k)} IS NOT DISTINCT FROM {key_sql('m', k)}" for k in key)
    differ = " + ".join(f"COALESCE(({c})::INT, 1)" for c in checks) or "0"
    only = con.execute(f"""
        SELECT COUNT(*) FILTER (WHERE r.__row IS NULL), COUNT(*) FILTER (WHERE m.__row IS NULL),
               COALESCE(SUM(CASE WHEN r.__row IS NOT NULL AND m.__row IS NOT NULL THEN {differ} END), 0),
               COUNT(m.__row)
        FROM (SELECT *, true AS __row FROM read_parquet('{ref_path}')) r
        FULL OUTER JOIN (SELECT *, true AS __row FROM read_parquet('{mine}')) m ON {on}""").fetchone()
    only_mine, only_ref, values, n_mine = only
    n_ref = con.execute(f"SELECT COUNT(*) FROM read_parquet('{ref_path}')").fetchone()[0]
    if only_mine or only_ref:
        print(f"  {kpi}: {only_mine} rows only in crm-kpi, {only_ref} only in {ref_name}")
    mism += only_mine + only_ref + values
    print(f"{kpi:<24} rows {n_mine:>7} ({ref_name} {n_ref}): {'OK' if mism == 0 else f'{mism} MISMATCHES'}"
          " (compared in SQL)")
    return mism


def agreement(work, store, as_of, engine):
    """Mismatching values/rows per KPI between crm-kpi and `engine` (None: engine did not run)."""
    d = f"{work}/{engine}.1"
    if not os.path.isdir(d):
        return None
    con = duckdb.connect()
    bad, missing = 0, []
    for kpi, (key, _build) in cc.QUERIES.items():
        path = f"{d}/{kpi}.parquet"
        if not os.path.exists(path):
            missing.append(kpi)
            continue
        n = con.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()[0]
        if n > BIG and kpi not in TOLERANCES:
            print(f"[{engine}] ", end="")
            bad += compare_in_sql(con, kpi, key, path, f"{work}/crm-kpi.1", as_of, engine)
            continue
        ref = cc.fetch(con, f"SELECT * FROM read_parquet('{path}')")
        # Every engine must produce every column of the DuckDB reference (the compare only
        # checks the columns the reference engine has).
        duck = f"{work}/duckdb.1/{kpi}.parquet"
        if engine != "duckdb" and os.path.exists(duck):
            need = cc.fetch(con, f"SELECT * FROM read_parquet('{duck}') LIMIT 0")[0]
            for c in need:
                if c not in ref[0]:
                    print(f"  {kpi}: column {c} missing from {engine}'s output")
                    bad += 1
        ref = within_tolerance(con, kpi, key, ref, f"{work}/crm-kpi.1", as_of, engine)
        print(f"[{engine}] ", end="")
        bad += cc.compare(con, kpi, key, ref, f"{work}/crm-kpi.1", as_of, engine)
    return bad, missing


def reproducible(work, catalog):
    """KPIs whose output differs between crm-kpi's runs 1 and 2 (None with a single run)."""
    if not os.path.isdir(f"{work}/crm-kpi.2"):
        return None
    read = lambda run, k: pq.read_table(f"{work}/crm-kpi.{run}/{k}", partitioning=None)
    return [k for k in catalog if not read(1, k).equals(read(2, k))]


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
    work, store, as_of, scale, threads, runs = sys.argv[1:7]
    engines = sys.argv[7:]
    runs = int(runs)
    cc.load_extensions()
    catalog = sorted(os.listdir(f"{work}/crm-kpi.1")) if os.path.isdir(f"{work}/crm-kpi.1") else []
    catalog = [k for k in catalog if not k.startswith("_")]
    unchecked = [k for k in catalog if k not in cc.QUERIES]
    results = {e: agreement(work, store, as_of, e) for e in ("duckdb", "pandas") if e in engines}
    t = {e: times(work, e, runs) for e in engines}

    print()
    print(f"scale {scale}, as of {as_of}, {threads} threads, median of {runs} runs (engines alternated)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}")
    print()
    print(f"| engine | wall s | cpu s | peak RSS MiB | KPIs agreeing with crm-kpi |")
    print(f"|---|---:|---:|---:|---|")
    for e in engines:
        if t[e] is None:
            continue
        wall, cpu, rss = t[e]
        if e in results and results[e] is not None:
            bad, missing = results[e]
            n = len(cc.QUERIES) - len(missing)
            agree = f"{n} checked, {bad} mismatches" + (f", {len(missing)} not implemented" if missing else "")
        elif e == "crm-kpi":
            agree = f"{len(catalog)} KPIs computed" + (f"; {len(unchecked)} without a reference: {', '.join(unchecked)}" if unchecked else "")
        else:
            agree = ""
        print(f"| {e} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {agree} |")
    print()
    base = t.get("crm-kpi")
    if base:
        if t.get("duckdb"):
            print(f"DuckDB / crm-kpi wall: {t['duckdb'][0] / base[0]:.2f}x (target >= 1.25x)")
        if t.get("pandas"):
            print(f"pandas / crm-kpi wall: {t['pandas'][0] / base[0]:.2f}x (target >= 5x at scale m)")
        if t.get("scan"):
            print(f"crm-kpi / scan floor wall: {base[0] / t['scan'][0]:.2f}x (target <= 3x)")
        size = columns_read_bytes(work)
        if size:
            print(f"crm-kpi peak RSS / in-memory size of the columns read ({size / 2**20:.0f} MiB): "
                  f"{base[2] * 2**20 / size:.2f}x (target <= 2x at scale l)")
    differing = reproducible(work, catalog)
    if differing is not None:
        print(f"crm-kpi runs 1 and 2: {len(catalog) - len(differing)} of {len(catalog)} KPIs identical"
              + (f"; differing: {', '.join(differing)}" if differing else ""))
    failed = any(r is not None and (r[0] > 0 or r[1]) for r in results.values()) or bool(unchecked) or bool(differing)
    if failed:
        for e, r in results.items():
            if r and r[1]:
                print(f"{e}: not implemented: {', '.join(r[1])}")
        sys.exit(1)


if __name__ == "__main__":
    main()
