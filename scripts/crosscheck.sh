#!/usr/bin/env bash
# Cross-check crm-kpi against independent DuckDB SQL on generated data.
# Usage: scripts/crosscheck.sh [SCALE] [AS_OF]   (defaults: s, 2026-06-30)
# Every KPI of the catalog is run and checked (set KPIS=a,b to restrict both to a list).
# EDGE=1 adds edge cases to the generated data before ingest (see crosscheck.py --perturb).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-s}
AS_OF=${2:-2026-06-30}
WORK=${WORK:-/tmp/crm-kpi-crosscheck-$SCALE}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import duckdb, pandas, numpy, scipy, mpmath" 2>/dev/null || "$VENV/bin/pip" install -q duckdb pandas numpy scipy mpmath
cargo build --release -q || echo "crosscheck: cargo build failed; using the existing binary" >&2
BIN="$CARGO_TARGET_DIR/release/crm-kpi"
rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN" generate --scale "$SCALE" --seed 7 --format parquet --out "$WORK/gen" >/dev/null
GEN="$WORK/gen"
if [ "${EDGE:-0}" = 1 ]; then
  "$VENV/bin/python" scripts/crosscheck.py --perturb "$WORK/gen" "$WORK/gen-edge"
  GEN="$WORK/gen-edge"
fi
"$BIN" ingest --store "$WORK/store" "$GEN"/*.parquet >/dev/null
KPIS=${KPIS:-}
"$BIN" run --store "$WORK/store" --out "$WORK/out" --as-of "$AS_OF" ${KPIS:+--kpi "$KPIS"}
"$VENV/bin/python" scripts/crosscheck.py "$WORK/store" "$WORK/out" "$AS_OF" "$KPIS"
