"""Funnel and pipeline KPIs in pandas: stage_funnel, stage_duration, stage_duration_survival,
pipeline_snapshot, deal_size, win_rate, loss_reasons, sales_cycle, forecast_vs_actual,
sales_velocity.
"""

import numpy as np
import pandas as pd

from ..common import US_PER_DAY, Z_95
from .context import by_dims, cached, cur_period, month_of, ratio, timed, us
from .deal_history import closed, events, open_at, open_at_snaps, snaps, visits
from .months import month_idx


@timed
def stage_funnel(ctx):
    steps = ctx.pipeline.funnel_steps()
    d = ctx.deals
    ev = events(ctx)
    # Per deal, whether it has an event into each step's stage (at or before as_of).
    step = pd.Index([s for s, *_ in steps]).get_indexer(ev["stage"])
    deal = ev["deal"].to_numpy()
    hit = step >= 0
    flags = np.zeros((len(d), len(steps)), dtype=bool)
    flags[deal[hit], step[hit]] = True
    any_ = flags
    pipe = [p for _, p, _, _ in steps]
    ordered = np.empty_like(flags)
    for p in dict.fromkeys(pipe):  # per pipeline, its chain; a handful of steps, vectorized over deals
        chain = [k for k, (_, q, _, c) in enumerate(steps) if c and q == p]
        prefix = np.ones(len(d), dtype=bool)
        for k in [k for k, q in enumerate(pipe) if q == p]:
            if steps[k][3]:
                ordered[:, k] = flags[:, k] & prefix
                prefix = prefix & flags[:, k]
            else:
                ordered[:, k] = flags[:, k] & np.logical_and.reduce(flags[:, chain], axis=1)
    n = len(steps)
    cols = [f"any{k}" for k in range(n)] + [f"ord{k}" for k in range(n)]
    f = pd.DataFrame(np.hstack([any_, ordered]).astype(np.int64), columns=cols)
    f["owner_id"] = d["owner_id"].to_numpy()
    f["campaign_id"] = d["campaign_id"].to_numpy()
    # YYYY-MM-DD of the creation month, vectorised (no Python call per deal).
    f["created_period"] = np.datetime_as_string(
        month_idx(d["created_at"]).astype("datetime64[M]").astype("datetime64[D]"), unit="D"
    )

    def agg(g):
        if isinstance(g, pd.DataFrame):
            return g[cols].sum().to_frame().T
        return g[cols].sum().reset_index()

    wide = by_dims(f, [], ["owner_id", "campaign_id", "created_period"], agg)
    # Each step's pipeline's first step, and whether it is its pipeline's last.
    first_of = np.array([pipe.index(p) for p in pipe], dtype=np.intp)
    last = np.array([k + 1 == n or pipe[k + 1] != pipe[k] for k in range(n)], dtype=bool)
    parts = []
    for mode, pre in (("any", "any"), ("ordered", "ord")):
        reached = wide[[f"{pre}{k}" for k in range(n)]].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            nxt = np.full(reached.shape, np.nan)
            nxt[:, :-1] = reached[:, 1:] / reached[:, :-1]
            nxt[:, last] = np.nan
            nxt[reached == 0] = np.nan
            first = reached[:, first_of]
            ffr = np.where(first == 0, np.nan, reached / np.where(first == 0, 1, first))
        m = len(wide)
        parts.append(
            pd.DataFrame(
                {
                    "mode": mode,
                    "dimension": np.repeat(wide["dimension"].to_numpy(), n),
                    "dimension_value": np.repeat(wide["dimension_value"].to_numpy(), n),
                    "stage": np.tile([s for s, *_ in steps], m),
                    "stage_index": np.tile([i for _, _, i, _ in steps], m),
                    "reached": reached.reshape(-1),
                    "next_stage_rate": nxt.reshape(-1),
                    "from_first_rate": ffr.reshape(-1),
                }
            )
        )
    r = pd.concat(parts, ignore_index=True)
    r["dimension_value"] = r["dimension_value"].astype("string")
    return ctx.plain(r, None)


