"""The Python package against the command line it stands for, on the sample store.

Run by scripts/python-package.sh on an installed wheel (CI: .ci/run)."""

import datetime
import shutil
import subprocess
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import crm_kpi

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "data" / "store"
AS_OF = "2026-06-30"


def cli(*args, cwd=None):
    """The `crm-kpi` command the wheel installed, beside this Python."""
    exe = shutil.which("crm-kpi")
    assert exe, "the wheel installs a crm-kpi command"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd)


def test_kpi_equals_the_command_lines_output(tmp_path):
    df = crm_kpi.kpi("win_rate", store=STORE, as_of=AS_OF, grain="month", by="owner_id")
    assert df.height > 0
    assert df.schema["period_start"] == pl.Date and df.schema["won"] == pl.Int64
    assert set(df["dimension"]) == {"owner_id"}
    r = cli("run", "--store", str(STORE), "--out", str(tmp_path), "--as-of", AS_OF, "--kpi", "win_rate")
    assert r.returncode == 0, r.stderr
    written = pl.read_parquet(tmp_path / "win_rate" / "grain=month" / f"as_of={AS_OF}" / "part-0.parquet")
    written = written.filter(pl.col("dimension") == "owner_id")
    key = ["period_start", "dimension", "dimension_value"]
    assert_frame_equal(df.drop("as_of").sort(key), written.select(df.drop("as_of").columns).sort(key), check_exact=True)
    assert set(df["as_of"]) == {datetime.date(2026, 6, 30)}
    # And to pandas, for the analysts who want it.
    assert len(df.to_pandas()) == df.height


def test_run_writes_the_catalog_and_returns_the_manifest(tmp_path):
    m = crm_kpi.run(STORE, tmp_path / "out", as_of=AS_OF, kpis=["win_rate", "lead_volume"])
    assert m["status"] == "succeeded" and m["as_of"] == AS_OF
    assert sorted(k["name"] for k in m["kpis"]) == ["lead_volume", "win_rate"]
    wr = crm_kpi.kpi("win_rate", store=STORE, as_of=AS_OF)
    assert next(k["rows"] for k in m["kpis"] if k["name"] == "win_rate") == wr.height


def test_a_bad_store_raises_the_command_lines_message(tmp_path):
    missing = tmp_path / "nowhere"
    r = cli("show", "win_rate", "--store", str(missing), "--as-of", AS_OF)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ")
    with pytest.raises(crm_kpi.CrmKpiError) as e:
        crm_kpi.kpi("win_rate", store=missing, as_of=AS_OF)
    assert str(e.value) == r.stderr.strip()[len("error: ") :]
    assert str(missing) in str(e.value)


def test_usage_errors_raise_too():
    with pytest.raises(crm_kpi.CrmKpiError, match="unknown_kpi|invalid value"):
        crm_kpi.kpi("unknown_kpi", store=STORE, as_of=AS_OF)
    with pytest.raises(crm_kpi.CrmKpiError, match="no dimension `nope`"):
        crm_kpi.kpi("win_rate", store=STORE, as_of=AS_OF, by="nope")


def test_the_gil_is_released_while_a_kpi_computes():
    beats = []
    stop = threading.Event()

    def heartbeat():
        while not stop.is_set():
            beats.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=heartbeat)
    t.start()
    try:
        start = time.perf_counter()
        crm_kpi.kpi("stage_duration_survival", store=STORE, as_of=AS_OF)
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert end - start > 0.05, "the call is too short to tell"
    # With the GIL held for the whole call, the other thread could not run inside it at all.
    inside = [b for b in beats if start + 0.01 < b < end - 0.01]
    assert len(inside) >= 5, f"{len(inside)} heartbeats during a {end - start:.2f} s call"


def test_catalog_and_report(tmp_path):
    cat = crm_kpi.catalog()
    assert len(cat) == 28
    wr = next(k for k in cat if k["name"] == "win_rate")
    assert wr["definition"] and "period_start" in [c["name"] for c in wr["columns"]]
    path = crm_kpi.report(STORE, tmp_path / "out", as_of=AS_OF, output=tmp_path / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_the_command_runs_in_process():
    r = cli("list")
    assert r.returncode == 0 and "win_rate" in r.stdout
    r = cli("show", "nope")
    assert r.returncode == 2 and "nope" in r.stderr


def test_ingest_then_kpi_from_the_new_store(tmp_path):
    gen = tmp_path / "gen"
    r = cli("generate", "--scale", "tiny", "--seed", "3", "--out", str(gen))
    assert r.returncode == 0, r.stderr
    store = tmp_path / "store"
    assert crm_kpi.ingest(sorted(gen.glob("*.csv")), store=store) == 0
    leads = crm_kpi.kpi("lead_volume", store=store, as_of=AS_OF, by="all")
    created = pl.read_csv(gen / "leads.csv", try_parse_dates=True)
    # Every generated lead created by as_of is counted once in the `all` rows.
    by_as_of = created.filter(pl.col("created_at").dt.date() <= datetime.date(2026, 6, 30)).height
    assert leads["new_leads"].sum() == by_as_of
    with pytest.raises(crm_kpi.CrmKpiError, match="no-such-file.csv"):
        crm_kpi.ingest([tmp_path / "no-such-file.csv"], store=store)
