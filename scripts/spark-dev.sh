#!/usr/bin/env bash
# Develops the Spark SQL without rebuilding: renders the templates of src/kpi/spark (not the
# built-in copies) into a bundle, runs crm-kpi and the bundle (Spark local[2]) on a store, and
# compares them (reference/spark_conformance.py).
# Usage: scripts/spark-dev.sh KPIS [STORE] [AS_OF] [GRAIN]   (KPIS: a,b,c)
# Env: CRM_KPI_BIN (default: CARGO_TARGET_DIR/debug/crm-kpi), VENV (~/.cache/crm-kpi-venv, from
# scripts/requirements-read.txt: pyspark), WORK (default: /tmp/spark-dev-<first KPI>).
set -euo pipefail
cd "$(dirname "$0")/.."
KPIS=$1
STORE=$(realpath "${2:-data/store}")
AS_OF=${3:-2026-06-30}
GRAIN=${4:-month}
BIN=${CRM_KPI_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}/debug/crm-kpi}
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
WORK=${WORK:-/tmp/spark-dev-${KPIS%%,*}}
rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN" -q spark export --templates src/kpi/spark --out "$WORK/bundle" --as-of "$AS_OF" --grain "$GRAIN" --kpi "$KPIS"
"$BIN" -q run --store "$STORE" --out "$WORK/crm" --as-of "$AS_OF" --grain "$GRAIN" --kpi "$KPIS"
"$VENV/bin/python" "$WORK/bundle/crm_kpi_spark.py" --master "local[2]" --store "$STORE" --out "$WORK/spark" 2>&1 |
  grep -v -E "^(WARNING|Using Spark|To adjust|Setting default log level|.*WARN |.*FutureWarning|  require_minimum)" || true
"$VENV/bin/python" -m reference.spark_conformance --catalog "$BIN" --kpi "$KPIS" "$WORK/crm" "$WORK/spark" "$AS_OF" "$GRAIN"