@timed
def stage_duration(ctx):
    v = visits(ctx)
    v = v.assign(cdays=v["days"].where(v["completed"]), censored=~v["completed"])

    def agg(g):
        r = g.agg(
            visits=("days", "size"),
            completed=("completed", "sum"),
            censored=("censored", "sum"),
            mean_days=("cdays", "mean"),
        )
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
    return ctx.plain(r, None)


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
    owner_val = (
        pd.Series(owners, dtype="string").take(ow).reset_index(drop=True)
        if len(owners)
        else pd.Series([], dtype="string")
    )
    return pd.DataFrame(
        {
            "gid": gid,
            "stage": pd.Series(stages).take(st).reset_index(drop=True),
            "dimension": pd.Series(["owner_id", "all"], dtype="str")
            .take(is_all.astype(np.intp))
            .reset_index(drop=True),
            "dimension_value": owner_val.mask(is_all),
            "t_days": t_us / float(US_PER_DAY),
            "at_risk": at_risk.astype(np.int64),
            "events": d.astype(np.int64),
            "censored": (n - d).astype(np.int64),
            "survival": s,
            "ci_low": lo,
            "ci_high": hi,
        }
    )


@timed
def stage_duration_survival(ctx):
    km = _km(ctx).drop(columns="gid")
    km["dimension_value"] = km["dimension_value"].astype("string")
    return ctx.plain(km, None)


@timed
def pipeline_snapshot(ctx):
    s = snaps(ctx)
    op = open_at_snaps(ctx)
    d = ctx.deals
    snap = op["snap"].to_numpy()
    deal = op["deal"].to_numpy()
    amount = d["amount_base"].to_numpy(np.float64)[deal]
    created = us(d["created_at"]).to_numpy()[deal]
    prob = op["stage"].map(ctx.pipeline.probability).to_numpy(np.float64)
    # The pipeline: the stage's at the snapshot, else the deal's at as_of.
    pipe = ctx.stage_pipeline(op["stage"]).astype(object)
    pipe = pipe.where(pipe.notna(), pd.Series(d["pipeline"].to_numpy(dtype=object)[deal], index=pipe.index))
    x = pd.DataFrame(
        {
            "snap": snap,
            "pipeline": pipe,
            "stage": op["stage"],
            "amount": amount,
            "weighted": amount * prob,
            "age": (s["t_us"].to_numpy()[snap] - created) / float(US_PER_DAY),
        }
    )
    a = (
        x.groupby(["snap", "pipeline", "stage"], dropna=False, sort=False)
        .agg(
            open_deals=("amount", "size"),
            amount=("amount", "sum"),
            weighted_amount=("weighted", "sum"),
            mean_age_days=("age", "mean"),
        )
        .reset_index()
    )
    a.loc[a["stage"].isna(), "weighted_amount"] = np.nan
    open_stages = ctx.pipeline.open
    grid = pd.DataFrame(
        {
            "snap": np.repeat(np.arange(len(s)), len(open_stages)),
            "pipeline": np.tile(ctx.stage_pipeline(pd.Series(open_stages)).to_numpy(dtype=object), len(s)),
            "stage": np.tile(open_stages, len(s)),
        }
    )
    grid["stage"] = grid["stage"].astype(a["stage"].dtype)
    r = grid.merge(a, on=["snap", "pipeline", "stage"], how="outer")
    r["open_deals"] = r["open_deals"].fillna(0).astype(np.int64)
    r["amount"] = r["amount"].fillna(0.0)
    r["weighted_amount"] = r["weighted_amount"].where(r["open_deals"] > 0, 0.0)
    # A stage without a probability (a store's stage list may not know it): no weighted amount
    # of its open deals.
    unknown = [s for s, p in ctx.pipeline.probability.items() if p is None]
    r.loc[r["stage"].isin(unknown) & (r["open_deals"] > 0), "weighted_amount"] = np.nan
    r.insert(0, "snapshot_at", s["snapshot_at"].to_numpy()[r["snap"].to_numpy()])
    r = ctx.plain(r, r["pipeline"])
    cols = ["snapshot_at", "pipeline", "stage", "open_deals", "amount", "weighted_amount", "mean_age_days"]
    return r.drop(columns="snap")[cols]


