"""Independent reference implementations of crm-kpi's KPI catalog, to cross-check the engine:
DuckDB SQL (reference.duckdb) and pandas (reference.pandas), one module per KPI family each.
Run from the repository root: `python -m reference.crosscheck ...`, `python -m reference.compare
...` (see reference/README.md)."""
