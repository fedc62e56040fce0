"""The DuckDB side of the comparison: every KPI of the catalog as DuckDB SQL (the reference
queries of scripts/crosscheck*.py), over the same store files, each result written to
OUT/<kpi>.parquet. Timed as one process by run.sh. The predictive CLV KPIs: RFM in SQL, then
this engine's own model fits and predictions in numpy/scipy (clv_fit.py).

Usage: duckdb_engine.py STORE OUT AS_OF THREADS
"""

import os
import sys
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, HERE)
import clv_fit  # noqa: E402
import km_sql  # noqa: E402
import crosscheck as cc  # noqa: E402
from crosscheck_clv import rfm_sql  # noqa: E402


# The cross-check's predictive CLV (crosscheck_clv.py) evaluates its formulas at crm-kpi's fitted
# parameters, reading crm-kpi's output. Here instead: the RFM in DuckDB SQL (the cross-check's
# rfm_sql), then this engine's own fits and predictions (clv_fit.py, numpy/scipy).
class Clv:
    def __init__(self, con):
        self.con = con
        self._fits = None

    def _get(self):
        if self._fits is None:
            t0 = time.perf_counter()
            d = self.con.execute(rfm_sql()).fetchnumpy()
            t1 = time.perf_counter()
            m = np.ma.filled(np.ma.asarray(d["monetary_value"], dtype=np.float64), np.nan)
            rfm = (d["frequency"].astype(np.float64), d["recency"], d["t"], m)
            fits = clv_fit.fit_models(*rfm)
            print(f"duckdb-kpi clv: RFM (SQL) {t1 - t0:.3f} s, fits {time.perf_counter() - t1:.3f} s", file=sys.stderr)
            self._fits = (d, rfm, fits)
        return self._fits

    def model(self):
        return clv_fit.model_columns(self._get()[2])

    def predictive(self):
        d, rfm, fits = self._get()
        t0 = time.perf_counter()
        pred = clv_fit.predict(fits, *rfm)
        print(f"duckdb-kpi clv: predictions {time.perf_counter() - t0:.3f} s", file=sys.stderr)
        cols = {c: d[c] for c in ["account_id", "frequency", "recency", "t", "monetary_value"]}
        cols.update(pred)
        return cols


def write(cols, path):
    """Columns (lists, numpy or masked arrays; NaN and masked values are null) to a Parquet file."""
    arrow = (pa.Array, pa.ChunkedArray)
    pq.write_table(pa.table({c: v if isinstance(v, arrow) else pa.array(v, from_pandas=True)
                             for c, v in cols.items()}), path)


def main():
    store, out, as_of, threads = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    cc.load_extensions()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    # DuckDB takes 80% of RAM by default; the Kaplan-Meier tables are built in Python from its
    # rows, so it gets half (scale l was OOM-killed at 24 GB) and spills beyond that.
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    con.execute(f"SET memory_limit = '{ram // 2**20 // 2}MB'")
    con.execute(f"SET temp_directory = '{out}.duckdb-tmp'")
    cc.setup(con, store, as_of)
    for ext_setup in cc.EXTENSION_SETUPS:
        ext_setup(cc, con)
    clv = Clv(con)
    km = km_sql.KaplanMeier(con)
    own = {"clv_model": clv.model, "clv_predictive": clv.predictive,
           "stage_duration": lambda: km.duration(cc.stage_duration_sql()),
           "stage_duration_survival": km.survival}
    for kpi, (_key, build) in cc.QUERIES.items():
        path = f"{out}/{kpi}.parquet"
        started = time.perf_counter()
        if kpi in own:
            t0 = time.perf_counter()
            write(own[kpi](), path)
            print(f"duckdb-kpi {kpi} {time.perf_counter() - t0:.3f} s", file=sys.stderr)
        elif build in cc.CONNECTION_BUILDS:
            # Computed partly in Python: materialize the rows through DuckDB.
            cols, rows = build(con)
            pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in cols}), path)
        else:
            con.execute(f"COPY ({build()}) TO '{path}' (FORMAT parquet)")
        print(f"duckdb {kpi} {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
