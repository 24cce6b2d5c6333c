#!/usr/bin/env bash
# The README's test command: set up .venv if needed, lint and format-check with ruff, run pytest.
# By default the slow end-to-end tests (marker `slow`: wheel install, study, scale benchmark,
# scaling servers) are left out; `--all` runs them too (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh)"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
if [ "${1:-}" = "--all" ]; then
    shift
    set -- -m "slow or not slow" "$@"
fi
exec "$PY" -m pytest "$@"
