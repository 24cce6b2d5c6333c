"""ROC figures of an evaluation cell: overall (micro / macro average) and one curve per class.

Curves are given as plain arrays (``fpr``, ``tpr``) with their AUC, so the figures do not
depend on how they were computed (``sage.evaluation.classification.roc_data``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

Curve = tuple[np.ndarray, np.ndarray, float]


def _frame(ax, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")


def plot_roc_overall(micro: Curve, macro: Curve | None, path: str | Path, title: str = "") -> Path:
    """Micro- and macro-averaged one-vs-rest ROC curves with their AUCs in the legend."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    fpr, tpr, auc = micro
    ax.plot(fpr, tpr, label=f"micro (AUC {auc:.3f})", linewidth=2)
    if macro is not None:
        fpr, tpr, auc = macro
        ax.plot(fpr, tpr, label=f"macro (AUC {auc:.3f})", linewidth=2, linestyle="--")
    _frame(ax, title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_roc_per_class(
    curves: Mapping[str, Curve | None], path: str | Path, title: str = ""
) -> Path:
    """One ROC curve per class; classes without a curve (no positives or no negatives in the
    target) are listed in the legend as ``n/a`` instead of being dropped silently."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (name, curve) in enumerate(curves.items()):
        if curve is None:
            ax.plot([], [], color=cmap(i % cmap.N), label=f"{name} (AUC n/a)")
            continue
        fpr, tpr, auc = curve
        ax.plot(fpr, tpr, color=cmap(i % cmap.N), linewidth=1.2, label=f"{name} ({auc:.3f})")
    _frame(ax, title)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, title="class (AUC)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
