"""pandas implementations of the KPI catalog, one module per family (see pandas_engine.py)."""
