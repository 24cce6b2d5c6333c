"""The explain task's meta-evaluation stage (``metrics=[..., meta]``): the metrics of every method,
the ground-truth map and the baselines on the same images, again on a slightly perturbed and
on a randomised copy of the model, turned into the validity table of
:mod:`sage.metrics.meta_evaluation`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..metrics.meta_evaluation import perturbed_copy, tier_of, validity_table
from ..metrics.suite import is_pooled
from ..models import create_backbone
from ..saliency.methods import SaliencyMethod
from .stage import explain_stream

# metric sets whose columns say nothing about explanation quality (similarities of maps)
NOT_SCORED = frozenset({"randomisation"})


def score_model(
    net: nn.Module,
    methods: Mapping[str, SaliencyMethod],
    loader: DataLoader,
    metric_sets: Mapping[str, Any],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    explain_true: bool,
    discriminative: Mapping[str, np.ndarray],
    part_names: Mapping[int, str],
    desc: str,
    progress: bool,
) -> pd.DataFrame:
    """Per-image metric columns (the non-pooled sets) of every method on ``net``."""
    # pooled sets have no per-image values; the sanity checks compare maps, not explanations
    sets = {k: v for k, v in metric_sets.items() if not is_pooled(k) and k not in NOT_SCORED}
    device = next(net.parameters()).device
    frames = []
    for key, method in methods.items():
        batches = tqdm(loader, desc=f"{desc} {key}", disable=not progress)
        for item in explain_stream(
            net,
            method,
            key,
            batches,
            device=device,
            mean=mean,
            std=std,
            explain_true=explain_true,
            metric_sets=sets,
            pooled_model_level=False,
            part_names=part_names,
            discriminative=discriminative,
            where=f" ({desc})",
        ):
            frames.append(
                pd.DataFrame(
                    {"image_id": item.ids, "method": key}
                    | {c: v.detach().cpu().numpy() for c, v in item.result.columns.items()}
                )
            )
    return pd.concat(frames, ignore_index=True)


def meta_evaluate(
    net: nn.Module,
    methods: Mapping[str, SaliencyMethod],
    per_image: pd.DataFrame,
    loader: DataLoader,
    metric_sets: Mapping[str, Any],
    num_classes: int,
    *,
    perturbation: float = 0.01,
    model_checks: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    **score_options: Any,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The validity table, and the per-image tables of the perturbed and randomised models."""
    tiers = {key: tier_of(key, m.family) for key, m in methods.items()}
    others: dict[str, pd.DataFrame] = {}
    if model_checks:
        twins = {"perturbed": perturbed_copy(net, perturbation, seed)}
        backbone = getattr(net, "sage_backbone", None)
        if backbone is not None:  # the architecture with fresh random weights, seeded
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                twins["randomised"] = create_backbone(backbone, num_classes)
        device = next(net.parameters()).device
        for name, twin in twins.items():
            others[name] = score_model(
                twin.to(device).eval(),
                methods,
                loader,
                metric_sets,
                desc=f"meta {name}",
                **score_options,
            )
    table = validity_table(
        per_image,
        tiers,
        perturbed=others.get("perturbed"),
        randomised=others.get("randomised"),
        n_boot=n_boot,
        seed=seed,
    )
    return table, others
