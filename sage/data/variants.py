"""The four dataset variants from one foreground mask.

- ``full``: the unaltered frame;
- ``bbox``: crop to the driver's box (plus ``margin``), resized back to the frame size;
- ``seg``: the full frame with the background replaced by ``fill``;
- ``bboxseg``: the bbox crop, then the segmentation inside it.

The mask and the part labels travel with the image through every crop and resize (nearest
neighbour, so they stay binary / integer), so masks/ is always aligned with images/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

VARIANTS = ("full", "bbox", "seg", "bboxseg")
IMAGENET_FILL = (124, 116, 104)  # ImageNet mean in 0..255: a normalised input of 0


@dataclass
class Sample:
    """An image with its aligned foreground mask and optional part labels."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool
    parts: np.ndarray | None = None  # (H, W) uint8 labels


def crop_box(
    box: tuple[int, int, int, int], shape: tuple[int, int], margin: float
) -> tuple[int, int, int, int]:
    """``box`` grown by ``margin`` × its size on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    mx, my = round(margin * (x1 - x0)), round(margin * (y1 - y0))
    h, w = shape
    return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)


def _resize(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize to ``size`` = (width, height); nearest for labels, bilinear for pixels."""
    if array.shape[1::-1] == tuple(size):
        return array
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(array).resize(size, resample))


def _crop(sample: Sample, box: tuple[int, int, int, int], size: tuple[int, int]) -> Sample:
    x0, y0, x1, y1 = box
    mask = sample.mask[y0:y1, x0:x1].astype(np.uint8)
    parts = None if sample.parts is None else _resize(sample.parts[y0:y1, x0:x1], size, True)
    return Sample(
        image=_resize(np.ascontiguousarray(sample.image[y0:y1, x0:x1]), size, False),
        mask=_resize(mask, size, True).astype(bool),
        parts=parts,
    )


def _segment(sample: Sample, fill: tuple[int, int, int]) -> Sample:
    image = np.where(sample.mask[..., None], sample.image, np.asarray(fill, np.uint8))
    return Sample(image=image.astype(np.uint8), mask=sample.mask, parts=sample.parts)


def make_variants(
    sample: Sample,
    box: tuple[int, int, int, int],
    variants: tuple[str, ...] = VARIANTS,
    margin: float = 0.1,
    fill: tuple[int, int, int] = IMAGENET_FILL,
    size: tuple[int, int] | None = None,
) -> dict[str, Sample]:
    """Variants of ``sample``. Crops are resized to ``size`` (width, height), else the frame's."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {VARIANTS}")
    size = size or sample.image.shape[1::-1]
    out: dict[str, Sample] = {}
    cropped = None
    if {"bbox", "bboxseg"} & set(variants):
        cropped = _crop(sample, crop_box(box, sample.mask.shape, margin), size)
    for variant in variants:
        if variant == "full":
            out[variant] = sample
        elif variant == "bbox":
            out[variant] = cropped
        elif variant == "seg":
            out[variant] = _segment(sample, fill)
        else:
            out[variant] = _segment(cropped, fill)
    return out
