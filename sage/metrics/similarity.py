"""Similarity of two saliency-map batches, per image: the measures of Adebayo et al.'s
sanity checks ("Sanity checks for saliency maps", NeurIPS 2018, §3-4).

All three compare **absolute** maps (``|S|``; the scored maps of CAMs, gradient maps and
baselines are non-negative already, so this only matters for ``scoring=raw``) and return one
value per image, ``(B,)`` float64 on the maps' device:

- :func:`spearman`: Spearman rank correlation of the flattened maps, ∈ [−1, 1]. Ranks by a
  double sort, vectorised over the batch; **tied values get their average rank** (the
  standard ρ of ``scipy.stats.spearmanr``), so plateaus — a CAM's zero background, the
  ``ones_but_one`` baseline — are handled exactly.
- :func:`ssim_similarity`: SSIM (:mod:`sage.metrics.ssim`, skimage's 5×5 uniform window)
  of the per-image min-max-scaled maps with data range 1, ∈ [−1, 1]. Min-max first because
  a randomised model's maps live on another scale (the paper compares normalised maps).
- :func:`topk_intersection`: the share of the top ``k`` % pixels of one map that are also
  among the top ``k`` % of the other, ∈ [0, 1]; ``n = ceil(k/100 · H·W)`` pixels, ties at
  the cut broken by pixel index (row-major), the same rule for both maps.

Degenerate input (the project's rule: undefined is NaN, never a 0 that enters a mean): a
*flat* map (every pixel equal, e.g. a CAM that a random model rectifies to zero) has no
ranking. Two flat maps are identical rankings: **1**. One flat map against a non-flat one:
Spearman and top-k are **NaN**; SSIM is defined there (it scores the structure lost) and is
kept. Means of the columns skip NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import SageError
from .ssim import ssim

__all__ = [
    "SIMILARITIES",
    "average_ranks",
    "map_similarities",
    "spearman",
    "ssim_similarity",
    "topk_intersection",
]


def _flat(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, N)`` float64 absolute maps."""
    if x.dim() < 2 or x.shape != y.shape:
        raise ValueError(
            f"maps must be two (B, H, W) tensors of the same shape, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    return x.flatten(1).to(torch.float64).abs(), y.flatten(1).to(x.device, torch.float64).abs()


def _degenerate(x: Tensor, y: Tensor, value: Tensor) -> Tensor:
    """Apply the flat-map rule to ``value`` (module notes): both flat 1, one flat NaN."""
    fx = x.amax(1) == x.amin(1)
    fy = y.amax(1) == y.amin(1)
    value = torch.where(fx & fy, torch.ones_like(value), value)
    return torch.where(fx ^ fy, torch.full_like(value, math.nan), value)


def average_ranks(v: Tensor) -> Tensor:
    """0-based ranks along dim 1 of ``v`` ``(B, N)``, tied values sharing their mean rank."""
    b, n = v.shape
    sorted_v, order = v.sort(dim=1, stable=True)
    pos = torch.arange(n, device=v.device).expand(b, n)
    starts = torch.ones_like(sorted_v, dtype=torch.bool)
    starts[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, pos, 0).cummax(1).values  # start of each element's tie run
    last = torch.where(ends, pos, n).flip(1).cummin(1).values.flip(1)  # its end
    ranks = torch.empty(b, n, dtype=torch.float64, device=v.device)
    return ranks.scatter_(1, order, (first + last).to(torch.float64) / 2)


def spearman(x: Tensor, y: Tensor) -> Tensor:
    """Spearman ρ of ``|x|`` and ``|y|`` per image (average ranks for ties), ``(B,)``."""
    a, b = _flat(x, y)
    ra, rb = average_ranks(a), average_ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    den = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    rho = (ra * rb).sum(1) / den.clamp_min(1e-300)
    return _degenerate(a, b, rho.clamp(-1, 1))


def _minmax(v: Tensor) -> Tensor:
    lo = v.amin((-2, -1), keepdim=True)
    span = v.amax((-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (v - lo) / span.clamp_min(1e-300), torch.zeros_like(v))


def ssim_similarity(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of the min-max-scaled ``|x|``, ``|y|`` (data range 1), ``(B,)``."""
    if x.dim() != 3:
        raise ValueError(f"maps must be (B, H, W), got {tuple(x.shape)}")
    _flat(x, y)  # shape check
    a = _minmax(x.to(torch.float64).abs())
    b = _minmax(y.to(x.device, torch.float64).abs())
    return ssim(a, b, data_range=1.0)


def topk_intersection(x: Tensor, y: Tensor, percent: float = 10.0) -> Tensor:
    """Share of the top ``percent`` % pixels of ``|x|`` also in the top of ``|y|``, ``(B,)``."""
    if not 0 < percent <= 100:
        raise ValueError(f"topk must be a percentage in (0, 100], got {percent}")
    a, b = _flat(x, y)
    n = a.shape[1]
    k = min(n, max(1, math.ceil(percent / 100 * n)))

    def top(v: Tensor) -> Tensor:
        # stable descending sort: ties at the cut go to the lower pixel index
        idx = v.sort(dim=1, descending=True, stable=True).indices[:, :k]
        return torch.zeros_like(v, dtype=torch.bool).scatter_(1, idx, True)

    shared = (top(a) & top(b)).sum(1).to(torch.float64) / k
    return _degenerate(a, b, shared)


SIMILARITIES: dict[str, Callable[..., Tensor]] = {
    "spearman": spearman,
    "ssim": ssim_similarity,
    "topk": topk_intersection,
}


def map_similarities(
    x: Tensor, y: Tensor, names: Sequence[str] = tuple(SIMILARITIES), topk: float = 10.0
) -> dict[str, Tensor]:
    """``{name: (B,)}`` for every similarity in ``names`` (``spearman``, ``ssim``, ``topk``)."""
    unknown = [n for n in names if n not in SIMILARITIES]
    if unknown:
        raise SageError(f"unknown similarities {unknown}; available: {', '.join(SIMILARITIES)}")
    return {
        n: topk_intersection(x, y, topk) if n == "topk" else SIMILARITIES[n](x, y) for n in names
    }
