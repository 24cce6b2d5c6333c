"""The explain run's scalar summary: per-method means of the per-image tables, for MLflow.

:func:`mass_aggregates` reduces ``summary.csv`` (foreground/background mass, zero maps,
seconds per image, accuracy), :func:`metric_aggregates` reduces ``metrics.csv`` (every
per-image metric column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...metrics.alignment import EA_NAMES


def metric_aggregates(per_image: pd.DataFrame) -> dict[str, float]:
    """Per method, the NaN-aware mean of every metric column; EA names for IoU and PG."""
    out = {}
    columns = [c for c in per_image.columns if c not in ("image_id", "method")]
    for method, group in per_image.groupby("method", sort=False):
        for column, value in group[columns].mean(numeric_only=True).items():
            if np.isfinite(value):
                out[f"explain/{method}/{column}"] = float(value)
                name, _, region = column.partition("/")
                if name in EA_NAMES:  # Explanation Alignment: dataset means of IoU and PG
                    out[f"explain/{method}/{EA_NAMES[name].lower()}/{region}"] = float(value)
    return out


def mass_aggregates(summary: pd.DataFrame, seconds: dict[str, float]) -> dict[str, float]:
    """Per method: mean A_fg / A_bg (all, correct, error; zero maps left out), zero maps,
    seconds per image; and the accuracy over images."""
    out = {}
    nan = float("nan")
    for key, group in summary.groupby("method", sort=False):
        valid = group[~group.zero_map]
        # labelled images only: unlabelled rows have an empty ``correct`` (neither side)
        correct, error = valid.correct.eq(True), valid.correct.eq(False)
        out |= {
            f"explain/{key}/fg_mass": float(valid.a_fg.mean()) if len(valid) else nan,
            f"explain/{key}/bg_mass": float(valid.a_bg.mean()) if len(valid) else nan,
            f"explain/{key}/fg_mass_correct": float(valid[correct].a_fg.mean())
            if correct.any()
            else nan,
            f"explain/{key}/fg_mass_error": float(valid[error].a_fg.mean()) if error.any() else nan,
            f"explain/{key}/zero_maps": float(group.zero_map.sum()),
            f"explain/{key}/seconds_per_image": seconds[key] / len(group),
        }
    out["explain/accuracy"] = float(summary.drop_duplicates("image_id").correct.mean())
    return out
