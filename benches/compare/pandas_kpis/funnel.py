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
    step = pd.Index([s for s, _, _ in STEPS]).get_indexer(ev["stage"])
    deal = ev["deal"].to_numpy()
    hit = step >= 0
    flags = np.zeros((len(d), len(STEPS)), dtype=bool)
    flags[deal[hit], step[hit]] = True
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
    group and duration, with a group id `gid`: one row per distinct duration of the group."""
    v = visits(ctx)
    stage_code, stages = pd.factorize(v["stage"], use_na_sentinel=False)
    owner_code, owners = pd.factorize(v["owner_id"], use_na_sentinel=False)
    # Groups: (stage, all) -> stage_code; (stage, owner) -> len(stages) + stage_code * len(owners) + owner_code.
    n_st = len(stages)
    gkey = np.concatenate([stage_code, n_st + stage_code * max(len(owners), 1) + owner_code])
    dur = np.concatenate([v["days_us"].to_numpy()] * 2)
    ev = np.concatenate([v["completed"].to_numpy(np.int64)] * 2)
    lo_dur = int(dur.min()) if len(dur) else 0
    bits_d = (int(dur.max()) - lo_dur).bit_length() if len(dur) else 0
    bits_g = int(gkey.max()).bit_length() if len(gkey) else 0
    if bits_g + bits_d + 1 <= 63:
        # One sort of a packed (group, duration, event) int64 key instead of a lexsort.
        packed = np.sort((((gkey.astype(np.int64) << bits_d) | (dur - lo_dur)) << 1) | ev)
        ev = packed & 1
        gkey = packed >> (bits_d + 1)
        dur = ((packed >> 1) & ((1 << bits_d) - 1)) + lo_dur
    else:
        order = np.lexsort((dur, gkey))
        gkey, dur, ev = gkey[order], dur[order], ev[order]
    # One step per distinct (group, duration).
    start = np.ones(len(dur), dtype=bool)
    start[1:] = (gkey[1:] != gkey[:-1]) | (dur[1:] != dur[:-1])
    idx = np.flatnonzero(start)
    g_key = gkey[idx]
    t_us = dur[idx]
    n = np.diff(np.append(idx, len(dur))).astype(np.float64)
    d = np.add.reduceat(ev, idx).astype(np.float64) if len(idx) else np.zeros(0)
    gid = np.cumsum(np.r_[True, g_key[1:] != g_key[:-1]]) - 1 if len(idx) else np.zeros(0, dtype=np.int64)
    del gkey, dur, ev, start, idx  # the per-visit arrays (twice the visits): free before the steps' math
    if bits_g + bits_d + 1 <= 63:
        del packed
    gs = pd.Series(n).groupby(gid)
    at_risk = gs.transform("sum").to_numpy() - (gs.cumsum().to_numpy() - n)
    s = pd.Series(1.0 - d / at_risk).groupby(gid).cumprod().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        inc = np.where((d > 0) & (at_risk > d), d / (at_risk * (at_risk - d)), 0.0)
    g = pd.Series(inc).groupby(gid).cumsum().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_s = np.log(s)
        half = Z_95 * np.sqrt(g) / np.abs(ln_s)
        cc = np.log(-ln_s)
        lo = np.exp(-np.exp(cc + half))
        hi = np.exp(-np.exp(cc - half))
    lo = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, lo))
    hi = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, hi))
    del gs, inc, g, ln_s, half, cc
    is_all = g_key < n_st
    st = np.where(is_all, g_key, (g_key - n_st) // max(len(owners), 1))
    ow = np.where(is_all, 0, (g_key - n_st) % max(len(owners), 1))
    owner_val = pd.Series(owners, dtype="string").take(ow).reset_index(drop=True) if len(owners) else pd.Series([], dtype="string")
    return pd.DataFrame({
        "gid": gid,
        "stage": pd.Series(stages).take(st).reset_index(drop=True),
        "dimension": pd.Series(["owner_id", "all"], dtype="str").take(is_all.astype(np.intp)).reset_index(drop=True),
        "dimension_value": owner_val.mask(is_all),
        "t_days": t_us / float(US_PER_DAY),
        "at_risk": at_risk.astype(np.int64),
        "events": d.astype(np.int64),
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
