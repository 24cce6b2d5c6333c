"""Probe-set mosaic drawn with numpy/OpenCV: one row per class, correct predictions first.

The validation callback draws one per method and epoch, so it avoids matplotlib (a 10×6
subplot figure costs about a second; this costs milliseconds). Each tile is the saliency
overlay with the foreground outlined in white (so the fg/bg split is visible), framed green
(correct) or red (error), captioned with the predicted class index and A_fg.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .overlay import overlay

_GREEN, _RED = (40, 160, 40), (210, 40, 40)
_LABEL_W, _CAPTION_H, _BORDER, _GAP = 110, 14, 3, 4
_MIN_TILE = 96  # smaller inputs (the demo's 64 px) are upscaled so the overlay stays readable


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.35) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


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
    _, h, w = saliency.shape
    scale = max(1, -(-_MIN_TILE // max(h, w)))
    h, w = h * scale, w * scale
    labels, preds = np.asarray(labels), np.asarray(preds)
    rows = [np.flatnonzero(labels == k) for k in range(len(class_names))]
    # correct predictions first within a row (stable, so the probe order decides ties)
    rows = [r[np.argsort(preds[r] != labels[r], kind="stable")] for r in rows]
    cols = max((len(r) for r in rows), default=0)
    tile_w, tile_h = w + 2 * _BORDER, h + 2 * _BORDER + _CAPTION_H
    top = 18 if title else 0
    width = max(_LABEL_W + cols * (tile_w + _GAP), 8 + 7 * len(title))
    canvas = np.full(
        (top + len(rows) * (tile_h + _GAP), width, 3),
        255,
        dtype=np.uint8,
    )
    if title:
        _text(canvas, title, 4, 13, 0.4)
    for r, idx in enumerate(rows):
        y = top + r * (tile_h + _GAP)
        _text(canvas, class_names[r][:18], 2, y + tile_h // 2)
        for c, i in enumerate(idx):
            x = _LABEL_W + c * (tile_w + _GAP)
            colour = _GREEN if preds[i] == labels[i] else _RED
            canvas[y : y + h + 2 * _BORDER, x : x + tile_w] = colour
            tile = overlay(rgb[i], saliency[i], masks[i])
            if scale > 1:
                tile = cv2.resize(tile, (w, h), interpolation=cv2.INTER_NEAREST)
            canvas[y + _BORDER : y + _BORDER + h, x + _BORDER : x + _BORDER + w] = tile
            _text(canvas, f"p{int(preds[i])} fg{float(a_fg[i]):.2f}", x, y + tile_h - 3, 0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
