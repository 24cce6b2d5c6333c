"""Complexity of a saliency map: sparseness (Gini index) and effective complexity
(docs/metrics.md §12). Batched (B, H, W), any device, no model.

Sources:

- Chalasani, Chen, Chowdhury, Wu, Jha, "Concise Explanations of Neural Networks using
  Adversarial Training", ICML 2020: sparseness as the Gini index of the absolute attribution.
- Nguyen, Rodríguez Martínez, "On Quantitative Aspects of Model Interpretability", 2020:
  effective complexity, the number of attributions above a threshold ε.

Both read the scored map's magnitude ``|S|`` (docs/metrics.md §1). A map with no magnitude
(all zero) or with a non-finite value has neither: NaN (a recorded skip).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sage.saliency.normalize import working_dtype

__all__ = ["effective_complexity", "sparseness"]


def _magnitude(maps: Tensor) -> tuple[Tensor, Tensor]:
    """(|S| flattened (B, H·W) in the working dtype, invalid (B,) bool)."""
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, H, W), got {tuple(maps.shape)}")
    a = maps.to(working_dtype(maps)).flatten(1).abs()
    finite = torch.isfinite(a).all(1)
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))
    invalid = ~finite | ~(a.amax(1) > 0)
    return a, invalid


def sparseness(maps: Tensor) -> Tensor:
    """Gini index of ``|S|`` per image (Chalasani et al. 2020), in [0, 1 − 1/n]; ↑ sparser.

    With the n values sorted ascending, ``a_(1) ≤ … ≤ a_(n)``:
    ``G = Σ_i (2i − n − 1) a_(i) / (n Σ_i a_(i))``. A one-hot map scores ``1 − 1/n``, a
    constant one 0. Quantus' ``Sparseness`` adds 1e-7 to every value first (so an all-zero map
    scores 0 there); here an all-zero map is NaN. Computed in float64.
    """
    a, invalid = _magnitude(maps)
    a = torch.sort(a.double(), dim=1).values
    n = a.shape[1]
    i = torch.arange(1, n + 1, dtype=torch.float64, device=a.device)
    total = a.sum(1)
    gini = ((2 * i - n - 1) * a).sum(1) / (n * torch.where(invalid, torch.ones_like(total), total))
    out = gini.to(working_dtype(maps))
    return torch.where(invalid, torch.full_like(out, math.nan), out)


def effective_complexity(maps: Tensor, eps: float = 1e-5) -> Tensor:
    """Fraction of pixels with ``|S| / max|S| > eps`` per image (Nguyen & Rodríguez Martínez
    2020), in [1/n, 1]; ↓ simpler.

    The map is scaled by its own maximum magnitude first, so ε is relative to the peak (Quantus'
    ``EffectiveComplexity`` divides by the maximum over the *whole batch*, and returns the count;
    times H·W this is Quantus' count on per-image-normalised maps).
    """
    if eps < 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}")
    a, invalid = _magnitude(maps)
    peak = a.amax(1, keepdim=True)
    scaled = a / torch.where(peak > 0, peak, torch.ones_like(peak))
    frac = (scaled > eps).sum(1).to(a.dtype) / a.shape[1]
    return torch.where(invalid, torch.full_like(frac, math.nan), frac)
