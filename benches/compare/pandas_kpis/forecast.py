"""Forecast KPIs in pandas: forecast_vs_actual."""

import numpy as np
import pandas as pd

from pandas_kpis._shared import PROB, closed, cur_period, open_at, timed


def _month(dates):
    """Month start of a Series of datetime.date / Timestamp values, as datetime.date."""
    return pd.to_datetime(dates).dt.to_period("M").dt.start_time.dt.date


@timed
def forecast_vs_actual(ctx):
    cur = cur_period(ctx)
    key = ["period_start", "owner_id"]

    f = ctx.table_all("forecasts")
    f = f[(f["submitted_at"] <= ctx.as_of) & (f["grain"] == "month")
          & ((f["category"] == "commit") | f["category"].isna())]
    f = pd.DataFrame({"owner_id": f["owner_id"], "period_start": _month(f["period_start"]),
                      "submitted_at": f["submitted_at"], "amount": f["amount_base"]})
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
    p = pd.DataFrame({"period_start": period.to_numpy()[mask], "owner_id": d["owner_id"].to_numpy()[mask],
                      "w": d["amount_base"].to_numpy(np.float64)[mask] * stage[mask].map(PROB).fillna(0.0).to_numpy()})
    pipe = p.groupby(key, dropna=False, sort=False)["w"].sum().rename("pipeline_forecast").reset_index()

    c = closed(ctx)
    c = c[c["status"] == "won"]
    act = c.groupby(key, dropna=False, sort=False)["amount_base"].sum(min_count=1).rename("actual").reset_index()

    k = pd.concat([sub[key], pipe[key], act[key]], ignore_index=True).drop_duplicates(ignore_index=True)
    r = k.merge(sub, on=key, how="left").merge(pipe, on=key, how="left").merge(act, on=key, how="left")
    r["pipeline_forecast"] = r["pipeline_forecast"].fillna(0.0)
    r["actual"] = r["actual"].fillna(0.0)
    s = r["submitted_forecast"]
    r["attainment"] = (r["actual"] / s).where(s.notna() & (s != 0))
    r["error"] = r["actual"] - s
    return r[key + ["submitted_forecast", "pipeline_forecast", "actual", "attainment", "error"]]


KPIS = {"forecast_vs_actual": forecast_vs_actual}
