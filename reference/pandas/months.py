"""Calendar months of the pandas KPIs: months as integers (months since 1970-01, UTC) and back
to dates, whether a month is over at as_of, and day counts.
"""

import numpy as np
import pandas as pd
import pyarrow as pa

from ..common import US_PER_DAY
from .context import as_of_us, cur_period


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
