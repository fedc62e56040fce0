"""Customers and revenue KPIs in pandas: new_vs_existing, lost_reengagement, revenue (per
month, overall and by region / channel), clv_historical (per account), clv_segments (CLV by
cohort and lead source), retention (by acquisition cohort), and the predictive CLV KPIs
clv_predictive (per customer) and clv_model (the fitted BG/NBD and Gamma-Gamma parameters).

The predictive CLV's RFM is computed here in pandas from the orders; the model fits and
predictions are the shared numpy/scipy math of reference/clv_fit.py (statistics, not KPI
logic: the DuckDB references call the same code on their SQL RFM).
"""

import sys
import time

import numpy as np
import pandas as pd

from .. import clv_fit
from ..common import REENGAGEMENT_LOOKAHEAD_DAYS, US_PER_DAY
from .context import as_of_us, by_dims, cached, columns, month_of, timed, us
from .months import complete, cur_month, dates, days_between_us, month_dates, month_idx


@timed
def new_vs_existing(ctx):
    d = ctx.deals
    won = d["status"] == "won"
    fw = d[won & d["account_id"].notna()].groupby("account_id")["closed_at"].min().rename("first_won")
    o = ctx.table_all("orders")
    o = o[
        (o["ordered_at"] <= ctx.as_of)
        & (o["paid_at"] <= ctx.as_of)
        & ~o["is_refund"].fillna(False).astype(bool)
        & o["account_id"].notna()
    ]
    fp = o.groupby("account_id")["paid_at"].min().rename("first_paid")
    acc = d["account_id"]
    first_won = acc.map(fw)
    first_paid = acc.map(fp)
    existing = (first_won < d["created_at"]).fillna(False) | (first_paid < d["created_at"]).fillna(False)
    t = pd.DataFrame(
        {
            "customer_type": np.where(existing.to_numpy(bool), "existing", "new"),
            "created_period": month_of(d["created_at"]).to_numpy(),
            "won": won.to_numpy(),
            "amount": d["amount_base"].to_numpy(),
        }
    )
    cr = (
        t.groupby(["created_period", "customer_type"])
        .size()
        .rename("deals")
        .reset_index()
        .rename(columns={"created_period": "period_start"})
    )
    w = t[t["won"]].assign(period_start=month_of(d.loc[won, "closed_at"]).to_numpy())
    wn = (
        w.groupby(["period_start", "customer_type"])
        .agg(won_deals=("amount", "size"), won_amount=("amount", "sum"))
        .reset_index()
    )
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
    frm = lost_at + pd.Timedelta(days=ctx.cfg.reengagement_min_days)
    until = lost_at + pd.Timedelta(days=ctx.cfg.reengagement_max_days)
    today = pd.Timestamp(ctx.as_of_date)
    due = (frm <= today) & (today <= until)
    upcoming = (frm > today) & (frm <= today + pd.Timedelta(days=REENGAGEMENT_LOOKAHEAD_DAYS))
    status = pd.Series(np.where(due, "due", np.where(upcoming, "upcoming", None)), index=d.index)
    keep = (due | upcoming).to_numpy()
    r = pd.DataFrame(
        {
            "opportunity_id": d["opportunity_id"],
            "account_id": d["account_id"],
            "owner_id": d["owner_id"],
            "loss_reason": d["loss_reason"],
            "lost_at": lost_at.dt.date,
            "follow_up_from": frm.dt.date,
            "follow_up_until": until.dt.date,
            "status": status,
        }
    )[keep]
    r["status"] = r["status"].astype("string")
    return r.reset_index(drop=True)


