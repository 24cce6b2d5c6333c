"""The explain run's scalar summary: per-method means of the per-image tables, for MLflow.

:func:`mass_aggregates` reduces ``summary.csv`` (foreground/background mass, zero maps,
seconds per image, accuracy), :func:`metric_aggregates` reduces ``metrics.csv`` (every
per-image metric column). Names follow the vocabulary of docs/metrics.md (``fg_mass``,
``fg_mass/correct``, ``<metric>/<region>``, ``acc``): the same quantity has the same name in
the callback (``val_sage/``), here (``explain/``), the grid (``eval/``) and the study.
:func:`closing_table` is what ``explain.py`` prints at the end.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ...tracking.breakdowns import is_breakdown
from ...tracking.console import compact_table

# per-method columns of the closing table, in this order, where the run has them: the mass,
# then the headline metric of each selected set
CLOSING_COLUMNS = (
    "fg_mass",
    "fg_mass/correct",
    "fg_mass/error",
    "iou/fg",
    "pointing_game/fg",
    "road",
    "arcc",
    "deletion",
    "insertion",
    "faithfulness_correlation",
    "cose/cose",
    "average_drop",
)
MAX_CLOSING_COLUMNS = 7


def metric_aggregates(per_image: pd.DataFrame) -> dict[str, float]:
    """Per method, the NaN-aware mean of every metric column, as ``explain/<method>/<column>``.

    The dataset means of IoU and the pointing game are Explanation Alignment's EA_IoU and
    EA_PG: ``iou/<region>`` and ``pointing_game/<region>`` already are those means, so they
    are not logged twice under EA names (docs/metrics.md, vocabulary).
    """
    out = {}
    columns = [c for c in per_image.columns if c not in ("image_id", "method")]
    for method, group in per_image.groupby("method", sort=False):
        for column, value in group[columns].mean(numeric_only=True).items():
            if np.isfinite(value):
                out[f"explain/{method}/{column}"] = float(value)
    return out


def mass_aggregates(summary: pd.DataFrame, seconds: dict[str, float]) -> dict[str, float]:
    """Per method: mean ``fg_mass`` / ``bg_mass`` (all, correct, error; zero maps left out),
    zero maps, seconds per image; and the accuracy over images (``explain/acc``)."""
    out = {}
    nan = float("nan")
    for key, group in summary.groupby("method", sort=False):
        valid = group[~group.zero_map]
        # labelled images only: unlabelled rows have an empty ``correct`` (neither side)
        correct, error = valid.correct.eq(True), valid.correct.eq(False)
        out |= {
            f"explain/{key}/fg_mass": float(valid.fg_mass.mean()) if len(valid) else nan,
            f"explain/{key}/bg_mass": float(valid.bg_mass.mean()) if len(valid) else nan,
            f"explain/{key}/fg_mass/correct": float(valid[correct].fg_mass.mean())
            if correct.any()
            else nan,
            f"explain/{key}/fg_mass/error": float(valid[error].fg_mass.mean())
            if error.any()
            else nan,
            f"explain/{key}/zero_maps": float(group.zero_map.sum()),
            f"explain/{key}/seconds_per_image": seconds[key] / len(group),
        }
    out["explain/acc"] = float(summary.drop_duplicates("image_id").correct.mean())
    return out


def closing_table(result: Mapping[str, object], parts: tuple[str, ...] = ()) -> str:
    """Methods × a few headline columns of an explain result (:func:`sage.explain.run`)."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in result.items():
        stage, _, rest = key.partition("/")
        method, _, column = rest.partition("/")
        if stage != "explain" or not column or method in ("meta", "rfs", "agreement"):
            continue
        if isinstance(value, float | int) and not is_breakdown(key, parts):
            rows.setdefault(method, {})[column] = float(value)
    present = [c for c in CLOSING_COLUMNS if any(c in r for r in rows.values())]
    return compact_table(rows, present[:MAX_CLOSING_COLUMNS], corner="method")
