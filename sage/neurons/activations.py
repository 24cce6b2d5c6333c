"""Penultimate-layer units, region masks, and one activation pass over a split.

A *unit* is one component of the penultimate feature vector: the globally pooled features
that feed the classifier head (RIVAL10 §6 "a neuron in the penultimate layer"). By default it
is read as the **input of the backbone's classifier module** (``BackboneSpec.classifier``),
average-pooled over space when that input is still a feature map (SqueezeNet's conv head);
``feature_layer="<dotted path>"`` reads the output of any other module instead (e.g. a
hand-built model's ``pool``, or VGG's conv features rather than its fc7).

Regions are named masks of a batch: a SynthDrivers part (``batch["parts"] == id``) or ``fg``
(the foreground mask). :func:`collect_activations` runs the model once over a dataset, without
gradients, and keeps every unit's activation and every region's pixel count per image, so
top-k selection and empty-region bookkeeping need no second pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ..errors import SageError
from ..models import get_backbone_spec, resolve_layers
from ..saliency.methods.base import backbone_of

FG = "fg"  # region name of the foreground mask (every other region is a part name)


def pool_units(x: Tensor) -> Tensor:
    """``(B, U)`` unit activations from a feature vector or a ``(B, U, h, w)`` map (mean)."""
    if x.dim() == 2:
        return x
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    raise SageError(
        f"penultimate features must be (B, U) or (B, U, h, w), got {tuple(x.shape)}: "
        "pass neurons.feature_layer=<module whose output is the pooled features>"
    )


class FeatureTap:
    """Captures the unit features ``(B, U)`` of every forward while attached.

    ``feature_layer=None``: the input of the backbone's classifier (needs a registered
    backbone); otherwise the output of the module at that dotted path.
    """

    def __init__(self, model: nn.Module, feature_layer: str | None = None) -> None:
        if feature_layer is None:
            name = backbone_of(model)
            if name is None:
                raise SageError(
                    f"{type(model).__name__} is not a registered backbone: "
                    "pass feature_layer=<dotted path of the pooled-feature module>"
                )
            self.path, self.read_input = get_backbone_spec(name).classifier, True
        else:
            self.path, self.read_input = feature_layer, False
        (self.module,) = resolve_layers(model, [self.path])
        self.features: Tensor | None = None

    @contextmanager
    def attach(self) -> Iterator[FeatureTap]:
        """Hook the module for the duration of the block (the hook never outlives it)."""

        def pre_hook(module: nn.Module, args: tuple) -> None:
            self.features = pool_units(args[0])

        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            self.features = pool_units(output)

        handle = (
            self.module.register_forward_pre_hook(pre_hook)
            if self.read_input
            else self.module.register_forward_hook(hook)
        )
        self.features = None
        try:
            yield self
        finally:
            handle.remove()

    def take(self) -> Tensor:
        if self.features is None:
            raise RuntimeError(f"the forward never reached {self.path!r}")
        features, self.features = self.features, None
        return features


def resolve_regions(
    part_names: Mapping[int, str], requested: Sequence[str] | None, has_mask: bool = True
) -> dict[str, int | None]:
    """Region name -> part id (``None`` for ``fg``, the foreground mask).

    ``requested=None`` gives every part the dataset has except ``background``; an unknown
    name is an error listing the available ones.
    """
    by_name = {name: pid for pid, name in part_names.items() if name != "background"}
    if requested is None:
        if not by_name:
            raise SageError("the dataset has no part labels: pass neurons.regions=[fg]")
        return dict(by_name)
    out: dict[str, int | None] = {}
    for name in requested:
        if name == FG and has_mask:
            out[name] = None
        elif name in by_name:
            out[name] = by_name[name]
        else:
            available = [*by_name, *([FG] if has_mask else [])]
            raise SageError(f"unknown region {name!r}; available: {', '.join(available)}")
    if not out:
        raise SageError("neurons.regions is empty")
    return out


def region_masks(batch: Mapping[str, Tensor], regions: Mapping[str, int | None]) -> Tensor:
    """``(B, R, H, W)`` bool masks of ``regions`` (in their order) for one batch."""
    planes = []
    for name, pid in regions.items():
        key = "mask" if pid is None else "parts"
        if key not in batch:
            raise SageError(f"region {name!r} needs batch[{key!r}], which the data does not give")
        planes.append(batch[key].bool() if pid is None else batch[key] == pid)
    return torch.stack(planes, dim=1)


@dataclass
class ActivationTable:
    """One pass over a dataset: ``acts`` (N, U), ``labels`` (N,), ``area`` (N, R) region pixel
    counts, ``index`` (N,) positions in the dataset and ``image_ids``."""

    acts: Tensor
    labels: Tensor
    area: Tensor
    index: Tensor
    image_ids: list[str]


def loader(
    dataset: Dataset, indices: Sequence[int] | None, batch_size: int, num_workers: int = 0
) -> DataLoader:
    """In-order loader over ``indices`` of ``dataset`` (all of it when None)."""
    subset = dataset if indices is None else Subset(dataset, list(indices))
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    dataset: Dataset,
    regions: Mapping[str, int | None],
    *,
    indices: Sequence[int] | None = None,
    feature_layer: str | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "activations",
) -> ActivationTable:
    """Every unit's activation on every image of ``dataset`` (or ``indices`` of it), in one
    forward per batch, with the pixel count of every region (0 = empty, skipped later)."""
    tap = FeatureTap(model, feature_layer)
    was_training = model.training
    model.eval()
    acts, labels, areas, ids = [], [], [], []
    try:
        with tap.attach():
            for batch in tqdm(
                loader(dataset, indices, batch_size), desc=desc, disable=not progress
            ):
                model(batch["image"].to(device))
                acts.append(tap.take().float().cpu())
                labels.append(torch.as_tensor(batch["label"]))
                areas.append(region_masks(batch, regions).flatten(2).sum(2))
                ids.extend(batch["image_id"])
    finally:
        model.train(was_training)
    if not acts:
        raise SageError("no images to collect activations from (empty split or class filter)")
    n = sum(len(a) for a in acts)
    return ActivationTable(
        acts=torch.cat(acts),
        labels=torch.cat(labels).long(),
        area=torch.cat(areas).long(),
        index=torch.as_tensor(list(indices) if indices is not None else range(n)).long(),
        image_ids=ids,
    )
