"""Funnel KPIs in pandas: stage_funnel, stage_duration, stage_duration_survival."""

import numpy as np
import pandas as pd

from pandas_engine import PIPELINE, US_PER_DAY, month_of
from pandas_kpis._shared import Z_95, by_dims, cached, events, null_dim, timed, visits

# Funnel steps: the non-terminal stages in pipeline order (the ordered chain), then the won stage.
STEPS = [(s, i, True) for i, (s, _, t) in enumerate(PIPELINE) if t is None] + [
    (s, i, False) for i, (s, _, t) in enumerate(PIPELINE) if t == "won"
]


@timed
def stage_funnel(ctx):
    d = ctx.deals
    ev = events(ctx)
    # Per deal, whether it has an event into each step's stage (at or before as_of).
    touched = ev[["opportunity_id", "stage"]].drop_duplicates()
    touched = touched[touched["stage"].isin([s for s, _, _ in STEPS])]
    wide = pd.crosstab(touched["opportunity_id"], touched["stage"]).astype(bool)
    flags = wide.reindex(index=d["opportunity_id"], columns=[s for s, _, _ in STEPS], fill_value=False).to_numpy()
    any_ = flags
    chain = [k for k, (_, _, c) in enumerate(STEPS) if c]
    ordered = np.empty_like(flags)
    prefix = np.ones(len(d), dtype=bool)
    for k, (_, _, in_chain) in enumerate(STEPS):  # a handful of steps: column-wise, vectorized over deals
        if in_chain:
            ordered[:, k] = flags[:, k] & prefix
            prefix = prefix & flags[:, k]
        else:
            ordered[:, k] = flags[:, k] & np.logical_and.reduce(flags[:, chain], axis=1)
    n = len(STEPS)
    cols = [f"any{k}" for k in range(n)] + [f"ord{k}" for k in range(n)]
    f = pd.DataFrame(np.hstack([any_, ordered]).astype(np.int64), columns=cols)
    f["owner_id"] = d["owner_id"].to_numpy()
    f["campaign_id"] = d["campaign_id"].to_numpy()
    f["created_period"] = pd.Series(month_of(d["created_at"]).to_numpy()).map(lambda x: x.isoformat()) if len(d) else ""

    def agg(g):
        if isinstance(g, pd.DataFrame):
            return g[cols].sum().to_frame().T
        return g[cols].sum().reset_index()

    wide = by_dims(f, [], ["owner_id", "campaign_id", "created_period"], agg)
    parts = []
    for mode, pre in (("any", "any"), ("ordered", "ord")):
        reached = wide[[f"{pre}{k}" for k in range(n)]].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            nxt = np.full(reached.shape, np.nan)
            nxt[:, :-1] = reached[:, 1:] / reached[:, :-1]
            nxt[reached == 0] = np.nan
            first = reached[:, :1]
            ffr = np.where(first == 0, np.nan, reached / np.where(first == 0, 1, first))
        m = len(wide)
        parts.append(pd.DataFrame({
            "mode": mode,
            "dimension": np.repeat(wide["dimension"].to_numpy(), n),
            "dimension_value": np.repeat(wide["dimension_value"].to_numpy(), n),
            "stage": np.tile([s for s, _, _ in STEPS], m),
            "stage_index": np.tile([i for _, i, _ in STEPS], m),
            "reached": reached.reshape(-1),
            "next_stage_rate": nxt.reshape(-1),
            "from_first_rate": ffr.reshape(-1),
        }))
    r = pd.concat(parts, ignore_index=True)
    r["dimension_value"] = r["dimension_value"].astype("string")
    return r


@timed
def stage_duration(ctx):
    v = visits(ctx)
    v = v.assign(cdays=v["days"].where(v["completed"]), censored=~v["completed"])

    def agg(g):
        r = g.agg(visits=("days", "size"), completed=("completed", "sum"), censored=("censored", "sum"),
                  mean_days=("cdays", "mean"))
        q = g["cdays"].quantile([0.25, 0.5, 0.75, 0.9]).unstack()
        q.columns = ["p25_days", "median_days", "p75_days", "p90_days"]
        return r.join(q).reset_index()

    r = by_dims(v, ["stage"], ["owner_id"], agg)
    km = _km(ctx)
    key = ["stage", "dimension", "dimension_value"]
    groups = km.drop_duplicates("gid")[["gid"] + key]
    for col, src in (("km_median_days", "survival"), ("km_median_ci_low", "ci_low"), ("km_median_ci_high", "ci_high")):
        hit = km[km[src] <= 0.5].drop_duplicates("gid")[["gid", "t_days"]].rename(columns={"t_days": col})
        groups = groups.merge(hit, on="gid", how="left")
    r = r.merge(groups.drop(columns="gid"), on=key, how="left")
    for c in ("visits", "completed", "censored"):
        r[c] = r[c].astype("int64")
    return r


@cached("km")
def _km(ctx):
    """The Kaplan-Meier step table of every (stage, dimension, dimension_value) group, sorted by
    group and duration, with a group id `gid`."""
    v = visits(ctx)
    base = pd.DataFrame({"stage": v["stage"], "days_us": v["days_us"], "completed": v["completed"].astype(np.int64)})
    both = pd.concat([
        base.assign(dimension="all", dimension_value=null_dim(base.index)),
        base.assign(dimension="owner_id", dimension_value=v["owner_id"].astype("string")),
    ], ignore_index=True)
    key = ["stage", "dimension", "dimension_value"]
    t = both.groupby(key + ["days_us"], dropna=False, sort=True).agg(n=("completed", "size"), events=("completed", "sum")).reset_index()
    t["gid"] = t.groupby(key, dropna=False, sort=False).ngroup()
    t = t.sort_values(["gid", "days_us"], kind="stable", ignore_index=True)
    gid = t["gid"]
    n = t["n"].to_numpy(np.float64)
    d = t["events"].to_numpy(np.float64)
    total = t.groupby("gid")["n"].transform("sum").to_numpy(np.float64)
    before = t.groupby("gid")["n"].cumsum().to_numpy(np.float64) - n
    at_risk = total - before
    factor = 1.0 - d / at_risk
    s = pd.Series(factor).groupby(gid.to_numpy()).cumprod().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        inc = np.where((d > 0) & (at_risk > d), d / (at_risk * (at_risk - d)), 0.0)
    g = pd.Series(inc).groupby(gid.to_numpy()).cumsum().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_s = np.log(s)
        half = Z_95 * np.sqrt(g) / np.abs(ln_s)
        cc = np.log(-ln_s)
        lo = np.exp(-np.exp(cc + half))
        hi = np.exp(-np.exp(cc - half))
    lo = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, lo))
    hi = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, hi))
    return pd.DataFrame({
        "gid": gid.to_numpy(),
        "stage": t["stage"].to_numpy(),
        "dimension": t["dimension"].to_numpy(),
        "dimension_value": t["dimension_value"].astype("string").to_numpy(),
        "t_days": t["days_us"].to_numpy() / float(US_PER_DAY),
        "at_risk": at_risk.astype(np.int64),
        "events": t["events"].to_numpy(np.int64),
        "censored": (n - d).astype(np.int64),
        "survival": s,
        "ci_low": lo,
        "ci_high": hi,
    })


@timed
def stage_duration_survival(ctx):
    km = _km(ctx).drop(columns="gid")
    km["dimension_value"] = km["dimension_value"].astype("string")
    return km


KPIS = {
    "stage_funnel": stage_funnel,
    "stage_duration": stage_duration,
    "stage_duration_survival": stage_duration_survival,
}
