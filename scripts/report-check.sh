#!/usr/bin/env bash
# The HTML report in a real browser: `crm-kpi report` on the sample store, opened from a
# file:// URL in headless Chromium (Debian's chromium, installed with apt-get when missing).
# Fails on a console error, a section without a drawn chart, or a headline tile whose number
# differs from the KPI output it shows; saves a screenshot. CI runs it (.ci/run).
# Usage: scripts/report-check.sh [SCREENSHOT.png]   (default: a temporary file)
# Env: CRM_KPI_BIN (default: the debug build CARGO_TARGET_DIR/debug/crm-kpi, built if missing),
# VENV (~/.cache/crm-kpi-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
BIN=${CRM_KPI_BIN:-$CARGO_TARGET_DIR/debug/crm-kpi}
[[ -x $BIN ]] || cargo build --locked -q --bin crm-kpi
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
VENV=${VENV:-$HOME/.cache/crm-kpi-venv}
scripts/python-venv.sh "$VENV" -r scripts/requirements-read.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SHOT=${1:-$WORK/report.png}
"$BIN" report --store data/store --out "$WORK/out" --as-of 2026-06-30 -o "$WORK/report.html" -q
ls -l "$WORK/report.html"
chrome() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/profile" --enable-logging=stderr --v=0 --virtual-time-budget=5000 "$@"
}
chrome --dump-dom "file://$WORK/report.html" >"$WORK/dom.html" 2>"$WORK/chrome-dom.log"
chrome --hide-scrollbars --window-size=1280,2400 --screenshot="$SHOT" "file://$WORK/report.html" \
  >/dev/null 2>"$WORK/chrome-shot.log"
[[ -s $SHOT ]] || { echo "report-check: no screenshot written" >&2; exit 1; }
"$VENV/bin/python" scripts/report_check.py "$WORK/dom.html" "$WORK/chrome-dom.log" "$WORK/out" 2026-06-30
echo "report-check: screenshot $SHOT"
