"""Closed-deal KPIs in pandas: win_rate, loss_reasons, sales_cycle."""

import pandas as pd

from pandas_engine import month_of, ratio
from pandas_kpis._shared import by_dims, closed, timed


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
    for dim in [None, "owner_id", "source", "region"]:
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
    g = d.groupby(["period_start", "loss_reason"]).agg(lost=("opportunity_id", "size"), lost_amount=("amount_base", "sum")).reset_index()
    g["lost"] = g["lost"].astype(float)
    g["share"] = g["lost"] / g.groupby("period_start")["lost"].transform("sum")
    return g


@timed
def sales_cycle(ctx):
    c = closed(ctx)[["period_start", "status", "owner_id", "days"]].rename(columns={"status": "outcome"})

    def agg(g):
        r = g.agg(deals=("days", "size"), mean_days=("days", "mean"), median_days=("days", "median"))
        r = r.join(g["days"].quantile(0.9).rename("p90_days")).reset_index()
        r["deals"] = r["deals"].astype(float)
        return r

    return by_dims(c, ["period_start", "outcome"], ["owner_id"], agg)


KPIS = {"win_rate": win_rate, "loss_reasons": loss_reasons, "sales_cycle": sales_cycle}
