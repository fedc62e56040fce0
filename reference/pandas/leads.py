"""Lead KPIs in pandas: lead_volume, lead_velocity_rate, lead_conversion, cohort_conversion,
campaign_performance (the definitions of reference/duckdb/leads.py; lead_converted_event = won
only, UTC, monthly).

Shared intermediates: the leads at or before as_of with their later milestones nulled and each
lead's conversion (the earliest close of its deals won at as_of), as month indices (months
since 1970-01) where the KPIs need calendar months.
"""

import numpy as np
import pandas as pd

from ..common import US_PER_DAY
from .context import by_dims, cached, timed, us
from .months import complete, cur_month, month_dates, month_idx

DIMS = ["source", "campaign_id", "owner_id", "region"]
NONE = np.iinfo(np.int64).min


@cached("leads_asof")
def leads_asof(ctx):
    """Leads created at or before as_of: lead_id, the dimensions, created_m (month index),
    qualified / disqualified (known at as_of: bool) and their months (NONE when unknown),
    conv_us (the lead's conversion in microseconds, NONE when none) and conv_m, days (created to
    converted, NaN when not converted). A new frame: ctx.table's cached one is not modified."""
    if ctx.cfg.lead_converted_event != "won":
        raise SystemExit(
            f"reference.pandas: {ctx.cfg.path} sets lead_converted_event = {ctx.cfg.lead_converted_event!r}; "
            'the pandas references implement "won" only'
        )
    l = ctx.table("leads", "created_at")
    created_us = us(l["created_at"]).to_numpy()
    out = pd.DataFrame({"lead_id": l["lead_id"].to_numpy(), **{d: l[d].to_numpy() for d in DIMS}})
    out["created_m"] = month_idx(l["created_at"])
    for c, name in (("qualified_at", "qualified"), ("disqualified_at", "disqualified")):
        known = (l[c] <= ctx.as_of).to_numpy()
        out[name] = known
        m = np.full(len(l), NONE, dtype=np.int64)
        m[known] = month_idx(l.loc[known, c])
        out[f"{name}_m"] = m
    # Conversions (lead_converted_event = won): the earliest close of the lead's won deals.
    d = ctx.deals
    won = d.loc[(d["status"] == "won") & d["lead_id"].notna() & d["closed_at"].notna(), ["lead_id", "closed_at"]]
    first = pd.Series(us(won["closed_at"]).to_numpy(), index=won["lead_id"].to_numpy()).groupby(level=0).min()
    pos = pd.Index(first.index).get_indexer(out["lead_id"])
    has = pos >= 0
    conv = np.full(len(out), NONE, dtype=np.int64)
    conv[has] = first.to_numpy()[pos[has]]
    has &= conv <= int(ctx.as_of.value // 1000)
    conv[~has] = NONE
    out["converted"] = has
    out["conv_us"] = conv
    cm = np.full(len(out), NONE, dtype=np.int64)
    cm[has] = conv[has].astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    out["conv_m"] = cm
    out["days"] = np.where(has, (conv - created_us) / float(US_PER_DAY), np.nan)
    return out


def _codes(col):
    """Codes of a column (nulls get their own code) and the values by code as a string Series."""
    codes, uniq = pd.factorize(col, use_na_sentinel=False)
    return codes.astype(np.int64), pd.Series(uniq, dtype=object).astype("string")


@timed
def lead_volume(ctx):
    l = leads_asof(ctx)
    q = l["qualified"].to_numpy()
    dq = l["disqualified"].to_numpy()
    months = np.concatenate(
        [l["created_m"].to_numpy(), l["qualified_m"].to_numpy()[q], l["disqualified_m"].to_numpy()[dq]]
    )
    kind = np.concatenate(
        [np.zeros(len(l), np.int64), np.ones(int(q.sum()), np.int64), np.full(int(dq.sum()), 2, np.int64)]
    )
    rows = np.concatenate([np.arange(len(l)), np.flatnonzero(q), np.flatnonzero(dq)])
    parts = []
    for dim in [None] + DIMS:
        if dim:
            codes, values = _codes(l[dim])
            n = max(len(values), 1)
            key = months * n + codes[rows]
        else:
            key = months
        g, uk = pd.factorize(key)
        cnt = np.bincount(g * 3 + kind, minlength=3 * len(uk)).reshape(-1, 3)
        uk = np.asarray(uk, dtype=np.int64)
        if dim:
            m, c = np.divmod(uk, n)
            dv = values.take(c).reset_index(drop=True)
        else:
            m = uk
            dv = pd.Series(pd.NA, index=range(len(uk)), dtype="string")
        parts.append(
            pd.DataFrame(
                {
                    "dimension": pd.Series(dim or "all", index=range(len(uk)), dtype="string"),
                    "dimension_value": dv,
                    "period_start": month_dates(m),
                    "new_leads": cnt[:, 0],
                    "qualified_leads": cnt[:, 1],
                    "disqualified_leads": cnt[:, 2],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@timed
def lead_velocity_rate(ctx):
    l = leads_asof(ctx)
    cols = ["period_start", "qualified_leads", "prev_qualified_leads", "lvr", "complete"]
    if len(l) == 0:
        return pd.DataFrame({c: [] for c in cols})
    qm = l["qualified_m"].to_numpy()[l["qualified"].to_numpy()]
    first = int(l["created_m"].min())
    if len(qm):
        first = min(first, int(qm.min()))
    last = cur_month(ctx)
    months = np.arange(first, last + 1)
    n = len(months)
    qual = np.bincount(qm - first, minlength=n)[:n].astype(np.int64)
    prev = pd.Series(qual, dtype="float64").shift(1)
    cur = pd.Series(qual, dtype="float64")
    return pd.DataFrame(
        {
            "period_start": month_dates(months),
            "qualified_leads": qual,
            "prev_qualified_leads": prev,
            "lvr": ((cur - prev) / prev).where(prev != 0),
            "complete": complete(ctx, months),
        }
    )


@timed
def lead_conversion(ctx):
    l = leads_asof(ctx)
    df = pd.DataFrame({d: l[d] for d in DIMS})
    pc, pm = pd.factorize(l["created_m"].to_numpy())
    df["period"] = pd.Series(
        pd.Series(np.asarray(pm, dtype=np.int64).astype("datetime64[M]")).dt.strftime("%Y-%m-%d").to_numpy()[pc],
        index=l.index,
    )
    df["conv"] = l["converted"].astype(np.int64)
    df["days"] = l["days"]

    def agg(g):
        if isinstance(g, pd.DataFrame):  # the `all` row: no group keys
            return pd.DataFrame(
                {
                    "leads": [len(g)],
                    "converted": [int(g["conv"].sum())],
                    "median_days_to_convert": [g["days"].median()],
                    "mean_days_to_convert": [g["days"].mean()],
                }
            )
        return g.agg(
            leads=("conv", "size"),
            converted=("conv", "sum"),
            median_days_to_convert=("days", "median"),
            mean_days_to_convert=("days", "mean"),
        ).reset_index()

    r = by_dims(df, [], DIMS + ["period"], agg)
    r["leads"] = r["leads"].astype(np.int64)
    r["converted"] = r["converted"].astype(np.int64)
    lead_n = r["leads"].astype("float64")
    r["conversion_rate"] = (r["converted"] / lead_n).where(lead_n != 0)
    return r[
        [
            "dimension",
            "dimension_value",
            "leads",
            "converted",
            "conversion_rate",
            "median_days_to_convert",
            "mean_days_to_convert",
        ]
    ]


def _cohort_cells(ctx, cohort, codes, conv, conv_m):
    """Cells (group, k) of groups given by (cohort month, code): cohort size and the cumulative
    conversions up to month cohort + k, for k = 0 .. cur - cohort."""
    cur = cur_month(ctx)
    ncode = int(codes.max()) + 1 if len(codes) else 1
    g, uk = pd.factorize(cohort * ncode + codes)
    uk = np.asarray(uk, dtype=np.int64)
    gc, gcode = np.divmod(uk, ncode)
    size = np.bincount(g, minlength=len(uk))
    span = cur - gc + 1  # k = 0 .. cur - cohort
    start = np.cumsum(span) - span
    total = int(span.sum())
    delta = np.maximum(conv_m[conv] - cohort[conv], 0)
    hist = np.bincount(start[g[conv]] + delta, minlength=total)[:total]
    cum = np.cumsum(hist)
    grp = np.repeat(np.arange(len(uk)), span)
    before = np.concatenate([[0], cum])[start][grp]  # cumulative count before the group's first cell
    raw = cum - before
    k = np.arange(total) - start[grp]
    return grp, gc[grp], gcode[grp], size[grp], k, raw


@timed
def cohort_conversion(ctx):
    l = leads_asof(ctx)
    cohort = l["created_m"].to_numpy()
    conv = l["converted"].to_numpy()
    conv_m = l["conv_m"].to_numpy()
    parts = []
    for dim in ("all", "source"):
        if dim == "all":
            codes = np.zeros(len(l), dtype=np.int64)
            values = None
        else:
            codes, values = _codes(l["source"])
        _, gc, gcode, size, k, raw = _cohort_cells(ctx, cohort, codes, conv, conv_m)
        done = complete(ctx, gc + k)
        rawf = raw.astype(np.float64)
        n = len(gc)
        parts.append(
            pd.DataFrame(
                {
                    "cohort_start": month_dates(gc),
                    "dimension": pd.Series(dim, index=range(n), dtype="string"),
                    "dimension_value": (
                        values.take(gcode).reset_index(drop=True)
                        if values is not None
                        else pd.Series(pd.NA, index=range(n), dtype="string")
                    ),
                    "cohort_size": size.astype(np.int64),
                    "k": k.astype(np.int64),
                    "converted_cum": np.where(done, rawf, np.nan),
                    "conversion_rate_cum": np.where(done, rawf / size, np.nan),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@timed
def campaign_performance(ctx):
    l = leads_asof(ctx)
    d = ctx.deals
    # Deal campaign: the opportunity's, else its lead's (leads at or before as_of).
    lead_campaign = pd.Series(l["campaign_id"].to_numpy(), index=l["lead_id"].to_numpy())
    lc_of_deal = d["lead_id"].map(lead_campaign) if len(l) else pd.Series(np.nan, index=d.index)
    dc_id = d["campaign_id"].where(d["campaign_id"].notna(), lc_of_deal)
    won = (d["status"] == "won").to_numpy()
    amt = d["amount_base"].to_numpy(np.float64)
    dc = (
        pd.DataFrame({"campaign_id": dc_id.to_numpy(), "won": won, "won_amt": np.where(won & ~np.isnan(amt), amt, 0.0)})
        .groupby("campaign_id", sort=False)
        .agg(deals=("won", "size"), won_deals=("won", "sum"), won_revenue=("won_amt", "sum"))
    )
    lc = (
        pd.DataFrame({"campaign_id": l["campaign_id"].to_numpy(), "q": l["qualified"].to_numpy()})
        .groupby("campaign_id", sort=False)
        .agg(leads=("q", "size"), qualified=("q", "sum"))
    )
    camps = ctx.table_all("campaigns")
    if len(camps):
        started = camps.loc[camps["started_at"].isna() | (camps["started_at"] <= ctx.as_of), "campaign_id"]
        c_all = camps[["campaign_id", "channel", "spend_base"]]
    else:
        started = pd.Series([], dtype=object)
        c_all = pd.DataFrame(
            {
                "campaign_id": pd.Series([], dtype=object),
                "channel": pd.Series([], dtype=object),
                "spend_base": pd.Series([], dtype="float64"),
            }
        )
    ids = pd.Index(
        pd.concat(
            [
                pd.Series(started.to_numpy(), dtype=object),
                pd.Series(lc.index.to_numpy(), dtype=object),
                pd.Series(dc.index.to_numpy(), dtype=object),
            ],
            ignore_index=True,
        )
        .dropna()
        .unique()
    )
    t = pd.DataFrame({"campaign_id": ids.to_numpy()})
    t = t.merge(c_all.rename(columns={"spend_base": "spend"}), on="campaign_id", how="left")
    t = t.join(lc, on="campaign_id").join(dc, on="campaign_id")
    for c in ("leads", "qualified", "deals", "won_deals"):
        t[c] = t[c].fillna(0).astype(np.int64)
    t["won_revenue"] = t["won_revenue"].fillna(0.0).astype("float64")
    spend = t["spend"].astype("float64")
    leads_f = t["leads"].astype("float64")
    won_f = t["won_deals"].astype("float64")
    t["cost_per_lead"] = (spend / leads_f).where(leads_f != 0)
    t["cost_per_acquisition"] = (spend / won_f).where(won_f != 0)
    t["roi"] = ((t["won_revenue"] - spend) / spend).where(spend != 0)
    t["campaign_id"] = t["campaign_id"].astype("string")
    t["channel"] = t["channel"].astype("string")
    return t[
        [
            "campaign_id",
            "channel",
            "leads",
            "qualified",
            "deals",
            "won_deals",
            "won_revenue",
            "spend",
            "cost_per_lead",
            "cost_per_acquisition",
            "roi",
        ]
    ]


KPIS = {
    "lead_volume": lead_volume,
    "lead_velocity_rate": lead_velocity_rate,
    "lead_conversion": lead_conversion,
    "cohort_conversion": cohort_conversion,
    "campaign_performance": campaign_performance,
}
