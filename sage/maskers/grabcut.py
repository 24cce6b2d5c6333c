"""``grabcut`` masker: OpenCV GrabCut seeded by a box — bbox-guided segmentation, no weights.

Rother, Kolmogorov & Blake, "GrabCut: interactive foreground extraction using iterated graph
cuts", SIGGRAPH 2004. The seed box is either fixed in relative image coordinates
(``box=[x0, y0, x1, y1]`` in [0, 1]) or, with ``box_from=gt_mask``, the tight box of the
dataset's own mask (the "detector box" role, for datasets that ship masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..errors import SageError
from .base import MaskResult, mask_box, register_masker


def grabcut_mask(
    image: np.ndarray, box: tuple[int, int, int, int], iterations: int = 5
) -> np.ndarray:
    """Foreground of ``image`` (H, W, 3 uint8 RGB) inside ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    mask = np.zeros(image.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(
        cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
        mask,
        (x0, y0, x1 - x0, y1 - y0),
        bgd,
        fgd,
        iterations,
        cv2.GC_INIT_WITH_RECT,
    )
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


@register_masker("grabcut")
class GrabCutMasker:
    name = "grabcut"

    def __init__(
        self,
        box: Sequence[float] = (0.1, 0.05, 0.9, 0.95),
        box_from: str = "config",
        margin: float = 0.05,
        iterations: int = 5,
    ) -> None:
        if box_from not in ("config", "gt_mask"):
            raise SageError(f"masker.box_from must be 'config' or 'gt_mask', got {box_from!r}")
        if len(box) != 4 or not 0 <= box[0] < box[2] <= 1 or not 0 <= box[1] < box[3] <= 1:
            raise SageError(f"masker.box must be [x0, y0, x1, y1] within [0, 1], got {list(box)}")
        self.box, self.box_from = tuple(box), box_from
        self.margin, self.iterations = margin, iterations

    def _seed_box(self, image: np.ndarray, row: Any) -> tuple[int, int, int, int] | None:
        h, w = image.shape[:2]
        if self.box_from == "config":
            x0, y0, x1, y1 = self.box
            return int(x0 * w), int(y0 * h), int(np.ceil(x1 * w)), int(np.ceil(y1 * h))
        path = getattr(row, "mask_path", None)
        if not isinstance(path, str):
            return None
        with Image.open(path) as im:
            gt = np.asarray(im.convert("L")) > 127
        if not gt.any():
            return None
        x0, y0, x1, y1 = mask_box(gt)
        mx, my = int(self.margin * (x1 - x0)), int(self.margin * (y1 - y0))
        return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)

    def __call__(self, images: Sequence[np.ndarray], rows: Sequence[Any]) -> list[MaskResult]:
        results = []
        for image, row in zip(images, rows, strict=True):  # GrabCut is per image by nature
            box = self._seed_box(image, row)
            if box is None or box[2] - box[0] < 2 or box[3] - box[1] < 2:
                results.append(MaskResult.failed("no_seed_box"))
                continue
            results.append(MaskResult.from_mask(grabcut_mask(image, box, self.iterations)))
        return results
