#!/usr/bin/env bash
# Fuzz the readers and value parsers with cargo-fuzz (libFuzzer) on the stable toolchain.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   CI runs it with 30 s per target; the long run (README, "Reliability") is
#   `RUNS=1000000 scripts/fuzz.sh 7200 read_csv read_json read_parquet parse_values`: each target
#   stops after RUNS inputs or SECONDS, whichever comes first.
# Prints, per target, the inputs run and whether anything crashed (a crash fails the script
# and leaves the input in fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(read_csv read_json read_parquet parse_values ingest_csv)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# cargo-fuzz asks for nightly-only flags; the stable toolchain takes them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/crm-kpi-fuzz-target}"
cargo fuzz build --sanitizer none
status=0
for t in "${TARGETS[@]}"; do
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$t/." "$work/"
  log=$(mktemp)
  # The built binary, run directly: `cargo fuzz run` would rebuild it whenever the sources
  # change during a long run.
  mkdir -p "fuzz/artifacts/$t"
  if "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$t" -artifact_prefix="fuzz/artifacts/$t/" "$work" \
      -max_total_time="$SECS" ${RUNS:+-runs="$RUNS"} -rss_limit_mb=4096 -timeout=60 >"$log" 2>&1; then
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo 0)
    secs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -Eo '[0-9]+ second' | grep -Eo '[0-9]+' || echo "$SECS")
    echo "fuzz $t: $runs inputs in ${secs}s, no crash"
  else
    echo "fuzz $t: CRASH (see fuzz/artifacts/$t/)"; tail -30 "$log"; status=1
  fi
  rm -rf "$work" "$log"
done
exit $status
