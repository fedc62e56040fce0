#!/usr/bin/env bash
# Makes or refreshes a cached Python venv (kept outside the clone) with pinned packages.
# Usage: scripts/python-venv.sh VENV PIP_INSTALL_ARGS...   e.g. VENV -r reference/requirements.txt
# Installs only when the arguments or the requirement files they name changed since the last
# install (a stamp in the venv). Needs python3 >= 3.11 (the references read TOML with tomllib).
set -euo pipefail
VENV=$1
shift
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "python-venv: $PY is $("$PY" --version 2>&1); 3.11 or newer is needed" >&2; exit 2; }
stamp() { # the arguments, then the contents of every -r file among them
  printf '%s\n' "$@"
  local prev=
  for a in "$@"; do
    if [ "$prev" = -r ]; then cat "$a"; fi
    prev=$a
  done
}
want=$(stamp "$@")
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if [ "$(cat "$VENV/.crm-kpi-stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "$@"
  printf '%s' "$want" >"$VENV/.crm-kpi-stamp"
fi
