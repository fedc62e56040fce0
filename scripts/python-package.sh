#!/usr/bin/env bash
# The Python package: builds the wheel with maturin (dev profile, sharing CI's cargo target
# directory), installs it in a venv of its own and runs python/tests with pytest: the API
# against the command line, errors as exceptions, the GIL released. CI runs it (.ci/run).
# Usage: scripts/python-package.sh        Env: PYVENV (~/.cache/crm-kpi-pyvenv).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-kpi-target}"
PYVENV=${PYVENV:-$HOME/.cache/crm-kpi-pyvenv}
scripts/python-venv.sh "$PYVENV" -r scripts/requirements-python-package.txt
DIST=$(mktemp -d)
trap 'rm -rf "$DIST"' EXIT
"$PYVENV/bin/maturin" build --locked -q -i "$PYVENV/bin/python" -o "$DIST"
"$PYVENV/bin/pip" install -q --force-reinstall --no-deps "$DIST"/crm_kpi-*.whl
ls -l "$DIST"/crm_kpi-*.whl
# From the repository's root, where the tests find the sample store; the package imported is
# the installed wheel's (python/ is not on the path).
PATH="$PYVENV/bin:$PATH" "$PYVENV/bin/python" -m pytest -q -p no:cacheprovider python/tests
