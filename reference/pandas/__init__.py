"""The pandas reference engine: the KPI catalog's definitions in plain pandas (single process, as
a data team would write them) over the store's Parquet files.

Each family module (leads, funnel, reps, customers, trends) defines KPIS = {kpi: function}; a
function takes a `Ctx` (context.py) and returns the KPI's rows as a DataFrame (without as_of).
"""

from ..common import collect
from . import customers, funnel, leads, reps, trends
from .context import Ctx

FAMILIES = {"leads": leads, "funnel": funnel, "reps": reps, "customers": customers, "trends": trends}
KPIS = collect(FAMILIES)

__all__ = ["FAMILIES", "KPIS", "Ctx"]
