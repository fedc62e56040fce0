"""Deal-history intermediates of the pandas KPIs, cached on the Ctx: stage events at or before
as_of (the logged ones, and with the reopening events the export implies), one event per deal
and instant, stage visits, closed deals, snapshot instants, each deal's open intervals and the
deals open at each snapshot (the views of reference/duckdb/views.py).
"""

import numpy as np
import pandas as pd

from ..common import US_PER_DAY
from .context import as_of_us, cached, cur_period, month_of, us


@cached("deal_index")
def deal_index(ctx):
    """ctx.deals' opportunity_id as an Index: row positions by id (ids are unique)."""
    return pd.Index(ctx.deals["opportunity_id"])


@cached("events")
def events(ctx):
    """Stage events at or before as_of of deals created at or before as_of: deal (row position
    in ctx.deals), stage, stage_index, entered_at, at_us; sorted by deal, entered_at, stage_index
    (unknown stages last on ties)."""
    ev = ctx.table_all("stage_events")
    ev = ev.loc[ev["entered_at"] <= ctx.as_of, ["opportunity_id", "stage", "entered_at"]]
    deal = deal_index(ctx).get_indexer(ev["opportunity_id"])
    keep = deal >= 0
    ev = ev[keep].drop(columns="opportunity_id").reset_index(drop=True)
    ev.insert(0, "deal", deal[keep])
    ev["stage_index"] = ev["stage"].map(ctx.pipeline.index).astype("float64")
    ev["at_us"] = us(ev["entered_at"])
    return ev.sort_values(["deal", "at_us", "stage_index"], na_position="last", kind="stable", ignore_index=True)


@cached("deal_events")
def deal_events(ctx):
    """`events` with each reopened deal's added event (ctx.export_history's reopen_at and
    reopen_stage, at or before as_of): the events of the deals' states, visits and snapshots
    (stage_funnel and deal_snapshot's stage_events count the logged `events` only). Same
    columns and order."""
    ev = events(ctx)
    x = ctx.export_history
    x = x[x["reopen_at"].notna() & (x["reopen_at"] <= ctx.as_of)]
    if not len(x):
        return ev
    add = pd.DataFrame(
        {
            "deal": deal_index(ctx).get_indexer(x["opportunity_id"]),
            "stage": x["reopen_stage"].astype(ev["stage"].dtype).to_numpy(),
            "entered_at": x["reopen_at"].to_numpy(),
        }
    )
    add["entered_at"] = add["entered_at"].astype(ev["entered_at"].dtype)
    add["stage_index"] = add["stage"].map(ctx.pipeline.index).astype("float64")
    add["at_us"] = us(add["entered_at"])
    ev = pd.concat([ev, add[ev.columns]], ignore_index=True)
    return ev.sort_values(["deal", "at_us", "stage_index"], na_position="last", kind="stable", ignore_index=True)


@cached("events_last_per_instant")
def events_last_per_instant(ctx):
    """One event per deal and instant: the later stage of the pipeline wins (unknown stages lose)."""
    ev = deal_events(ctx)
    rank = ev["stage_index"].fillna(-1.0)
    if (rank.to_numpy() == ev["stage_index"].to_numpy()).all() or not ev["stage_index"].isna().any():
        srt = ev  # already sorted by deal, time, stage_index
    else:
        srt = (
            ev.assign(_rank=rank)
            .sort_values(["deal", "at_us", "_rank"], kind="stable", ignore_index=True)
            .drop(columns="_rank")
        )
    return srt.drop_duplicates(["deal", "at_us"], keep="last", ignore_index=True)


def _next_in_deal(deal, at, fill):
    """The next row's `at` when it belongs to the same deal, else `fill`."""
    nxt = np.full(len(at), fill, dtype=np.int64)
    if len(at) > 1:
        same = deal[1:] == deal[:-1]
        nxt[:-1] = np.where(same, at[1:], fill)
    return nxt


@cached("visits")
def visits(ctx):
    """Visits to non-terminal stages (the reopening events included): stage, owner_id,
    completed, days_us, days. A visit ends at the deal's next event, else at its close at as_of
    (then a close by the export), else it is censored at as_of."""
    ev = deal_events(ctx)
    deal = ev["deal"].to_numpy()
    at = ev["at_us"].to_numpy()
    none = np.iinfo(np.int64).min
    nxt = _next_in_deal(deal, at, none)
    keep = ev["stage"].isin(ctx.pipeline.open).to_numpy()
    deal, at, nxt = deal[keep], at[keep], nxt[keep]
    d = ctx.deals
    closed_at = d["closed_at"]
    has_close = closed_at.notna().to_numpy()[deal]
    close_us = us(closed_at.fillna(pd.Timestamp(0, tz="UTC"))).to_numpy()[deal]
    has_next = nxt != none
    end = np.where(has_next, nxt, np.where(has_close, close_us, as_of_us(ctx)))
    days_us = end - at
    return pd.DataFrame(
        {
            "stage": ev["stage"][keep].reset_index(drop=True),
            "owner_id": d["owner_id"].take(deal).reset_index(drop=True),
            "completed": has_next | has_close,
            "days_us": days_us,
            "days": days_us / float(US_PER_DAY),
        }
    )


@cached("closed")
def closed(ctx):
    d = ctx.deals
    d = d[d["status"].isin(["won", "lost"])].copy()
    d["period_start"] = month_of(d["closed_at"])
    d["days"] = (us(d["closed_at"]) - us(d["created_at"])) / float(US_PER_DAY)
    return d


