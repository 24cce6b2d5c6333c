"""Confusion-matrix figures: counts with row-normalised colour (training's test split), and
the same with FN/FP counts and rates in the margins (an evaluation cell)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _counts(ax: plt.Axes, matrix: np.ndarray) -> None:
    """Row-normalised colour (the per-class recall pattern) with the raw count in each cell."""
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if rates[i, j] > 0.5 else "black"
        ax.text(j, i, int(count), ha="center", va="center", fontsize=8, color=colour)


def plot_confusion(
    matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Save a confusion matrix (rows true, columns predicted) to ``path``."""
    matrix = np.asarray(matrix)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * n, 1 + 0.55 * n))
    _counts(ax, matrix)
    ax.set_xticks(range(n), classes, rotation=90)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


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
    fig, ax = plt.subplots(figsize=(2.4 + 0.62 * n, 2.0 + 0.6 * n))
    _counts(ax, matrix)
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