@cached("rev_orders")
def rev_orders(ctx):
    """Orders at or before as_of as the revenue KPIs read them: account_id, region, channel,
    refund (bool), amt (a refund is -|amount_base|), paid (paid_at at or before as_of),
    overdue (not paid, due_at before as_of), t_us (ordered_at), m (month of ordered_at)."""
    o = columns(
        ctx,
        "orders",
        ["account_id", "ordered_at", "region", "channel", "is_refund", "paid_at", "due_at", "amount_base"],
    )
    o = o[o["ordered_at"] <= ctx.as_of].reset_index(drop=True)
    refund = o["is_refund"].fillna(False).astype(bool).to_numpy()
    amount = o["amount_base"].to_numpy(np.float64)
    paid = (o["paid_at"] <= ctx.as_of).to_numpy()
    return pd.DataFrame(
        {
            "account_id": o["account_id"],
            "region": o["region"],
            "channel": o["channel"],
            "refund": refund,
            "amt": np.where(refund, -np.abs(amount), amount),
            "paid": paid,
            "overdue": ~paid & (o["due_at"] < ctx.as_of).to_numpy(),
            "t_us": us(o["ordered_at"]).to_numpy(),
            "m": month_idx(o["ordered_at"]),
        }
    )


@cached("rev_clv")
def rev_clv(ctx):
    """clv_historical's rows (one per account with a non-refund order at or before as_of), with
    the first order's month `m` alongside cohort_start."""
    o = rev_orders(ctx)
    buy = ~o["refund"]
    t = o["t_us"].where(buy)  # non-refund order times (float: exact below 2**53 us)
    c = (
        pd.DataFrame({"account_id": o["account_id"], "t": t, "buy": buy, "amt": o["amt"]})
        .groupby("account_id", sort=False, dropna=False)
        .agg(
            first_us=("t", "min"),
            last_us=("t", "max"),
            orders=("buy", "sum"),
            revenue=("amt", "sum"),
            amounts=("amt", "count"),
        )
    )
    c = c[c["orders"] > 0].reset_index()
    c["revenue"] = c["revenue"].where(c["amounts"] > 0)  # SQL: the sum of no amount is null
    c["first_us"] = c["first_us"].astype(np.int64)
    c["last_us"] = c["last_us"].astype(np.int64)
    first = c["first_us"].to_numpy().astype("datetime64[us]")
    m = first.astype("datetime64[M]").astype(np.int64)
    src = first_lead_source(ctx)
    return pd.DataFrame(
        {
            "account_id": c["account_id"],
            "first_order_date": dates(first),
            "last_order_date": dates(c["last_us"].to_numpy().astype("datetime64[us]")),
            "orders": c["orders"].astype(np.int64),
            "revenue": c["revenue"],
            "mean_order_value": c["revenue"] / c["orders"],
            "tenure_days": days_between_us(c["first_us"].to_numpy(), as_of_us(ctx)),
            "cohort_start": month_dates(m),
            "source": c["account_id"].map(src).astype("string"),
            "m": m,
        }
    )


def first_lead_source(ctx):
    """Source of each account's first converted lead (converted at or before as_of; earliest
    converted_at, then created_at, then lead_id), as a Series indexed by account_id."""
    l = ctx.table("leads", "created_at")
    l = l.loc[
        (l["converted_at"] <= ctx.as_of) & l["account_id"].notna(),
        ["account_id", "converted_at", "created_at", "lead_id", "source"],
    ]
    l = l.sort_values(["converted_at", "created_at", "lead_id"], kind="stable")
    return l.drop_duplicates("account_id").set_index("account_id")["source"]


