"""Agreement check and results table of benches/compare/run.sh.

Usage: report.py WORK STORE AS_OF SCALE THREADS RUNS ENGINE...
Compares every KPI of crm-kpi's output (WORK/crm-kpi.1) with the DuckDB (WORK/duckdb.1) and
pandas (WORK/pandas.1) results using the cross-check's key-by-key comparison, then prints
medians of wall time, CPU time (user + sys) and peak RSS per engine, and the ratios.
"""

import os
import platform
import statistics
import sys

import duckdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import crosscheck as cc  # noqa: E402


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
        print(f"[{engine}] ", end="")
        bad += cc.compare(con, kpi, key, ref, f"{work}/crm-kpi.1", as_of, engine)
    return bad, missing


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
    failed = any(r is not None and (r[0] > 0 or r[1]) for r in results.values()) or bool(unchecked)
    if failed:
        for e, r in results.items():
            if r and r[1]:
                print(f"{e}: not implemented: {', '.join(r[1])}")
        sys.exit(1)


if __name__ == "__main__":
    main()
