"""The pandas engine's context: `Ctx` holds the store's tables as of a date (loaded once,
cached), the configuration, the pipeline and each deal's state at as_of (mirroring crm-kpi's
src/kpi/inputs.rs); with the helpers every family uses: caching and timing of intermediates and
KPIs, time conversions and the by-dimension union.
"""

import functools
import json
import resource
import sys
import time

import numpy as np
import pandas as pd

from ..common import TABLE_COLUMNS, arrow_schema, store_pipeline


class Ctx:
    """The as-of inputs, mirroring crm-kpi's src/kpi/inputs.rs."""

    def __init__(self, store, as_of, cfg):
        cfg.require_utc("reference.pandas")
        self.store = store
        self.cfg = cfg
        self.pipeline = store_pipeline(store, cfg)
        self.as_of_date = pd.Timestamp(as_of).date()
        self.as_of = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        with open(f"{store}/_manifest.json") as f:
            self.manifest = json.load(f)
        self._cache = {}

    def files(self, name):
        t = self.manifest["tables"].get(name)
        return [f"{self.store}/{f['path']}" for f in t["files"]] if t else []

    def empty(self, name, cols=None):
        """An empty frame of a table the store does not have (the canonical columns)."""
        df = arrow_schema(name).empty_table().to_pandas() if name in TABLE_COLUMNS else pd.DataFrame()
        if cols is None:
            return df
        return pd.DataFrame({c: df[c] if c in df else pd.Series([], dtype=object) for c in cols})

    def table_all(self, name):
        if name not in self._cache:
            files = self.files(name)
            self._cache[name] = (
                pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else self.empty(name)
            )
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
        """Each deal's state at as_of, from its stage events (see reference/duckdb/views.py)."""
        if "deals" not in self._cache:
            stage_index = self.pipeline.index
            terminal = self.pipeline.terminal
            # The opportunities' own `stage` (the export's view) is not the as-of stage.
            opps = self.table("opportunities", "created_at").drop(columns=["stage"], errors="ignore")
            ev = self.table_all("stage_events")
            ev = ev[(ev["entered_at"] <= self.as_of) & member(ev["opportunity_id"], opps["opportunity_id"])].copy()
            ev["stage_index"] = ev["stage"].map(stage_index)
            last = ev.sort_values(["opportunity_id", "entered_at", "stage_index"]).groupby("opportunity_id").tail(1)
            last = last[["opportunity_id", "stage", "entered_at"]].rename(columns={"entered_at": "stage_entered_at"})
            all_ev = self.table_all("stage_events")
            has_terminal = all_ev.loc[all_ev["stage"].isin(list(terminal)), "opportunity_id"]
            leads = self.table("leads", "created_at")[["lead_id", "source"]]
            d = opps.merge(last, on="opportunity_id", how="left").merge(leads, on="lead_id", how="left")
            term = d["stage"].map(terminal)
            fallback = (
                (~member(d["opportunity_id"], has_terminal))
                & d["status"].isin(["won", "lost"])
                & (d["closed_at"] <= self.as_of)
            )
            d["status_at"] = np.where(term.notna(), term, np.where(fallback, d["status"], "open"))
            d["closed_at_at"] = d["stage_entered_at"].where(term.notna(), d["closed_at"].where(fallback))
            d = d.drop(columns=["status", "closed_at"]).rename(
                columns={"status_at": "status", "closed_at_at": "closed_at"}
            )
            self._cache["deals"] = d
        return self._cache["deals"]


def columns(ctx, name, cols):
    """Table `name` (all rows, as stored) restricted to `cols`: sliced from the whole table when
    another KPI already loaded it, else read with only these columns (cached per column set)."""
    if name in ctx._cache:
        return ctx._cache[name][list(cols)]
    key = ("cols", name, tuple(cols))
    if key not in ctx._cache:
        files = ctx.files(name)
        ctx._cache[key] = (
            pd.concat([pd.read_parquet(f, columns=list(cols)) for f in files], ignore_index=True)
            if files
            else ctx.empty(name, cols)
        )
    return ctx._cache[key]


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


def _report(label, seconds, rows=None):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        f"pandas-kpi {label:<36} {seconds:8.3f} s  peak RSS {rss:8.0f} MiB"
        + (f"  rows {rows}" if rows is not None else ""),
        file=sys.stderr,
        flush=True,
    )


def timed(fn):
    """Prints the KPI's wall time and the process's peak RSS so far to stderr. Shared
    intermediates built on the way (ctx.deals with its table loads, the `cached` ones) get their
    own `[shared]` lines, and the time printed for the KPI includes them."""

    @functools.wraps(fn)
    def run(ctx):
        if "deals" not in ctx._cache:
            t0 = time.perf_counter()
            ctx.deals  # noqa: B018 (builds and caches the deals)
            _report("[shared] ctx.deals (+ table loads)", time.perf_counter() - t0)
        t0 = time.perf_counter()
        df = fn(ctx)
        _report(fn.__name__, time.perf_counter() - t0, len(df))
        return df

    return run


def cached(name):
    """Caches an intermediate `fn(ctx)` on the Ctx under `name`, timing its first build."""

    def deco(fn):
        @functools.wraps(fn)
        def get(ctx):
            key = ("reference.pandas", name)
            if key not in ctx._cache:
                t0 = time.perf_counter()
                ctx._cache[key] = fn(ctx)
                _report(f"  [shared] {name}", time.perf_counter() - t0)
            return ctx._cache[key]

        return get

    return deco


def us(ts):
    """Microseconds since the epoch of a tz-aware datetime64[us] Series, as int64."""
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").astype("int64")


def as_of_us(ctx):
    return int(ctx.as_of.value // 1000)


def cur_period(ctx):
    return ctx.as_of_date.replace(day=1)


def dim_value(s):
    return s.astype("string")


def null_dim(index):
    return pd.Series(pd.NA, index=index, dtype="string")


def by_dims(df, group, dims, agg):
    """Concatenation of agg(df.groupby(group + [dim])) for the `all` row (group only) and each
    dimension, with dimension / dimension_value columns in place of the dimension column.
    `agg` takes a DataFrameGroupBy (or, without any key, the frame itself) and returns a frame
    with the group keys as columns."""
    parts = []
    for dim in [None] + list(dims):
        keys = group + ([dim] if dim else [])
        if keys:
            g = agg(df.groupby(keys, dropna=False, sort=False))
        else:
            g = agg(df)
        g["dimension"] = dim or "all"
        if dim:
            g["dimension_value"] = dim_value(g[dim])
            g = g.drop(columns=[dim])
        else:
            g["dimension_value"] = null_dim(g.index)
        parts.append(g)
    r = pd.concat(parts, ignore_index=True)
    return r[["dimension", "dimension_value"] + [c for c in r.columns if c not in ("dimension", "dimension_value")]]
