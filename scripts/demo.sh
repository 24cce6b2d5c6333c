#!/usr/bin/env bash
# The README's main command: set up .venv if needed, generate SynthDrivers and prepare the
# four variants of both domains, train the default model, explain it. Extra args go to train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh)"
"$PY" -m sage.prepare dataset=synth_sf3d/full
"$PY" -m sage.prepare dataset=synth_driver100/full
"$PY" train.py "$@"
"$PY" explain.py checkpoint=latest
echo
echo "MLflow store: $PWD/outputs/mlflow.db"
echo "Browse it:    $PY -m mlflow ui --backend-store-uri sqlite:///$PWD/outputs/mlflow.db"
