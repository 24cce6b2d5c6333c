#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the SAGE study on SynthDrivers
# end to end (data -> training sweep -> cross-domain grids -> explain -> divergence -> report).
# Extra args are study overrides, e.g. `bash scripts/demo.sh demo.size=tiny`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh)"
exec "$PY" -m sage.study "$@"
