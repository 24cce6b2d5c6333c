"""Structural similarity between two saliency maps, per image (COSE §3.2, Eq. 2).

COSE (Daroya, Sun, Maji, 2023) compares saliency maps with SSIM (Wang et al., 2004)::

    SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))

computed in a sliding window and averaged. The paper prints ``C1 = 0.01, C2 = 0.03``; its
reference code (``cvl-umass/COSE``, ``src/utils/transforms.py::get_similarity``) calls
``skimage.metrics.structural_similarity(a, b, win_size=5, data_range=R)``, i.e. the standard
``C1 = (K1·R)², C2 = (K2·R)²`` with ``K1 = 0.01, K2 = 0.03`` — which is what is implemented
here, matching skimage's defaults exactly:

- a 5×5 **uniform** window (``gaussian_weights=False``); a 5×5 Gaussian window is an option;
- sample covariance (``use_sample_covariance=True``: variances scaled by ``N/(N−1)``, N = 25);
- the mean is taken over the "valid" window positions only: skimage crops a border of width
  ``(win − 1)/2`` before averaging, which is exactly the output of an un-padded
  ``avg_pool2d`` (window fully inside the image).

Data range ``R`` (per image, from the maps; see :func:`ssim`):

- ``"joint"`` (default, the data range from the maps): ``max(x ∪ y) − min(x ∪ y)``,
  the range of both maps together;
- ``"max_of_ranges"``: ``max(max x − min x, max y − min y)``, what COSE's reference code
  passes to skimage;
- a number: a fixed range for every image.

For min-max-scaled maps both rules give 1 unless a map is flat. With a validity mask the
range is taken over the valid pixels only. A zero range means both maps are the same
constant on the compared pixels ("joint"), so their SSIM is defined as **1** (skimage would
return NaN from 0/0); under ``"max_of_ranges"`` two flat maps with different constants fall
back to the joint range.

Validity masks (COSE inverts geometric transforms on the map; pixels that came from outside
the image carry no saliency): the mean runs over window positions whose whole window lies on
valid pixels (the mask eroded by the window, as the reference code does with
``binary_erosion(mask, np.ones((5, 5)))``; ``erode=False`` keeps every position whose centre
is valid). Without a mask this is the skimage mean. No valid position → NaN.

Why not torchmetrics: ``torchmetrics.functional.structural_similarity_index_measure`` takes
one data range for the whole batch (not per image), has no pixel mask, and with
``gaussian_kernel=False, kernel_size=5`` it does not reproduce skimage's value (it differs in
the covariance normalisation and border handling: 0.9205 vs skimage's 0.9235 on a random
20×20 pair). The few lines below with ``avg_pool2d`` match skimage to float precision.

Everything is batched, runs on the maps' device and computes in float64 (the
``E[x²] − E[x]²`` variance form cancels badly in float32 for maps with a large offset).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DataRange", "ssim", "ssim_map"]

DataRange = Literal["joint", "max_of_ranges"] | float


def _check(x: Tensor, y: Tensor, win_size: int) -> None:
    if x.dim() != 3 or x.shape != y.shape:
        raise ValueError(
            f"maps must be two (B, H, W) tensors of the same shape, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and positive, got {win_size}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"maps {tuple(x.shape[-2:])} are smaller than the {win_size}² window")


def _window(win_size: int, sigma: float | None, dtype: torch.dtype, device) -> Tensor:
    if sigma is None:
        w = torch.full((win_size, win_size), 1.0 / win_size**2, dtype=dtype, device=device)
    else:
        r = torch.arange(win_size, dtype=dtype, device=device) - (win_size - 1) / 2
        g = torch.exp(-(r**2) / (2 * sigma**2))
        w = g[:, None] * g[None, :]
        w = w / w.sum()
    return w[None, None]


def _data_range(x: Tensor, y: Tensor, valid: Tensor, rule: DataRange) -> Tensor:
    """Per-image data range over the valid pixels (B,), float64."""
    inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
    xs, ys = x.flatten(1), y.flatten(1)
    v = valid.flatten(1)
    x_hi = torch.where(v, xs, -inf).amax(1)
    x_lo = torch.where(v, xs, inf).amin(1)
    y_hi = torch.where(v, ys, -inf).amax(1)
    y_lo = torch.where(v, ys, inf).amin(1)
    joint = torch.maximum(x_hi, y_hi) - torch.minimum(x_lo, y_lo)
    joint = torch.where(v.any(1), joint, torch.zeros_like(joint))
    if isinstance(rule, int | float):
        if rule <= 0:
            raise ValueError(f"a fixed data_range must be positive, got {rule}")
        return torch.full_like(joint, float(rule))
    if rule == "joint":
        return joint
    if rule == "max_of_ranges":
        r = torch.maximum(x_hi - x_lo, y_hi - y_lo)
        r = torch.where(v.any(1), r, torch.zeros_like(r))
        return torch.where(r > 0, r, joint)
    raise ValueError(f"data_range must be 'joint', 'max_of_ranges' or a number, got {rule!r}")


def ssim_map(
    x: Tensor,
    y: Tensor,
    valid: Tensor | None = None,
    *,
    win_size: int = 5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: DataRange = "joint",
    gaussian_sigma: float | None = None,
    use_sample_covariance: bool = True,
    erode: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Local SSIM at every window position fully inside the image.

    Args:
        x, y: maps ``(B, H, W)``, any float dtype, same device.
        valid: optional ``(B, H, W)`` bool mask of pixels to compare (None: all).
        win_size: odd window side (5, COSE / "Sanity checks for saliency maps").
        k1, k2: SSIM constants; ``C1 = (k1·R)²``, ``C2 = (k2·R)²``.
        data_range: ``"joint"`` | ``"max_of_ranges"`` | number (module docstring).
        gaussian_sigma: None for skimage's uniform window, else a Gaussian window of that
            σ (in pixels) and side ``win_size``.
        use_sample_covariance: skimage's ``N/(N−1)`` normalisation of the (co)variances.
        erode: with a mask, keep only positions whose whole window is valid (else: whose
            centre is valid).

    Returns:
        ``(s, keep, R)``: ``s`` ``(B, H−w+1, W−w+1)`` local SSIM (float64), ``keep`` the same
        shape bool (positions entering the mean), ``R`` ``(B,)`` data range used.
    """
    _check(x, y, win_size)
    dev = x.device
    x = x.to(torch.float64)
    y = y.to(device=dev, dtype=torch.float64)
    if valid is None:
        valid = torch.ones(x.shape, dtype=torch.bool, device=dev)
    else:
        if valid.shape != x.shape:
            raise ValueError(
                f"valid mask {tuple(valid.shape)} does not match maps {tuple(x.shape)}"
            )
        valid = valid.to(device=dev, dtype=torch.bool)

    r = _data_range(x, y, valid, data_range)
    w = _window(win_size, gaussian_sigma, torch.float64, dev)
    stack = torch.stack([x, y, x * x, y * y, x * y], 1).flatten(0, 1)[:, None]  # (5B, 1, H, W)
    mu = F.conv2d(stack, w).view(x.shape[0], 5, x.shape[1] - win_size + 1, -1)
    ux, uy, uxx, uyy, uxy = mu.unbind(1)
    n = win_size**2
    cov_norm = n / (n - 1) if use_sample_covariance else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = ((k1 * r) ** 2)[:, None, None]
    c2 = ((k2 * r) ** 2)[:, None, None]
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    # R = 0 only when both maps are the same constant on the valid pixels: SSIM = 1.
    flat = (r <= 0)[:, None, None]
    s = torch.where(flat, torch.ones_like(num), num / torch.where(flat, torch.ones_like(den), den))

    vf = valid.to(torch.float64)[:, None]
    if erode:
        keep = F.avg_pool2d(vf, win_size, stride=1)[:, 0] > 1 - 1e-9
    else:
        p = (win_size - 1) // 2
        keep = valid[:, p : valid.shape[1] - p, p : valid.shape[2] - p]
    return s, keep, r


