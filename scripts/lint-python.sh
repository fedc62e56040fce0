#!/usr/bin/env bash
# Lints the repository's Python (reference/ and the rest) with a pinned ruff, as CI does:
# `ruff check` and `ruff format --check` with the settings of ruff.toml. Exits non-zero on any
# finding. `scripts/lint-python.sh --fix` applies ruff's fixes and formats instead.
# Env: LINT_VENV (~/.cache/crm-kpi-lint-venv, made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF_VERSION=0.17.5
VENV=${LINT_VENV:-$HOME/.cache/crm-kpi-lint-venv}
scripts/python-venv.sh "$VENV" "ruff==$RUFF_VERSION"
RUFF="$VENV/bin/ruff"
if [ "${1:-}" = --fix ]; then
  "$RUFF" check --fix .
  "$RUFF" format .
  exit
fi
"$RUFF" check .
"$RUFF" format --check .
