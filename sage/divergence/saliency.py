"""Saliency divergence of two models on the same images (docs/metrics.md §11).

Map level, on the two models' maps of one image (same method, same resolution):

- ``js_map``: Jensen–Shannon divergence (bits, in [0, 1]) between the rectified distributions
  ``S̃ = ReLU(S)/ΣReLU(S)``; split exactly into ``js_fg + js_bg``, the contributions of the
  foreground and background pixels (:func:`sage.divergence.behaviour.js_terms`), so
  ``fg_share = js_fg / js_map`` says how much of the divergence the foreground carries;
- ``ssim_dist``: ``1 − SSIM`` of the min-max maps (COSE's comparison of maps as images:
  5×5 uniform window, K1 = 0.01, K2 = 0.03, joint data range; :func:`sage.metrics.ssim.ssim`).

Token level, for every grid and region R ∈ {whole, fg, bg} (docs/metrics.md §3):

- ``spearman_<grid>_<R>``: Spearman distance ``1 − ρ`` of the cell masses, in [0, 2];
- ``patch_kl_<grid>_<R>``: ``KL(t_mass^a ‖ t_mass^b)``, ε-smoothed
  (:func:`sage.saliency.token_analysis.patch_kl`);
- ``euclid_<grid>_<R>`` and ``cosine_<grid>_<R>``: distances between the flattened token
  vectors after standardising every feature (z-score over all models, images and cells of the
  method, grid and region; :func:`token_stats`). Without it the centroid coordinates (~0.5)
  would swamp the masses (~1/(P·Q)). ``euclid`` is the root-mean-square difference in standard
  deviations (‖Δz‖₂/√D), so grids of different sizes are comparable. ``fgfrac`` is left out by
  default: it is a property of the image (the same mask for both models) and would only dilute
  the distances.

An image whose map is flagged all-zero in either model (no positive saliency,
docs/metrics.md §2) has no S̃: every saliency divergence of that pair is NaN there, never a
made-up number. Everything is batched over images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..metrics.ssim import ssim
from ..saliency.token_analysis import patch_kl, spearman
from ..saliency.tokens import FEATURES, REGIONS
from .behaviour import js_terms

__all__ = [
    "DEFAULT_FEATURES",
    "cosine_distance",
    "map_divergence",
    "rms_distance",
    "spearman_distance",
    "ssim_distance",
    "token_divergence",
    "token_stats",
]

DEFAULT_FEATURES: tuple[str, ...] = ("mass", "mean", "max", "com_y", "com_x")


def _nan_where(values: Tensor, invalid: Tensor) -> Tensor:
    return torch.where(invalid, torch.full_like(values, float("nan")), values)


def ssim_distance(x: Tensor, y: Tensor) -> Tensor:
    """``1 − SSIM(x, y)`` per image (``(B, H, W)`` maps; COSE settings), float64 ``(B,)``."""
    return 1 - ssim(x, y)


def spearman_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 − ρ_Spearman`` of cell masses ``(B, P, Q)`` or ``(B, N)``: 0 same ranking, 2 reversed.

    NaN where ρ is undefined (either side constant, e.g. an empty region).
    """
    return 1 - spearman(a, b).to(torch.float64)


