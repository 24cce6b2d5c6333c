"""The grid itself: its identity (for resumption), metric matrices, markdown and heatmaps.

Rows are training conditions (source models), columns are targets, as in the SAGE paper's
Table 1. For every metric of :data:`~sage.evaluation.classification.METRIC_KEYS` the grid
directory gets ``<metric>.csv`` (matrix), ``<metric>.json`` (``rows``, ``columns``,
``values`` with null for a missing cell) and ``heatmap_<metric>.png``; ``cells.csv`` holds
every cell's metrics in long form and ``table.md`` the markdown tables.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..plots.grid import plot_grid_heatmap
from .classification import LOWER_IS_BETTER, METRIC_KEYS

# Printed at the end of a run; table.md holds every metric.
HEADLINE = ("acc", "f1_macro", "ece")
TITLES = {
    "acc": "Accuracy",
    "f1_macro": "Macro F1",
    "precision_macro": "Macro precision",
    "recall_macro": "Macro recall",
    "f1_weighted": "Weighted F1",
    "precision_weighted": "Weighted precision",
    "recall_weighted": "Weighted recall",
    "ece": "ECE (lower is better)",
    "auc_macro": "Macro ROC AUC",
    "auc_micro": "Micro ROC AUC",
    "support": "Images",
}


def grid_key(
    models: Sequence[str], targets: Sequence[str], split: str, which: str, **extra: object
) -> str:
    """Identity of a grid: the same models, targets, split and checkpoint choice (and the same
    ``extra`` settings that change the cells' content) give the same key, in any order."""
    payload = {
        "models": sorted(models),
        "targets": sorted(targets),
        "split": split,
        "checkpoint_select": which,
        **{k: extra[k] for k in sorted(extra)},
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_key(model_key: str, target: str) -> str:
    """Identity of a cell within its grid."""
    return f"{model_key}@{target}"


def matrices(
    cells: pd.DataFrame, rows: Sequence[str], columns: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """One ``rows × columns`` matrix per metric from the long table (``row``, ``column``,
    metric columns); a missing cell is NaN."""
    out = {}
    for metric in METRIC_KEYS:
        if metric not in cells:
            continue
        matrix = cells.pivot(index="row", columns="column", values=metric)
        out[metric] = matrix.reindex(index=list(rows), columns=list(columns)).astype(float)
    return out


def markdown_table(
    matrix: pd.DataFrame, fmt: str = "{:.3f}", corner: str = "trained on \\ target"
) -> str:
    """A GitHub-flavoured markdown table of a matrix (``n/a`` for a missing cell)."""

    def cell(v: float) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    header = [corner, *(str(c) for c in matrix.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *(["---:"] * len(matrix.columns))]) + "|",
    ]
    for label, values in matrix.iterrows():
        lines.append("| " + " | ".join([str(label), *(cell(v) for v in values)]) + " |")
    return "\n".join(lines)


def _fmt(metric: str) -> str:
    return "{:.0f}" if metric == "support" else "{:.3f}"


def write_grid(
    cells: pd.DataFrame,
    rows: Sequence[str],
    columns: Sequence[str],
    out: Path,
    title: str = "",
) -> tuple[dict[str, pd.DataFrame], str]:
    """Write the grid files under ``out``; return the matrices and the headline markdown."""
    out.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out / "cells.csv", index=False)
    mats = matrices(cells, rows, columns)
    sections = []
    for metric, matrix in mats.items():
        matrix.to_csv(out / f"{metric}.csv", index_label="trained_on")
        values = [[None if not np.isfinite(v) else float(v) for v in r] for r in matrix.to_numpy()]
        payload = {"metric": metric, "rows": list(rows), "columns": list(columns), "values": values}
        (out / f"{metric}.json").write_text(json.dumps(payload, indent=1))
        bounded = metric not in ("support", "ece")
        plot_grid_heatmap(
            matrix,
            out / f"heatmap_{metric}.png",
            f"{TITLES.get(metric, metric)} {title}".strip(),
            lower_is_better=metric in LOWER_IS_BETTER,
            vmin=0.0 if bounded else None,
            vmax=1.0 if bounded else None,
            fmt=_fmt(metric),
        )
        sections.append(
            (metric, f"**{TITLES.get(metric, metric)}**\n\n" + markdown_table(matrix, _fmt(metric)))
        )
    (out / "table.md").write_text("\n\n".join(s for _, s in sections) + "\n")
    headline = "\n\n".join(s for m, s in sections if m in HEADLINE)
    return mats, headline


def cells_frame(records: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Long table from per-cell records (``row``, ``column``, keys, metrics)."""
    return pd.DataFrame(list(records))
