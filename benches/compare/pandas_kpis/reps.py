"""Rep KPIs in pandas: open_deals_per_rep, sales_velocity."""

import numpy as np
import pandas as pd

from pandas_engine import US_PER_DAY
from pandas_kpis._shared import as_of_us, by_dims, closed, open_at_snaps, snaps, timed, us

STALE_AFTER_DAYS = 30


@timed
def open_deals_per_rep(ctx):
    d = ctx.deals
    d = d[d["status"] == "open"]
    now = as_of_us(ctx)
    last_change = d["stage_entered_at"].fillna(d["created_at"])
    x = pd.DataFrame({
        "owner_id": d["owner_id"],
        "amount": d["amount_base"],
        "age": (now - us(d["created_at"])) / float(US_PER_DAY),
        "stale": ((now - us(last_change)) / float(US_PER_DAY) >= STALE_AFTER_DAYS).astype(np.int64),
    })
    reps = ctx.table_all("reps")
    reps = reps[["rep_id", "team"]].drop_duplicates().rename(columns={"rep_id": "owner_id"})
    reps = reps[reps["owner_id"].notna()]  # a null owner matches no rep
    x = x.merge(reps, on="owner_id", how="left")
    r = x.groupby(["owner_id", "team"], dropna=False, sort=False).agg(
        open_deals=("amount", "size"), amount=("amount", "sum"), mean_age_days=("age", "mean"),
        stale_deals=("stale", "sum")).reset_index()
    team_total = r.groupby("team", dropna=False)["open_deals"].transform("sum")
    r["team_share"] = (r["open_deals"] / team_total).where(r["team"].notna())
    return r[["owner_id", "team", "open_deals", "amount", "mean_age_days", "stale_deals", "team_share"]]


@timed
def sales_velocity(ctx):
    s = snaps(ctx)
    op = open_at_snaps(ctx)
    d = ctx.deals
    o = pd.DataFrame({"period_start": s["period_start"].to_numpy()[op["snap"].to_numpy()],
                      "owner_id": d["owner_id"].to_numpy()[op["deal"].to_numpy()]})
    o = by_dims(o, ["period_start"], ["owner_id"],
                lambda g: g.size().rename("open_deals").reset_index())
    c = closed(ctx)
    won = c["status"] == "won"
    c = pd.DataFrame({"period_start": c["period_start"], "owner_id": c["owner_id"],
                      "won": won.astype(np.int64), "lost": (c["status"] == "lost").astype(np.int64),
                      "won_amount": c["amount_base"].where(won), "won_days": c["days"].where(won)})
    c = by_dims(c, ["period_start"], ["owner_id"], lambda g: g.agg(
        won=("won", "sum"), lost=("lost", "sum"), mean_won_amount=("won_amount", "mean"),
        mean_cycle_days=("won_days", "mean")).reset_index())
    key = ["period_start", "dimension", "dimension_value"]
    j = o.merge(c, on=key, how="outer")
    j["open_deals"] = j["open_deals"].fillna(0).astype(np.int64)
    n = j["won"].fillna(0) + j["lost"].fillna(0)
    j["win_rate"] = (j["won"] / n).where(n != 0)
    v = j["open_deals"] * j["win_rate"] * j["mean_won_amount"] / j["mean_cycle_days"]
    j["velocity"] = v.where(j["mean_cycle_days"].notna() & (j["mean_cycle_days"] != 0)
                            & j["win_rate"].notna() & j["mean_won_amount"].notna())
    return j[key + ["open_deals", "win_rate", "mean_won_amount", "mean_cycle_days", "velocity"]]


KPIS = {"open_deals_per_rep": open_deals_per_rep, "sales_velocity": sales_velocity}