def rms_distance(a: Tensor, b: Tensor) -> Tensor:
    """``‖a − b‖₂ / √D`` per row of ``(B, D)`` vectors (float64)."""
    d = (a.to(torch.float64) - b.to(torch.float64)).flatten(1)
    return d.square().mean(1).sqrt()


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 − cos(a, b)`` per row, in [0, 2]; NaN where either vector is zero."""
    a, b = a.to(torch.float64).flatten(1), b.to(torch.float64).flatten(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    ok = (na > 0) & (nb > 0)
    cos = (a * b).sum(1) / torch.where(ok, na * nb, torch.ones_like(na))
    return _nan_where(1 - cos.clamp(-1, 1), ~ok)


def map_divergence(
    pdf_a: Tensor,
    pdf_b: Tensor,
    minmax_a: Tensor,
    minmax_b: Tensor,
    mask: Tensor,
    invalid: Tensor,
) -> dict[str, Tensor]:
    """Map-level divergences of one batch (module docstring), each ``(B,)`` float64.

    Args:
        pdf_a, pdf_b: S̃ maps ``(B, H, W)`` of the two models.
        minmax_a, minmax_b: their min-max maps (for SSIM).
        mask: binary foreground mask ``(B, H, W)``, shared by both (same images).
        invalid: ``(B,)`` bool, either map flagged all-zero: every value there is NaN.

    Returns:
        ``js_map``, ``js_fg``, ``js_bg`` (``js_fg + js_bg = js_map``), ``fg_share``
        (``js_fg / js_map``, NaN where ``js_map = 0``) and ``ssim_dist``.
    """
    terms = js_terms(pdf_a, pdf_b)
    m = mask.to(device=terms.device, dtype=torch.bool)
    js_fg = torch.where(m, terms, torch.zeros_like(terms)).flatten(1).sum(1)
    js = terms.flatten(1).sum(1)
    js_bg = js - js_fg  # exact by construction; the terms are non-negative
    share = js_fg / torch.where(js > 0, js, torch.ones_like(js))
    share = _nan_where(share, js <= 0)
    out = {
        "js_map": js,
        "js_fg": js_fg,
        "js_bg": js_bg.clamp_min(0),
        "fg_share": share,
        "ssim_dist": ssim_distance(minmax_a, minmax_b).to(terms.device),
    }
    bad = invalid.to(terms.device)
    return {k: _nan_where(v, bad) for k, v in out.items()}


def token_stats(
    tokens: Sequence[Tensor], valid: Sequence[Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of every (region, feature) over images, cells and models.

    Args:
        tokens: one ``(N, 3, P, Q, 6)`` array per model (the same grid).
        valid: per model ``(N,)`` bool, images to use (flagged all-zero maps left out so their
            zeros and cell-centre centroids do not bias the scale); None: all.

    Returns:
        ``(mean, std)``, each ``(3, 6)`` float64; a zero std (constant feature) becomes 1 so
        the feature standardises to 0 instead of dividing by zero.
    """
    rows = []
    for i, t in enumerate(tokens):
        t = t.to(torch.float64)
        if valid is not None:
            t = t[valid[i].to(t.device)]
        rows.append(t.permute(0, 2, 3, 1, 4).reshape(-1, len(REGIONS), len(FEATURES)))
    flat = torch.cat(rows)
    if len(flat) == 0:
        zeros = torch.zeros(len(REGIONS), len(FEATURES), dtype=torch.float64)
        return zeros, torch.ones_like(zeros)
    mean = flat.mean(0)
    std = flat.std(0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardise(
    tokens: Tensor, stats: tuple[Tensor, Tensor], features: Sequence[str] = DEFAULT_FEATURES
) -> Tensor:
    """``(N, 3, P, Q, F)`` z-scored tokens, keeping ``features`` (in :data:`FEATURES` order)."""
    mean, std = (s.to(tokens.device) for s in stats)
    z = (tokens.to(torch.float64) - mean[None, :, None, None, :]) / std[None, :, None, None, :]
    idx = [FEATURES.index(f) for f in features]
    return z[..., idx]


def token_divergence(
    tokens_a: Mapping[str, Tensor],
    tokens_b: Mapping[str, Tensor],
    stats: Mapping[str, tuple[Tensor, Tensor]],
    invalid: Tensor,
    features: Sequence[str] = DEFAULT_FEATURES,
    eps: float = 1e-6,
) -> dict[str, Tensor]:
    """Token-level divergences (module docstring) for every grid and region, each ``(N,)``.

    Args:
        tokens_a, tokens_b: grid name -> ``(N, 3, P, Q, 6)`` tokens of the two models.
        stats: grid name -> ``(mean, std)`` from :func:`token_stats`.
        invalid: ``(N,)`` bool, either map flagged all-zero (NaN there).
        features: token features entering the vector distances.
        eps: smoothing of the patch KL.
    """
    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        raise ValueError(f"features must be a non-empty subset of {FEATURES}, got {features}")
    mass = FEATURES.index("mass")
    out: dict[str, Tensor] = {}
    for grid, ta in tokens_a.items():
        tb = tokens_b[grid]
        za, zb = standardise(ta, stats[grid], features), standardise(tb, stats[grid], features)
        for r, region in enumerate(REGIONS):
            key = f"{grid}_{region}"
            ma, mb = ta[:, r, ..., mass], tb[:, r, ..., mass]
            out[f"spearman_{key}"] = spearman_distance(ma, mb)
            out[f"patch_kl_{key}"] = patch_kl(ma, mb, eps=eps).to(torch.float64)
            out[f"euclid_{key}"] = rms_distance(za[:, r], zb[:, r])
            out[f"cosine_{key}"] = cosine_distance(za[:, r], zb[:, r])
    bad = invalid.to(next(iter(out.values())).device) if out else invalid
    return {k: _nan_where(v, bad) for k, v in out.items()}
