"""Confusion-matrix figure of an evaluation cell with FP/FN counts and rates in the margins.

Like :func:`sage.plots.confusion.plot_confusion` (counts, row-normalised colour), plus a right
margin column "FN (rate)" per true class and a bottom margin row "FP (rate)" per predicted
class, read from the per-class table of :func:`sage.evaluation.classification.per_class_table`.
(It lives here rather than in ``sage/plots/confusion.py`` only to keep this change inside
the evaluation package; it can move there unchanged.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import sage.plots  # noqa: F401  (Agg backend)


def _rate(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.0%}"


def plot_confusion_fp_fn(
    matrix: np.ndarray,
    classes: Sequence[str],
    per_class: pd.DataFrame,
    path: str | Path,
    title: str = "",
) -> Path:
    """Save the matrix (rows true, columns predicted) with FN and FP margins to ``path``."""
    matrix = np.asarray(matrix)
    n = len(classes)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2.4 + 0.62 * n, 2.0 + 0.6 * n))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fn, fn_rate = per_class["fn"].to_numpy(), per_class["fn_rate"].to_numpy()
    fp, fp_rate = per_class["fp"].to_numpy(), per_class["fp_rate"].to_numpy()
    for i in range(n):  # right margin: misses of each true class
        ax.text(
            n - 0.3,
            i,
            f"{int(fn[i])} ({_rate(fn_rate[i])})",
            va="center",
            fontsize=7,
            color="tab:red",
        )
    for j in range(n):  # bottom margin: false alarms of each predicted class
        ax.text(
            j,
            n - 0.3,
            f"{int(fp[j])}\n{_rate(fp_rate[j])}",
            ha="center",
            va="top",
            fontsize=7,
            color="tab:orange",
        )
    ax.text(n - 0.3, -0.75, "FN (rate)", fontsize=7, color="tab:red", va="bottom")
    ax.text(-0.7, n - 0.3, "FP\n(FPR)", fontsize=7, color="tab:orange", ha="right", va="top")
    ax.set_xlim(-0.5, n + 1.3)
    ax.set_ylim(n + 0.7, -0.5)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xticks(range(n), list(classes), rotation=90)
    ax.set_yticks(range(n), list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9, pad=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
