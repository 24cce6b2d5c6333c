"""The compute stage: batches in, explained batches out, for one saliency method.

:func:`explain_stream` is a generator over any iterable of batches; a batch is a mapping

- ``image``: ``(B, C, H, W)`` normalised inputs, ``image_id``: ``B`` ids (required);
- ``label``: ``(B,)`` true classes (optional: without it the predicted class is explained);
- ``mask``: ``(B, H, W)`` foreground masks (optional: without it there are no region numbers);
- ``has_mask``: ``(B,)`` bool, which masks are real when only some images have one
  (:func:`~sage.data.image_folder.collate_images`; the others get no region numbers);
- ``parts``: ``(B, H, W)`` part ids (optional: per-part metric regions).

A DataLoader over :class:`~sage.data.datamodule.PreparedImages` yields exactly that, and so do
the callback's probe slices; nothing here knows where the batches come from. Each
:class:`Explained` item carries what the sinks (:mod:`sage.explain.sinks`) consume. Tensors
stay on the device: a sink moves to the CPU only what it keeps, so a caller that needs a few
scalars (the training callback) pays for nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..saliency.methods import SaliencyMethod
from .batch import ExplainedBatch, explain_batch, ground_truth


@dataclass
class Explained:
    """One batch explained by one method, with the inputs the sinks need beside the result."""

    method: str  # the method's key (``cam=`` name)
    index: int  # batch number within this method's stream (the array store's shard)
    ids: list[str]
    images: Tensor  # (B, C, H, W) normalised inputs
    labels: Tensor | None  # (B,) true classes, None for unlabelled images
    masks: Tensor | None  # (B, H, W) bool foreground, None where the source has none
    result: ExplainedBatch  # maps, logits, confidence, pred, saliency, tokens, columns, pooled

    @property
    def correct(self) -> Tensor | None:
        """``(B,)`` bool prediction == label (None without labels)."""
        return None if self.labels is None else self.result.pred == self.labels


def explain_one(
    net: nn.Module,
    method: SaliencyMethod,
    key: str,
    batch: Mapping[str, Any],
    *,
    index: int = 0,
    device: torch.device | str = "cpu",
    grids: Sequence[tuple[int, int]] = (),
    mean: Sequence[float],
    std: Sequence[float],
    explain_true: bool = False,
    metric_sets: Mapping[str, Mapping[str, Any] | None] | None = None,
    pooled_model_level: bool = True,
    part_names: Mapping[int, str] | None = None,
    discriminative: Mapping[str, np.ndarray] | None = None,
    cache: dict | None = None,
    where: str = "",
) -> Explained:
    """Explain one batch mapping (see the module docstring) with ``method``.

    ``discriminative`` maps image ids to the part ids of their ground-truth attribution
    (:func:`~sage.explain.batch.discriminative_parts`); the other keywords are those of
    :func:`~sage.explain.batch.explain_batch`.
    """
    ids = list(batch["image_id"])
    images = batch["image"].to(device)
    labels = batch["label"].to(device) if "label" in batch else None
    masks = batch["mask"].to(device) if "mask" in batch else None
    parts = batch["parts"].to(device) if "parts" in batch else None
    has_mask = batch["has_mask"].to(device) if masks is not None and "has_mask" in batch else None
    res = explain_batch(
        net,
        method,
        images,
        labels,
        masks,
        grids=grids,
        mean=mean,
        std=std,
        explain_true=explain_true,
        metric_sets=metric_sets,
        pooled_model_level=pooled_model_level,
        parts=parts,
        part_names=part_names,
        gt=ground_truth(parts, ids, discriminative or {}),
        cache=cache,
        ids=ids,
        where=where,
        has_mask=has_mask,
    )
    return Explained(key, index, ids, images, labels, masks, res)


def explain_stream(
    net: nn.Module,
    method: SaliencyMethod,
    key: str,
    batches: Iterable[Mapping[str, Any]],
    *,
    cache: dict | None = None,
    **options: Any,
) -> Iterator[Explained]:
    """Explain every batch of ``batches`` with ``method``, one :class:`Explained` at a time.

    ``cache`` (fresh when omitted) carries the metric sets' per-method state between batches
    (e.g. COSE's sampled transforms); ``options`` are :func:`explain_one`'s keywords.
    """
    cache = {} if cache is None else cache
    for index, batch in enumerate(batches):
        yield explain_one(net, method, key, batch, index=index, cache=cache, **options)