def ssim(
    x: Tensor,
    y: Tensor,
    valid: Tensor | None = None,
    *,
    win_size: int = 5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: DataRange = "joint",
    gaussian_sigma: float | None = None,
    use_sample_covariance: bool = True,
    erode: bool = True,
) -> Tensor:
    """Mean SSIM between two map batches, one value per image (COSE Eq. 2).

    Without ``valid`` this equals ``skimage.metrics.structural_similarity(x[i], y[i],
    win_size=5, K1=0.01, K2=0.03, data_range=R_i, gaussian_weights=False)`` for every image
    ``i``, with ``R_i`` the per-image data range of ``data_range`` (module docstring). With
    ``valid`` the mean runs over the window positions lying on valid pixels; NaN when there
    is none.

    Returns:
        ``(B,)`` float64 on the maps' device.
    """
    s, keep, _ = ssim_map(
        x,
        y,
        valid,
        win_size=win_size,
        k1=k1,
        k2=k2,
        data_range=data_range,
        gaussian_sigma=gaussian_sigma,
        use_sample_covariance=use_sample_covariance,
        erode=erode,
    )
    k = keep.to(s.dtype)
    count = k.flatten(1).sum(1)
    total = (torch.where(keep, s, torch.zeros_like(s))).flatten(1).sum(1)
    out = total / count.clamp_min(1)
    return torch.where(count > 0, out, torch.full_like(out, math.nan))
