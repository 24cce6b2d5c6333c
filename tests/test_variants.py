"""Variant geometry: crops contain the mask, masks stay aligned through resize, seg is exact."""

from __future__ import annotations

import numpy as np
import pytest

from sage.data.variants import IMAGENET_FILL, Sample, crop_box, make_variants
from sage.maskers import mask_box


@pytest.fixture
def sample() -> Sample:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    parts = mask.astype(np.uint8) * 3
    image[mask] = (10, 200, 10)
    return Sample(image, mask, parts)


def test_crop_box_grows_by_margin_and_clips():
    assert crop_box((10, 10, 30, 20), (100, 100), 0.5) == (0, 5, 40, 25)
    assert crop_box((0, 0, 100, 100), (100, 100), 0.2) == (0, 0, 100, 100)


def test_variants_keep_mask_aligned(sample):
    out = make_variants(sample, mask_box(sample.mask), margin=0.25)
    assert out["full"] is sample
    for name in ("bbox", "bboxseg"):
        v = out[name]
        assert v.image.shape[:2] == v.mask.shape == v.parts.shape == (60, 80)
        # the mask still sits on the green object after crop + resize (bilinear resampling
        # blends the one-pixel rim, so compare regions, not every pixel)
        green = (v.image[..., 1] > 150) & (v.image[..., 0] < 60)
        assert (green & v.mask).sum() / (green | v.mask).sum() > 0.9
        assert (v.parts[v.mask] == 3).all() and (v.parts[~v.mask] == 0).all()
        assert v.mask.mean() > sample.mask.mean()
    seg = out["seg"]
    assert (seg.image[sample.mask] == sample.image[sample.mask]).all()
    assert (seg.image[~sample.mask] == IMAGENET_FILL).all()
    assert (out["bboxseg"].image[~out["bboxseg"].mask] == IMAGENET_FILL).all()


def test_unknown_variant_is_rejected(sample):
    with pytest.raises(ValueError, match="unknown variants"):
        make_variants(sample, (0, 0, 1, 1), variants=("full", "blur"))
