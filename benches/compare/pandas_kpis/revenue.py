"""Revenue KPIs in pandas: revenue (per month, overall and by region / channel),
clv_historical (per account), clv_segments (CLV by cohort and lead source) and retention (by
acquisition cohort)."""

import numpy as np
import pandas as pd

from pandas_kpis._shared import by_dims, timed
from pandas_kpis._shared2 import complete, cur_month, month_dates, rev_clv, rev_orders


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
    x = pd.DataFrame({
        "m": o["m"], "region": o["region"], "channel": o["channel"],
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
    })
    sums = ["orders", "revenue", "paid", "unpaid", "overdue", "refunds", "refunded", "new_customer_revenue",
            "recurring_revenue"]

    def agg(g):  # g: grouped by month (and dimension)
        r = g[sums].sum()
        r["customers"] = g["customer"].nunique()
        return r.reset_index()

    r = by_dims(x, ["m"], ["region", "channel"], agg)
    for c in ("orders", "refunds", "customers"):
        r[c] = r[c].astype(np.int64)
    r["revenue_per_customer"] = (r["revenue"] / r["customers"]).where(r["customers"] != 0)
    r.insert(0, "period_start", month_dates(r.pop("m")))
    return r[["period_start", "dimension", "dimension_value", "orders", "revenue", "paid", "unpaid", "overdue",
              "refunds", "refunded", "customers", "revenue_per_customer", "new_customer_revenue",
              "recurring_revenue"]]


@timed
def clv_historical(ctx):
    return rev_clv(ctx).drop(columns="m")


@timed
def clv_segments(ctx):
    c = rev_clv(ctx)[["cohort_start", "source", "revenue"]]

    def agg(g):
        if isinstance(g, pd.DataFrame):  # the `all` row: no group key
            v = g["revenue"]
            return pd.DataFrame({"customers": [len(v)], "mean_clv": [v.mean()], "median_clv": [v.median()],
                                 "total_revenue": [v.sum()]})
        return g.agg(customers=("revenue", "size"), mean_clv=("revenue", "mean"), median_clv=("revenue", "median"),
                     total_revenue=("revenue", "sum")).reset_index()

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
    return pd.DataFrame({
        "cohort_start": month_dates(grid["cohort"].to_numpy()),
        "k": k.astype(np.int64),
        "period_start": month_dates(m),
        "cohort_size": size.astype(np.int64),
        # Cells of a month not yet over at as_of are null; churn needs k > 0 (and actives at k - 1).
        "active": pd.Series(n_active, dtype="Int64").where(obs),
        "retention_rate": pd.Series(retention_rate).where(obs),
        "churned": pd.Series(n_churned, dtype="Int64").where(obs & (k > 0)),
        "churn_rate": pd.Series(churn_rate).where(obs & (k > 0) & (prev > 0)),
    })

KPIS = {
    "revenue": revenue,
    "clv_historical": clv_historical,
    "clv_segments": clv_segments,
    "retention": retention,
}