@timed
def revenue(ctx):
    o = rev_orders(ctx)
    refund = o["refund"].to_numpy()
    buy = ~refund
    amt = o["amt"]
    # New-customer revenue: rows (refunds too) in the month of their account's first order.
    first_m = o["m"].where(buy).groupby(o["account_id"]).transform("min")
    is_new = (first_m == o["m"]).to_numpy()
    unpaid = buy & ~o["paid"].to_numpy()
    x = pd.DataFrame(
        {
            "m": o["m"],
            "region": o["region"],
            "channel": o["channel"],
            "orders": buy.astype(np.int64),
            "revenue": amt,
            "paid": amt.where(buy & o["paid"].to_numpy()),
            "unpaid": amt.where(unpaid),
            "overdue": amt.where(unpaid & o["overdue"].to_numpy()),
            "refunds": refund.astype(np.int64),
            "refunded": -amt.where(refund),
            "customer": o["account_id"].where(buy),
            "new_customer_revenue": amt.where(is_new),
            "recurring_revenue": amt.where(~is_new),
        }
    )
    sums = [
        "orders",
        "revenue",
        "paid",
        "unpaid",
        "overdue",
        "refunds",
        "refunded",
        "new_customer_revenue",
        "recurring_revenue",
    ]

    def agg(g):  # g: grouped by month (and dimension)
        r = g[sums].sum()
        r["customers"] = g["customer"].nunique()
        return r.reset_index()

    r = by_dims(x, ["m"], ["region", "channel"], agg)
    for c in ("orders", "refunds", "customers"):
        r[c] = r[c].astype(np.int64)
    r["revenue_per_customer"] = (r["revenue"] / r["customers"]).where(r["customers"] != 0)
    r.insert(0, "period_start", month_dates(r.pop("m")))
    return r[
        [
            "period_start",
            "dimension",
            "dimension_value",
            "orders",
            "revenue",
            "paid",
            "unpaid",
            "overdue",
            "refunds",
            "refunded",
            "customers",
            "revenue_per_customer",
            "new_customer_revenue",
            "recurring_revenue",
        ]
    ]


@timed
def clv_historical(ctx):
    return rev_clv(ctx).drop(columns="m")


@timed
def clv_segments(ctx):
    c = rev_clv(ctx)[["cohort_start", "source", "revenue"]]

    def agg(g):
        if isinstance(g, pd.DataFrame):  # the `all` row: no group key
            v = g["revenue"]
            return pd.DataFrame(
                {"customers": [len(v)], "mean_clv": [v.mean()], "median_clv": [v.median()], "total_revenue": [v.sum()]}
            )
        return g.agg(
            customers=("revenue", "size"),
            mean_clv=("revenue", "mean"),
            median_clv=("revenue", "median"),
            total_revenue=("revenue", "sum"),
        ).reset_index()

    r = by_dims(c, [], ["cohort_start", "source"], agg)
    r = r[r["customers"] > 0].reset_index(drop=True)
    r["customers"] = r["customers"].astype(np.int64)
    return r


