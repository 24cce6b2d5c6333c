"""The study's closing summary on stdout: headline findings first, then the tables."""

from __future__ import annotations

import sys
import time
from typing import Any

import pandas as pd

from ..evaluation.grid import markdown_table

ACCURACY_COLUMNS = (
    "test/acc",
    "cue_acc",
    "shuffled_acc",
    "cross_acc_full",
    "cross_acc_same_variant",
)
SALIENCY_COLUMNS = (
    "fg_mass/own_variant",
    "fg_mass/full_images",
    "saliency_precision/spurious/full_images",
    "arcc/full_images",
    "rfs/rfs",
)


def interval_table(findings: dict[str, Any], columns: tuple[str, ...]) -> pd.DataFrame:
    """``value [low, high]`` strings, one row per model, for the ``columns`` it has."""
    models, intervals = findings["models"], findings["intervals"]
    shown = [c for c in columns if c in models]
    rows = {}
    for label in models["trained_on"]:
        rows[label] = [
            intervals[(label, c)].text(3) if (label, c) in intervals else "n/a" for c in shown
        ]
    return pd.DataFrame.from_dict(rows, orient="index", columns=shown)


def print_summary(findings: dict[str, Any], study) -> None:
    """Headlines, per-model tables with intervals, every finding, where to look."""
    uri = study.tracking_uri
    seeds = findings.get("seeds") or []
    how = (
        f"mean over {len(seeds)} seeds, 95 % t interval"
        if len(seeds) > 1
        else "95 % bootstrap interval over test images"
    )
    print("\n" + "=" * 78)
    print(f"SAGE study ({study.size}, seeds {seeds}) finished in {time_text(study)}")
    print(f"Intervals: [low, high] = {how}.")
    print("\nHeadline findings:")
    for k, h in enumerate(findings.get("headlines") or [], 1):
        print(f"{k}. {h['title']}\n   {h['text']}")
    print("\nAccuracy per model:")
    print(markdown_table(interval_table(findings, ACCURACY_COLUMNS), "{}", "trained on"))
    print(
        "\nSaliency per model (GradCAM; own_variant: on the model's own variant, full_images: "
        "on the source domain's full test images):"
    )
    print(markdown_table(interval_table(findings, SALIENCY_COLUMNS), "{}", "trained on"))
    print("\nAll findings (a direction is stated only where its interval excludes 0):")
    for line in findings["lines"]:
        print(f"- {line}")
    print(
        f"\nMLflow store: {uri}  (experiment {study.experiment!r}, parent run "
        f"{findings['parent_run_id']}, {findings['nested_runs']} nested runs)"
    )
    print(f"Browse it:    {sys.executable} -m mlflow ui --backend-store-uri {uri}")
    print(f"Report:       {findings['report']}")
    print("=" * 78)


def time_text(study) -> str:
    seconds = time.time() - study.t0
    return f"{seconds / 60:.1f} min"
