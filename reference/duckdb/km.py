"""Kaplan-Meier time in stage (stage_duration's medians, stage_duration_survival) for the DuckDB
engine: steps in DuckDB SQL, the running product in numpy.

DuckDB does the heavy part (a product-limit loop in Python over every visit row was OOM-killed
at scale l: 20M visits and a 23M-step table): one step per distinct duration per group (stage x
all / owner_id) with its events, censorings and at_risk (visits with duration >= t; a visit
censored at t is at risk at t). numpy then takes, per group, the running product S(t) of
(1 - events / at_risk) and the Greenwood sum left to right (`cumprod`/`cumsum`: the order of a
product-limit loop, so its rounding; a window aggregate in SQL rounds differently and moved
medians where S is exactly 0.5), the exponential Greenwood (log-log) 95% band, and the medians
(first t with S, or a band bound, at or below 0.5). Reads the `visits` view of views.py.
"""

import numpy as np
import pyarrow as pa

from ..common import US_PER_DAY, Z_95

STEPS_SQL = """
    WITH v AS (
        SELECT stage, 'all' AS dimension, NULL::VARCHAR AS dimension_value, days_us, completed FROM visits
        UNION ALL
        SELECT stage, 'owner_id', owner_id, days_us, completed FROM visits),
    t AS (
        SELECT stage, dimension, dimension_value, days_us AS t,
               SUM(completed::BIGINT) AS events, SUM((NOT completed)::BIGINT) AS censored, COUNT(*) AS n_t
        FROM v GROUP BY stage, dimension, dimension_value, days_us)
    SELECT DENSE_RANK() OVER (ORDER BY stage, dimension, dimension_value NULLS FIRST) - 1 AS gid,
           stage, dimension, dimension_value, t, events, censored,
           SUM(n_t) OVER (PARTITION BY stage, dimension, dimension_value ORDER BY t DESC
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS at_risk
    FROM t"""


class KaplanMeier:
    def __init__(self, con):
        self.con = con
        self._steps = None

    def steps(self):
        """Column arrays of the survival table (t in microseconds), computed once. The group
        labels stay in Arrow (taken by group id), not Python strings: 23M rows at scale l."""
        if self._steps is not None:
            return self._steps
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE km_steps AS {STEPS_SQL}")
        rel = self.con.sql("SELECT gid, t, events, censored, at_risk FROM km_steps ORDER BY gid, t").to_arrow_table()
        groups = self.con.sql(
            "SELECT DISTINCT gid, stage, dimension, dimension_value FROM km_steps ORDER BY gid"
        ).to_arrow_table()
        self.con.execute("DROP TABLE km_steps")
        gid = rel.column("gid").to_numpy()
        t = rel.column("t").to_numpy()
        d = rel.column("events").to_numpy().astype(np.float64)
        n = rel.column("at_risk").to_numpy().astype(np.float64)
        starts = np.flatnonzero(np.diff(gid, prepend=-1) != 0)
        ends = np.append(starts[1:], len(t))
        factor = 1.0 - d / n
        term = np.where((d > 0) & (n > d), d / (n * np.maximum(n - d, 1.0)), 0.0)
        s = np.empty(len(t))
        g = np.empty(len(t))
        for a, b in zip(starts, ends, strict=True):
            np.cumprod(factor[a:b], out=s[a:b])
            np.cumsum(term[a:b], out=g[a:b])
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_s = np.log(s)
            half = Z_95 * np.sqrt(g) / np.abs(ln_s)
            cc = np.log(-ln_s)
            lo = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, np.exp(-np.exp(cc + half))))
            hi = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, np.exp(-np.exp(cc - half))))
        take = pa.array(gid)
        self._steps = dict(
            stage=groups.column("stage").take(take),
            dimension=groups.column("dimension").take(take),
            dimension_value=groups.column("dimension_value").take(take),
            groups=groups.to_pylist(),
            t=t,
            at_risk=n,
            events=d,
            censored=rel.column("censored").to_numpy(),
            survival=s,
            ci_low=lo,
            ci_high=hi,
            starts=starts,
            ends=ends,
        )
        return self._steps

    def survival(self):
        """The stage_duration_survival columns."""
        k = self.steps()
        return {
            "stage": k["stage"],
            "dimension": k["dimension"],
            "dimension_value": k["dimension_value"],
            "t_days": k["t"] / US_PER_DAY,
            "at_risk": k["at_risk"].astype(np.uint32),
            "events": k["events"].astype(np.uint32),
            "censored": k["censored"].astype(np.uint32),
            "survival": k["survival"],
            "ci_low": k["ci_low"],
            "ci_high": k["ci_high"],
        }

    def medians(self):
        """{(stage, dimension, dimension_value): (km_median_days, ci_low, ci_high)}."""
        k = self.steps()
        out = {}
        for grp, a, b in zip(k["groups"], k["starts"], k["ends"], strict=True):

            def first(col, a=a, b=b):
                hit = np.flatnonzero(k[col][a:b] <= 0.5)
                return float(k["t"][a + hit[0]]) / US_PER_DAY if len(hit) else None

            key = (grp["stage"], grp["dimension"], grp["dimension_value"])
            out[key] = (first("survival"), first("ci_low"), first("ci_high"))
        return out

    def duration(self, stage_duration_sql):
        """The stage_duration columns: `stage_duration_sql`'s plus the Kaplan-Meier medians."""
        cur = self.con.execute(stage_duration_sql)
        cols = [c[0] for c in cur.description]
        rows = cur.fetchall()
        med = self.medians()
        out = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
        names = ["km_median_days", "km_median_ci_low", "km_median_ci_high"]
        for j, name in enumerate(names):
            out[name] = [
                med.get(
                    (r[cols.index("stage")], r[cols.index("dimension")], r[cols.index("dimension_value")]),
                    (None, None, None),
                )[j]
                for r in rows
            ]
        return out