@timed
def deal_size(ctx):
    c = closed(ctx)
    w = c[c["status"] == "won"]
    a = w["amount_base"]
    buckets = ctx.cfg.deal_size_buckets
    lo, hi = buckets[0], buckets[-1]
    w = pd.DataFrame(
        {
            "period_start": w["period_start"],
            "owner_id": w["owner_id"],
            "pipeline": w["pipeline"],
            "amount": a,
            "small": (a < lo).astype(np.int64),
            "medium": ((a >= lo) & (a < hi)).astype(np.int64),
            "large": (a >= hi).astype(np.int64),
        }
    )

    def agg(g):
        return g.agg(
            won_deals=("amount", "size"),
            mean_amount=("amount", "mean"),
            median_amount=("amount", "median"),
            small=("small", "sum"),
            medium=("medium", "sum"),
            large=("large", "sum"),
        ).reset_index()

    return by_dims(w, ["period_start"], ["owner_id", "pipeline"], agg)


def _closed(ctx):
    d = ctx.deals
    d = d[d["status"].isin(["won", "lost"])].copy()
    d["period_start"] = month_of(d["closed_at"])
    return d


@timed
def win_rate(ctx):
    d = _closed(ctx)
    d["won"] = (d["status"] == "won").astype(float)
    d["lost"] = (d["status"] == "lost").astype(float)
    d["won_amount"] = d["amount_base"].where(d["status"] == "won", 0.0)
    d["lost_amount"] = d["amount_base"].where(d["status"] == "lost", 0.0)
    parts = []
    for dim in [None, "owner_id", "source", "region", "pipeline"]:
        keys = ["period_start"] + ([dim] if dim else [])
        g = d.groupby(keys, dropna=False)[["won", "lost", "won_amount", "lost_amount"]].sum().reset_index()
        g["dimension"] = dim or "all"
        g["dimension_value"] = g[dim].astype("string") if dim else pd.Series(pd.NA, index=g.index, dtype="string")
        parts.append(g.drop(columns=[dim]) if dim else g)
    r = pd.concat(parts, ignore_index=True)
    r = r[["dimension", "dimension_value", "period_start", "won", "lost", "won_amount", "lost_amount"]]
    r["win_rate"] = ratio(r["won"], r["won"] + r["lost"])
    r["amount_win_rate"] = ratio(r["won_amount"], r["won_amount"] + r["lost_amount"])
    return r


@timed
def loss_reasons(ctx):
    d = _closed(ctx)
    d = d[d["status"] == "lost"].copy()
    d["loss_reason"] = d["loss_reason"].fillna("unspecified")
    g = (
        d.groupby(["period_start", "loss_reason"])
        .agg(lost=("opportunity_id", "size"), lost_amount=("amount_base", "sum"))
        .reset_index()
    )
    g["lost"] = g["lost"].astype(float)
    g["share"] = g["lost"] / g.groupby("period_start")["lost"].transform("sum")
    return g


@timed
def sales_cycle(ctx):
    c = closed(ctx)[["period_start", "status", "owner_id", "pipeline", "days"]].rename(columns={"status": "outcome"})

    def agg(g):
        r = g.agg(deals=("days", "size"), mean_days=("days", "mean"), median_days=("days", "median"))
        r = r.join(g["days"].quantile(0.9).rename("p90_days")).reset_index()
        r["deals"] = r["deals"].astype(float)
        return r

    return by_dims(c, ["period_start", "outcome"], ["owner_id", "pipeline"], agg)


def _month(dates):
    """Month start of a Series of datetime.date / Timestamp values, as datetime.date."""
    return pd.to_datetime(dates).dt.to_period("M").dt.start_time.dt.date


