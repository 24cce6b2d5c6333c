"""Spurious-feature candidates: the lowest Δ density on the foreground, with their maps.

Images whose saliency lies most outside the driver (Explanation Alignment §5) are ranked from
the per-image metrics table; only their maps are read back from the array store, so the
figure costs ``k`` images whatever the size of the split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ...metrics.alignment import rank_spurious_candidates
from ...plots.ranking import ranking_mosaic
from ..maps import load_maps

COLUMN = "delta_density/fg"


def spurious_mosaics(
    per_image: pd.DataFrame, out: Path, image: Callable[[str], np.ndarray], k: int = 10
) -> None:
    """Per method ``spurious_candidates_<method>.csv`` and the mosaic
    ``mosaics/<method>_spurious_candidates.png``.

    ``out`` is the explain directory (its ``arrays/`` is read); ``image(image_id)`` returns the
    RGB uint8 image at the maps' size.
    """
    for method, group in per_image.groupby("method", sort=False):
        ranked = rank_spurious_candidates(group, metric=COLUMN, k=k)
        items = []
        if len(ranked):
            ids = [str(i) for i in ranked["image_id"]]
            maps = load_maps(out, ids, method=str(method))
            for row, (image_id, delta) in enumerate(zip(ids, ranked[COLUMN], strict=True)):
                whole = maps["whole"][row]
                span = whole.max() - whole.min()
                scaled = (whole - whole.min()) / span if span > 0 else np.zeros_like(whole)
                items.append(
                    (image(image_id), scaled, maps["mask"][row], f"{image_id[-14:]} Δ={delta:.2f}")
                )
        ranked.to_csv(out / f"spurious_candidates_{method}.csv", index=False)
        ranking_mosaic(
            items,
            out / "mosaics" / f"{method}_spurious_candidates.png",
            f"{method}: lowest Δ density (fg)",
        )
