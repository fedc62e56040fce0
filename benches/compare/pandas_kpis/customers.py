"""Customer KPIs in pandas: new_vs_existing, lost_reengagement."""

import numpy as np
import pandas as pd

from pandas_engine import month_of
from pandas_kpis._shared import timed

REENGAGE_MIN, REENGAGE_MAX, REENGAGE_LOOKAHEAD = 90, 180, 30


@timed
def new_vs_existing(ctx):
    d = ctx.deals
    won = d["status"] == "won"
    fw = d[won & d["account_id"].notna()].groupby("account_id")["closed_at"].min().rename("first_won")
    o = ctx.table_all("orders")
    o = o[(o["ordered_at"] <= ctx.as_of) & (o["paid_at"] <= ctx.as_of) & ~o["is_refund"].fillna(False).astype(bool)
          & o["account_id"].notna()]
    fp = o.groupby("account_id")["paid_at"].min().rename("first_paid")
    acc = d["account_id"]
    first_won = acc.map(fw)
    first_paid = acc.map(fp)
    existing = (first_won < d["created_at"]).fillna(False) | (first_paid < d["created_at"]).fillna(False)
    t = pd.DataFrame({"customer_type": np.where(existing.to_numpy(bool), "existing", "new"),
                      "created_period": month_of(d["created_at"]).to_numpy(),
                      "won": won.to_numpy(), "amount": d["amount_base"].to_numpy()})
    cr = t.groupby(["created_period", "customer_type"]).size().rename("deals").reset_index() \
        .rename(columns={"created_period": "period_start"})
    w = t[t["won"]].assign(period_start=month_of(d.loc[won, "closed_at"]).to_numpy())
    wn = w.groupby(["period_start", "customer_type"]).agg(won_deals=("amount", "size"), won_amount=("amount", "sum")).reset_index()
    r = cr.merge(wn, on=["period_start", "customer_type"], how="outer")
    r["deals"] = r["deals"].fillna(0).astype(np.int64)
    r["won_deals"] = r["won_deals"].fillna(0).astype(np.int64)
    r["won_amount"] = r["won_amount"].fillna(0.0)
    return r


@timed
def lost_reengagement(ctx):
    d = ctx.deals
    d = d[d["status"] == "lost"]
    lost_at = d["closed_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    frm = lost_at + pd.Timedelta(days=REENGAGE_MIN)
    until = lost_at + pd.Timedelta(days=REENGAGE_MAX)
    today = pd.Timestamp(ctx.as_of_date)
    due = (frm <= today) & (today <= until)
    upcoming = (frm > today) & (frm <= today + pd.Timedelta(days=REENGAGE_LOOKAHEAD))
    status = pd.Series(np.where(due, "due", np.where(upcoming, "upcoming", None)), index=d.index)
    keep = (due | upcoming).to_numpy()
    r = pd.DataFrame({
        "opportunity_id": d["opportunity_id"], "account_id": d["account_id"], "owner_id": d["owner_id"],
        "loss_reason": d["loss_reason"], "lost_at": lost_at.dt.date, "follow_up_from": frm.dt.date,
        "follow_up_until": until.dt.date, "status": status,
    })[keep]
    r["status"] = r["status"].astype("string")
    return r.reset_index(drop=True)


KPIS = {"new_vs_existing": new_vs_existing, "lost_reengagement": lost_reengagement}
