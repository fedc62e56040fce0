"""The DuckDB engine of the comparison (benches/compare/run.sh): every KPI of the registry over
the same store files, each result written to OUT/<kpi>.parquet. Timed as one process.

Usage: python -m reference.duckdb STORE OUT AS_OF THREADS [--config FILE]
"""

import argparse
import os
import sys
import time

import duckdb
import pyarrow.parquet as pq

from ..common import arrow_table, load_config
from . import KPIS, connect


def main():
    p = argparse.ArgumentParser(prog="python -m reference.duckdb", description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("out")
    p.add_argument("as_of")
    p.add_argument("threads", type=int)
    p.add_argument("--config", help="crm-kpi.toml (default: $CRM_KPI_CONFIG, else the repository's)")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    # DuckDB takes 80% of RAM by default; the Kaplan-Meier tables are built in Python from its
    # rows, so it gets half (scale l was OOM-killed at 24 GB) and spills beyond that.
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    con.execute(f"SET memory_limit = '{ram // 2**20 // 2}MB'")
    con.execute(f"SET temp_directory = '{a.out}.duckdb-tmp'")
    started = time.perf_counter()
    db = connect(a.store, a.as_of, load_config(a.config), con)
    # The views and tables every family reads (deal state, visits, leads as of): timed apart.
    print(f"duckdb setup {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    for kpi, fn in KPIS.items():
        path = f"{a.out}/{kpi}.parquet"
        started = time.perf_counter()
        result = fn(db)
        if isinstance(result, str):
            con.execute(f"COPY ({result}) TO '{path}' (FORMAT parquet)")
        else:  # computed partly in Python
            pq.write_table(arrow_table(result), path)
        print(f"duckdb {kpi} {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
