"""Trend KPIs in pandas: trends (monthly headline series with previous-period, prior-year and
trailing-12 comparisons)."""

import numpy as np
import pandas as pd

from .context import columns, timed
from .deal_history import closed
from .months import complete, cur_month, month_dates, month_idx

YEAR = 12  # periods per year at month grain


def _count(m, first, n, weights=None):
    """Per month of the grid (first .. first + n - 1): count (or sum of weights) of `m`."""
    return np.bincount(np.asarray(m) - first, weights=weights, minlength=n)[:n].astype(np.float64)


def _trailing_distinct(acc, m, first, n):
    """Per grid month g: distinct accounts with a row in months g - 11 .. g, from distinct
    (account, month) pairs. Each pair covers the months up to 11 later, cut where the account's next pair starts, so
    an account's cover intervals are disjoint: +1 / -1 at their bounds, then a running sum."""
    p = pd.DataFrame({"acc": acc, "m": m}).sort_values(["acc", "m"], kind="stable")
    acc, m = p["acc"].to_numpy(), p["m"].to_numpy()
    end = m + YEAR  # exclusive
    same = np.zeros(len(m), dtype=bool)
    same[:-1] = acc[1:] == acc[:-1]
    nxt = np.empty_like(m)
    nxt[:-1] = m[1:]
    end = np.where(same, np.minimum(end, nxt), end)
    diff = np.bincount(m - first, minlength=n + 1) - np.bincount(np.minimum(end - first, n), minlength=n + 1)
    return np.cumsum(diff)[:n].astype(np.float64)


@timed
def trends(ctx):
    leads = ctx.table("leads", "created_at")
    nl_m = month_idx(leads["created_at"])
    q = leads["qualified_at"] <= ctx.as_of
    ql_m = month_idx(leads.loc[q, "qualified_at"])

    c = closed(ctx)
    cl_m = month_idx(c["closed_at"])
    won = (c["status"] == "won").to_numpy()
    amount = c["amount_base"].to_numpy(np.float64)
    has_amount = ~np.isnan(amount)

    o = columns(ctx, "orders", ["account_id", "ordered_at", "is_refund", "amount_base"])
    o = o[o["ordered_at"] <= ctx.as_of]
    or_m = month_idx(o["ordered_at"])
    buy = ~o["is_refund"].fillna(False).astype(bool).to_numpy()
    acc_code = pd.factorize(o["account_id"])[0]  # -1: null account (not counted)
    buyer = buy & (acc_code >= 0)

    nonempty = [x for x in (nl_m, ql_m, cl_m, or_m) if len(x)]
    if not nonempty:
        return pd.DataFrame(
            columns=[
                "series",
                "period_start",
                "complete",
                "value",
                "prev_value",
                "prev_year_value",
                "pop_change",
                "yoy_change",
                "trailing_12",
            ]
        )
    first = min(int(x.min()) for x in nonempty)
    last = cur_month(ctx)
    n = last - first + 1
    months = np.arange(first, last + 1)

    w = pd.DataFrame(
        {
            "new_leads": _count(nl_m, first, n),
            "qualified_leads": _count(ql_m, first, n),
            "won": _count(cl_m[won], first, n),
            "lost": _count(cl_m[~won], first, n),
            "won_revenue": _count(cl_m[won & has_amount], first, n, amount[won & has_amount]),
            "won_amounted": _count(cl_m[won & has_amount], first, n),
            "order_revenue": _count(or_m, first, n, np.nan_to_num(o["amount_base"].to_numpy(np.float64))),
        }
    )
    pairs = pd.DataFrame({"acc": acc_code[buyer], "m": or_m[buyer]}).drop_duplicates()
    w["active_customers"] = _count(pairs["m"].to_numpy(), first, n)
    act12 = _trailing_distinct(pairs["acc"].to_numpy(), pairs["m"].to_numpy(), first, n)

    def series(f):
        """The eight series from per-period sums (of one period, or of the trailing 12)."""
        wins = f["won"] + f["lost"]
        return {
            "new_leads": f["new_leads"],
            "qualified_leads": f["qualified_leads"],
            "deals_won": f["won"],
            "won_revenue": f["won_revenue"],
            "win_rate": (f["won"] / wins).where(wins != 0),
            "mean_deal_size": (f["won_revenue"] / f["won_amounted"]).where(f["won_amounted"] != 0),
            "order_revenue": f["order_revenue"],
            "active_customers": f["active_customers"],
        }

    with np.errstate(divide="ignore", invalid="ignore"):
        value = series(w)
        trailing = series(w.rolling(YEAR, min_periods=YEAR).sum())
        # Distinct customers over the window, not the sum of each period's.
        trailing["active_customers"] = pd.Series(act12).where(np.arange(n) >= YEAR - 1)
    parts = []
    done = complete(ctx, months)
    for name, v in value.items():
        v = pd.Series(v, dtype="float64").reset_index(drop=True)
        prev = v.shift(1)
        prev_year = v.shift(YEAR)
        parts.append(
            pd.DataFrame(
                {
                    "series": name,
                    "m": months,
                    "complete": done,
                    "value": v,
                    "prev_value": prev,
                    "prev_year_value": prev_year,
                    "pop_change": ((v - prev) / prev).where(prev != 0),
                    "yoy_change": ((v - prev_year) / prev_year).where(prev_year != 0),
                    "trailing_12": pd.Series(trailing[name], dtype="float64").reset_index(drop=True),
                }
            )
        )
    r = pd.concat(parts, ignore_index=True)
    r.insert(1, "period_start", month_dates(r.pop("m")))
    r["series"] = r["series"].astype("string")
    return r


KPIS = {"trends": trends}
