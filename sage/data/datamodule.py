"""Lightning DataModule over a prepared dataset: images resized to the backbone's input size.

Batches are dicts (``image``, ``label``, ``image_id``, and ``mask`` when asked for) so that
callbacks can join everything they compute back to meta.csv by ``image_id``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from ..errors import SageError
from .prepared import PreparedDataset

log = logging.getLogger(__name__)


def image_transform(
    size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool = False
) -> v2.Compose:
    """PIL/uint8 image -> normalised float tensor at ``size``x``size``.

    No horizontal flips even with ``augment``: left/right activities are mirror images.
    """
    ops: list = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
    if augment:
        ops += [v2.RandomAffine(degrees=5, translate=(0.05, 0.05)), v2.ColorJitter(0.2, 0.2, 0.2)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def stratified_head(frame: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """At most ``limit`` rows taken round-robin over classes, in the frame's order.

    The first ``limit`` rows of a split sorted by class would hold the first few classes
    only; this keeps every class (the k-th image of each class before any (k+1)-th) and is
    deterministic, so a limited explain or grid sees the same images every time.
    """
    if limit is None or limit >= len(frame):
        return frame
    if limit < 1:
        raise SageError(f"limit={limit} must be at least 1")
    rank = frame.groupby("label", sort=False).cumcount().to_numpy()
    keep = np.sort(np.lexsort((np.arange(len(frame)), rank))[:limit])
    return frame.iloc[keep].reset_index(drop=True)


class PreparedImages(Dataset):
    """One split of a prepared dataset (``limit``: a class-stratified subset of that size)."""

    def __init__(
        self,
        data: PreparedDataset,
        split: str,
        transform: v2.Compose,
        with_masks: bool = False,
        with_parts: bool = False,
        limit: int | None = None,
    ) -> None:
        self.data, self.split, self.transform = data, split, transform
        self.frame = stratified_head(data.split_frame(split), limit)
        self.with_masks, self.with_parts = with_masks, with_parts
        if with_parts and not data.part_names:
            raise SageError(f"{data.root} has no part labels (parts/legend.json)")
        self.paths = [data.image_path(i) for i in self.frame["image_id"]]

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i: int) -> dict:
        image_id = self.frame.at[i, "image_id"]
        with Image.open(self.paths[i]) as im:
            image = self.transform(im.convert("RGB"))
        item = {"image": image, "label": int(self.frame.at[i, "label"]), "image_id": image_id}
        if self.with_masks:
            size = image.shape[-2:]
            with Image.open(self.data.mask_path(image_id)) as m:
                mask = m.convert("L").resize(size[::-1], Image.NEAREST)
            item["mask"] = torch.from_numpy(np.asarray(mask) > 127)
        if self.with_parts:
            size = image.shape[-2:]
            with Image.open(self.data.parts_path(image_id)) as p:
                parts = p.resize(size[::-1], Image.NEAREST)
            item["parts"] = torch.from_numpy(np.array(parts, dtype=np.uint8))
        return item


SHUFFLE_LABELS_SEED = 0  # fixed: every run with shuffle_labels sees the same permutation


def shuffled_labels(frame: pd.DataFrame, seed: int = SHUFFLE_LABELS_SEED) -> pd.DataFrame:
    """A copy of a split's frame whose ``label`` (and ``label_name``) column is permuted over the
    images with a fixed seed: the same multiset of labels, no longer tied to the images (the
    data randomisation test of Adebayo et al. 2018). Everything else stays with its image."""
    perm = np.random.default_rng(seed).permutation(len(frame))
    out = frame.copy()
    for column in ("label", "label_name"):
        if column in out:
            out[column] = frame[column].to_numpy()[perm]
    return out


class PreparedDataModule(pl.LightningDataModule):
    """Train/val/test loaders of one prepared dataset.

    ``shuffle_labels``: train on the train split's labels permuted over its images (fixed
    seed; :func:`shuffled_labels`); val and test keep their true labels, so val accuracy then
    measures how much of the memorised noise generalises — chance level (about 1/classes)
    for a model that only memorised. This is the reference model of the data randomisation
    sanity check (``metrics.randomisation.reference``).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        batch_size: int = 32,
        num_workers: int = 0,
        sampler: str = "none",
        augment: bool = False,
        allow_gaps: bool = False,
        shuffle_labels: bool = False,
    ) -> None:
        super().__init__()
        if sampler not in ("none", "weighted"):
            raise ValueError(f"data.sampler must be 'none' or 'weighted', got {sampler!r}")
        self.data = PreparedDataset.open(root, hint="run `python -m sage.prepare` first")
        # A class without training images still gets a head row, trained only to lose: the
        # model silently never predicts it. Refuse unless the user says it is intended.
        gaps = self.data.gaps()
        if gaps and not allow_gaps:
            raise SageError(
                f"prepared dataset {self.data.root}: {'; '.join(gaps)}; fix the split or "
                "mapping, or train anyway with data.allow_gaps=true"
            )
        for gap in gaps:
            log.warning("training on %s although %s (data.allow_gaps=true)", self.data.root, gap)
        self.image_size, self.mean, self.std = image_size, tuple(mean), tuple(std)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.sampler, self.augment = sampler, augment
        self.shuffle_labels = shuffle_labels
        if shuffle_labels:
            log.warning(
                "data.shuffle_labels=true: training on permuted labels (data randomisation "
                "sanity check); val/test keep their true labels"
            )
        self._sets: dict[str, PreparedImages] = {}

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    def state_dict(self) -> dict[str, str]:
        """Saved in every checkpoint: the (immutable) prepared directory the model was trained
        on, so explain can default to exactly that data."""
        return {"prepared_dataset": str(self.data.root)}

    def load_state_dict(self, state_dict: dict[str, str]) -> None:
        """Nothing to restore: the data is chosen by the config (resume uses the same)."""

    def dataset(self, split: str, with_masks: bool = False) -> PreparedImages:
        key = f"{split}{'+masks' if with_masks else ''}"
        if key not in self._sets:
            tf = image_transform(
                self.image_size, self.mean, self.std, self.augment and split == "train"
            )
            self._sets[key] = PreparedImages(self.data, split, tf, with_masks)
            if self.shuffle_labels and split == "train":
                self._sets[key].frame = shuffled_labels(self._sets[key].frame)
        return self._sets[key]

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        ds = self.dataset(split)
        sampler = None
        if shuffle and self.sampler == "weighted":
            # meta.csv weights balance many-to-one merged classes (see sage.data.labels)
            weights = torch.tensor(ds.frame["weight"].to_numpy(), dtype=torch.double)
            sampler, shuffle = WeightedRandomSampler(weights, len(ds), replacement=True), False
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
