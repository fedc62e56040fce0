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

from ..common import SEP, TABLE_COLUMNS, arrow_schema, store_pipeline


class Ctx:
    """The as-of inputs, mirroring crm-kpi's src/kpi/inputs.rs."""

    def __init__(self, store, as_of, cfg):
        cfg.require_utc("reference.pandas")
        self.store = store
        self.cfg = cfg
        # With several pipelines, stages are named `pipeline + SEP + name` (unique: every rule
        # reads a stage by name) and the store's stage names are read that way at load
        # (`table_all`); `plain` splits them back in the outputs.
        self.plain_pipeline = store_pipeline(store, cfg)
        self.pipeline = self.plain_pipeline.qualified()
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
            df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else self.empty(name)
            if name == "opportunities":
                # Each deal's pipeline, from the export as stored (before its stage is read).
                own = df["pipeline"] if "pipeline" in df else pd.Series(None, index=df.index, dtype=object)
                self._cache["deal_pipelines"] = dict(
                    zip(df["opportunity_id"], [self.pipeline.deal_pipeline(p) for p in own], strict=True)
                )
            if name in ("opportunities", "stage_events") and self.pipeline.multi:
                df = self._qualified(name, df)
            self._cache[name] = df
        return self._cache[name]

    def deal_pipelines(self):
        """{opportunity_id: the deal's pipeline}: its export's when configured, else the first
        (docs/decisions.md, "Pipelines")."""
        self.table_all("opportunities")
        return self._cache["deal_pipelines"]

    def _qualified(self, name, df):
        """The stage names of `df` (stage events or the export's own stage) read in the deal's
        pipeline (`Pipeline.resolve`)."""
        if "stage" not in df:
            return df
        if name != "opportunities":
            self.table_all("opportunities")  # the deal pipelines
        dp = self._cache["deal_pipelines"]
        plain = self.plain_pipeline
        df = df.copy()
        df["stage"] = [
            plain.resolve(dp.get(o, plain.pipelines[0]), st)
            for o, st in zip(df["opportunity_id"], df["stage"], strict=True)
        ]
        return df

    def stage_pipeline(self, stage):
        """The pipeline of each (qualified) stage of a Series; null for a stage no pipeline has."""
        of = {s.name: s.pipeline for s in self.pipeline.stages}
        return stage.map(of)

    def plain(self, df, fallback):
        """`df` with its (qualified) `stage` split back: `pipeline` = the stage's pipeline, else
        `fallback` (a Series aligned with df: a stage no pipeline knows, or none), and `stage` =
        the stage's own name."""
        df = df.copy()
        pipe = self.stage_pipeline(df["stage"]).astype(object)
        df["pipeline"] = pipe.where(pipe.notna(), pd.Series(fallback, index=df.index).astype(object))
        df["stage"] = df["stage"].map(lambda x: x.split(SEP)[-1] if isinstance(x, str) else x)
        return df

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
        """Each deal's state at as_of, from its stage events and, where the export's close wins,
        its export (see reference/duckdb/views.py and `export_history`)."""
        if "deals" not in self._cache:
            stage_index = self.pipeline.index
            terminal = self.pipeline.terminal
            # The opportunities' own `stage` (the export's view) is not the as-of stage.
            opps = self.table("opportunities", "created_at").drop(columns=["stage"], errors="ignore")
            x = self.export_history
            ev = self.table_all("stage_events")
            ev = ev.loc[
                (ev["entered_at"] <= self.as_of) & member(ev["opportunity_id"], opps["opportunity_id"]),
                ["opportunity_id", "stage", "entered_at"],
            ]
            # The reopening events the export implies (at or before as_of) count as events here.
            ro = x[x["reopen_at"].notna() & (x["reopen_at"] <= self.as_of)]
            added = pd.DataFrame(
                {"opportunity_id": ro["opportunity_id"], "stage": ro["reopen_stage"], "entered_at": ro["reopen_at"]}
            )
            ev = pd.concat([ev, added], ignore_index=True) if len(added) else ev.copy()
            ev["stage_index"] = ev["stage"].map(stage_index)
            last = ev.sort_values(["opportunity_id", "entered_at", "stage_index"]).groupby("opportunity_id").tail(1)
            last = last[["opportunity_id", "stage", "entered_at"]].rename(columns={"entered_at": "stage_entered_at"})
            leads = self.table("leads", "created_at")[["lead_id", "source"]]
            d = opps.merge(last, on="opportunity_id", how="left").merge(leads, on="lead_id", how="left")
            # The pipeline at as_of: the last event's stage's, else the deal's own.
            dp = d["opportunity_id"].map(self.deal_pipelines())
            d["pipeline"] = self.stage_pipeline(d["stage"]).astype(object)
            d["pipeline"] = d["pipeline"].where(d["pipeline"].notna(), dp.astype(object))
            term = d["stage"].map(terminal)
            # The export's close wins from closed_at on, before the events' verdict.
            by_export = (
                x["export_close"].to_numpy()[pd.Index(x["opportunity_id"]).get_indexer(d["opportunity_id"])]
                & (d["closed_at"] <= self.as_of).to_numpy()
            )
            d["status_at"] = np.where(by_export, d["status"], np.where(term.notna(), term, "open"))
            d["closed_at_at"] = d["closed_at"].where(by_export, d["stage_entered_at"].where(term.notna()))
            d = d.drop(columns=["status", "closed_at"]).rename(
                columns={"status_at": "status", "closed_at_at": "closed_at"}
            )
            self._cache["deals"] = d
        return self._cache["deals"]

    @property
    def export_history(self):
        """Per deal created at or before as_of (the opportunities' rows as of, in their order),
        its export against its whole stage history (all times): opportunity_id, export_close
        (the export's won/lost close wins: no won/lost event at all, or closed_at later than
        every event of the history, won/lost or not, and the history not ending in a won/lost
        event of the export's outcome), reopen_at and reopen_stage (the export says open while
        the history ends in a won/lost event: the deal re-enters reopen_stage at updated_at, or
        one microsecond after that event when updated_at is missing or not later; reopen_stage
        is the export's stage when it is an open stage of the pipeline, else the deal's last
        open stage in its history, else the pipeline's first stage; else null). In the history "last" orders by
        time, then a won/lost event after any other stage, then the later stage of the pipeline
        (an unknown stage first)."""
        if "export_history" not in self._cache:
            opps = self.table("opportunities", "created_at")
            n = len(opps)
            ids = pd.Index(opps["opportunity_id"])
            outcome = self.pipeline.terminal
            ev = self.table_all("stage_events")
            ev = ev.loc[member(ev["opportunity_id"], opps["opportunity_id"]), ["opportunity_id", "stage", "entered_at"]]
            deal = ids.get_indexer(ev["opportunity_id"])
            out = ev["stage"].map(outcome)
            idx = ev["stage"].map(self.pipeline.index).astype("float64")
            h = pd.DataFrame(
                {
                    "deal": deal,
                    "stage": ev["stage"].to_numpy(),
                    "t": ev["entered_at"].to_numpy(),
                    "is_term": out.notna().to_numpy(),
                    "outcome": out.to_numpy(),
                    "idx": idx.fillna(-1.0).to_numpy(),
                    "known": idx.notna().to_numpy(),
                }
            )

            def last_of(rows, by):
                return rows.sort_values(["deal"] + by, kind="stable").drop_duplicates("deal", keep="last")

            last_any = last_of(h, ["t", "is_term", "idx"])
            last_term = last_of(h[h["is_term"]], ["t", "idx"])
            last_open = last_of(h[~h["is_term"] & h["known"]], ["t", "idx"])

            def per_deal(rows, col, empty):
                s = np.full(n, empty, dtype=object)
                s[rows["deal"].to_numpy()] = rows[col].to_numpy()
                return pd.Series(s)

            ts = ev["entered_at"].dtype
            last_term_at = pd.Series(pd.NaT, index=range(n), dtype=ts)
            last_term_at.iloc[last_term["deal"].to_numpy()] = last_term["t"].to_numpy()
            # The deal's last event of any stage (a reopening after the export's close is later).
            last_event_at = pd.Series(pd.NaT, index=range(n), dtype=ts)
            last_event_at.iloc[last_any["deal"].to_numpy()] = last_any["t"].to_numpy()
            last_outcome = per_deal(last_term, "outcome", None)
            last_is_term = per_deal(last_any, "is_term", False).astype(bool).to_numpy()
            last_open_stage = per_deal(last_open, "stage", None)

            status = opps["status"].reset_index(drop=True)
            closed_at = opps["closed_at"].reset_index(drop=True)
            export_close = status.isin(["won", "lost"]).to_numpy() & (
                last_term_at.isna().to_numpy()
                | (
                    closed_at.notna().to_numpy()
                    & (closed_at > last_event_at).to_numpy()
                    & ~(last_is_term & (last_outcome == status).to_numpy())
                )
            )
            reopen = (status == "open").to_numpy() & last_is_term
            after = last_term_at + pd.Timedelta(microseconds=1)
            if "updated_at" in opps:
                upd = opps["updated_at"].reset_index(drop=True)
                reopen_at = upd.where(upd > after, after)
            else:
                reopen_at = after
            reopen_at = reopen_at.where(reopen)
            own = opps["stage"].to_numpy(dtype=object) if "stage" in opps else np.full(n, None, dtype=object)
            reopen_stage = pd.Series(np.where(pd.Index(self.pipeline.open).get_indexer(own) >= 0, own, None))
            reopen_stage = reopen_stage.fillna(last_open_stage)
            if self.pipeline.stages:
                # The first stage of the deal's pipeline.
                first = {}
                for st in self.pipeline.stages:
                    first.setdefault(st.pipeline, st.name)
                dp = opps["opportunity_id"].map(self.deal_pipelines()).map(first).reset_index(drop=True)
                reopen_stage = reopen_stage.fillna(dp)
            reopen_stage = reopen_stage.where(reopen)
            self._cache["export_history"] = pd.DataFrame(
                {
                    "opportunity_id": opps["opportunity_id"].to_numpy(),
                    "export_close": export_close,
                    "reopen_at": reopen_at,
                    "reopen_stage": reopen_stage,
                }
            )
        return self._cache["export_history"]


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
