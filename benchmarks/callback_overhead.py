"""Benchmark: what the validation-time SAGE callback adds to a training epoch.

Trains the default demo configuration (small CNN on SynthDrivers synth-sf3d/full, default
SAGE callback: GradCAM, alignment + ARCC, 3 probe images per class) for a few epochs twice in
one run — callback on and off, the same seed — and reports

- the epoch time (training + validation, wall clock, per epoch) of both runs;
- the callback's own time per epoch (``val_sage/seconds``: maps, metrics, mosaic, token
  table, MLflow logging);
- the headline ratio, measured within the one run with the callback: callback seconds ÷ the
  rest of the same epochs (training + validation), summed over the fit (what the user pays;
  the perturbation sets run every ``slow_every_n_epochs`` epochs, so epochs differ) and the
  worst single epoch (target ≤ 25 %);
- the end-of-fit COSE pass (``val_sage/cose_seconds``) ÷ the median epoch without the
  callback (target ≤ 1);
- as a cross-check, the ratio of the two runs' median epoch times (at the mercy of load
  changes between the two trainings).

Usage: python benchmarks/callback_overhead.py [--epochs 6] [overrides ...]
(e.g. ``model=resnet18`` for 224 px)
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


def train_once(root: Path, overrides: list[str]) -> tuple[list[float], list[float], float]:
    """Epoch times, the SAGE callback's seconds per epoch (empty when off) and its end-of-fit
    COSE seconds (NaN when off)."""
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
    cose = run.data.metrics.get("val_sage/cose_seconds", float("nan"))
    return timer.times, sage_seconds, cose


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
        on, sage_s, cose = train_once(Path(tmp) / "on", common)
        off, _, _ = train_once(Path(tmp) / "off", [*common, "~callbacks.sage"])
    later = slice(1, None) if epochs > 1 else slice(None)
    med = {k: statistics.median(v[later]) for k, v in (("on", on), ("off", off), ("sage", sage_s))}
    low = {k: min(v[later]) for k, v in (("on", on), ("off", off), ("sage", sage_s))}
    rest = [e - c for e, c in zip(on, sage_s, strict=True)]  # the same epochs, callback out
    per_epoch = [c / r for c, r in zip(sage_s, rest, strict=True)]
    return {
        "callback_over_rest_of_epochs": sum(sage_s) / sum(rest),
        "callback_over_rest_worst_epoch": max(per_epoch),
        "callback_over_rest_per_epoch": per_epoch,
        "cose_seconds": cose,
        "cose_over_epoch_off": cose / med["off"],
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
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for both runs")
    args = parser.parse_args()
    result = measure(args.epochs, args.overrides)
    med, low = result["median"], result["min"]
    lines = [
        f"# SAGE callback overhead: synth-sf3d/full, overrides {args.overrides or 'none'}",
        "",
        f"Epochs {args.epochs} (median and min over epochs 2..{args.epochs}).",
        "",
        "| quantity | median s | min s |",
        "|---|---|---|",
        f"| epoch, callback off | {med['off']:.3f} | {low['off']:.3f} |",
        f"| epoch, callback on | {med['on']:.3f} | {low['on']:.3f} |",
        f"| callback's own time (val_sage/seconds) | {med['sage']:.3f} | {low['sage']:.3f} |",
        "",
        f"| end-of-fit COSE pass | {result['cose_seconds']:.3f} | |",
        "",
        "Callback ÷ the rest of the same epochs (one run): "
        f"{result['callback_over_rest_of_epochs']:.1%} over the fit, worst epoch "
        f"{result['callback_over_rest_worst_epoch']:.1%} (target ≤ 25 %); per epoch "
        + ", ".join(f"{r:.0%}" for r in result["callback_over_rest_per_epoch"])
        + f". End-of-fit COSE ÷ median epoch without the callback: "
        f"{result['cose_over_epoch_off']:.2f} (target ≤ 1). Cross-check, epoch on ÷ off − 1: "
        f"{result['overhead_on_over_off']:.1%}.",
    ]
    out = ROOT / "outputs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "callback_overhead.json").write_text(json.dumps(result, indent=2))
    (out / "callback_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
