"""One batch through one saliency method: maps, predictions, fg/bg masses, tokens, metric sets.

The unit of work of :mod:`sage.explain.stage`, which the explain task (a whole split, streamed
to disk), the validation-time :class:`~sage.training.sage_callback.SageCallback` (a probe set,
logged per epoch), the evaluation grid and the divergence analysis all go through, so they
report the same quantities computed the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..data.prepared import PreparedDataset
from ..errors import SageError, check_finite_logits
from ..metrics.suite import (
    LABEL_SETS,
    MASK_SETS,
    MetricContext,
    compute_metric_sets,
    is_pooled,
    pooled_set,
)
from ..saliency.methods import SaliencyMethod
from ..saliency.methods.baselines import GroundTruthMethod
from ..saliency.normalize import SaliencyBatch, normalize_batch
from ..saliency.tokens import tokenize_grids


def region_masks(masks: Tensor | None, parts: Tensor | None, names: Mapping[int, str]) -> dict:
    """``fg`` (when there is a mask) plus one mask per named part (head, hands, object,
    spurious, ...)."""
    regions = {} if masks is None else {"fg": masks}
    if parts is not None:
        regions |= {name: parts == pid for pid, name in names.items() if name != "background"}
    return regions


def discriminative_parts(data: PreparedDataset, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """image_id -> part ids that define its activity (the ground-truth attribution)."""
    path = data.root / "parts" / "legend.json"
    if not path.exists():
        return {}
    table = json.loads(path.read_text()).get("discriminative", {})
    return {
        i: np.asarray(table[s], dtype=np.int64)
        for i, s in zip(frame["image_id"], frame["source_label"], strict=True)
        if s in table
    }


def ground_truth(
    parts: Tensor | None, ids: Sequence[str], lut: Mapping[str, np.ndarray]
) -> Tensor | None:
    """Discriminative-part masks of a batch (None when the dataset has no ground truth)."""
    if parts is None or not all(i in lut for i in ids):
        return None
    table = torch.zeros(len(ids), 256, dtype=torch.bool, device=parts.device)
    for row, image_id in enumerate(ids):  # a lookup row per image; the pixels are gathered at once
        table[row, torch.as_tensor(lut[image_id], device=parts.device)] = True
    return table.gather(1, parts.long().flatten(1)).view_as(parts)


# Metric sets the answer key (``ground_truth``) sits out: COSE explains transformed subsets
# of the batch, and randomising the model cannot change a map that never depended on it.
_NOT_FOR_GT = frozenset({"cose", "randomisation"})
NAN = float("nan")


def _check_inputs(metric_sets: Mapping[str, Any], labels: bool, masks: bool, parts: bool) -> None:
    """A set that needs what the batch lacks is the caller's error, not a NaN column:
    ``rfs`` needs the foreground mask, ``alignment`` / ``mask_ranking`` some region (the
    mask or named parts)."""
    lacking = []
    for name in metric_sets:
        if not labels and name in LABEL_SETS:
            lacking.append(f"{name} (labels)")
        elif name in MASK_SETS and not (masks or (parts and name != "rfs")):
            lacking.append(f"{name} (foreground masks)")
    if lacking:
        raise SageError(
            f"metric sets {', '.join(lacking)} need what these images lack; leave them out "
            "(sage.metrics.suite.label_free_sets / mask_free_sets)"
        )


@dataclass
class ExplainedBatch:
    """Everything one method says about one batch (tensors on the batch's device)."""

    maps: Tensor  # (B, H, W) raw maps
    logits: Tensor  # (B, K)
    confidence: Tensor  # (B,) max softmax probability
    pred: Tensor  # (B,)
    saliency: SaliencyBatch  # ReLU+PDF, min-max, A_fg / A_bg, zero flags
    tokens: dict[str, Tensor]  # grid name -> (B, regions, P, Q, features)
    columns: dict[str, Tensor] = field(default_factory=dict)  # per-image metric columns
    pooled: dict[str, Any] = field(default_factory=dict)  # pooled set -> this batch's result


def explain_batch(
    net: nn.Module,
    method: SaliencyMethod,
    images: Tensor,
    labels: Tensor | None,
    masks: Tensor | None,
    *,
    grids: Sequence[tuple[int, int]],
    mean: Sequence[float],
    std: Sequence[float],
    explain_true: bool = False,
    metric_sets: Mapping[str, Mapping[str, Any] | None] | None = None,
    pooled_model_level: bool = True,
    parts: Tensor | None = None,
    part_names: Mapping[int, str] | None = None,
    gt: Tensor | None = None,
    cache: dict | None = None,
    ids: Sequence[str] | None = None,
    where: str = "",
    has_mask: Tensor | None = None,
) -> ExplainedBatch:
    """Explain ``images`` with ``method`` (predicted class, or the true one if
    ``explain_true``) and compute the selected metric sets.

    Pooled sets (COSE, RFS) return their per-batch result in ``pooled``; model-level pooled
    sets (RFS) only when ``pooled_model_level`` (callers run them with one method).
    ``cache`` carries per-method state between batches (e.g. COSE's sampled transforms).
    ``gt`` (the discriminative-part map) is also what the ``ground_truth`` method returns; that
    method sits out COSE and the randomisation checks.
    Non-finite logits (NaN weights, a broken checkpoint) are a SageError naming the images
    (``ids``; ``where`` completes the message), never predictions or scores computed from them.

    Images without a true class (``labels=None``) are explained for the predicted class;
    images without a foreground mask (``masks=None``) get the whole-map numbers only: A_fg,
    A_bg and the fg/bg tokens are NaN. ``has_mask`` ``(B,)`` marks the real masks of a batch
    where only some images have one (:func:`~sage.data.image_folder.collate_images`): the
    others get NaN there too, and NaN in every ``<metric>/fg`` column. Sets that need labels
    (:data:`~sage.metrics.suite.LABEL_SETS`) or masks (:data:`~sage.metrics.suite.MASK_SETS`)
    on images without them are a SageError (callers drop them first, with a reason).
    """
    if isinstance(method, GroundTruthMethod):  # the answer key is this batch's gt map
        method.provide(gt)
        metric_sets = {k: v for k, v in (metric_sets or {}).items() if k not in _NOT_FOR_GT}
    if explain_true and labels is None:
        raise SageError("targets=true explains the true class, but these images have no label")
    _check_inputs(metric_sets or {}, labels is not None, masks is not None, parts is not None)
    if has_mask is not None and masks is not None and bool(has_mask.all()):
        has_mask = None  # every mask real: nothing to blank
    maps = method(net, images, labels if explain_true else None)
    logits = method.last_logits
    if logits is None:  # baselines run no forward; predictions still matter
        with torch.no_grad():
            was_training = net.training
            logits = net.eval()(images)
            net.train(was_training)
    logits = logits.detach()
    check_finite_logits(logits, ids, where)
    conf, pred = logits.softmax(-1).max(-1)
    if masks is None:  # no foreground: every pixel counts as one, region numbers are NaN
        full = torch.ones(maps.shape, dtype=torch.bool, device=maps.device)
        sb = normalize_batch(maps, full)
        nan = torch.full_like(sb.a_fg, float("nan"))
        sb = replace(sb, a_fg=nan, a_bg=nan)
        tokens = tokenize_grids(sb.pdf, full, grids)
        for t in tokens.values():
            t[:, 1:] = float("nan")  # regions fg, bg (sage.saliency.tokens.REGIONS)
    else:
        sb = normalize_batch(maps, masks)
        tokens = tokenize_grids(sb.pdf, masks, grids)
        if has_mask is not None:  # images of a mixed batch without a mask: no region numbers
            blank = ~has_mask.to(maps.device).bool()
            a_fg, a_bg = sb.a_fg.masked_fill(blank, NAN), sb.a_bg.masked_fill(blank, NAN)
            sb = replace(sb, a_fg=a_fg, a_bg=a_bg)
            for t in tokens.values():
                t[blank, 1:] = NAN
    out = ExplainedBatch(maps, logits, conf, pred, sb, tokens)
    if metric_sets:
        ctx = MetricContext(
            model=net,
            method=method,
            images=images,
            targets=labels if explain_true else pred,
            labels=labels,
            maps=maps,
            regions=region_masks(masks, parts, part_names or {}),
            mean=tuple(mean),
            std=tuple(std),
            gt=gt,
            logits=logits,
            cache=cache if cache is not None else {},
        )
        out.columns = compute_metric_sets(ctx, metric_sets)
        if has_mask is not None:
            blank = ~has_mask.to(maps.device).bool()
            for name, column in out.columns.items():
                if name.endswith("/fg"):
                    out.columns[name] = column.float().masked_fill(blank, NAN)
        for name, options in metric_sets.items():
            if is_pooled(name) and (pooled_model_level or not pooled_set(name).model_level):
                out.pooled[name] = pooled_set(name).batch(ctx, **dict(options or {}))
    return out
