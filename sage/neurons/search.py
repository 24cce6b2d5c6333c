"""Which unit looks at which region: the top-k search and its held-out check (RIVAL10 §6).

Search (training split), for each (class, region):

1. the images of the class whose region mask is non-empty are *eligible* (the others are
   skipped and counted);
2. per unit, its top-k eligible images by activation (:func:`top_k_per_unit`);
3. the unit's Grad-CAM on each of them, binarised at τ·max, IoU with the region mask;
4. the unit with the highest mean IoU is the candidate (its mean is the *train IoU*).

All units' activations come from one pass (:func:`collect_activations`). The Grad-CAMs come
from a second pass over only the images some unit needs: each image is forwarded once and
back-propagated once per chunk of the units that need it (the (image, unit) pairs are packed
per image, :func:`pack_units`), and each map is scored against every region at once.

Held-out (:func:`heldout_scores`): one pass over the held-out images of the selected classes;
each image gets the candidate unit of every (its class, region) whose mask is non-empty there,
and records that unit's activation and IoU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from .activations import ActivationTable, loader, region_masks
from .unit_cam import UnitGradCAM, paired_iou, unit_iou


@dataclass
class PairSearch:
    """The search result of one (class, region).

    ``units`` (Uc,) searched unit ids; ``top`` (k', Uc) dataset positions of each unit's
    top-k eligible images; ``top_act`` / ``top_iou`` (k', Uc) the unit's activation and IoU
    on them; ``scores`` (Uc,) mean IoU per
    unit; ``best_unit`` / ``train_iou`` the candidate (None / NaN when nothing is eligible).
    """

    label: int
    region: str
    units: Tensor
    n_eligible: int
    n_skipped_empty: int
    top: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.long))
    top_act: Tensor = field(default_factory=lambda: torch.empty(0, 0))
    top_iou: Tensor = field(default_factory=lambda: torch.empty(0, 0))
    scores: Tensor = field(default_factory=lambda: torch.empty(0))

    @property
    def ok(self) -> bool:
        return self.n_eligible > 0 and bool(torch.isfinite(self.scores).any())

    @property
    def best(self) -> int | None:
        """Column of the candidate in ``units`` (ties: the lowest unit id)."""
        if not self.ok:
            return None
        return int(torch.nan_to_num(self.scores, nan=-1.0).argmax())

    @property
    def best_unit(self) -> int | None:
        return None if self.best is None else int(self.units[self.best])

    @property
    def train_iou(self) -> float:
        return float("nan") if self.best is None else float(self.scores[self.best])


def top_k_per_unit(acts: Tensor, eligible: Tensor, k: int) -> Tensor:
    """``(k', U)`` row indices of each unit's ``k`` highest activations among ``eligible``
    rows (k' = min(k, #eligible)), highest first."""
    rows = eligible.nonzero().squeeze(1)
    k = min(int(k), len(rows))
    if k == 0:
        return torch.empty(0, acts.shape[1], dtype=torch.long)
    return rows[acts[rows].topk(k, dim=0).indices]


def pack_units(image: Tensor, unit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pack (image, unit) pairs per image, each distinct pair once.

    Returns ``(images, table, pos)``: the distinct images (sorted), a ``(len(images), J)``
    table of their distinct units padded with -1, and, for each input pair (repeats
    included), its (row, column) in the table as ``pos`` (M, 2). Vectorised (a unique and a
    cumulative count, no Python loop).
    """
    width = int(unit.max()) + 1 if unit.numel() else 1
    keys, inverse = torch.unique(image * width + unit, sorted=True, return_inverse=True)
    images, row = torch.unique_consecutive(keys // width, return_inverse=True)
    counts = torch.bincount(row, minlength=len(images))
    first = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(keys)) - first[row]
    table = torch.full((len(images), int(counts.max()) if len(counts) else 0), -1)
    table[row, col] = keys % width
    pos = torch.stack([row, col], dim=1)[inverse]
    return images, table, pos


def search_units(
    engine: UnitGradCAM,
    dataset: Dataset,
    table: ActivationTable,
    regions: Mapping[str, int | None],
    labels: Sequence[int],
    *,
    units: Sequence[int] | None = None,
    top_k: int = 10,
    tau: float = 0.5,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[PairSearch]:
    """The top-k search for every (label, region) (module docstring); one entry per pair."""
    n_units = table.acts.shape[1]
    unit_ids = torch.arange(n_units) if units is None else torch.as_tensor(list(units)).long()
    if len(unit_ids) == 0 or int(unit_ids.min()) < 0 or int(unit_ids.max()) >= n_units:
        raise ValueError(f"units must be a non-empty subset of 0..{n_units - 1}")
    acts = table.acts[:, unit_ids]
    names = list(regions)
    pairs: list[PairSearch] = []
    for label in labels:
        in_class = table.labels == label
        for r, name in enumerate(names):
            present = table.area[:, r] > 0
            eligible = in_class & present
            pair = PairSearch(
                label=int(label),
                region=name,
                units=unit_ids,
                n_eligible=int(eligible.sum()),
                n_skipped_empty=int((in_class & ~present).sum()),
            )
            pair.top = top_k_per_unit(acts, eligible, top_k)  # rows of `table`
            pair.top_act = acts.gather(0, pair.top)
            pairs.append(pair)

    # every (image row, unit column, region) some pair needs; each distinct (image, unit) map
    # is computed once and scored against every region at once, and only the needed IoUs
    # are kept (memory O(pairs needed), not images x units x regions)
    need_rows = torch.cat([p.top.flatten() for p in pairs])
    need_cols = torch.cat([torch.arange(len(unit_ids)).repeat(len(p.top)) for p in pairs])
    need_region = torch.cat(
        [torch.full((p.top.numel(),), names.index(p.region)) for p in pairs]
    ).long()
    ious = torch.full((len(need_rows),), float("nan"))
    if len(need_rows):
        rows, packed, pos = pack_units(need_rows, need_cols)
        by_row = torch.argsort(pos[:, 0], stable=True)
        bounds = torch.searchsorted(pos[by_row, 0], torch.arange(len(rows) + 1))
        done = 0
        batches = loader(dataset, table.index[rows].tolist(), batch_size)
        for batch in tqdm(batches, desc="unit Grad-CAM (train top-k)", disable=not progress):
            n = len(batch["image_id"])
            cols = packed[done : done + n]
            scored = torch.full((*cols.shape, len(names)), float("nan"))
            masks = region_masks(batch, regions).to(device)
            with engine.forward(batch["image"].to(device)) as fwd:
                target = torch.where(cols >= 0, unit_ids[cols.clamp(min=0)], cols)
                for sl, cams in fwd.chunks(target):
                    scored[:, sl] = unit_iou(cams.detach(), masks, tau).cpu()
            needs = by_row[bounds[done] : bounds[done + n]]
            ious[needs] = scored[pos[needs, 0] - done, pos[needs, 1], need_region[needs]]
            done += n
    start = 0
    for pair in pairs:
        size = pair.top.numel()
        pair.top_iou = ious[start : start + size].view(pair.top.shape)
        pair.scores = (
            pair.top_iou.nanmean(0) if size else torch.full((len(unit_ids),), float("nan"))
        )
        pair.top = table.index[pair.top]  # rows of `table` -> dataset positions
        start += size
    return pairs


def heldout_scores(
    engine: UnitGradCAM,
    dataset: Dataset,
    indices: Sequence[int],
    regions: Mapping[str, int | None],
    candidates: Mapping[tuple[int, str], int],
    *,
    tau: float = 0.5,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every candidate's IoU and activation on the held-out images of its class.

    ``candidates[(label, region)] = unit``. Returns ``(scores, counts)``: ``scores`` has one
    row per (image, region) with a candidate and a non-empty mask (image_id, position in
    ``dataset``, label, region, unit, activation, iou); ``counts`` per (label, region) the
    images skipped for an empty mask (``n_skipped_empty``) and those with the region
    (``n_with_region``).
    """
    names = list(regions)
    n_labels = 1 + max([label for label, _ in candidates] + [0])
    lut = torch.full((n_labels, len(names)), -1, dtype=torch.long)
    for (label, name), unit in candidates.items():
        lut[label, names.index(name)] = unit
    frames, empty, present = [], [], []
    done = 0
    indices = list(indices)
    for batch in tqdm(
        loader(dataset, indices, batch_size), desc="unit Grad-CAM (held-out)", disable=not progress
    ):
        n = len(batch["image_id"])
        labels = torch.as_tensor(batch["label"]).long()
        masks = region_masks(batch, regions)
        nonempty = masks.flatten(2).any(2)  # (B, R)
        known = labels < n_labels
        units = torch.where(
            known[:, None] & nonempty, lut[labels.clamp(max=n_labels - 1)], torch.tensor(-1)
        )
        empty.append(pd.DataFrame(~nonempty.numpy(), columns=names).assign(label=labels.numpy()))
        present.append(pd.DataFrame(nonempty.numpy(), columns=names).assign(label=labels.numpy()))
        iou = torch.full(units.shape, float("nan"))
        act = torch.full(units.shape, float("nan"))
        masks = masks.to(device)
        with engine.forward(batch["image"].to(device)) as fwd:
            feats = fwd.features.cpu()
            act = torch.where(units >= 0, feats.gather(1, units.clamp(min=0)), act)
            for sl, cams in fwd.chunks(units):
                iou[:, sl] = paired_iou(cams.detach(), masks[:, sl], tau).cpu()
        rows, cols = (units >= 0).nonzero(as_tuple=True)
        frames.append(
            pd.DataFrame(
                {
                    "image_id": [batch["image_id"][i] for i in rows.tolist()],
                    "position": torch.as_tensor(indices[done : done + n])[rows].numpy(),
                    "label": labels[rows].numpy(),
                    "region": [names[c] for c in cols.tolist()],
                    "unit": units[rows, cols].numpy(),
                    "activation": act[rows, cols].numpy(),
                    "iou": iou[rows, cols].numpy(),
                }
            )
        )
        done += n
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    counts = (
        pd.concat(empty).groupby("label").sum().stack().rename("n_skipped_empty").to_frame()
        if empty
        else pd.DataFrame(columns=["n_skipped_empty"])
    )
    if present:
        counts["n_with_region"] = pd.concat(present).groupby("label").sum().stack()
    counts.index.names = ["label", "region"]
    return scores, counts.reset_index()
