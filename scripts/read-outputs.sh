#!/usr/bin/env bash
# The outputs and the store, read as warehouse tools read them (pandas, pyarrow, polars, DuckDB
# and Spark on a local[1] session), and every snippet of the README's reading sections run as
# written. CI runs it (.ci/run). Usage: scripts/read-outputs.sh
# Needs python3 >= 3.11 and a Java 17+ runtime for pyspark (installed with apt-get if missing).
# Env: CRM_KPI_BIN (default: the debug build CARGO_TARGET_DIR/debug/crm-kpi, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
BIN=${CRM_KPI_BIN:-$CARGO_TARGET_DIR/debug/crm-kpi}
[[ -x $BIN ]] || cargo build --locked -q --bin crm-kpi
scripts/ensure-java.sh
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
scripts/python-venv.sh "$VENV" -r scripts/requirements-read.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin" "$WORK/data"
ln -s "$BIN" "$WORK/bin/crm-kpi"
# A store written by this build (the checked-in sample may predate a format change).
"$BIN" generate --scale tiny --seed 1 --out "$WORK/gen" >/dev/null
"$BIN" ingest --store "$WORK/data/store" "$WORK"/gen/*.csv >/dev/null
"$BIN" run --store "$WORK/data/store" --out "$WORK/out" --as-of 2026-06-30 -q >/dev/null
PATH="$WORK/bin:$PATH" "$VENV/bin/python" scripts/read_outputs.py "$WORK" "$ROOT/README.md"
