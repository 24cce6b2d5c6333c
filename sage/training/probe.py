"""The probe set: a fixed, class-stratified subset of a split that the SAGE callback explains.

Selection depends only on the split's image_ids, the class labels, ``per_class`` and the
seed (never on the global RNG), so every epoch and every run of a sweep with the same seed
explains the same images and their numbers can be compared side by side.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data.datamodule import PreparedImages
from ..errors import SageError


def select_probe(frame: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """``per_class`` images of every class of ``frame`` (fewer when a class has fewer), chosen
    by a seeded permutation of the class's image_ids in sorted order; rows sorted by
    (label, image_id)."""
    if per_class < 1:
        raise SageError(f"probe per_class must be >= 1, got {per_class}")
    if frame.empty:
        raise SageError("the probe split is empty")
    picked = []
    for label, group in frame.sort_values("image_id").groupby("label", sort=True):
        # one generator per class, keyed by the seed and the label: adding a class or an
        # image to another class does not move this class's probe images
        rng = np.random.default_rng([seed, int(label)])
        order = rng.permutation(len(group))[:per_class]
        picked.append(group.iloc[np.sort(order)])
    return pd.concat(picked).sort_values(["label", "image_id"]).reset_index(drop=True)


@dataclass
class ProbeSet:
    """The probe images in memory (normalised), with labels, masks and part labels."""

    ids: list[str]
    images: Tensor  # (N, 3, H, W)
    labels: Tensor  # (N,)
    masks: Tensor  # (N, H, W) bool
    parts: Tensor | None  # (N, H, W) uint8 part ids, where the dataset has them
    frame: pd.DataFrame  # the chosen rows of the split's meta table

    @property
    def digest(self) -> str:
        """Short hash of the image_ids: equal digests mean the same probe set."""
        return hashlib.sha1(json.dumps(self.ids).encode()).hexdigest()[:12]

    @classmethod
    def load(cls, dataset: PreparedImages, per_class: int, seed: int = 0) -> ProbeSet:
        """Select and read the probe images of ``dataset`` (built with masks)."""
        chosen = select_probe(dataset.frame, per_class, seed)
        position = {image_id: i for i, image_id in enumerate(dataset.frame["image_id"])}
        items = [dataset[position[i]] for i in chosen["image_id"]]
        return cls(
            ids=list(chosen["image_id"]),
            images=torch.stack([it["image"] for it in items]),
            labels=torch.tensor([it["label"] for it in items]),
            masks=torch.stack([it["mask"] for it in items]),
            parts=torch.stack([it["parts"] for it in items]) if dataset.with_parts else None,
            frame=chosen,
        )
