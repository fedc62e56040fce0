#!/usr/bin/env bash
# Cross-check crm-kpi against the independent DuckDB references (reference/duckdb/) on generated data.
# Usage: scripts/crosscheck.sh [SCALE] [AS_OF]   (defaults: s, 2026-06-30)
# Every KPI of the catalog (`crm-kpi list --json`) is run and checked (set KPIS=a,b to restrict
# both to a list); a KPI without a reference in an engine, or a reference that is not a KPI of the
# catalog, fails the check. EDGE=1 adds edge cases to the generated data before ingest (see
# `python -m reference.crosscheck --help`, --perturb).
# Env: CRM_KPI_BIN (a crm-kpi binary to use instead of `cargo build --release`),
# CRM_KPI_CATALOG (a binary or a JSON file giving `list --json`; default: the binary),
# CRM_KPI_CONFIG (crm-kpi.toml for the run and the references; default: the repository's),
# PIPELINES (1; 2 spreads the deals over the config's first two pipelines: with
# CRM_KPI_CONFIG=examples/two-pipelines.toml),
# VENV (~/.cache/crm-kpi-venv: made and kept up to date from reference/requirements.txt), WORK.
set -euo pipefail
# Paths given relative to the caller's directory, before the cd (a bare command name stays a command).
file() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
cmd() { case $1 in */* | *.json) file "$1" ;; *) echo "$1" ;; esac; }
[ -z "${CRM_KPI_BIN:-}" ] || CRM_KPI_BIN=$(cmd "$CRM_KPI_BIN")
[ -z "${CRM_KPI_CATALOG:-}" ] || CRM_KPI_CATALOG=$(cmd "$CRM_KPI_CATALOG")
[ -z "${CRM_KPI_CONFIG:-}" ] || CRM_KPI_CONFIG=$(file "$CRM_KPI_CONFIG")
cd "$(dirname "$0")/.."
SCALE=${1:-s}
AS_OF=${2:-2026-06-30}
WORK=${WORK:-/tmp/crm-kpi-crosscheck-$SCALE}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
scripts/python-venv.sh "$VENV" -r reference/requirements.txt
if [ -n "${CRM_KPI_BIN:-}" ]; then
  BIN=$CRM_KPI_BIN
else
  cargo build --release -q || echo "crosscheck: cargo build failed; using the existing binary" >&2
  BIN="$CARGO_TARGET_DIR/release/crm-kpi"
fi
CATALOG=${CRM_KPI_CATALOG:-$BIN}
CONFIG=${CRM_KPI_CONFIG:-$PWD/crm-kpi.toml}
CRM=("$BIN" --config "$CONFIG")
rm -rf "$WORK" && mkdir -p "$WORK"
"${CRM[@]}" generate --scale "$SCALE" --seed 7 --format parquet --pipelines "${PIPELINES:-1}" --out "$WORK/gen" >/dev/null
GEN="$WORK/gen"
if [ "${EDGE:-0}" = 1 ]; then
  "$VENV/bin/python" -m reference.crosscheck --config "$CONFIG" --perturb "$WORK/gen" "$WORK/gen-edge"
  GEN="$WORK/gen-edge"
fi
"${CRM[@]}" ingest --store "$WORK/store" "$GEN"/*.parquet >/dev/null
KPIS=${KPIS:-}
"${CRM[@]}" run --store "$WORK/store" --out "$WORK/out" --as-of "$AS_OF" ${KPIS:+--kpi "$KPIS"}
"$VENV/bin/python" -m reference.crosscheck --catalog "$CATALOG" --config "$CONFIG" \
  "$WORK/store" "$WORK/out" "$AS_OF" "$KPIS"
