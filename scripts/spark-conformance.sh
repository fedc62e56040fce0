#!/usr/bin/env bash
# The catalog on real Spark (local[2]) equals crm-kpi's own outputs: every KPI, schema and
# values (counts exactly, floats to 1e-9 relative; reference/spark_conformance.py), through
# `crm-kpi run --engine spark`, on the sample store and on a generated store with the edge cases
# of the DuckDB cross-check (month grain), and on the sample store at the quarter grain in
# America/New_York. The comparison also checks that one perturbed value is reported. CI runs it
# (.ci/run). Installs a Java 17 runtime (apt-get) when java is missing, and pyspark in a cached
# venv. Usage: scripts/spark-conformance.sh
# Env: CRM_KPI_BIN (default: the debug build, built if missing), VENV (~/.cache/crm-kpi-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
BIN=${CRM_KPI_BIN:-$CARGO_TARGET_DIR/debug/crm-kpi}
[[ -x $BIN ]] || cargo build --locked -q --bin crm-kpi
scripts/ensure-java.sh
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
scripts/python-venv.sh "$VENV" -r scripts/requirements-read.txt
# The bundle's driver runs on the venv's Python (pyspark, numpy, pandas, scipy).
export PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
SUBMIT="$VENV/bin/spark-submit --master local[2] --driver-memory 2g --conf spark.ui.enabled=false"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
quiet_spark() { grep -v -E "^(WARNING|Using Spark|To adjust|Setting default log level)|WARN |FutureWarning|require_minimum" || true; }

check() { # NAME STORE AS_OF GRAIN [CONFIG]
  local name=$1 store=$2 as_of=$3 grain=$4 cfg=(${5:+--config "$5"})
  echo "== spark conformance: $name (as of $as_of, grain $grain)"
  local t0=$SECONDS
  "$BIN" "${cfg[@]}" -q run --store "$store" --out "$WORK/$name/crm" --as-of "$as_of" --grain "$grain"
  "$BIN" "${cfg[@]}" -q run --engine spark --spark-submit "$SUBMIT" --store "$store" --out "$WORK/$name/spark" \
    --as-of "$as_of" --grain "$grain" 2>&1 | quiet_spark
  "$VENV/bin/python" -m reference.spark_conformance --catalog "$BIN" \
    "$WORK/$name/crm" "$WORK/$name/spark" "$as_of" "$grain"
  echo "== $name: $((SECONDS - t0)) s"
}

check sample data/store 2026-06-30 month

"$BIN" generate --scale tiny --seed 7 --format parquet --out "$WORK/gen" >/dev/null
"$VENV/bin/python" -m reference.crosscheck --perturb "$WORK/gen" "$WORK/gen-edge" >/dev/null
"$BIN" -q ingest --store "$WORK/edge-store" "$WORK"/gen-edge/*.parquet >/dev/null
check edge "$WORK/edge-store" 2026-06-30 month

# Two pipelines (examples/two-pipelines.toml: stage names shared by both, moved deals), with the
# edge cases.
TWO=examples/two-pipelines.toml
"$BIN" --config "$TWO" generate --scale tiny --seed 7 --format parquet --pipelines 2 --out "$WORK/gen2" >/dev/null
"$VENV/bin/python" -m reference.crosscheck --config "$TWO" --perturb "$WORK/gen2" "$WORK/gen2-edge" >/dev/null
"$BIN" --config "$TWO" -q ingest --store "$WORK/pipelines-store" "$WORK"/gen2-edge/*.parquet >/dev/null
check pipelines "$WORK/pipelines-store" 2026-06-30 month "$TWO"

sed 's/^timezone = "UTC"/timezone = "America\/New_York"/' crm-kpi.toml >"$WORK/ny.toml"
check sample-quarter-ny data/store 2026-06-30 quarter "$WORK/ny.toml"
