"""Saliency normalisation and foreground/background decomposition (docs/metrics.md §2–3, SAGE §3).

A raw saliency map ``S`` (any sign, upsampled to the input size) is turned into

- the rectified distribution ``S̃ = ReLU(S) / Σ ReLU(S)`` (Σ S̃ = 1), the representation
  every mass-based quantity (A_fg, tokens, patch KL) is computed on, and
- the min-max scaling ``(S − min) / (max − min)``, used by thresholded metrics (IoU,
  pointing, Δ densities).

Degenerate maps are *flagged, never divided by zero*: an all-zero or all-negative map has no
rectified mass, so its S̃ is all zeros and its ``zero`` flag is True; a constant map has no
range, so its min-max map is all zeros and its ``flat`` flag is True. Maps holding a NaN or
±inf are treated the same way (flagged, zero output) so a broken map can never leak NaN into
an aggregate; the pipeline records flagged images as skips.

With a binary foreground mask ``M_fg``: ``A_fg = Σ S̃⊙M_fg`` and ``A_bg = Σ S̃⊙(1 − M_fg)``
(= 1 − A_fg for an unflagged map, 0 and 0 for a flagged one).

Every function takes batched tensors ``(B, H, W)`` on any device, returns tensors on the same
device and is vectorised over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SaliencyBatch",
    "check_mask",
    "fg_bg_mass",
    "minmax",
    "normalize_batch",
    "relu_pdf",
    "working_dtype",
]


def working_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (half, bfloat16, ints, bool) computes in float32.

    Half precision cannot hold a 224² distribution (most pixels would round to 0), so the
    floor is float32.
    """
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor):
        raise TypeError(f"saliency maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() != 3:
        raise ValueError(f"saliency maps must be batched (B, H, W), got shape {tuple(maps.shape)}")


def check_mask(mask: Tensor, like: Tensor) -> Tensor:
    """Validate a foreground mask against a map batch and return it as ``like``'s dtype.

    ``mask`` must have exactly ``like``'s shape (B, H, W) and hold only 0/1 (bool, integer or
    float). A wrong shape or a soft mask is a ValueError naming the culprit, because a silently
    broadcast or non-binary mask would give a plausible but wrong A_fg.
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != like.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match saliency map shape "
            f"{tuple(like.shape)}; resize the mask with the image (nearest) before explaining"
        )
    if mask.dtype == torch.bool:
        return mask.to(device=like.device, dtype=like.dtype)
    m = mask.to(device=like.device, dtype=like.dtype)
    # One reduction (a single sync on CUDA) per batch: cheap next to producing the maps.
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(
            "mask must be binary (bool or values in {0, 1}); got other values "
            f"(min {m.min().item():g}, max {m.max().item():g}) — threshold it first"
        )
    return m


def relu_pdf(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Rectified saliency distribution ``S̃ = ReLU(S) / Σ ReLU(S)`` per image.

    Args:
        maps: raw saliency ``(B, H, W)``, any sign, any float dtype.

    Returns:
        ``(pdf, zero)``: ``pdf`` of shape ``(B, H, W)`` summing to 1 per image (float32, or
        float64 for float64 input) and ``zero`` ``(B,)`` bool. An image whose map has no
        positive mass (all zero or all negative) or holds a non-finite value gets an all-zero
        ``pdf`` and ``zero = True``; no NaN is ever produced.
    """
    _check_maps(maps)
    x = maps.to(working_dtype(maps))
    # finiteness of the map as given: a −inf would vanish under the ReLU below
    finite = torch.isfinite(x).flatten(1).all(1)
    x = x.clamp_min(0)
    x = torch.where(finite[:, None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    # Divide by the per-image max first: the sum of 50k large float32 values could overflow
    # to inf, and the ratio x / Σx is unchanged by the rescaling.
    peak = x.flatten(1).amax(1)
    zero = ~(peak > 0)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    x = x / torch.where(zero, one, peak)[:, None, None]
    total = x.flatten(1).sum(1)
    pdf = x / torch.where(zero, one, total)[:, None, None]
    return pdf, zero


def minmax(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Min-max scaling ``(S − min) / (max − min)`` per image, into [0, 1].

    Returns:
        ``(scaled, flat)``: ``scaled`` ``(B, H, W)`` and ``flat`` ``(B,)`` bool. A constant map
        (no range) or one holding a non-finite value gives all zeros and ``flat = True``.
    """
    _check_maps(maps)
    x = maps.to(working_dtype(maps))
    flat_x = x.flatten(1)
    lo = flat_x.amin(1)
    hi = flat_x.amax(1)
    rng = hi - lo
    # NaN anywhere makes amin/amax NaN and ±inf makes rng inf or NaN: all fail this test.
    flat = ~(torch.isfinite(rng) & (rng > 0))
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    scaled = (x - torch.where(flat, zero, lo)[:, None, None]) / torch.where(flat, one, rng)[
        :, None, None
    ]
    scaled = torch.where(flat[:, None, None], zero, scaled)
    return scaled, flat


def fg_bg_mass(pdf: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Foreground and background saliency mass ``A_fg = Σ S̃⊙M``, ``A_bg = Σ S̃⊙(1−M)``.

    Args:
        pdf: rectified distribution ``(B, H, W)`` from :func:`relu_pdf`.
        mask: foreground mask ``(B, H, W)``, bool or 0/1 (SAGE §3).

    Returns:
        ``(a_fg, a_bg)``, each ``(B,)`` in ``pdf``'s dtype; ``a_fg + a_bg = 1`` for an unflagged
        map and both are 0 for a flagged (all-zero) map.
    """
    _check_maps(pdf)
    m = check_mask(mask, pdf)
    a_fg = (pdf * m).flatten(1).sum(1)
    a_bg = (pdf * (1 - m)).flatten(1).sum(1)
    return a_fg, a_bg


@dataclass(frozen=True)
class SaliencyBatch:
    """Everything §3.1 derives from one batch of raw maps (all tensors on the maps' device).

    Attributes:
        raw: the maps as given ``(B, H, W)``.
        pdf: ``S̃ = ReLU(S)/ΣReLU(S)`` ``(B, H, W)``, zeros where ``zero``.
        minmax: ``(S − min)/(max − min)`` ``(B, H, W)``, zeros where ``flat``.
        zero: ``(B,)`` bool, no positive (or a non-finite) saliency: the image is a skip for
            every mass-based quantity.
        flat: ``(B,)`` bool, constant (or non-finite) map: a skip for thresholded metrics.
        a_fg: ``(B,)`` saliency mass on the foreground mask.
        a_bg: ``(B,)`` saliency mass on the background.
    """

    raw: Tensor
    pdf: Tensor
    minmax: Tensor
    zero: Tensor
    flat: Tensor
    a_fg: Tensor
    a_bg: Tensor

    def __len__(self) -> int:
        return self.raw.shape[0]


def normalize_batch(maps: Tensor, masks: Tensor) -> SaliencyBatch:
    """Normalise a batch of raw maps and split their mass by the masks.

    The single call the explain pipeline makes per batch; ``masks`` must match ``maps``'
    shape (ValueError otherwise).
    """
    pdf, zero = relu_pdf(maps)
    scaled, flat = minmax(maps)
    a_fg, a_bg = fg_bg_mass(pdf, masks)
    return SaliencyBatch(
        raw=maps, pdf=pdf, minmax=scaled, zero=zero, flat=flat, a_fg=a_fg, a_bg=a_bg
    )
