"""Probe-set mosaic: one row per class, correct predictions first.

The validation callback draws one per method and epoch, so it is a :func:`tile_sheet` (numpy/
OpenCV, milliseconds) rather than matplotlib subplots (a 10×6 figure costs about a second). Each
tile is the saliency overlay with the foreground outlined in white (so the fg/bg split is
visible), framed green (correct) or red (error), captioned with the predicted class and fg_mass
(A_fg); a legend and the colour bar under the tiles say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .overlay import SALIENCY_BAR, overlay
from .tile_sheet import CORRECT, ERROR, Tile, tile_sheet

_MIN_TILE = 96  # smaller inputs (the demo's 64 px) are upscaled so the overlay stays readable


def probe_mosaic(
    rgb: np.ndarray,
    saliency: np.ndarray,
    masks: np.ndarray,
    labels: Sequence[int],
    preds: Sequence[int],
    a_fg: Sequence[float],
    class_names: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Write the mosaic of ``N`` probe images to ``path``.

    ``rgb`` (N, H, W, 3) uint8, ``saliency`` (N, H, W) in [0, 1], ``masks`` (N, H, W) bool.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    rows = []
    for k, name in enumerate(class_names):
        idx = np.flatnonzero(labels == k)
        # correct predictions first within a row (stable, so the probe order decides ties)
        idx = idx[np.argsort(preds[idx] != labels[idx], kind="stable")]
        tiles = [
            Tile(
                overlay(rgb[i], saliency[i], masks[i]),
                f"pred c{int(preds[i])} fg {float(a_fg[i]):.2f}",
                CORRECT if preds[i] == labels[i] else ERROR,
            )
            for i in idx
        ]
        rows.append((name, tiles))
    legend = (
        "Rows: true class. Frame: green = correct prediction, red = wrong. Under each tile: "
        "predicted class index, fg = fg_mass, the share of the saliency inside the white "
        "outline (the foreground; higher = more on it)."
    )
    return tile_sheet(rows, path, title, min_tile=_MIN_TILE, legend=legend, colorbar=SALIENCY_BAR)
