#!/usr/bin/env bash
# The catalog on Spark against `crm-kpi run`, side by side on one generated store: crm-kpi
# (release; polars' streaming engine at scale l), then the Spark bundle on local[2] and on
# local[1] (`crm-kpi run --engine spark`), RUNS times each, alternated. Prints wall time and
# peak RSS of the whole process tree (benches/compare/tree_rss.py) per engine, the ratios, and
# (at scales below l) checks that Spark's outputs equal crm-kpi's (reference/spark_conformance.py).
# Usage: benches/compare/spark.sh SCALE [RUNS]    (SCALE: tiny|s|m|l; RUNS default 1)
# Env: AS_OF (2026-06-30), BENCH_DATA (~/.cache/crm-kpi-bench, the store of each scale, shared
# with run.sh), DRIVER_MEMORY (Spark's, default 8g; 16g at l), LOCALS (the local[N] masters to
# run, default "2 1"), CRM_KPI_BIN, VENV.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE=${1:-s}
RUNS=${2:-1}
AS_OF=${AS_OF:-2026-06-30}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
DATA=${BENCH_DATA:-$HOME/.cache/crm-kpi-bench}/$SCALE
MEM=${DRIVER_MEMORY:-$([ "$SCALE" = l ] && echo 16g || echo 8g)}
scripts/python-venv.sh "$VENV" -r scripts/requirements-read.txt
scripts/ensure-java.sh
if [ -n "${CRM_KPI_BIN:-}" ]; then
  BIN=$CRM_KPI_BIN
else
  cargo build --release --locked -q --bin crm-kpi
  BIN="$CARGO_TARGET_DIR/release/crm-kpi"
fi
if [ ! -f "$DATA/store/_manifest.json" ]; then
  echo "spark bench: generating and ingesting scale $SCALE into $DATA (once)" >&2
  rm -rf "$DATA" && mkdir -p "$DATA"
  "$BIN" generate --scale "$SCALE" --seed 7 --format parquet --out "$DATA/gen" >/dev/null
  "$BIN" ingest --store "$DATA/store" "$DATA"/gen/*.parquet >/dev/null
  rm -rf "$DATA/gen"
fi
STREAM=()
[ "$SCALE" = l ] && STREAM=(--streaming)
WORK="$DATA/spark-bench"
rm -rf "$WORK" && mkdir -p "$WORK"
export PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
TREE=("$VENV/bin/python" benches/compare/tree_rss.py)
for i in $(seq 1 "$RUNS"); do
  echo "run $i: crm-kpi" >&2
  "${TREE[@]}" "$WORK/time.crm-kpi.$i" "$BIN" -q run "${STREAM[@]}" --store "$DATA/store" --out "$WORK/crm-kpi.$i" --as-of "$AS_OF"
  for n in ${LOCALS:-2 1}; do
    echo "run $i: spark local[$n]" >&2
    "${TREE[@]}" "$WORK/time.spark$n.$i" "$BIN" -q run --engine spark \
      --spark-submit "$VENV/bin/spark-submit --master local[$n] --driver-memory $MEM --conf spark.ui.enabled=false" \
      --store "$DATA/store" --out "$WORK/spark$n.$i" --as-of "$AS_OF" 2>"$WORK/spark$n.$i.log"
  done
done
"$VENV/bin/python" - "$WORK" "$RUNS" "$SCALE" <<'PY'
import statistics, sys
work, runs, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def med(engine):
    rows = [tuple(map(float, open(f"{work}/time.{engine}.{i}").read().split())) for i in range(1, runs + 1)]
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
crm = med("crm-kpi")
print(f"scale {scale}, {runs} run(s), medians; wall s / peak RSS of the process tree MiB")
print(f"{'engine':<16}{'wall s':>10}{'peak MiB':>10}{'wall / crm-kpi':>16}")
import os
engines = [("crm-kpi", "crm-kpi"), ("spark local[2]", "spark2"), ("spark local[1]", "spark1")]
engines = [e for e in engines if os.path.exists(f"{work}/time.{e[1]}.1")]
for name, engine in engines:
    w, m = med(engine)
    print(f"{name:<16}{w:>10.1f}{m:>10.0f}{w / crm[0]:>15.1f}x")
if os.path.exists(f"{work}/time.spark1.1"):
    print(f"spark local[1] / local[2]: {med('spark1')[0] / med('spark2')[0]:.2f}x")
PY
if [ "$SCALE" != l ]; then
  "$VENV/bin/python" -m reference.spark_conformance --catalog "$BIN" "$WORK/crm-kpi.1" "$WORK/spark2.1" "$AS_OF" month |
    tail -3
fi
