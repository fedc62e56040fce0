"""The pandas side of the comparison: the KPI catalog's definitions in plain pandas (single
process, as a data team would write them), over the same store files; each KPI written to
OUT/<kpi>.parquet. Timed as one process by run.sh.

Usage: pandas_engine.py STORE OUT AS_OF

Definitions follow `crm-kpi list --long` and scripts/crosscheck.py (UTC periods, default
pipeline). Each module of pandas_kpis/ defines KPIS = {name: function(ctx) -> DataFrame}.
"""

import importlib
import json
import os
import pkgutil
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PIPELINE = [
    ("prospecting", 0.1, None),
    ("qualification", 0.2, None),
    ("proposal", 0.5, None),
    ("negotiation", 0.8, None),
    ("closed_won", 1.0, "won"),
    ("closed_lost", 0.0, "lost"),
]
STAGE_INDEX = {s: i for i, (s, _, _) in enumerate(PIPELINE)}
TERMINAL = {s: t for s, _, t in PIPELINE if t}
US_PER_DAY = 86_400_000_000


class Ctx:
    """The as-of inputs, mirroring crm-kpi's src/kpi/inputs.rs."""

    def __init__(self, store, as_of):
        self.store = store
        self.as_of_date = pd.Timestamp(as_of).date()
        self.as_of = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        self.manifest = json.load(open(f"{store}/_manifest.json"))
        self._cache = {}

    def table_all(self, name):
        if name not in self._cache:
            t = self.manifest["tables"].get(name)
            files = [f"{self.store}/{f['path']}" for f in t["files"]] if t else []
            self._cache[name] = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
        return self._cache[name]

    def table(self, name, ts, known=()):
        """Rows whose `ts` is at or before as_of; later milestone timestamps nulled."""
        key = ("asof", name)
        if key not in self._cache:
            df = self.table_all(name)
            df = df[df[ts] <= self.as_of].copy()
            for c in known:
                df.loc[df[c] > self.as_of, c] = pd.NaT
            self._cache[key] = df
        return self._cache[key]

    @property
    def deals(self):
        """Each deal's state at as_of, from its stage events (see crosscheck.py's setup)."""
        if "deals" not in self._cache:
            opps = self.table("opportunities", "created_at")
            ev = self.table_all("stage_events")
            ev = ev[(ev["entered_at"] <= self.as_of) & member(ev["opportunity_id"], opps["opportunity_id"])].copy()
            ev["stage_index"] = ev["stage"].map(STAGE_INDEX)
            last = ev.sort_values(["opportunity_id", "entered_at", "stage_index"]).groupby("opportunity_id").tail(1)
            last = last[["opportunity_id", "stage", "entered_at"]].rename(columns={"entered_at": "stage_entered_at"})
            has_terminal = self.table_all("stage_events").loc[lambda d: d["stage"].isin(list(TERMINAL)), "opportunity_id"]
            leads = self.table("leads", "created_at")[["lead_id", "source"]]
            d = opps.merge(last, on="opportunity_id", how="left").merge(leads, on="lead_id", how="left")
            term = d["stage"].map(TERMINAL)
            fallback = (~member(d["opportunity_id"], has_terminal)) & d["status"].isin(["won", "lost"]) & (d["closed_at"] <= self.as_of)
            d["status_at"] = np.where(term.notna(), term, np.where(fallback, d["status"], "open"))
            d["closed_at_at"] = d["stage_entered_at"].where(term.notna(), d["closed_at"].where(fallback))
            d = d.drop(columns=["status", "closed_at"]).rename(columns={"status_at": "status", "closed_at_at": "closed_at"})
            self._cache["deals"] = d
        return self._cache["deals"]


def member(col, values):
    """col.isin(values) for a large set of values: pandas 3's str isin converts every value to
    a Python object first (about 1 s per 100k values), a hash lookup through an Index does not."""
    return pd.Index(values).unique().get_indexer(col) >= 0


def month_of(s):
    return s.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.date


def ratio(num, den):
    num = pd.Series(num, dtype="float64")
    den = pd.Series(den, dtype="float64")
    return (num / den).where(den != 0)


def main():
    store, out, as_of = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    ctx = Ctx(store, as_of)
    import pandas_kpis
    for m in pkgutil.iter_modules(pandas_kpis.__path__):
        mod = importlib.import_module(f"pandas_kpis.{m.name}")
        for name, fn in mod.KPIS.items():
            df = fn(ctx)
            df.insert(0, "as_of", ctx.as_of_date)
            df.to_parquet(f"{out}/{name}.parquet", index=False)


if __name__ == "__main__":
    main()