@timed
def retention(ctx):
    # Acquired by the first paid non-refund order; active afterwards in every month with a
    # non-refund order, paid or not.
    o = rev_orders(ctx)
    o = o[~o["refund"]]
    acc = pd.factorize(o["account_id"])[0]
    m = o["m"].to_numpy()
    keep = acc >= 0  # a null account is nobody's activity
    cohort_of = np.full(int(acc.max()) + 1 if len(acc) else 0, np.iinfo(np.int64).max, dtype=np.int64)
    paid = keep & o["paid"].to_numpy()
    np.minimum.at(cohort_of, acc[paid], m[paid])
    keep[keep] = cohort_of[acc[keep]] <= m[keep]
    # Distinct (account, month) pairs as one packed int64 key, sorted by account then month.
    span = int(m.max()) + 2 if len(m) else 1
    key = np.unique(acc[keep].astype(np.int64) * span + m[keep])
    a = pd.DataFrame({"acc": key // span, "m": key % span})
    a["cohort"] = a.groupby("acc")["m"].transform("min")
    a["k"] = a["m"] - a["cohort"]
    # Churned in month m + 1: active in m, not in m + 1 (the next pair is not the account's m + 1).
    left = np.ones(len(key), dtype=bool)
    left[:-1] = key[1:] != key[:-1] + 1
    cur = cur_month(ctx)

    sizes = a.drop_duplicates("acc").groupby("cohort").size()
    cohort = sizes.index.to_numpy()
    n_months = cur - cohort + 1
    grid = pd.DataFrame({"cohort": np.repeat(cohort, n_months), "cohort_size": np.repeat(sizes.to_numpy(), n_months)})
    grid["k"] = np.arange(len(grid)) - np.repeat(np.cumsum(n_months) - n_months, n_months)
    active = a.groupby(["cohort", "k"]).size().rename("n_active")
    churned = a[left].assign(k=lambda d: d["k"] + 1).groupby(["cohort", "k"]).size().rename("n_churned")
    grid = grid.join(active, on=["cohort", "k"]).join(churned, on=["cohort", "k"])
    grid[["n_active", "n_churned"]] = grid[["n_active", "n_churned"]].fillna(0).astype(np.int64)
    # Active in the previous month of the same cohort (k - 1); none before k = 0.
    prev = grid.groupby("cohort")["n_active"].shift(1).fillna(0).to_numpy()

    m = grid["cohort"].to_numpy() + grid["k"].to_numpy()
    obs = complete(ctx, m)
    k = grid["k"].to_numpy()
    size = grid["cohort_size"].to_numpy()
    n_active = grid["n_active"].to_numpy()
    n_churned = grid["n_churned"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        retention_rate = n_active / size
        churn_rate = n_churned / prev
    return pd.DataFrame(
        {
            "cohort_start": month_dates(grid["cohort"].to_numpy()),
            "k": k.astype(np.int64),
            "period_start": month_dates(m),
            "cohort_size": size.astype(np.int64),
            # Cells of a month not yet over at as_of are null; churn needs k > 0 (and actives at k - 1).
            "active": pd.Series(n_active, dtype="Int64").where(obs),
            "retention_rate": pd.Series(retention_rate).where(obs),
            "churned": pd.Series(n_churned, dtype="Int64").where(obs & (k > 0)),
            "churn_rate": pd.Series(churn_rate).where(obs & (k > 0) & (prev > 0)),
        }
    )


@cached("clv_rfm")
def rfm(ctx):
    """One row per account with a non-refund order at or before as_of (sorted by account_id):
    frequency = purchase days - 1, recency and t in the config's time unit, monetary_value =
    mean spend of the repeat days (spend in whole micro-units per order, summed as integers)."""
    clv_fit.require_supported(ctx.cfg, "reference.pandas")
    unit = ctx.cfg.clv_unit_days
    o = columns(ctx, "orders", ["account_id", "ordered_at", "is_refund", "amount_base"])
    o = o[(o["ordered_at"] <= ctx.as_of) & ~o["is_refund"].fillna(False).astype(bool).to_numpy()]
    amt = o["amount_base"].to_numpy(np.float64) * 1e6
    micros = np.sign(amt) * np.floor(np.abs(amt) + 0.5)  # DuckDB's ROUND: half away from zero
    d = pd.DataFrame(
        {
            "account_id": o["account_id"].to_numpy(),
            "day": us(o["ordered_at"]).to_numpy() // US_PER_DAY,
            "micros": pd.array(micros, dtype="Int64"),
        }
    )
    d = d.groupby(["account_id", "day"], sort=True, dropna=False)["micros"].sum(min_count=1).reset_index()
    g = d.groupby("account_id", sort=False, dropna=False)
    first = g["day"].transform("min").to_numpy()
    d["repeat"] = d["micros"].where(d["day"].to_numpy() > first)
    c = (
        g.agg(first=("day", "min"), last=("day", "max"), n=("day", "size"))
        .join(d.groupby("account_id", sort=False, dropna=False)["repeat"].sum(min_count=1))
        .reset_index()
    )
    today = int(np.datetime64(ctx.as_of_date, "D").astype(np.int64))
    n = c["n"].to_numpy()
    spend = c["repeat"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mv = np.where(n > 1, spend / 1e6 / (n - 1), np.nan)
    return pd.DataFrame(
        {
            "account_id": c["account_id"].astype("string"),
            "frequency": (n - 1).astype(np.int64),
            "recency": (c["last"].to_numpy() - c["first"].to_numpy()) / unit,
            "t": (today - c["first"].to_numpy()) / unit,
            "monetary_value": mv,
        }
    )


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
    pred = clv_fit.predict(fits(ctx), r["frequency"], r["recency"], r["t"], r["monetary_value"], ctx.cfg)
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


KPIS = {
    "new_vs_existing": new_vs_existing,
    "lost_reengagement": lost_reengagement,
    "revenue": revenue,
    "clv_historical": clv_historical,
    "clv_segments": clv_segments,
    "retention": retention,
    "clv_predictive": clv_predictive,
    "clv_model": clv_model,
}
