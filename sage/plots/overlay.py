"""Saliency overlays (jet heatmap over the image, foreground outline) and correct/error mosaics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

from .tile_sheet import CORRECT, ERROR, Tile, tile_sheet

# The overlays' colour scale: the min-max scaled map, as :func:`overlay` draws it.
SALIENCY_BAR = "saliency (0 = none, 1 = max of the image)"
# How to read a correct/error mosaic whose captions are explain's "<predicted class>
# <confidence> fg <fg_mass>" (sage.explain.sinks.visuals).
CORRECT_ERROR_LEGEND = (
    "Rows: true class. Frame: green = correct prediction, red = wrong. Under each tile: "
    "predicted class, its confidence (softmax), fg = fg_mass, the share of the saliency inside "
    "the white outline (the driver; higher = more on the driver)."
)


def overlay(
    image: np.ndarray, saliency: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.5
) -> np.ndarray:
    """RGB uint8 image with a [0, 1] saliency map blended in jet and the mask outlined in white."""
    heat = plt.get_cmap("jet")(np.clip(saliency, 0, 1))[..., :3]
    out = (1 - alpha) * image.astype(np.float32) / 255 + alpha * heat
    out = (np.clip(out, 0, 1) * 255).astype(np.uint8)
    if mask is not None:
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        out = cv2.drawContours(np.ascontiguousarray(out), contours, -1, (255, 255, 255), 1)
    return out


def correct_error_mosaic(
    tiles: dict[str, dict[str, Sequence[tuple[np.ndarray, str]]]],
    path: str | Path,
    title: str = "",
    per_side: int = 3,
    legend: str = CORRECT_ERROR_LEGEND,
    colorbar: str | None = SALIENCY_BAR,
) -> Path:
    """Rows = classes; left ``per_side`` columns correct predictions, right ones errors.

    ``tiles[class]["correct" | "error"]`` holds (overlay image, caption) pairs; only the first
    ``per_side`` of each are drawn, framed green (correct) or red (error). Drawn with
    :func:`~sage.plots.tile_sheet.tile_sheet` (numpy/OpenCV), not matplotlib subplots.
    ``legend`` (how to read the captions) and the ``colorbar`` (the overlays' scale) go under
    the tiles; the default legend reads explain's captions.
    """
    if per_side < 1:
        raise ValueError(f"per_side must be at least 1, got {per_side}")
    rows = []
    for cls, sides in tiles.items():
        row: list[Tile | None] = []
        for side, colour in (("correct", CORRECT), ("error", ERROR)):
            items = list(sides.get(side, []))[:per_side]
            row += [Tile(image, caption, colour) for image, caption in items]
            row += [None] * (per_side - len(items))  # keeps the error columns aligned
        rows.append((str(cls), row))
    headers = [(0, "correct", CORRECT), (per_side, "error", ERROR)]
    return tile_sheet(rows, path, title, headers, legend=legend, colorbar=colorbar)
