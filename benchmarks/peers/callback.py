"""The validation callback's overhead on a training epoch (no peer library has one).

Runs :func:`callback_overhead.measure` (the default demo training — small CNN on SynthDrivers
synth-sf3d/full — twice in one run, callback on and off, same seed) or, with
``--skip-training``, reads the JSON that ``benchmarks/callback_overhead.py`` last wrote.

The row's ratio is measured *within* the run with the callback: per epoch, the callback's own
seconds (``val_sage/seconds``) over the rest of the same epoch (its training + validation
without the callback), fastest and median over the epochs after the first (which pays one-off
costs). Both parts of a ratio come from the same epoch, so a change of background load between
the two trainings cannot decide it; the cross-run ratio (callback ÷ an epoch of the run without
it, as ``callback_overhead.py`` reports) is kept in the JSON.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .common import Row

TITLE = "validation callback (GradCAM + alignment + ARCC on the probe) ÷ training epoch"


def row(epochs: int, skip_training: bool, saved: Path) -> Row:
    if skip_training:
        if not saved.is_file():
            return Row(
                "small_cnn",
                "callback",
                TITLE,
                None,
                None,
                None,
                None,
                setting={"source": str(saved)},
                skipped=f"--skip-training: {saved} not found (run benchmarks/callback_overhead.py)",
            )
        result = json.loads(saved.read_text())
        source = str(saved)
    else:
        import callback_overhead  # heavy imports (Lightning, MLflow, Hydra) only when needed

        # the demo's prepared data (generated there on first use), not a fresh copy per run
        data_dir = Path(callback_overhead.ROOT) / "outputs" / "data"
        result = callback_overhead.measure(epochs, [f"paths.data_dir={data_dir}"])
        source = "measured in this run"
    med, low = result["median"], result["min"]
    on, cb = result["epoch_seconds_on"], result["callback_seconds"]
    first = 1 if len(on) > 1 else 0
    rest = [e - c for e, c in zip(on[first:], cb[first:], strict=True)]
    share = [c / r for c, r in zip(cb[first:], rest, strict=True)]
    direct = {
        "ratios": {
            "sage_over_peer": None,
            "sage_over_floor": {"min": min(share), "median": statistics.median(share)},
            "peer_over_floor": None,
        },
        "callback_over_rest_of_epoch": share,
        "rest_of_epoch_s": {"min": min(rest), "median": statistics.median(rest)},
        "cross_run_callback_over_epoch_off": {
            "min": low["sage"] / low["off"],
            "median": med["sage"] / med["off"],
        },
        "callback_s_per_epoch": {"min": low["sage"], "median": med["sage"]},
        "epoch_off_s": {"min": low["off"], "median": med["off"]},
        "epoch_on_s": {"min": low["on"], "median": med["on"]},
        "epoch_on_over_off_minus_1": result["overhead_on_over_off"],
        "epochs": result["epochs"],
    }
    setting = {
        "source": source,
        "epochs": result["epochs"],
        "data": "synth-sf3d/full",
        "model": "small_cnn (demo defaults)",
    }
    return Row("small_cnn", "callback", TITLE, None, None, None, None, setting, direct=direct)
