"""Benchmark: what the validation-time SAGE callback adds to a training epoch.

Trains the default demo configuration (small CNN on SynthDrivers synth-sf3d/full, default
SAGE callback: GradCAM, alignment + ARCC, 3 probe images per class) for a few epochs twice in
one run — callback on and off, the same seed — and reports

- the epoch time (training + validation, wall clock, per epoch) of both runs;
- the callback's own time per epoch (``val_sage/seconds``: maps, metrics, mosaic, token
  table, MLflow logging);
- overhead = callback seconds ÷ epoch time without the callback (target < 25 %), and the
  ratio of the two runs' epoch times as a cross-check.

The median over epochs after the first (which pays one-off costs: dataset caching, MLflow
tables) is reported, and the minimum as well, so a burst of background load does not decide.

Usage: python benchmarks/callback_overhead.py [--epochs 4] [overrides ...]
Writes outputs/benchmarks/callback_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pytorch_lightning as pl

import sage.train as train
from sage.compose import compose_task

ROOT = Path(__file__).resolve().parents[1]


class EpochTimer(pl.Callback):
    """Wall time from the start of each training epoch to its end (validation included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._t0)


def train_once(root: Path, overrides: list[str]) -> tuple[list[float], list[float]]:
    """Epoch times and the SAGE callback's seconds per epoch (empty when off)."""
    cfg = compose_task("train", [f"paths.root_dir={root}", *overrides], output_dir=root / "run")
    timer = EpochTimer()
    original = train.instantiate

    def with_timer(config, *args, **kwargs):
        if "callbacks" in kwargs:
            kwargs["callbacks"] = [*kwargs["callbacks"], timer]
        return original(config, *args, **kwargs)

    train.instantiate = with_timer
    try:
        train.run(cfg)
    finally:
        train.instantiate = original
    client = mlflow.MlflowClient(f"sqlite:///{root}/outputs/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    sage_seconds = [m.value for m in client.get_metric_history(run.info.run_id, "val_sage/seconds")]
    return timer.times, sage_seconds


def measure(epochs: int, overrides: list[str] | None = None) -> dict:
    """Train with the callback on and off (same seed, ``epochs`` each) and compare epochs.

    Returns the result dict written to ``callback_overhead.json``: per-epoch seconds of both
    runs and the callback's own seconds, their median and min over the epochs after the first
    (all epochs when there is only one), and the overhead ratios.
    """
    overrides = list(overrides or [])
    common = [
        f"trainer.max_epochs={epochs}",
        "test_after_fit=false",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        *overrides,
    ]
    # the prepared SynthDrivers data is shared (generated once under this root's outputs/)
    with tempfile.TemporaryDirectory() as tmp:
        on, sage_s = train_once(Path(tmp) / "on", common)
        off, _ = train_once(Path(tmp) / "off", [*common, "~callbacks.sage"])
    later = slice(1, None) if epochs > 1 else slice(None)
    med = {k: statistics.median(v[later]) for k, v in (("on", on), ("off", off), ("sage", sage_s))}
    low = {k: min(v[later]) for k, v in (("on", on), ("off", off), ("sage", sage_s))}
    return {
        "epochs": epochs,
        "overrides": overrides,
        "epoch_seconds_on": on,
        "epoch_seconds_off": off,
        "callback_seconds": sage_s,
        "median": med,
        "min": low,
        "overhead_callback_over_epoch_off": med["sage"] / med["off"],
        "overhead_on_over_off": med["on"] / med["off"] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for both runs")
    args = parser.parse_args()
    result = measure(args.epochs, args.overrides)
    med, low = result["median"], result["min"]
    lines = [
        "# SAGE callback overhead: default demo training (small CNN, synth-sf3d/full)",
        "",
        f"Epochs {args.epochs} (median and min over epochs 2..{args.epochs}).",
        "",
        "| quantity | median s | min s |",
        "|---|---|---|",
        f"| epoch, callback off | {med['off']:.3f} | {low['off']:.3f} |",
        f"| epoch, callback on | {med['on']:.3f} | {low['on']:.3f} |",
        f"| callback's own time (val_sage/seconds) | {med['sage']:.3f} | {low['sage']:.3f} |",
        "",
        f"Overhead = callback ÷ epoch without it: {result['overhead_callback_over_epoch_off']:.1%}"
        f" (target < 25 %); epoch on ÷ off − 1: {result['overhead_on_over_off']:.1%}.",
    ]
    out = ROOT / "outputs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "callback_overhead.json").write_text(json.dumps(result, indent=2))
    (out / "callback_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
