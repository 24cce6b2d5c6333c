"""``none`` masker: the whole frame is foreground — for data that has no masks at all.

Prepare needs a foreground mask per image; this masker lets it run on any folder of
labelled images. The mask it returns is not a measurement of anything, so the prepared
dataset records ``has_masks: false`` (``summary.json``, :attr:`PreparedDataset.has_masks`)
and only the ``full`` variant is written (a box or a cut-out of the whole frame is the whole
frame). The metric sets that need a real foreground are listed by
:func:`sage.metrics.suite.mask_free_sets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import MaskResult, register_masker


@register_masker("none")
class FullFrameMasker:
    """Every pixel is foreground; the box is the image."""

    name = "none"
    # read by prepare: the masks this masker writes are placeholders, not foregrounds
    real_masks = False

    def __call__(self, images: Sequence[np.ndarray], rows: Sequence[Any]) -> list[MaskResult]:
        return [
            MaskResult(mask=np.ones(im.shape[:2], dtype=bool), box=(0, 0, im.shape[1], im.shape[0]))
            for im in images
        ]
