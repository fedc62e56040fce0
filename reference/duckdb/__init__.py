"""The DuckDB reference engine: every KPI of the catalog as DuckDB SQL (with numpy/scipy where
SQL is not the tool: the Kaplan-Meier products, the CLV model fits) over the store's Parquet
files.

Each family module (leads, funnel, reps, customers, trends) defines KPIS = {kpi: function}; a
function takes a `Db` (views.py) and returns either a SQL query (str) or the KPI's columns (a
dict of lists or arrays). A family module may define setup(db), run once after views.setup.
"""

import duckdb

from ..common import arrow_table, collect, fetch
from . import customers, funnel, leads, reps, trends, views
from .views import Db

FAMILIES = {"leads": leads, "funnel": funnel, "reps": reps, "customers": customers, "trends": trends}
KPIS = collect(FAMILIES)

__all__ = ["FAMILIES", "KPIS", "Db", "connect", "rows"]


def connect(store, as_of, cfg, con=None):
    """A Db over `store` as of `as_of` (YYYY-MM-DD): the views of views.py, then each family's."""
    db = Db(con if con is not None else duckdb.connect(), store, as_of, cfg)
    db.con.execute("SET enable_progress_bar = false")
    views.setup(db)
    for module in FAMILIES.values():
        if hasattr(module, "setup"):
            module.setup(db)
    return db


def rows(db, result):
    """(columns, rows as dicts) of a KPI function's result."""
    if isinstance(result, str):
        return fetch(db.con, result)
    table = arrow_table(result)
    return table.column_names, table.to_pylist()
