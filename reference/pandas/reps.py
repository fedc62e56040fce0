"""Reps and activity KPIs in pandas: open_deals_per_rep (the deals open at as_of per owner),
rep_scorecard (monthly leaderboard per deal owner) and activity (activities per owner and month
against the calls targets)."""

import numpy as np
import pandas as pd

from ..common import US_PER_DAY
from .context import as_of_us, columns, timed, us
from .deal_history import closed, open_at_snaps, snaps
from .months import cur_month, month_dates, month_idx, month_idx_of_dates

KEY = ["m", "owner_id"]
KINDS = ["call", "email", "meeting", "visit", "task"]  # activity kinds counted (others: code -1)


def _finish(r):
    """Key columns first: period_start (date) from the month index, then owner_id."""
    r.insert(0, "period_start", month_dates(r.pop("m")))
    return r


@timed
def rep_scorecard(ctx):
    c = closed(ctx)
    won = c["status"] == "won"
    x = pd.DataFrame(
        {
            "m": month_idx(c["closed_at"]),
            "owner_id": c["owner_id"].reset_index(drop=True),
            "won_amount": c["amount_base"].where(won, 0.0).fillna(0.0).to_numpy(),
            "won_deals": won.to_numpy(np.int64),
            "lost_deals": (c["status"] == "lost").to_numpy(np.int64),
            "won_size": c["amount_base"].where(won).to_numpy(),
            "won_days": c["days"].where(won).to_numpy(),
        }
    )
    cl = (
        x.groupby(KEY, sort=False)
        .agg(
            won_amount=("won_amount", "sum"),
            won_deals=("won_deals", "sum"),
            lost_deals=("lost_deals", "sum"),
            mean_deal_size=("won_size", "mean"),
            median_cycle_days=("won_days", "median"),
        )
        .reset_index()
    )

    # Open at each period's end: the snapshot of that month (its last instant, or as_of).
    s = snaps(ctx)
    op = open_at_snaps(ctx)
    deal = op["deal"].to_numpy()
    d = ctx.deals
    o = pd.DataFrame(
        {
            "m": month_idx_of_dates(s["period_start"])[op["snap"].to_numpy()],
            "owner_id": d["owner_id"].take(deal).reset_index(drop=True),
            "amount": d["amount_base"].to_numpy(np.float64)[deal],
        }
    )
    op = o.groupby(KEY, sort=False).agg(open_deals=("amount", "size"), open_pipeline=("amount", "sum")).reset_index()

    r = cl.merge(op, on=KEY, how="outer").merge(rep_targets(ctx, "revenue"), on=KEY, how="outer")
    for col in ("won_amount", "won_deals", "lost_deals", "open_deals", "open_pipeline"):
        r[col] = r[col].fillna(0)
    for col in ("won_deals", "lost_deals", "open_deals"):
        r[col] = r[col].astype(np.int64)

    reps = ctx.table_all("reps")[["rep_id", "team"]].drop_duplicates()
    reps = reps[reps["rep_id"].notna()].rename(columns={"rep_id": "owner_id"})
    r = r.merge(reps, on="owner_id", how="left")

    closed_n = r["won_deals"] + r["lost_deals"]
    r["win_rate"] = (r["won_deals"] / closed_n).where(closed_n != 0)
    r["attainment"] = (r["won_amount"] / r["target"]).where(r["target"].notna() & (r["target"] != 0))
    # Dense rank per month by (won_amount desc, won_deals desc): a new rank wherever the pair
    # changes along the sorted order.
    srt = r.sort_values(["m", "won_amount", "won_deals"], ascending=[True, False, False], kind="stable")
    new = srt[["m", "won_amount", "won_deals"]].ne(srt[["m", "won_amount", "won_deals"]].shift()).any(axis=1)
    r["rank"] = new.groupby(srt["m"]).cumsum().astype(np.int64)
    has_team = r["team"].notna()
    team_won = r.groupby(["m", "team"], sort=False)["won_amount"].transform("sum")
    r["team_won_amount"] = team_won.where(has_team)
    r["share_of_team"] = (r["won_amount"] / team_won).where(has_team & (team_won != 0))
    return _finish(
        r[
            [
                "m",
                "owner_id",
                "team",
                "won_amount",
                "won_deals",
                "lost_deals",
                "mean_deal_size",
                "median_cycle_days",
                "open_deals",
                "open_pipeline",
                "target",
                "win_rate",
                "attainment",
                "rank",
                "team_won_amount",
                "share_of_team",
            ]
        ]
    )


