"""Figure and font sizes that keep text legible where the figures are shown.

The study report (:mod:`sage.study.report`) shows a figure at most 48 % of its 1200 px page
wide (about 560 px on screen), a *wide* one at the page's width (about 1150 px). Text set at
``N`` pt in a figure ``W`` inches wide, shown ``D`` px wide, appears at ``N · D / (96 · W)`` pt
(CSS: 96 px per inch). So a half-width figure is at most :data:`HALF_W` inches wide and a wide
one :data:`WIDE_W`, with no text under :data:`SMALL` pt: every label then appears at about
9 pt or more, whatever the dpi (the dpi only sets the sharpness).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

import matplotlib.pyplot as plt

HALF_W = 5.8  # inches: figures shown in a half-width report column (~560 px)
WIDE_W = 12.0  # inches: figures shown across the report page (~1150 px)
HALF_PX, WIDE_PX = 560, 1150  # their width on the report page
SMALL = 9  # pt: tick labels, legends, cell annotations (the smallest text of a figure)
FONT = 10  # pt: axis labels
TITLE = 11  # pt: titles
DPI = 150  # 5.8 in → 870 px: sharp when the browser scales it down

RC = {
    "font.size": FONT,
    "axes.titlesize": TITLE,
    "axes.labelsize": FONT,
    "xtick.labelsize": SMALL,
    "ytick.labelsize": SMALL,
    "legend.fontsize": SMALL,
    "legend.title_fontsize": SMALL,
    "figure.titlesize": TITLE,
}


def style() -> AbstractContextManager:
    """``with style():`` draws a figure with the font sizes above."""
    return plt.rc_context(RC)


F = TypeVar("F", bound=Callable)


def styled(fn: F) -> F:
    """Decorator: ``fn`` draws its figure within :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def shown_pt(font_pt: float, fig_width_in: float, shown_px: float) -> float:
    """The size (pt) at which ``font_pt`` text of a ``fig_width_in`` wide figure appears when
    the figure is shown ``shown_px`` px wide."""
    return font_pt * shown_px / (96 * fig_width_in)