@timed
def forecast_vs_actual(ctx):
    cur = cur_period(ctx)
    # Rows per pipeline (`pk`); with several pipelines also for all of them (pk ALL, pipeline
    # null), where forecasts naming no pipeline are compared; with one, such forecasts are its.
    all_pipelines = "\x1fall"
    multi = ctx.pipeline.multi
    key = ["period_start", "owner_id", "pk"]

    f = ctx.table_all("forecasts")
    f = f[
        (f["submitted_at"] <= ctx.as_of)
        & (f["grain"] == "month")
        & ((f["category"] == "commit") | f["category"].isna())
    ]
    f = pd.DataFrame(
        {
            "owner_id": f["owner_id"],
            "period_start": _month(f["period_start"]),
            "submitted_at": f["submitted_at"],
            "amount": f["amount_base"],
            "pk": f["pipeline"].astype(object).fillna(all_pipelines if multi else ctx.pipeline.pipelines[0]),
        }
    )
    f = f[f["period_start"] <= cur]
    # Latest submission per owner and period; on a tie the larger amount (nulls last).
    f = f.sort_values(["submitted_at", "amount"], ascending=False, na_position="last", kind="stable")
    sub = f.drop_duplicates(key, keep="first")[key + ["amount"]].rename(columns={"amount": "submitted_forecast"})

    d = ctx.deals
    d = d[d["expected_close_date"].notna()]
    period = _month(d["expected_close_date"])
    d = d[(period <= cur).to_numpy()]
    period = period[(period <= cur).to_numpy()]
    # The last instant before the period starts, in microseconds since the epoch (UTC).
    t_us = pd.to_datetime(period).astype("datetime64[us]").astype("int64").to_numpy() - 1
    mask, stage = open_at(ctx, d["opportunity_id"].to_numpy(), t_us)
    # The pipeline of the stage at that instant, else the deal's at as_of.
    pipe = ctx.stage_pipeline(stage[mask]).astype(object).to_numpy()
    own = d["pipeline"].to_numpy(dtype=object)[mask]
    p = pd.DataFrame(
        {
            "period_start": period.to_numpy()[mask],
            "owner_id": d["owner_id"].to_numpy()[mask],
            "pk": np.where(pd.isna(pipe), own, pipe),
            "w": d["amount_base"].to_numpy(np.float64)[mask]
            * stage[mask].map(ctx.pipeline.probability).fillna(0.0).to_numpy(),
        }
    )

    def per_pipeline(x, value, name):
        parts = [x]
        if multi:
            parts.append(x.assign(pk=all_pipelines))
        x = pd.concat(parts, ignore_index=True)
        return x.groupby(key, dropna=False, sort=False)[value].sum().rename(name).reset_index()

    pipe = per_pipeline(p, "w", "pipeline_forecast")

    c = closed(ctx)
    c = c[c["status"] == "won"]
    act = per_pipeline(c[["period_start", "owner_id", "amount_base"]].assign(pk=c["pipeline"]), "amount_base", "actual")

    k = pd.concat([sub[key], pipe[key], act[key]], ignore_index=True).drop_duplicates(ignore_index=True)
    r = k.merge(sub, on=key, how="left").merge(pipe, on=key, how="left").merge(act, on=key, how="left")
    r["pipeline_forecast"] = r["pipeline_forecast"].fillna(0.0)
    r["actual"] = r["actual"].fillna(0.0)
    s = r["submitted_forecast"]
    r["attainment"] = (r["actual"] / s).where(s.notna() & (s != 0))
    r["error"] = r["actual"] - s
    r["pipeline"] = r["pk"].where(r["pk"] != all_pipelines, None)
    cols = ["period_start", "owner_id", "pipeline", "submitted_forecast", "pipeline_forecast", "actual"]
    return r[cols + ["attainment", "error"]]


