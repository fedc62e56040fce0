"""Shared helpers of the trends, rep/activity and revenue pandas KPIs: column subsets of a table
(cached), calendar months as integers (months since 1970-01, UTC) and back to dates, the rep
targets of a metric per month, and the revenue KPIs' order rows.

No KPI here (KPIS is empty); pandas_engine imports every module of the package.
"""

import numpy as np
import pandas as pd
import pyarrow as pa

from pandas_engine import US_PER_DAY
from pandas_kpis._shared import as_of_us, cached, cur_period, us

KPIS = {}


def columns(ctx, name, cols):
    """Table `name` (all rows, as stored) restricted to `cols`: sliced from the whole table when
    another KPI already loaded it, else read with only these columns (cached per column set)."""
    if name in ctx._cache:
        return ctx._cache[name][list(cols)]
    key = ("cols", name, tuple(cols))
    if key not in ctx._cache:
        t = ctx.manifest["tables"].get(name)
        files = [f"{ctx.store}/{f['path']}" for f in t["files"]] if t else []
        ctx._cache[key] = (pd.concat([pd.read_parquet(f, columns=list(cols)) for f in files], ignore_index=True)
                           if files else pd.DataFrame(columns=list(cols)))
    return ctx._cache[key]


def month_idx(ts):
    """Calendar month (UTC) of a tz-aware timestamp Series as months since 1970-01 (int64; NaT
    gives INT64_MIN: mask it first)."""
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[M]").astype(np.int64)


def month_idx_of_dates(dates):
    """Months since 1970-01 of a Series of dates (datetime.date objects or datetime64)."""
    return pd.to_datetime(dates).to_numpy().astype("datetime64[M]").astype(np.int64)


def month_start_us(m):
    """First instant of month index `m` (array) in microseconds since the epoch."""
    return np.asarray(m, dtype=np.int64).astype("datetime64[M]").astype("datetime64[us]").astype(np.int64)


def cur_month(ctx):
    return int(np.datetime64(cur_period(ctx), "M").astype(np.int64))


def complete(ctx, m):
    """Whether month `m`'s last instant is at or before as_of."""
    return month_start_us(np.asarray(m, dtype=np.int64) + 1) - 1 <= as_of_us(ctx)


def dates(days):
    """A date32 column (Arrow-backed) from datetime64 values (truncated to the day)."""
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(np.asarray(days).astype("datetime64[D]"))))


def month_dates(m):
    """A date32 column of the first days of month indices `m`."""
    return dates(np.asarray(m, dtype=np.int64).astype("datetime64[M]"))


def days_between_us(a_us, b_us):
    return (b_us - a_us) / float(US_PER_DAY)


# Grain sizes of the targets (coarsest wins) and their spans in months (week: 7 days).
_GRAIN_SIZE = {"week": 0, "month": 1, "quarter": 2}
_GRAIN_MONTHS = {1: 1, 2: 3, 3: 12}


def rep_targets(ctx, metric):
    """Rep targets of `metric` per month: (m, owner_id, target). A target counts in the month that
    contains its whole span (period_start .. period_start + grain - 1 day); per rep and month only
    the coarsest grain that fits counts; months after as_of's are dropped; null when all values
    of the kept rows are null."""
    t = ctx.table_all("targets")
    t = t[(t["scope_kind"] == "rep") & (t["metric"] == metric)]
    start = pd.to_datetime(t["period_start"])
    size = t["grain"].map(_GRAIN_SIZE).fillna(3).astype(np.int64).to_numpy()
    # Last day of the span; month arithmetic clamps to the month's end like SQL's date + INTERVAL.
    last = pd.Series(pd.NaT, index=t.index, dtype=start.dtype)
    for s, months in _GRAIN_MONTHS.items():
        sel = size == s
        if sel.any():
            last[sel] = start[sel] + pd.DateOffset(months=months)
    sel = size == 0
    last[sel] = start[sel] + pd.Timedelta(days=7)
    last = last - pd.Timedelta(days=1)
    m = start.to_numpy().astype("datetime64[M]").astype(np.int64)
    fits = (last.to_numpy().astype("datetime64[M]").astype(np.int64) == m) & (m <= cur_month(ctx))
    x = pd.DataFrame({"m": m[fits], "owner_id": t["scope"].to_numpy()[fits], "size": size[fits],
                      "value": t["value"].to_numpy(np.float64)[fits]})
    x = x[x["size"] == x.groupby(["m", "owner_id"])["size"].transform("max")]
    return x.groupby(["m", "owner_id"], sort=False)["value"].sum(min_count=1).rename("target").reset_index()


@cached("rev_orders")
def rev_orders(ctx):
    """Orders at or before as_of as the revenue KPIs read them: account_id, region, channel,
    refund (bool), amt (a refund is -|amount_base|), paid (paid_at at or before as_of),
    overdue (not paid, due_at before as_of), t_us (ordered_at), m (month of ordered_at)."""
    o = columns(ctx, "orders", ["account_id", "ordered_at", "region", "channel", "is_refund", "paid_at", "due_at",
                                "amount_base"])
    o = o[o["ordered_at"] <= ctx.as_of].reset_index(drop=True)
    refund = o["is_refund"].fillna(False).astype(bool).to_numpy()
    amount = o["amount_base"].to_numpy(np.float64)
    paid = (o["paid_at"] <= ctx.as_of).to_numpy()
    return pd.DataFrame({
        "account_id": o["account_id"],
        "region": o["region"],
        "channel": o["channel"],
        "refund": refund,
        "amt": np.where(refund, -np.abs(amount), amount),
        "paid": paid,
        "overdue": ~paid & (o["due_at"] < ctx.as_of).to_numpy(),
        "t_us": us(o["ordered_at"]).to_numpy(),
        "m": month_idx(o["ordered_at"]),
    })


@cached("rev_clv")
def rev_clv(ctx):
    """clv_historical's rows (one per account with a non-refund order at or before as_of), with
    the first order's month `m` alongside cohort_start."""
    o = rev_orders(ctx)
    buy = ~o["refund"]
    t = o["t_us"].where(buy)  # non-refund order times (float: exact below 2**53 us)
    c = pd.DataFrame({"account_id": o["account_id"], "t": t, "buy": buy, "amt": o["amt"]}).groupby(
        "account_id", sort=False, dropna=False).agg(first_us=("t", "min"), last_us=("t", "max"), orders=("buy", "sum"),
                                                    revenue=("amt", "sum"), amounts=("amt", "count"))
    c = c[c["orders"] > 0].reset_index()
    c["revenue"] = c["revenue"].where(c["amounts"] > 0)  # SQL: the sum of no amount is null
    c["first_us"] = c["first_us"].astype(np.int64)
    c["last_us"] = c["last_us"].astype(np.int64)
    first = c["first_us"].to_numpy().astype("datetime64[us]")
    m = first.astype("datetime64[M]").astype(np.int64)
    src = first_lead_source(ctx)
    return pd.DataFrame({
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
    })


def first_lead_source(ctx):
    """Source of each account's first converted lead (converted at or before as_of; earliest
    converted_at, then created_at, then lead_id), as a Series indexed by account_id."""
    l = ctx.table("leads", "created_at")
    l = l.loc[(l["converted_at"] <= ctx.as_of) & l["account_id"].notna(),
              ["account_id", "converted_at", "created_at", "lead_id", "source"]]
    l = l.sort_values(["converted_at", "created_at", "lead_id"], kind="stable")
    return l.drop_duplicates("account_id").set_index("account_id")["source"]
