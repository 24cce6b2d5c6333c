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
from .style import DPI, HALF_W, SMALL, WIDE_W, styled

_CLEAR, _UNCLEAR = "#1f77b4", "#999999"


def _whisker(ax, y: float, iv: Interval, color: str) -> None:
    ax.plot([iv.low, iv.high], [y, y], color=color, lw=2.5, solid_capstyle="butt")
    ax.plot([iv.value], [y], "o", color=color, ms=7)


def _digits(*intervals: Interval | None) -> int:
    """3 decimals for small quantities (masses on a 0.4 %-of-the-frame sticker), else 2."""
    values = [abs(v) for i in intervals if i is not None for v in (i.value, i.low, i.high)]
    finite = [v for v in values if v == v]
    return 3 if finite and max(finite) < 0.1 else 2


@styled
def finding_panel(
    a: Interval, b: Interval, diff: Interval, labels: tuple[str, str], title: str, path: Path
) -> Path:
    """Two sides (``labels``) with intervals, and ``a − b`` against 0."""
    digits = _digits(a, b, diff)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(HALF_W, 2.6), gridspec_kw={"width_ratios": [1.5, 1]}, layout="constrained"
    )
    for y, iv in enumerate((a, b)):
        if iv is not None and iv.finite:
            _whisker(left, -y, iv, _CLEAR)
        left.annotate(
            iv.text(digits) if iv is not None else "n/a",
            (0.02, -y + 0.3),
            fontsize=SMALL,
            xycoords=("axes fraction", "data"),
        )
    left.set_yticks([0, -1], labels)
    left.set_ylim(-1.6, 0.6)
    left.set_title("each side, 95 % interval", fontsize=SMALL)
    if diff is not None and diff.finite:
        _whisker(right, 0, diff, _CLEAR if diff.sign else _UNCLEAR)
    right.axvline(0, color="k", lw=1, ls="--")
    right.set_yticks([])
    right.set_ylim(-0.8, 0.8)
    right.set_title("difference (first − second)", fontsize=SMALL)
    if diff is not None:
        right.annotate(
            diff.text(digits, signed=True),
            (0.5, 0.45),
            fontsize=SMALL,
            ha="center",
            xycoords=("axes fraction", "data"),
        )
    fig.suptitle(textwrap.shorten(title, 70))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


@styled
def forest(rows: Sequence[tuple[str, Interval]], path: Path, title: str) -> Path | None:
    """Every finding's difference with its interval, one row each, a line at 0; grey rows
    are the ones whose interval holds 0 (no clear difference)."""
    rows = [(label, iv) for label, iv in rows if iv is not None and iv.finite]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDE_W, 0.3 * len(rows) + 1.2), layout="constrained")
    for y, (_, iv) in enumerate(rows):
        _whisker(ax, -y, iv, _CLEAR if iv.sign else _UNCLEAR)
    ax.axvline(0, color="k", lw=1, ls="--")
    ax.set_yticks([-y for y in range(len(rows))], [label for label, _ in rows])
    ax.set_xlabel("difference (first − second), 95 % interval; grey: the interval holds 0")
    ax.set_title(title)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
