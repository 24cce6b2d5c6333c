#!/usr/bin/env bash
# Creates .venv on first use (and again whenever pyproject.toml changes), then prints its python.
# torch/torchvision are pinned first so pip takes the builds lying on this machine's disk
# instead of resolving a newer release from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_BOOT="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY_BOOT" -c 'import sys; assert sys.version_info >= (3, 11), f"SAGE needs Python >= 3.11, found {sys.version}"' >&2
STAMP=.venv/.sage-installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[sage] setting up .venv (first run takes a few minutes)..." >&2
    [ -x .venv/bin/python ] || "$PY_BOOT" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >&2 2> >(grep -v "is ignored" >&2)
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" >&2 2> >(grep -v "is ignored" >&2)
    .venv/bin/python -m pip install -q -e ".[dev]" >&2 2> >(grep -v "is ignored" >&2)
    echo "$WANT" > "$STAMP"
fi
echo "$PWD/.venv/bin/python"
