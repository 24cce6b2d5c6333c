#!/usr/bin/env bash
# The README's benchmark command: set up .venv if needed, install the `bench` extra (Quantus)
# when it is missing, then run the peer benchmark suite (SAGE vs grad-cam, Quantus, captum).
# Extra args go to benchmarks/peer_suite.py, e.g. `bash scripts/bench.sh --quick`.
# Writes outputs/benchmarks/peer_suite.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh)"
if ! "$PY" -c "import quantus" 2>/dev/null; then
    echo "[sage] installing the bench extra (quantus)..." >&2
    # keep the torch/torchvision builds venv.sh installed: Quantus must not pull another torch
    CONSTRAINTS="$(mktemp)"
    trap 'rm -f "$CONSTRAINTS"' EXIT
    "$PY" - > "$CONSTRAINTS" <<'PYEOF'
import importlib.metadata as md
for dist in ("torch", "torchvision"):
    print(f"{dist}=={md.version(dist)}")
PYEOF
    "$PY" -m pip install -q -e ".[dev,bench]" --constraint "$CONSTRAINTS" >&2 \
        2> >(grep -v "is ignored" >&2)
fi
exec "$PY" benchmarks/peer_suite.py "$@"
