#!/usr/bin/env bash
# SIGKILL robustness of `crm-kpi ingest` (README, "Reliability": "a crash or kill at any moment leaves the
# previous consistent store").
#
# usage: scripts/kill-test.sh [SCALE] [TRIES]      (defaults: s 20)
#
# Generates a history once (`generate --scale SCALE --seed 7`), ingests its first part
# (fx_rates, reps, accounts, campaigns, leads) into an "old" store, and measures one
# uninterrupted ingest of all files on a copy of it (the "new" store). Then TRIES times:
# copy the old store, start ingesting all files, `kill -9` it after a random delay in
# [0, measured duration), and check that
#   - `validate` exits 0,
#   - the manifest's row counts (tables and quarantine) are exactly the old or the new ones,
#   - re-running the ingest completes and yields the new counts.
# Prints `kill test: N tries, A old, B new, C bad` and exits 1 if anything was bad.
#
# Env: CARGO_TARGET_DIR (where the release binary is built/looked up; default ./target),
#      CRM_KPI_BIN (use this binary instead of building), KEEP=1 (keep the work dir),
#      WORK (work dir; default a new temp dir),
#      SPREAD (delays are drawn from [0, SPREAD x duration); default 1. The commit is the
#      last step of an ingest, so SPREAD=1.2 also exercises kills around and after it).
set -euo pipefail

SCALE=${1:-s}
TRIES=${2:-20}
SPREAD=${SPREAD:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ -n ${CRM_KPI_BIN:-} ]]; then
    BIN=$CRM_KPI_BIN
else
    BIN=$TARGET/release/crm-kpi
    echo "building $BIN ..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin crm-kpi)
fi
[[ -x $BIN ]] || { echo "kill-test: no binary at $BIN" >&2; exit 2; }
command -v python3 >/dev/null || { echo "kill-test: needs python3 (to read _manifest.json)" >&2; exit 2; }

WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/crm-kpi-kill.XXXXXX")}
mkdir -p "$WORK"
cleanup() { if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi; }
trap cleanup EXIT
cd "$WORK"   # no crm-kpi.toml here: the built-in default configuration applies

now() { date +%s.%N; }

# Row counts of every table and quarantine, one `name rows` per line, sorted.
counts() {
    python3 - "$1/_manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
rows = {t: e["rows"] for t, e in m["tables"].items()}
for t, files in m.get("quarantine", {}).items():
    rows["quarantine/" + t] = sum(f["rows"] for f in files)
for k in sorted(rows):
    print(k, rows[k])
EOF
}

# Fails if a table version or quarantine batch on disk is not named by the manifest.
orphans() {
    python3 - "$1" <<'EOF'
import json, os, sys
store = sys.argv[1]
m = json.load(open(os.path.join(store, "_manifest.json")))
ref = {os.path.join(store, e["dir"]) for e in m["tables"].values()}
for files in m.get("quarantine", {}).values():
    ref |= {os.path.dirname(os.path.join(store, f["path"])) for f in files}
bad = []
for top in ("tables", "quarantine"):
    d = os.path.join(store, top)
    if not os.path.isdir(d):
        continue
    for t in os.listdir(d):
        for v in os.listdir(os.path.join(d, t)):
            p = os.path.join(d, t, v)
            if p not in ref:
                bad.append(p)
if os.path.exists(os.path.join(store, "_manifest.json.tmp")):
    bad.append("_manifest.json.tmp")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
}

echo "generating --scale $SCALE --seed 7 into $WORK/gen ..." >&2
"$BIN" generate --scale "$SCALE" --seed 7 --out gen >gen.log
mapfile -t ALL < <(find gen -maxdepth 1 -type f \( -name '*.csv' -o -name '*.parquet' -o -name '*.ndjson' \) | sort)
[[ ${#ALL[@]} -gt 0 ]] || { echo "kill-test: generate wrote no files into $WORK/gen" >&2; exit 2; }
FIRST=()
for f in "${ALL[@]}"; do
    case $(basename "$f") in
        fx_rates[.-_]* | reps[.-_]* | accounts[.-_]* | campaigns[.-_]* | leads[.-_]*) FIRST+=("$f") ;;
    esac
done
[[ ${#FIRST[@]} -gt 0 && ${#FIRST[@]} -lt ${#ALL[@]} ]] || { echo "kill-test: cannot split ${ALL[*]}" >&2; exit 2; }

echo "old state: ingesting ${FIRST[*]} ..." >&2
"$BIN" ingest --store old "${FIRST[@]}" >old.log
counts old >old.counts

echo "new state: one uninterrupted ingest of ${#ALL[@]} files ..." >&2
cp -a old full
t0=$(now)
"$BIN" ingest --store full "${ALL[@]}" >full.log
t1=$(now)
DURATION=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
counts full >new.counts
if cmp -s old.counts new.counts; then echo "kill-test: the full ingest did not change the store" >&2; exit 2; fi
echo "one full ingest takes ${DURATION}s" >&2
echo "old: $(tr '\n' ' ' <old.counts)" >&2
echo "new: $(tr '\n' ' ' <new.counts)" >&2

n_old=0 n_new=0 n_bad=0
for ((i = 0; i < TRIES; i++)); do
    rm -rf try
    cp -a old try
    delay=$(python3 -c "import random; print(f'{random.random() * $SPREAD * $DURATION:.3f}')")
    "$BIN" ingest --store try "${ALL[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null && status=0 || status=$?
    how="killed after ${delay}s"
    [[ $status -eq 137 ]] || how="exited $status before the kill at ${delay}s"

    verdict= state=
    if ! "$BIN" validate --store try >validate.log 2>&1; then
        verdict="validate failed: $(tail -n 3 validate.log)"
    else
        counts try >try.counts
        if cmp -s try.counts old.counts; then
            state=old
        elif cmp -s try.counts new.counts; then
            state=new
        else
            verdict="counts neither old nor new: $(tr '\n' ' ' <try.counts)"
        fi
    fi
    if [[ -z $verdict ]]; then
        if ! "$BIN" ingest --store try "${ALL[@]}" >again.log 2>&1; then
            verdict="re-ingest failed: $(tail -n 3 again.log)"
        else
            counts try >again.counts
            if ! cmp -s again.counts new.counts; then
                verdict="re-ingest gave: $(tr '\n' ' ' <again.counts)"
            elif ! left=$(orphans try); then
                verdict="orphans after re-ingest: $left"
            fi
        fi
    fi
    if [[ -n $verdict ]]; then
        n_bad=$((n_bad + 1))
        echo "try $i ($how): BAD: $verdict" >&2
        if [[ ${KEEP:-0} == 1 ]]; then mv try "bad-$i"; fi
    else
        if [[ $state == old ]]; then n_old=$((n_old + 1)); else n_new=$((n_new + 1)); fi
        echo "try $i ($how): $state" >&2
    fi
done
rm -rf try

echo "kill test: $TRIES tries, $n_old old, $n_new new, $n_bad bad (scale $SCALE, one ingest ${DURATION}s)"
[[ $n_bad -eq 0 ]]
