"""Meta-evaluation: does a metric tell a good explanation from a bad one?

On SynthDrivers the right answer is known (the discriminative part masks), so every metric can
be checked the way MetaQuantus checks metrics (Hedström et al., "The Meta-Evaluation Problem in
Explainable AI", TMLR 2023), but against ground truth rather than only against perturbations:

- **ordering**: the metric should rank the ground-truth map (tier ``ground_truth``) above the
  real methods (``method``) above the trivial baselines (``baseline``), by tier mean;
- **pair accuracy**: per image, the fraction of (ground truth, method) and (method, baseline)
  pairs the metric orders correctly (a tie counts one half), averaged over images, with a
  bootstrap 95 % interval over images;
- **noise resilience**: mean |change| of the metric when the model's weights get a small
  Gaussian perturbation that barely changes its predictions, in units of the metric's spread
  (standard deviation over images and methods): lower is better;
- **reactivity**: the same under full randomisation of the weights: higher is better.

A metric whose best-scored map is a trivial baseline is flagged (``trivial_first``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from itertools import pairwise

import numpy as np
import pandas as pd
import torch
from torch import nn

from .directions import direction

TIERS = ("ground_truth", "method", "baseline")


def tier_of(method: str, family: str) -> str:
    """Tier of a method from its family (``reference`` is the ground truth)."""
    return {"reference": "ground_truth", "baseline": "baseline"}.get(family, "method")


def _pair_accuracy(values: pd.DataFrame, tiers: Mapping[str, str], sign: int) -> np.ndarray:
    """Per image (rows of ``values``: image × method), the fraction of ordered pairs right."""
    by = {t: [m for m in values.columns if tiers.get(m) == t] for t in TIERS}
    pairs = [(hi, lo) for hi in by["ground_truth"] for lo in by["method"]]
    pairs += [(hi, lo) for hi in by["method"] for lo in by["baseline"]]
    if not pairs:
        return np.full(len(values), np.nan)
    x = values.to_numpy(dtype=float)
    col = {m: i for i, m in enumerate(values.columns)}
    hi = x[:, [col[a] for a, _ in pairs]]
    lo = x[:, [col[b] for _, b in pairs]]
    diff = sign * (hi - lo)
    score = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    score[np.isnan(diff)] = np.nan
    with np.errstate(all="ignore"):
        return np.nanmean(score, axis=1)


def bootstrap_mean(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values`` (NaNs dropped)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _moved(base: pd.DataFrame, other: pd.DataFrame | None, column: str) -> float:
    """Mean |other − base| of ``column`` over matching (image, method) rows, / base's std."""
    if other is None or column not in other:
        return float("nan")
    joined = base[["image_id", "method", column]].merge(
        other[["image_id", "method", column]], on=["image_id", "method"], suffixes=("", "_o")
    )
    spread = float(np.nanstd(base[column].to_numpy(dtype=float)))
    if not len(joined) or not spread > 0:
        return float("nan")
    delta = (joined[f"{column}_o"] - joined[column]).abs().to_numpy(dtype=float)
    return float(np.nanmean(delta) / spread)


def validity_table(
    metrics: pd.DataFrame,
    tiers: Mapping[str, str],
    *,
    perturbed: pd.DataFrame | None = None,
    randomised: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per metric column with a known direction (see module docstring).

    ``metrics``: per-image rows with ``image_id``, ``method`` and metric columns (explain's
    metrics.csv); ``tiers``: method -> ``ground_truth`` | ``method`` | ``baseline``;
    ``perturbed`` / ``randomised``: the same table for the slightly perturbed and the
    randomised model.
    """
    rows = []
    for column in [c for c in metrics.columns if c not in ("image_id", "method")]:
        sign = direction(column)
        if sign is None:
            continue
        wide = metrics.pivot_table(index="image_id", columns="method", values=column, dropna=False)
        means = wide.mean()
        tier_means = {
            t: float(means[[m for m in means.index if tiers.get(m) == t]].mean()) for t in TIERS
        }
        signed = {t: sign * v for t, v in tier_means.items()}
        present = [t for t in TIERS if np.isfinite(signed[t])]
        ordered = all(signed[a] > signed[b] for a, b in pairwise(present))
        best = (sign * means).idxmax() if means.notna().any() else None
        acc = _pair_accuracy(wide, tiers, sign)
        lo, hi = bootstrap_mean(acc, n_boot, seed)
        rows.append(
            {
                "metric": column,
                "direction": "↑" if sign > 0 else "↓",
                **{f"mean_{t}": tier_means[t] for t in TIERS},
                "best_map": best,
                "ordered": ordered,
                "trivial_first": best is not None and tiers.get(best) == "baseline",
                "pair_accuracy": float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan,
                "pair_accuracy_lo": lo,
                "pair_accuracy_hi": hi,
                "noise_resilience": _moved(metrics, perturbed, column),
                "reactivity": _moved(metrics, randomised, column),
            }
        )
    return pd.DataFrame(rows)


def perturbed_copy(model: nn.Module, relative_std: float, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose every floating parameter gets Gaussian noise of
    ``relative_std`` × that tensor's standard deviation (the original is untouched)."""
    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in twin.parameters():
            if p.is_floating_point() and p.numel() > 1:
                noise = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
                p.add_(noise * relative_std * p.std())
    return twin
