"""The sharded array store: one compressed ``.npz`` per batch per method, and an index.

Layout under ``arrays/``:

- ``<method>/shard-<k>.npz`` (``k`` = batch number, 5 digits): the batch's arrays stacked,
  ``image_id`` ``(B,)``, ``whole`` ``(B, H, W)`` (S̃ = ReLU(S)/ΣReLU(S)), ``mask`` ``(B, H, W)``
  bool (absent when the images have no foreground mask) and ``tokens_<P>x<Q>``
  ``(B, 3, P, Q, 6)`` (regions whole/fg/bg × cells × features);
- ``index.csv``: ``image_id, method, shard, row``, appended batch by batch.

``fg`` and ``bg`` (S̃⊙M, S̃⊙(1−M)) are not stored: :func:`sage.explain.maps.load_maps`
derives them from ``whole`` and ``mask``, bit for bit what the per-image files used to hold.
A run writes ``batches × methods`` shard files instead of ``images × methods``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..stage import Explained

INDEX = "index.csv"
INDEX_COLUMNS = ("image_id", "method", "shard", "row")


def shard_name(index: int) -> str:
    """File name of batch ``index``'s shard."""
    return f"shard-{index:05d}.npz"


class ArrayStore:
    """Writes each explained batch's maps, mask and tokens as one shard; indexes its rows."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = self.root / INDEX
        pd.DataFrame(columns=list(INDEX_COLUMNS)).to_csv(self.index, index=False)

    def add(self, item: Explained) -> None:
        res = item.result
        arrays = {
            "image_id": np.asarray(item.ids, dtype=str),
            "whole": res.saliency.pdf.detach().cpu().numpy(),
        }
        if item.masks is not None:
            arrays["mask"] = item.masks.cpu().numpy().astype(bool)
        arrays |= {f"tokens_{grid}": t.detach().cpu().numpy() for grid, t in res.tokens.items()}
        folder = self.root / item.method
        folder.mkdir(exist_ok=True)
        name = shard_name(item.index)
        np.savez_compressed(folder / name, **arrays)
        rows = pd.DataFrame(
            {
                "image_id": item.ids,
                "method": item.method,
                "shard": name,
                "row": range(len(item.ids)),
            }
        )
        rows.to_csv(self.index, mode="a", header=False, index=False)
