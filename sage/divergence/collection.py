"""What the models say about the split: every model and saliency method over every batch.

:func:`collect_outputs` runs each model on the batches of its loader (:func:`make_loaders`:
one per distinct input size and normalisation, all in the same image order), explains every
batch with every method (:func:`sage.explain.batch.explain_batch`), keeps per model the class
probabilities, zero-map flags, foreground masses and tokens (:class:`ModelRun`, on the CPU)
and, per batch, the map-level divergences of every pair, so no map is kept. A model with
another input size has its raw maps resized (bilinear) to the first model's size before
normalising, so both maps of a pair live on the same pixels and mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.datamodule import PreparedImages, image_transform
from ..data.prepared import PreparedDataset
from ..errors import SageError
from ..explain.batch import explain_batch
from ..models.registry import BackboneSpec
from ..saliency.normalize import normalize_batch
from ..saliency.tokens import tokenize_grids
from .saliency import map_divergence
from .settings import Settings


@dataclass
class ModelRun:
    """What one model says about the split (CPU, aligned with the image order)."""

    probs: list[np.ndarray] = field(default_factory=list)
    zero: dict[str, list[np.ndarray]] = field(default_factory=dict)  # method -> (B,)
    a_fg: dict[str, list[np.ndarray]] = field(default_factory=dict)
    tokens: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)


def make_loaders(
    cfg: DictConfig,
    data: PreparedDataset,
    specs: Sequence[BackboneSpec],
    sizes: Sequence[int],
) -> tuple[list[DataLoader], list[int]]:
    """One loader per distinct (size, mean, std); the model -> loader map."""
    keys: list[tuple] = []
    which = []
    for spec, size in zip(specs, sizes, strict=True):
        key = (size, tuple(spec.mean), tuple(spec.std))
        if key not in keys:
            keys.append(key)
        which.append(keys.index(key))
    loaders = []
    for size, mean, std in keys:
        transform = image_transform(size, mean, std)
        images = PreparedImages(data, cfg.split, transform, with_masks=True, limit=cfg.get("limit"))
        if len(images) == 0:
            raise SageError(f"split {cfg.split!r} of {data.root} is empty")
        loaders.append(
            DataLoader(
                images,
                batch_size=int(cfg.batch_size),
                shuffle=False,
                num_workers=int(cfg.get("num_workers") or 0),
            )
        )
    return loaders, which


def collect_outputs(
    cfg: DictConfig,
    s: Settings,
    nets: Sequence[nn.Module],
    specs: Sequence[BackboneSpec],
    sizes: Sequence[int],
    loaders: Sequence[DataLoader],
    which: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    progress: bool,
) -> tuple[list[str], np.ndarray, list[ModelRun], dict]:
    """Forward + explain every batch with every model and method; pair map divergences."""
    device = torch.device(cfg.device)
    runs = [ModelRun() for _ in nets]
    pair_maps: dict[tuple[int, int], dict[str, dict[str, list]]] = {
        p: {m: {} for m in s.methods} for p in pairs
    }
    ids: list[str] = []
    labels: list[np.ndarray] = []
    first = next(iter(s.methods))
    ref = sizes[0]
    for batches in tqdm(
        zip(*loaders, strict=True), total=len(loaders[0]), desc="divergence", disable=not progress
    ):
        batch_ids = list(batches[0]["image_id"])
        if any(list(b["image_id"]) != batch_ids for b in batches[1:]):
            raise SageError("loaders of different input sizes disagree on the image order")
        ids += batch_ids
        labels.append(batches[0]["label"].numpy())
        ref_masks = batches[which[0]]["mask"].to(device)
        outs: list[dict[str, tuple]] = []
        for k, net in enumerate(nets):
            b = batches[which[k]]
            x, y = b["image"].to(device), b["label"].to(device)
            masks = b["mask"].to(device)
            per_method = {}
            for name, method in s.methods.items():
                res = explain_batch(
                    net,
                    method,
                    x,
                    y,
                    masks,
                    grids=s.grids,
                    mean=specs[k].mean,
                    std=specs[k].std,
                    ids=batch_ids,
                    where=f"of model {k}",
                )
                if name == first:
                    logits = res.logits.float()  # finite: explain_batch checks
                    runs[k].probs.append(logits.softmax(-1).double().cpu().numpy())
                sb, toks = res.saliency, res.tokens
                if sizes[k] != ref:  # compare on the first model's pixels and mask
                    maps = F.interpolate(
                        res.maps[:, None].float(),
                        size=(ref, ref),
                        mode="bilinear",
                        align_corners=False,
                    )[:, 0]
                    sb = normalize_batch(maps, ref_masks)
                    toks = tokenize_grids(sb.pdf, ref_masks, s.grids)
                per_method[name] = (sb.pdf.detach(), sb.minmax.detach(), sb.zero)
                runs[k].zero.setdefault(name, []).append(sb.zero.cpu().numpy())
                runs[k].a_fg.setdefault(name, []).append(sb.a_fg.detach().cpu().numpy())
                store = runs[k].tokens.setdefault(name, {})
                for g, t in toks.items():
                    store.setdefault(g, []).append(t.detach().cpu())
            outs.append(per_method)
        for i, j in pairs:
            for name in s.methods:
                pdf_a, mm_a, z_a = outs[i][name]
                pdf_b, mm_b, z_b = outs[j][name]
                cols = map_divergence(pdf_a, pdf_b, mm_a, mm_b, ref_masks, z_a | z_b)
                for col, v in cols.items():
                    pair_maps[(i, j)][name].setdefault(col, []).append(v.cpu().numpy())
    return ids, np.concatenate(labels).astype(np.int64), runs, pair_maps
