#!/usr/bin/env bash
# Two whole-catalog runs of one store give byte-identical outputs.
#
# usage: scripts/identical-runs.sh [SCALE] [RUNS]      (defaults: s 2)
#
# Generates a history (`generate --scale SCALE --seed 5`), ingests it, runs the whole catalog
# RUNS times into fresh output folders as of 2026-06-30 and compares every output file
# byte for byte (the run manifests, named by run id, by KPI name, version and row count; the
# lock file holds the last run's process id).
# Prints `identical runs: N files, D differ` and exits 1 when any differ.
#
# Env: CRM_KPI_BIN (the binary; default a release build in CARGO_TARGET_DIR or ./target),
#      KEEP=1 (keep the work dir), WORK (work dir; default a new temp dir).
set -euo pipefail

SCALE=${1:-s}
RUNS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -n ${CRM_KPI_BIN:-} ]]; then
    BIN=$CRM_KPI_BIN
else
    BIN=$TARGET/release/crm-kpi
    echo "building $BIN ..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin crm-kpi)
fi
[[ -x $BIN ]] || { echo "identical-runs: no binary at $BIN" >&2; exit 2; }

WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/crm-kpi-identical.XXXXXX")}
mkdir -p "$WORK"
cleanup() { if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi; }
trap cleanup EXIT
cd "$WORK"   # no crm-kpi.toml here: the built-in default configuration applies

echo "generating --scale $SCALE --seed 5 and ingesting ..." >&2
"$BIN" generate --scale "$SCALE" --seed 5 --out gen >/dev/null
"$BIN" ingest --store store gen/*.csv >/dev/null
for i in $(seq 1 "$RUNS"); do
    echo "run $i ..." >&2
    "$BIN" run --store store --out "out$i" --as-of 2026-06-30 >/dev/null
done

files=0
differ=0
while IFS= read -r f; do
    files=$((files + 1))
    for i in $(seq 2 "$RUNS"); do
        if ! cmp -s "out1/$f" "out$i/$f"; then
            echo "differs: $f (run $i)"; differ=$((differ + 1))
        fi
    done
done < <(cd out1 && find . -type f -not -path './_runs/*' -not -name .lock | sort)
# The run manifests (named by run id) agree on every KPI's name, version and row count.
manifest() { python3 -c 'import json,sys,glob; m=json.load(open(glob.glob(sys.argv[1]+"/_runs/*.json")[0])); print([(k["name"],k["version"],k["rows"]) for k in m["kpis"]], m["store_generation"], m["as_of"], m["config_hash"])' "$1"; }
for i in $(seq 2 "$RUNS"); do
    n=$(cd "out$i" && find . -type f -not -path './_runs/*' -not -name .lock | wc -l)
    [[ $n -eq $files ]] || { echo "run $i wrote $n files, run 1 $files"; differ=$((differ + 1)); }
    [[ $(manifest out1) == "$(manifest "out$i")" ]] || { echo "run manifests differ (run $i)"; differ=$((differ + 1)); }
done
echo "identical runs: $RUNS runs, $files output files each, $differ differ"
[[ $differ -eq 0 ]]
