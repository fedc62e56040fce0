"""DuckDB reference queries for the leads KPIs (loaded by crosscheck.py)."""


def queries(cc):
    """{kpi: (key columns, build, build_takes_connection)}"""
    return {}
