#!/usr/bin/env bash
# Side-by-side comparison on one generated store: `crm-kpi run` (the whole catalog) against the
# same KPI definitions in DuckDB SQL and in pandas, and the scan floor (every column the catalog
# reads, read once). Checks that the engines agree on every KPI, then prints wall time, CPU
# time and peak RSS per engine (medians of RUNS runs, engines alternated) and the ratios.
#
# The DuckDB and pandas engines are reference/duckdb and reference/pandas; the agreement check and
# the table are `python -m reference.compare`, which fails when a KPI of the catalog
# (`crm-kpi list --json`) has no reference in an engine, or an engine has one for a KPI that is
# not in the catalog.
#
# Usage: benches/compare/run.sh SCALE [RUNS]      (SCALE: tiny|s|m|l; RUNS default 3)
# Env: AS_OF (2026-06-30), THREADS (2), STREAMING=1 (polars streaming engine for crm-kpi and the
# scan floor; default at scale l), ENGINES (default "crm-kpi duckdb pandas scan"; at scale l
# "crm-kpi duckdb scan"), BENCH_DATA (~/.cache/crm-kpi-bench:
# the generated store of each scale is kept there and reused), CRM_KPI_BIN (a crm-kpi binary to
# use instead of `cargo build`; the scan engine then uses examples/scan_floor beside it, and is
# left out when there is none), CRM_KPI_CATALOG (a binary or a JSON file giving `list --json`;
# default: the binary), CRM_KPI_CONFIG (crm-kpi.toml for crm-kpi and the engines; default: the
# repository's), PIPELINES (1; 2 spreads the deals over two pipelines: `generate --pipelines 2`,
# with a CRM_KPI_CONFIG that declares them, e.g. examples/two-pipelines.toml), VENV
# (~/.cache/crm-kpi-venv: made and kept up to date from reference/requirements.txt).
set -euo pipefail
# Paths given relative to the caller's directory, before the cd (a bare command name stays a command).
file() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
cmd() { case $1 in */* | *.json) file "$1" ;; *) echo "$1" ;; esac; }
[ -z "${CRM_KPI_BIN:-}" ] || CRM_KPI_BIN=$(cmd "$CRM_KPI_BIN")
[ -z "${CRM_KPI_CATALOG:-}" ] || CRM_KPI_CATALOG=$(cmd "$CRM_KPI_CATALOG")
[ -z "${CRM_KPI_CONFIG:-}" ] || CRM_KPI_CONFIG=$(file "$CRM_KPI_CONFIG")
cd "$(dirname "$0")/../.."
SCALE=${1:-s}
RUNS=${2:-3}
AS_OF=${AS_OF:-2026-06-30}
THREADS=${THREADS:-2}
# Scale l: pandas would need more memory than the machine has (its target is at scale m), and
# crm-kpi runs on polars' streaming engine.
if [ "$SCALE" = l ]; then
  ENGINES=${ENGINES:-crm-kpi duckdb scan}
  STREAMING=${STREAMING:-1}
fi
ENGINES=${ENGINES:-crm-kpi duckdb pandas scan}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
PIPELINES=${PIPELINES:-1}
DATA=${BENCH_DATA:-$HOME/.cache/crm-kpi-bench}/$SCALE
# Deals over two pipelines (PIPELINES=2, with a CRM_KPI_CONFIG declaring them, e.g.
# examples/two-pipelines.toml): a store of its own.
[ "$PIPELINES" = 1 ] || DATA="$DATA-pipelines-$PIPELINES"

scripts/python-venv.sh "$VENV" -r reference/requirements.txt
PY="$VENV/bin/python"
[ -x /usr/bin/time ] || { echo "compare: needs /usr/bin/time (GNU time; apt-get install time)" >&2; exit 2; }

if [ -n "${CRM_KPI_BIN:-}" ]; then
  BIN=$CRM_KPI_BIN
  FLOOR="$(dirname "$(command -v "$BIN")")/examples/scan_floor"
  if [[ " $ENGINES " == *" scan "* ]] && [ ! -x "$FLOOR" ]; then
    echo "compare: no scan floor at $FLOOR (CRM_KPI_BIN is set, nothing is built): leaving the scan engine out" >&2
    ENGINES=$(echo " $ENGINES " | sed 's/ scan / /; s/^ *//; s/ *$//')
  fi
else
  cargo build --release --locked -q --bin crm-kpi --example scan_floor
  BIN="$CARGO_TARGET_DIR/release/crm-kpi"
  FLOOR="$CARGO_TARGET_DIR/release/examples/scan_floor"
fi
CATALOG=${CRM_KPI_CATALOG:-$BIN}
CONFIG=${CRM_KPI_CONFIG:-$PWD/crm-kpi.toml}

if [ ! -f "$DATA/store/_manifest.json" ]; then
  echo "compare: generating and ingesting scale $SCALE into $DATA (once)" >&2
  rm -rf "$DATA" && mkdir -p "$DATA"
  "$BIN" --config "$CONFIG" generate --scale "$SCALE" --seed 7 --format parquet --pipelines "$PIPELINES" \
    --out "$DATA/gen" >/dev/null
  "$BIN" --config "$CONFIG" ingest --store "$DATA/store" "$DATA"/gen/*.parquet >/dev/null
  rm -rf "$DATA/gen"
fi
STORE="$DATA/store"
WORK="$DATA/compare"
rm -rf "$WORK" && mkdir -p "$WORK"
if [[ " $ENGINES " == *" scan "* ]]; then
  "$FLOOR" columns > "$WORK/columns.json"
  # The in-memory size of those columns (the yardstick of the peak-RSS target), not timed.
  "$FLOOR" size "$STORE" "$WORK/columns.json" > "$WORK/size.txt"
fi

export POLARS_MAX_THREADS=$THREADS
STREAM_FLAG=()
if [ "${STREAMING:-0}" = 1 ]; then
  STREAM_FLAG=(--streaming)
  export CRM_KPI_STREAMING=1
fi

run_engine() { # engine run-index
  local e=$1 i=$2 out="$WORK/$1.$2"
  local t=(/usr/bin/time -f "%e %U %S %M" -o "$WORK/time.$e.$i")
  case $e in
    crm-kpi) "${t[@]}" "$BIN" --config "$CONFIG" run --store "$STORE" --out "$out" --as-of "$AS_OF" "${STREAM_FLAG[@]}" \
      >"$WORK/log.$e.$i" 2>&1 ;;
    duckdb) "${t[@]}" "$PY" -m reference.duckdb --config "$CONFIG" "$STORE" "$out" "$AS_OF" "$THREADS" >"$WORK/log.$e.$i" 2>&1 ;;
    pandas) "${t[@]}" "$PY" -m reference.pandas --config "$CONFIG" "$STORE" "$out" "$AS_OF" >"$WORK/log.$e.$i" 2>&1 ;;
    scan) "${t[@]}" "$FLOOR" scan "$STORE" "$WORK/columns.json" >"$WORK/log.$e.$i" 2>&1 ;;
  esac || { echo "compare: $e run $i failed; see $WORK/log.$e.$i" >&2; tail -5 "$WORK/log.$e.$i" >&2; exit 1; }
  rm -rf "$out.duckdb-tmp"
  # Keep one output of each engine for the agreement check, and crm-kpi's second to check that
  # two runs give the same values.
  if [ "$i" -gt 1 ] && [ -d "$out" ] && ! { [ "$e" = crm-kpi ] && [ "$i" = 2 ]; }; then rm -rf "$out"; fi
}

read -r -a LIST <<<"$ENGINES"
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then order=("${LIST[@]}"); else order=(); for ((j=${#LIST[@]}-1; j>=0; j--)); do order+=("${LIST[$j]}"); done; fi
  for e in "${order[@]}"; do
    echo "compare: run $i/$RUNS $e" >&2
    run_engine "$e" "$i"
  done
done
"$PY" -m reference.compare --catalog "$CATALOG" "$WORK" "$STORE" "$AS_OF" "$SCALE" "$THREADS" "$RUNS" $ENGINES