def _first_touch(a, col):
    """Row mask of the first touch of every non-null `col` (lead_id or account_id): its earliest
    activity, ties at the same instant broken by the smallest activity_id."""
    earliest = a.groupby(col, sort=False)["t_us"].transform("min")  # NaN for a null `col`
    cand = (a["t_us"] == earliest).to_numpy(copy=True)
    x = a.loc[cand, [col, "activity_id"]]
    # Usually one candidate per key; the tie-break only sorts the few ties.
    tied = x[col].duplicated(keep=False).to_numpy()
    if tied.any():
        win = x[tied].sort_values("activity_id", kind="stable").drop_duplicates(col).index
        cand[x.index[tied]] = False
        cand[win] = True
    return cand


@timed
def activity(ctx):
    a = columns(
        ctx, "activities", ["activity_id", "owner_id", "kind", "occurred_at", "outcome", "lead_id", "account_id"]
    )
    a = a[a["occurred_at"] <= ctx.as_of].reset_index(drop=True)
    a["t_us"] = us(a["occurred_at"])
    new_contact = _first_touch(a, "lead_id") | _first_touch(a, "account_id")
    # One category per activity (a connected call apart), counted per owner and month.
    cat = pd.Series(pd.Categorical(a["kind"], categories=KINDS)).cat.codes.to_numpy()
    cat = np.where((cat == 0) & (a["outcome"] == "connected").to_numpy(), len(KINDS), cat)
    x = pd.DataFrame({"m": month_idx(a["occurred_at"]), "owner_id": a["owner_id"], "cat": cat})
    per = x.groupby(KEY + ["cat"], sort=False).size().unstack("cat", fill_value=0)
    per = per.reindex(columns=range(-1, len(KINDS) + 1), fill_value=0)
    per = pd.DataFrame(
        {
            "calls": per[0] + per[len(KINDS)],
            "connected_calls": per[len(KINDS)],
            **{f"{k}s": per[i] for i, k in enumerate(KINDS) if i > 0},
            "new_contacts": x[new_contact].groupby(KEY, sort=False).size(),
        }
    )
    counts = list(per.columns)
    per = per.reset_index()
    r = per.merge(rep_targets(ctx, "calls").rename(columns={"target": "calls_target"}), on=KEY, how="outer")
    r[counts] = r[counts].fillna(0).astype(np.int64)
    r["connect_rate"] = (r["connected_calls"] / r["calls"]).where(r["calls"] != 0)
    t = r["calls_target"]
    r["calls_attainment"] = (r["calls"] / t).where(t.notna() & (t != 0))
    return _finish(
        r[
            [
                "m",
                "owner_id",
                "calls",
                "connected_calls",
                "connect_rate",
                "emails",
                "meetings",
                "visits",
                "tasks",
                "new_contacts",
                "calls_target",
                "calls_attainment",
            ]
        ]
    )


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
    x = pd.DataFrame(
        {
            "m": m[fits],
            "owner_id": t["scope"].to_numpy()[fits],
            "size": size[fits],
            "value": t["value"].to_numpy(np.float64)[fits],
        }
    )
    x = x[x["size"] == x.groupby(["m", "owner_id"])["size"].transform("max")]
    return x.groupby(["m", "owner_id"], sort=False)["value"].sum(min_count=1).rename("target").reset_index()


@timed
def open_deals_per_rep(ctx):
    d = ctx.deals
    d = d[d["status"] == "open"]
    now = as_of_us(ctx)
    last_change = d["stage_entered_at"].fillna(d["created_at"])
    x = pd.DataFrame(
        {
            "owner_id": d["owner_id"],
            "pipeline": d["pipeline"],
            "amount": d["amount_base"],
            "age": (now - us(d["created_at"])) / float(US_PER_DAY),
            "stale": ((now - us(last_change)) / float(US_PER_DAY) >= ctx.cfg.stale_after_days).astype(np.int64),
        }
    )
    reps = ctx.table_all("reps")
    reps = reps[["rep_id", "team"]].drop_duplicates().rename(columns={"rep_id": "owner_id"})
    reps = reps[reps["owner_id"].notna()]  # a null owner matches no rep
    x = x.merge(reps, on="owner_id", how="left")
    r = (
        x.groupby(["owner_id", "pipeline", "team"], dropna=False, sort=False)
        .agg(
            open_deals=("amount", "size"),
            amount=("amount", "sum"),
            mean_age_days=("age", "mean"),
            stale_deals=("stale", "sum"),
        )
        .reset_index()
    )
    team_total = r.groupby(["team", "pipeline"], dropna=False)["open_deals"].transform("sum")
    r["team_share"] = (r["open_deals"] / team_total).where(r["team"].notna())
    return r[["owner_id", "pipeline", "team", "open_deals", "amount", "mean_age_days", "stale_deals", "team_share"]]


KPIS = {
    "open_deals_per_rep": open_deals_per_rep,
    "rep_scorecard": rep_scorecard,
    "activity": activity,
}
