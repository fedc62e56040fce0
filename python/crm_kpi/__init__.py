"""Sales KPIs from CRM exports, computed in this process by the crm-kpi engine (Rust, polars).

Each function stands for a command of the `crm-kpi` command line and takes the same options,
so the numbers are the ones `crm-kpi run` writes; errors raise :class:`CrmKpiError` with the
message the command line prints. The engine releases the GIL while it works.

>>> import crm_kpi
>>> wr = crm_kpi.kpi("win_rate", store="data/store", as_of="2026-06-30", by="owner_id")
>>> wr.filter(wr["period_start"] >= datetime.date(2026, 1, 1))      # a polars DataFrame
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import polars as pl

from . import _crm_kpi
from ._crm_kpi import CrmKpiError

__all__ = ["CrmKpiError", "catalog", "ingest", "kpi", "report", "run"]

PathLike = Union[str, "os.PathLike[str]"]
Grain = Literal["week", "month", "quarter", "year"]


def _common(config: PathLike | None) -> list[str]:
    return ["--config", os.fspath(config)] if config is not None else []


def _opt(flag: str, value: Any) -> list[str]:
    return [] if value is None else [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]


def kpi(
    name: str,
    *,
    store: PathLike | None = None,
    as_of: str | None = None,
    grain: Grain = "month",
    by: str | None = None,
    period: str | None = None,
    config: PathLike | None = None,
) -> pl.DataFrame:
    """One KPI computed from the store, as a polars DataFrame (the rows of `crm-kpi show`).

    Args:
        name: a KPI of the catalog (see :func:`catalog`), e.g. ``"win_rate"``.
        store: the store directory (default: ``store`` in crm-kpi.toml, else data/store).
        as_of: a date ``YYYY-MM-DD`` (its end, in the configured timezone), a local date-time or
            an RFC 3339 instant (default: now).
        grain: the period grain: week, month, quarter or year.
        by: only the rows of this dimension (``"owner_id"``, ``"source"``, ``"all"``, ...).
        period: only the rows of this period: ``"2026"``, ``"2026-Q1"``, ``"2026-03"`` or
            ``"2026-01-01..2026-04-01"``.
        config: crm-kpi.toml (default: ./crm-kpi.toml if present, else the built-in one).

    The frame's buffers come from the engine without a copy (Arrow C stream); ``.to_pandas()``
    and ``.to_arrow()`` convert it.
    """
    argv = [name, *_opt("--store", store), *_opt("--as-of", as_of), "--grain", grain]
    argv += _opt("--by", by) + _opt("--period", period) + _common(config)
    return pl.DataFrame(_crm_kpi.show(argv))


def run(
    store: PathLike,
    out: PathLike,
    *,
    as_of: str | None = None,
    grain: Grain = "month",
    kpis: Sequence[str] | None = None,
    streaming: bool = False,
    config: PathLike | None = None,
) -> dict[str, Any]:
    """Computes KPIs (default: the whole catalog) and writes them to ``out`` as `crm-kpi run`
    does (``OUT/<kpi>/grain=<grain>/as_of=<date>/part-0.parquet``); returns the run manifest
    (``OUT/_runs/latest.json``: files, rows and timings per KPI)."""
    argv = ["run", "--store", os.fspath(store), "--out", os.fspath(out), *_opt("--as-of", as_of)]
    argv += ["--grain", grain, "-q"]
    if kpis:
        argv += ["--kpi", ",".join(kpis)]
    if streaming:
        argv.append("--streaming")
    _crm_kpi.call(argv + _common(config))
    return json.loads((Path(out) / "_runs" / "latest.json").read_text(encoding="utf-8"))


def ingest(
    files: Sequence[PathLike],
    *,
    store: PathLike,
    preset: str | None = None,
    mode: Literal["upsert", "append", "replace"] | None = None,
    table: str | None = None,
    strict: bool = False,
    won_deals_as_orders: bool = False,
    config: PathLike | None = None,
) -> int:
    """Reads CRM exports into the store as `crm-kpi ingest` does (its report is printed).

    Returns 0, or 1 when rows were rejected and ``strict`` is set (the command's exit code);
    any other problem raises :class:`CrmKpiError`."""
    argv = ["ingest", "--store", os.fspath(store), *_opt("--preset", preset), *_opt("--mode", mode)]
    argv += _opt("--table", table)
    if strict:
        argv.append("--strict")
    if won_deals_as_orders:
        argv.append("--won-deals-as-orders")
    return _crm_kpi.call(argv + _common(config) + ["--", *(os.fspath(f) for f in files)])


def report(
    store: PathLike | None = None,
    out: PathLike | None = None,
    *,
    as_of: str | None = None,
    grain: Grain = "month",
    output: PathLike = "report.html",
    config: PathLike | None = None,
) -> Path:
    """Writes the HTML report as `crm-kpi report` does (running the KPIs ``out`` lacks);
    returns its path."""
    argv = ["report", *_opt("--store", store), *_opt("--out", out), *_opt("--as-of", as_of)]
    argv += ["--grain", grain, "-o", os.fspath(output), "-q"]
    _crm_kpi.call(argv + _common(config))
    return Path(output)


def catalog() -> list[dict[str, Any]]:
    """The KPI catalog (`crm-kpi list --json`): per KPI its name, family, grain, definition,
    version, key and output columns with their types."""
    return json.loads(_crm_kpi.catalog_json())
