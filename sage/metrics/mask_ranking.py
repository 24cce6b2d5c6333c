"""Ranking-based localisation against region masks: relevance rank accuracy and top-k
intersection (docs/metrics.md §12). Batched (B, H, W), any device, no model.

Sources:

- Arras, Osman, Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
  neural network explanations", Information Fusion 2022: relevance rank accuracy, the
  fraction of the K most relevant pixels inside the ground-truth mask, K = the mask's size.
- Theiner, Müller-Budack, Ewerth, "Interpretable Semantic Photo Geolocation", WACV 2022:
  top-k intersection, the fraction of the k most relevant pixels inside the mask.

The scored map is ranked as given (descending). Ties at the K-th value are resolved by
``ties``: ``"expected"`` (default) counts the tied pixels by their mean over random
tie-breaks — the tied group contributes ``(K − #above) · #(tied ∩ mask) / #tied`` hits —, a
deterministic value that does not favour any pixel order (rectified CAMs have large tied
plateaus at 0); ``"first"`` takes the tied pixels in row-major order (a stable sort). Quantus
(``RelevanceRankAccuracy``, ``TopKIntersection``) uses ``np.argsort(-a)``, whose order among
ties is unspecified; without ties the values are identical.

A flat map (constant or non-finite) has no ranking and an empty mask no target: NaN (a
recorded skip), as the alignment metrics (docs/metrics.md §4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from sage.saliency.normalize import check_mask, minmax, working_dtype

__all__ = ["TIES", "mask_ranking_scores", "relevance_rank_accuracy", "top_k_intersection"]

TIES = ("expected", "first")


def _prepare(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(map values (B, n), mask (B, n) bool, flat (B,)) — non-finite values zeroed."""
    _, flat = minmax(maps)
    s = maps.to(working_dtype(maps))
    s = torch.where(torch.isfinite(s), s, torch.zeros_like(s)).flatten(1)
    m = check_mask(masks, s.view_as(maps)).flatten(1) > 0
    return s, m, flat


def _hits(s: Tensor, m: Tensor, k: Tensor, ties: str) -> Tensor:
    """Mask pixels among the top ``k`` (B,) of each row of ``s``, float64 (B,)."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    desc, order = torch.sort(s, dim=1, descending=True, stable=True)
    k = k.clamp(0, s.shape[1]).long()
    if ties == "first":
        cum = torch.cumsum(m.gather(1, order).long(), 1)
        hits = cum.gather(1, (k - 1).clamp_min(0)[:, None]).squeeze(1)
        return torch.where(k > 0, hits, torch.zeros_like(hits)).double()
    t = desc.gather(1, (k - 1).clamp_min(0)[:, None])  # the k-th largest value
    above, tied = s > t, s == t
    n_above = above.sum(1)
    n_tied = tied.sum(1)
    hits_above = (above & m).sum(1).double()
    share = (tied & m).sum(1).double() / n_tied.clamp_min(1).double()
    hits = hits_above + (k - n_above).double() * share
    return torch.where(k > 0, hits, torch.zeros_like(hits))


def relevance_rank_accuracy(maps: Tensor, masks: Tensor, ties: str = "expected") -> Tensor:
    """Fraction of the K = |mask| highest-ranked pixels inside the mask (Arras et al. 2022),
    per image, in [0, 1]; ↑. NaN for a flat map or an empty mask."""
    s, m, flat = _prepare(maps, masks)
    size = m.sum(1)
    value = _hits(s, m, size, ties) / size.clamp_min(1).double()
    value = value.to(s.dtype)
    return torch.where(flat | (size == 0), torch.full_like(value, math.nan), value)


def _k_pixels(k: int | float, n: int) -> int:
    if isinstance(k, bool) or k <= 0:
        raise ValueError(f"k must be a positive pixel count or a fraction in (0, 1), got {k}")
    pixels = max(1, round(k * n)) if isinstance(k, float) and k < 1 else int(k)
    if pixels > n:
        raise ValueError(f"k = {k} exceeds the {n} pixels of the map")
    return pixels


def top_k_intersection(
    maps: Tensor, masks: Tensor, k: int | float = 0.02, ties: str = "expected"
) -> Tensor:
    """Fraction of the k highest-ranked pixels inside the mask (Theiner et al. 2022), per
    image, in [0, 1]; ↑. ``k``: a pixel count, or a fraction of H·W when below 1 (default
    0.02, about Quantus' k = 1000 at 224²). NaN for a flat map or an empty mask."""
    s, m, flat = _prepare(maps, masks)
    kk = _k_pixels(k, s.shape[1])
    value = (_hits(s, m, torch.full_like(m[:, 0], kk, dtype=torch.long), ties) / kk).to(s.dtype)
    return torch.where(flat | ~m.any(1), torch.full_like(value, math.nan), value)


def mask_ranking_scores(
    maps: Tensor, regions: Mapping[str, Tensor], k: int | float = 0.02, ties: str = "expected"
) -> dict[str, dict[str, Tensor]]:
    """``{region: {"rank_accuracy": (B,), "topk_intersection": (B,)}}`` for every mask."""
    return {
        name: {
            "rank_accuracy": relevance_rank_accuracy(maps, mask, ties),
            "topk_intersection": top_k_intersection(maps, mask, k, ties),
        }
        for name, mask in regions.items()
    }
