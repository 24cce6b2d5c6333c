"""Figures of the study's findings: numbers with their 95 % intervals.

``finding_panel``: one finding, its two sides and their difference (the difference's panel
has a line at 0: an interval crossing it is "no clear difference"). ``forest``: every
finding's difference in one column, for a glance over the whole study.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ..stats import Interval

_CLEAR, _UNCLEAR = "#1f77b4", "#999999"


def _whisker(ax, y: float, iv: Interval, color: str) -> None:
    ax.plot([iv.low, iv.high], [y, y], color=color, lw=2.5, solid_capstyle="butt")
    ax.plot([iv.value], [y], "o", color=color, ms=7)


def finding_panel(
    a: Interval, b: Interval, diff: Interval, labels: tuple[str, str], title: str, path: Path
) -> Path:
    """Two sides (``labels``) with intervals, and ``a − b`` against 0."""
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(7.5, 2.2), gridspec_kw={"width_ratios": [1.6, 1]}, layout="constrained"
    )
    for y, iv in enumerate((a, b)):
        if iv is not None and iv.finite:
            _whisker(left, -y, iv, _CLEAR)
        left.annotate(
            iv.text() if iv is not None else "n/a",
            (0.02, -y + 0.25),
            fontsize=9,
            xycoords=("axes fraction", "data"),
        )
    left.set_yticks([0, -1], labels, fontsize=10)
    left.set_ylim(-1.6, 0.6)
    left.set_title("each side (95 % interval)", fontsize=10)
    left.tick_params(axis="x", labelsize=9)
    if diff is not None and diff.finite:
        _whisker(right, 0, diff, _CLEAR if diff.sign else _UNCLEAR)
    right.axvline(0, color="k", lw=1, ls="--")
    right.set_yticks([])
    right.set_ylim(-0.8, 0.8)
    right.set_title("difference (first − second)", fontsize=10)
    right.tick_params(axis="x", labelsize=9)
    if diff is not None:
        right.annotate(
            diff.text(signed=True),
            (0.5, 0.5),
            fontsize=9,
            ha="center",
            xycoords=("axes fraction", "data"),
        )
    fig.suptitle(textwrap.shorten(title, 110), fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def forest(rows: Sequence[tuple[str, Interval]], path: Path, title: str) -> Path | None:
    """Every finding's difference with its interval, one row each, a line at 0; grey rows
    are the ones whose interval holds 0 (no clear difference)."""
    rows = [(label, iv) for label, iv in rows if iv is not None and iv.finite]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.36 * len(rows) + 1.2), layout="constrained")
    for y, (_, iv) in enumerate(rows):
        _whisker(ax, -y, iv, _CLEAR if iv.sign else _UNCLEAR)
    ax.axvline(0, color="k", lw=1, ls="--")
    ax.set_yticks([-y for y in range(len(rows))], [label for label, _ in rows], fontsize=9)
    ax.set_xlabel("difference (first − second), 95 % interval; grey: holds 0", fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
