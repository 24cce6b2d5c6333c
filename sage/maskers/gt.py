"""``gt`` masker: masks shipped with the dataset (``<root>_masks/<relative path>.png``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from .base import MaskResult, register_masker


@register_masker("gt")
class GroundTruthMasker:
    """Reads the mask named by the reader row's ``mask_path`` (binary, >127 is foreground)."""

    name = "gt"

    def __call__(self, images: Sequence[np.ndarray], rows: Sequence[Any]) -> list[MaskResult]:
        return [self._one(image, row) for image, row in zip(images, rows, strict=True)]

    @staticmethod
    def _one(image: np.ndarray, row: Any) -> MaskResult:
        path = getattr(row, "mask_path", None)
        if not isinstance(path, str):
            return MaskResult.failed("no_gt_mask")
        try:
            with Image.open(path) as im:
                mask = np.asarray(im.convert("L")) > 127
        except Exception as err:  # PIL raises many types for corrupt files
            return MaskResult.failed(f"unreadable_gt_mask: {type(err).__name__}")
        if mask.shape != image.shape[:2]:
            return MaskResult.failed(
                f"gt_mask_size_mismatch: mask {mask.shape[::-1]} vs image {image.shape[1::-1]}"
            )
        return MaskResult.from_mask(mask)