@cached("snaps")
def snaps(ctx):
    """Snapshot instants: the end of every month from the first deal's creation month to the
    month before as_of's, then as_of. Columns snapshot_at (date), period_start (date), t_us."""
    d = ctx.deals
    cur = pd.Timestamp(cur_period(ctx))
    rows = []
    if len(d):
        first = pd.Timestamp(d["created_at"].min().tz_convert("UTC").tz_localize(None)).to_period("M").start_time
        months = pd.date_range(first, cur - pd.DateOffset(months=1), freq="MS")
        for m in months:
            nxt = m + pd.DateOffset(months=1)
            rows.append(((nxt - pd.Timedelta(days=1)).date(), m.date(), nxt.value // 1000 - 1))
    rows.append((ctx.as_of_date, cur.date(), as_of_us(ctx)))
    return pd.DataFrame(rows, columns=["snapshot_at", "period_start", "t_us"])


@cached("open_segments")
def open_segments(ctx):
    """Each deal's open intervals [a_us, b_us) with a constant stage (null before any event):
    created_at, then one segment per instant of its last-per-instant events (the reopening
    events included), cut at the next event, at a terminal event, and at the export's close
    (closed_at of a deal whose export's close wins, ctx.export_history; such a deal without a
    closed_at has none). Columns: deal (row position in ctx.deals), stage, a_us, b_us."""
    d = ctx.deals
    n = len(d)
    big = np.iinfo(np.int64).max
    created = us(d["created_at"]).to_numpy()
    terminal_stages = list(ctx.pipeline.terminal)
    # The opportunities' own closed_at (ctx.deals holds the as-of state instead).
    opps = ctx.table("opportunities", "created_at")
    own_closed = opps["closed_at"].iloc[pd.Index(opps["opportunity_id"]).get_indexer(d["opportunity_id"])]
    x = ctx.export_history
    by_export = x["export_close"].to_numpy()[pd.Index(x["opportunity_id"]).get_indexer(d["opportunity_id"])]
    # closed by the export from closed_at on; without a closed_at, never open (close = 0)
    close = np.where(by_export, us(own_closed.fillna(pd.Timestamp(0, tz="UTC"))).to_numpy(), big)

    ev = events_last_per_instant(ctx)
    deal = ev["deal"].to_numpy()
    at = ev["at_us"].to_numpy()
    nxt = _next_in_deal(deal, at, big)
    # First event time of each deal (big when none): the null-stage segment ends there.
    first = np.full(n, big, dtype=np.int64)
    is_first = np.ones(len(ev), dtype=bool)
    is_first[1:] = deal[1:] != deal[:-1]
    first[deal[is_first]] = at[is_first]

    open_stage = ~ev["stage"].isin(terminal_stages).to_numpy()
    stage = pd.concat(
        [pd.Series(pd.NA, index=range(n), dtype=ev["stage"].dtype), ev["stage"][open_stage]], ignore_index=True
    )
    dl = np.concatenate([np.arange(n), deal[open_stage]])
    a = np.maximum(np.concatenate([created, at[open_stage]]), created[dl])
    b = np.minimum(np.concatenate([first, nxt[open_stage]]), close[dl])
    keep = a < b
    return pd.DataFrame(
        {"deal": dl[keep], "stage": stage[keep].reset_index(drop=True), "a_us": a[keep], "b_us": b[keep]}
    )


@cached("open_at_snaps")
def open_at_snaps(ctx):
    """(snapshot, deal) pairs of the deals open at each snapshot instant: snap (row of snaps),
    deal (row of ctx.deals), stage (at that instant; null without any event yet)."""
    s = snaps(ctx)
    t = s["t_us"].to_numpy()
    order = np.argsort(t, kind="stable")
    ts = t[order]
    seg = open_segments(ctx)
    i0 = np.searchsorted(ts, seg["a_us"].to_numpy(), side="left")
    i1 = np.searchsorted(ts, seg["b_us"].to_numpy(), side="left")
    n = i1 - i0
    keep = n > 0
    i0, n = i0[keep], n[keep]
    seg = seg[keep]
    rep = np.repeat(np.arange(len(seg)), n)
    starts = np.repeat(np.cumsum(n) - n, n)
    idx = np.repeat(i0, n) + (np.arange(n.sum()) - starts)
    return pd.DataFrame(
        {
            "snap": order[idx],
            "deal": seg["deal"].to_numpy()[rep],
            "stage": seg["stage"].to_numpy()[rep],
        }
    )


def open_at(ctx, opp_ids, t_us):
    """For (opportunity_id, t) pairs: a boolean mask of the deals open at t (t <= as_of) and the
    stage at t (null without any event at or before t)."""
    seg = open_segments(ctx)
    q = pd.DataFrame(
        {
            "deal": deal_index(ctx).get_indexer(opp_ids),
            "t_us": np.asarray(t_us, dtype=np.int64),
            "row": np.arange(len(t_us)),
        }
    )
    m = q.merge(seg, on="deal", how="inner")
    m = m[(m["a_us"] <= m["t_us"]) & (m["t_us"] < m["b_us"])]
    mask = np.zeros(len(q), dtype=bool)
    mask[m["row"].to_numpy()] = True
    stage = pd.Series(pd.NA, index=range(len(q)), dtype=seg["stage"].dtype)
    stage.iloc[m["row"].to_numpy()] = m["stage"].to_numpy()
    return mask, stage
