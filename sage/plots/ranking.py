"""Ranked overlay mosaics, e.g. the lowest-Δ-density images (spurious-feature candidates)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sage.plots.overlay import SALIENCY_BAR, overlay
from sage.plots.tile_sheet import Tile, tile_sheet

RankItem = tuple[np.ndarray, np.ndarray, np.ndarray | None, str]


def _check_item(i: int, item: RankItem) -> None:
    image, saliency, mask, _ = item
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"item {i}: image must be uint8 H×W×3, got {image.dtype} {tuple(image.shape)}"
        )
    if saliency.shape != image.shape[:2]:
        raise ValueError(
            f"item {i}: saliency shape {tuple(saliency.shape)} does not match the image "
            f"{tuple(image.shape[:2])}"
        )
    if mask is not None and mask.shape != image.shape[:2]:
        raise ValueError(
            f"item {i}: mask shape {tuple(mask.shape)} does not match the image "
            f"{tuple(image.shape[:2])}"
        )


def ranking_mosaic(
    items: Sequence[RankItem],
    path: str | Path,
    title: str = "",
    cols: int = 5,
    legend: str = "Ranked left to right, top to bottom, lowest score first. White outline: "
    "the region scored (the foreground).",
) -> Path:
    """Grid of saliency overlays in the given order (lowest score first), one caption each.

    Args:
        items: ``(image uint8 H×W×3, saliency in [0, 1] H×W, region mask H×W or None,
            caption)``, already ranked, e.g. from
            :func:`sage.metrics.alignment.rank_spurious_candidates`; captions typically hold
            the image id, the score and the class (newlines allowed). Tiles may differ in size.
        path: PNG to write.
        title: sheet title.
        cols: tiles per row.
        legend: how to read the sheet, written under the tiles with the overlays' colour bar.

    Returns:
        ``path``. An empty ``items`` writes a PNG that says so instead of failing, so a run
        with no candidates still leaves its artifact. Drawn with
        :func:`~sage.plots.tile_sheet.tile_sheet` (numpy/OpenCV), not matplotlib subplots.
    """
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    for i, item in enumerate(items):
        _check_item(i, item)
    tiles = [
        Tile(overlay(image, np.asarray(saliency, dtype=np.float32), mask), caption)
        for image, saliency, mask, caption in items
    ]
    rows = [("", tiles[k : k + cols]) for k in range(0, len(tiles), cols)]
    return tile_sheet(
        rows, path, title, empty="no images to rank", legend=legend, colorbar=SALIENCY_BAR
    )