@timed
def sales_velocity(ctx):
    s = snaps(ctx)
    op = open_at_snaps(ctx)
    d = ctx.deals
    deal = op["deal"].to_numpy()
    # Open deals in the pipeline of their stage at the snapshot, else their own at as_of.
    pipe = ctx.stage_pipeline(op["stage"]).astype(object)
    pipe = pipe.where(pipe.notna(), pd.Series(d["pipeline"].to_numpy(dtype=object)[deal], index=pipe.index))
    o = pd.DataFrame(
        {
            "period_start": s["period_start"].to_numpy()[op["snap"].to_numpy()],
            "owner_id": d["owner_id"].to_numpy()[deal],
            "pipeline": pipe.to_numpy(),
        }
    )
    o = by_dims(o, ["period_start"], ["owner_id", "pipeline"], lambda g: g.size().rename("open_deals").reset_index())
    c = closed(ctx)
    won = c["status"] == "won"
    c = pd.DataFrame(
        {
            "period_start": c["period_start"],
            "owner_id": c["owner_id"],
            "pipeline": c["pipeline"],
            "won": won.astype(np.int64),
            "lost": (c["status"] == "lost").astype(np.int64),
            "won_amount": c["amount_base"].where(won),
            "won_days": c["days"].where(won),
        }
    )
    c = by_dims(
        c,
        ["period_start"],
        ["owner_id", "pipeline"],
        lambda g: g.agg(
            won=("won", "sum"),
            lost=("lost", "sum"),
            mean_won_amount=("won_amount", "mean"),
            mean_cycle_days=("won_days", "mean"),
        ).reset_index(),
    )
    key = ["period_start", "dimension", "dimension_value"]
    j = o.merge(c, on=key, how="outer")
    j["open_deals"] = j["open_deals"].fillna(0).astype(np.int64)
    n = j["won"].fillna(0) + j["lost"].fillna(0)
    j["win_rate"] = (j["won"] / n).where(n != 0)
    v = j["open_deals"] * j["win_rate"] * j["mean_won_amount"] / j["mean_cycle_days"]
    j["velocity"] = v.where(
        j["mean_cycle_days"].notna()
        & (j["mean_cycle_days"] != 0)
        & j["win_rate"].notna()
        & j["mean_won_amount"].notna()
    )
    return j[key + ["open_deals", "win_rate", "mean_won_amount", "mean_cycle_days", "velocity"]]


def deal_snapshot(ctx):
    d = ctx.deals
    ev = events(ctx)
    per = ev.groupby("deal").agg(stage_events=("stage", "size"), first_stage_at=("entered_at", "min"))
    per = per.reindex(range(len(d)))
    end = d["closed_at"].fillna(ctx.as_of)
    day = pd.Timedelta(days=1)
    open_ = (d["status"] == "open").to_numpy()
    out = pd.DataFrame(
        {
            "opportunity_id": d["opportunity_id"],
            "account_id": d["account_id"],
            "owner_id": d["owner_id"],
            "lead_id": d["lead_id"],
            "source": d["source"],
            "campaign_id": d["campaign_id"],
            "region": d["region"],
            "status": d["status"],
            "pipeline": d["pipeline"],
            "stage": d["stage"],
            "amount_base": d["amount_base"],
            "created_at": d["created_at"],
            "closed_at": d["closed_at"],
            "expected_close_date": d["expected_close_date"],
            "loss_reason": d["loss_reason"],
            "age_days": (end - d["created_at"]) / day,
            "stage_entered_at": d["stage_entered_at"],
            "days_in_stage": ((ctx.as_of - d["stage_entered_at"]) / day).where(open_),
            "stage_events": per["stage_events"].fillna(0).astype("int64").to_numpy(),
            "first_stage_at": per["first_stage_at"].to_numpy(),
        }
    ).reset_index(drop=True)
    return ctx.plain(out, out["pipeline"])


KPIS = {
    "deal_snapshot": deal_snapshot,
    "stage_funnel": stage_funnel,
    "stage_duration": stage_duration,
    "stage_duration_survival": stage_duration_survival,
    "pipeline_snapshot": pipeline_snapshot,
    "deal_size": deal_size,
    "win_rate": win_rate,
    "loss_reasons": loss_reasons,
    "sales_cycle": sales_cycle,
    "forecast_vs_actual": forecast_vs_actual,
    "sales_velocity": sales_velocity,
}
