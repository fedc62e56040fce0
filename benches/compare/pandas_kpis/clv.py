"""Predictive CLV KPIs in pandas: clv_predictive (per customer) and clv_model (the fitted
BG/NBD and Gamma-Gamma parameters). The RFM is computed here in pandas from the orders; the
model fits and predictions are the shared numpy/scipy math of ../clv_fit.py (statistics, not KPI
logic: the DuckDB engine calls the same code on its SQL RFM)."""

import sys
import time

import numpy as np
import pandas as pd

import clv_fit
from pandas_engine import US_PER_DAY
from pandas_kpis._shared import cached, timed, us
from pandas_kpis._shared2 import columns


@cached("clv_rfm")
def rfm(ctx):
    """One row per account with a non-refund order at or before as_of (sorted by account_id):
    frequency = purchase days - 1, recency and t in weeks, monetary_value = mean spend of the
    repeat days (spend in whole micro-units per order, summed as integers)."""
    o = columns(ctx, "orders", ["account_id", "ordered_at", "is_refund", "amount_base"])
    o = o[(o["ordered_at"] <= ctx.as_of) & ~o["is_refund"].fillna(False).astype(bool).to_numpy()]
    amt = o["amount_base"].to_numpy(np.float64) * 1e6
    micros = np.sign(amt) * np.floor(np.abs(amt) + 0.5)  # DuckDB's ROUND: half away from zero
    d = pd.DataFrame({"account_id": o["account_id"].to_numpy(), "day": us(o["ordered_at"]).to_numpy() // US_PER_DAY,
                      "micros": pd.array(micros, dtype="Int64")})
    d = d.groupby(["account_id", "day"], sort=True, dropna=False)["micros"].sum(min_count=1).reset_index()
    g = d.groupby("account_id", sort=False, dropna=False)
    first = g["day"].transform("min").to_numpy()
    d["repeat"] = d["micros"].where(d["day"].to_numpy() > first)
    c = g.agg(first=("day", "min"), last=("day", "max"), n=("day", "size")).join(
        d.groupby("account_id", sort=False, dropna=False)["repeat"].sum(min_count=1)).reset_index()
    today = int(np.datetime64(ctx.as_of_date, "D").astype(np.int64))
    n = c["n"].to_numpy()
    spend = c["repeat"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mv = np.where(n > 1, spend / 1e6 / (n - 1), np.nan)
    return pd.DataFrame({
        "account_id": c["account_id"].astype("string"),
        "frequency": (n - 1).astype(np.int64),
        "recency": (c["last"].to_numpy() - c["first"].to_numpy()) / 7.0,
        "t": (today - c["first"].to_numpy()) / 7.0,
        "monetary_value": mv,
    })


@cached("clv_fits")
def fits(ctx):
    r = rfm(ctx)
    t0 = time.perf_counter()
    f = clv_fit.fit_models(r["frequency"], r["recency"], r["t"], r["monetary_value"])
    print(f"pandas-kpi   clv fits (numpy/scipy) {time.perf_counter() - t0:.3f} s", file=sys.stderr)
    return f


@timed
def clv_predictive(ctx):
    r = rfm(ctx).copy()
    pred = clv_fit.predict(fits(ctx), r["frequency"], r["recency"], r["t"], r["monetary_value"])
    for c in clv_fit.PREDICTIVE_COLUMNS:
        r[c] = pred[c]
    return r


@timed
def clv_model(ctx):
    m = pd.DataFrame(clv_fit.model_columns(fits(ctx)))
    for c in ("value", "std_err", "log_likelihood"):
        m[c] = m[c].astype(np.float64)
    m["n_customers"] = m["n_customers"].astype(np.int64)
    return m


KPIS = {"clv_predictive": clv_predictive, "clv_model": clv_model}
