#!/usr/bin/env bash
# The README's test command: set up .venv if needed, lint and format-check with ruff, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh)"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
exec "$PY" -m pytest "$@"
