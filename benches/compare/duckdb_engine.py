"""The DuckDB side of the comparison: every KPI of the catalog as DuckDB SQL (the reference
queries of scripts/crosscheck*.py), over the same store files, each result written to
OUT/<kpi>.parquet. Timed as one process by run.sh.

Usage: duckdb_engine.py STORE OUT AS_OF THREADS
"""

import os
import sys

import duckdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import crosscheck as cc  # noqa: E402


# The cross-check of the predictive CLV evaluates its formulas at crm-kpi's fitted parameters
# (it reads crm-kpi's output), so it is not an independent engine run: left out of the timing
# and reported as not implemented until the DuckDB side fits its own model.
NEEDS_CRM_KPI_OUTPUT = {"clv_predictive", "clv_model"}


def main():
    store, out, as_of, threads = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    cc.load_extensions()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    cc.setup(con, store, as_of)
    for ext_setup in cc.EXTENSION_SETUPS:
        ext_setup(cc, con)
    for kpi, (_key, build) in cc.QUERIES.items():
        if kpi in NEEDS_CRM_KPI_OUTPUT:
            continue
        path = f"{out}/{kpi}.parquet"
        if build in (cc.stage_duration_ref, cc.stage_duration_survival_ref) or build in cc.CONNECTION_BUILDS:
            # Computed partly in Python (e.g. Kaplan-Meier): materialize the rows through DuckDB.
            cols, rows = build(con)
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in cols}), path)
        else:
            con.execute(f"COPY ({build()}) TO '{path}' (FORMAT parquet)")


if __name__ == "__main__":
    main()
