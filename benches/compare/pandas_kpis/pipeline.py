"""Pipeline KPIs in pandas: pipeline_snapshot, deal_size."""

import numpy as np
import pandas as pd

from pandas_engine import US_PER_DAY
from pandas_kpis._shared import NON_TERMINAL, PROB, by_dims, closed, open_at_snaps, snaps, timed, us

BUCKETS = (10000.0, 50000.0)


@timed
def pipeline_snapshot(ctx):
    s = snaps(ctx)
    op = open_at_snaps(ctx)
    d = ctx.deals
    snap = op["snap"].to_numpy()
    deal = op["deal"].to_numpy()
    amount = d["amount_base"].to_numpy(np.float64)[deal]
    created = us(d["created_at"]).to_numpy()[deal]
    prob = op["stage"].map(PROB).to_numpy(np.float64)
    x = pd.DataFrame({
        "snap": snap,
        "stage": op["stage"],
        "amount": amount,
        "weighted": amount * prob,
        "age": (s["t_us"].to_numpy()[snap] - created) / float(US_PER_DAY),
    })
    a = x.groupby(["snap", "stage"], dropna=False, sort=False).agg(
        open_deals=("amount", "size"), amount=("amount", "sum"), weighted_amount=("weighted", "sum"),
        mean_age_days=("age", "mean")).reset_index()
    a.loc[a["stage"].isna(), "weighted_amount"] = np.nan
    grid = pd.DataFrame({"snap": np.repeat(np.arange(len(s)), len(NON_TERMINAL)),
                         "stage": np.tile(NON_TERMINAL, len(s))})
    grid["stage"] = grid["stage"].astype(a["stage"].dtype)
    r = grid.merge(a, on=["snap", "stage"], how="outer")
    r["open_deals"] = r["open_deals"].fillna(0).astype(np.int64)
    r["amount"] = r["amount"].fillna(0.0)
    r["weighted_amount"] = r["weighted_amount"].where(r["open_deals"] > 0, 0.0)
    r.insert(0, "snapshot_at", s["snapshot_at"].to_numpy()[r["snap"].to_numpy()])
    return r.drop(columns="snap")[["snapshot_at", "stage", "open_deals", "amount", "weighted_amount", "mean_age_days"]]


@timed
def deal_size(ctx):
    c = closed(ctx)
    w = c[c["status"] == "won"]
    a = w["amount_base"]
    lo, hi = BUCKETS[0], BUCKETS[-1]
    w = pd.DataFrame({"period_start": w["period_start"], "owner_id": w["owner_id"], "amount": a,
                      "small": (a < lo).astype(np.int64), "medium": ((a >= lo) & (a < hi)).astype(np.int64),
                      "large": (a >= hi).astype(np.int64)})

    def agg(g):
        return g.agg(won_deals=("amount", "size"), mean_amount=("amount", "mean"), median_amount=("amount", "median"),
                     small=("small", "sum"), medium=("medium", "sum"), large=("large", "sum")).reset_index()

    return by_dims(w, ["period_start"], ["owner_id"], agg)


KPIS = {"pipeline_snapshot": pipeline_snapshot, "deal_size": deal_size}
