"""Perturbation curves: Deletion / Insertion, region perturbation (AOPC), faithfulness
correlation — batched torch, per-image values, any device (docs/metrics.md §12).

Sources, cited per function:

- Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
  Models", BMVC 2018 (Deletion / Insertion); reference code ``eclique/RISE``
  (``evaluation.py``: ``CausalMetric``, ``auc``).
- Bach, Binder, Montavon, Klauschen, Müller, Samek, "On Pixel-Wise Explanations for
  Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015 (pixel
  flipping); Samek, Binder, Montavon, Lapuschkin, Müller, "Evaluating the Visualization of
  What a Deep Neural Network Has Learned", IEEE TNNLS 2017 (region perturbation, AOPC).
- Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model Explanations",
  IJCAI 2020 (faithfulness correlation).

Conventions (shared with :mod:`sage.metrics.road` and :mod:`sage.metrics.faithfulness`):

- ``model`` takes normalised images; ``images`` (B, C, H, W) are those normalised inputs and
  ``mean``/``std`` (one value per channel, or one for all) the normalisation, so that every
  *pixel-space* baseline (black, a grey value, uniform noise) is re-normalised before it
  replaces a pixel. ``maps`` (B, H, W) are the scored maps, ranked as given; ``targets`` (B,)
  the explained classes (None: the predicted ones).
- A *pixel* is all channels of one location: removing a pixel replaces its C values.
- Baselines (what a removed pixel becomes; :func:`baseline_images`): ``"mean"`` — 0 in the
  normalised input, the dataset-mean colour (RISE's ``torch.zeros_like`` on its normalised
  tensors, grad-cam's convention); ``"black"`` — pixel value 0; a number — that grey level in
  pixel units ([0, 1]); ``"blur"`` — the image blurred by a Gaussian (RISE's insertion
  canvas; the blur is linear with unit gain and reflect padding, so blurring the normalised
  tensor equals blurring the pixels); ``"uniform"`` — U(0, 1) pixel noise (Samek et al.'s
  region perturbation), one field drawn from a CPU generator seeded with ``seed`` and shared by
  every image, so an image's score depends neither on its batch nor on the device.
- Scores are the softmax probability (``output="prob"``) or the logit (``"logit"``) of the
  explained class. Forward passes run in eval mode under ``no_grad`` (the model's mode is
  restored), ``batch_size`` perturbed images at a time (default B). Only the loop over
  perturbation steps is a Python loop; every step perturbs the whole batch at once.
- Pixel order: descending map value, ties in row-major order (a stable sort). A flat map
  (constant or non-finite: ``minmax``'s flag) has no order: its scores are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sage.saliency.normalize import minmax

from .batch_checks import check_batch, eval_no_grad

__all__ = [
    "BASELINES",
    "OUTPUTS",
    "aopc_scores",
    "baseline_images",
    "class_scores",
    "deletion_insertion_scores",
    "faithfulness_correlation",
    "gaussian_blur",
    "pixel_ranks",
]

BASELINES = ("mean", "black", "blur", "uniform")  # or a number: a grey level in pixel units
OUTPUTS = ("prob", "logit")
Baseline = str | float

# RISE's insertion canvas: evaluation.py blurs with gkern(klen=11, nsig=5)
RISE_BLUR_KERNEL = 11
RISE_BLUR_SIGMA = 5.0


# ------------------------------------------------------------------------------ helpers


def channel_stats(values: float | Sequence[float], images: Tensor, name: str) -> Tensor:
    """A per-channel normalisation statistic (``mean``/``std``: one value, or one per channel)
    as a (1, C, 1, 1) tensor on the images' device and dtype."""
    t = torch.as_tensor(values, dtype=images.dtype, device=images.device).flatten()
    c = images.shape[1]
    if t.numel() not in (1, c):
        raise ValueError(f"{name} must have 1 or {c} values, got {t.numel()}")
    return t.expand(c).reshape(1, c, 1, 1)


def class_scores(logits: Tensor, targets: Tensor, output: str = "prob") -> Tensor:
    """Score of each explained class: softmax probability or logit, float32 (float64 stays)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    x = logits if logits.dtype == torch.float64 else logits.float()
    if output == "prob":
        x = torch.softmax(x, dim=1)
    return x.gather(1, targets.to(x.device).long()[:, None]).squeeze(1)


def _forward(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _clean(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    logits: Tensor | None,
    output: str,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """(clean score (B,), targets (B,)) from the caller's logits or one forward pass."""
    b = images.shape[0]
    if logits is None:
        logits = _forward(model, images, batch_size)
    elif logits.dim() != 2 or logits.shape[0] != b:
        raise ValueError(f"logits must be (B, K) with B = {b}, got {tuple(logits.shape)}")
    logits = logits.detach().to(images.device)
    targets = logits.argmax(1) if targets is None else targets.to(images.device).long()
    return class_scores(logits, targets, output), targets


def gaussian_blur(images: Tensor, kernel: int = RISE_BLUR_KERNEL, sigma: float = RISE_BLUR_SIGMA):
    """Separable Gaussian blur of (B, C, H, W), unit gain, reflect padding, per channel.

    The kernel is truncated to ``kernel`` taps (odd) and renormalised; on images smaller than
    the kernel it is cut to the largest odd size reflect padding allows (``2·min(H, W) − 1``).
    RISE blurs with an 11-tap, σ = 5 kernel (``gkern(11, 5)``) and zero padding, which darkens
    the border; reflect padding does not.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"blur kernel must be a positive odd size, got {kernel}")
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    h, w = images.shape[-2:]
    radius = min(kernel // 2, h - 1, w - 1)
    if radius <= 0:
        return images.clone()
    dtype = images.dtype if images.dtype == torch.float64 else torch.float32
    t = torch.arange(-radius, radius + 1, device=images.device, dtype=dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = images.shape[1]
    x = F.pad(images.to(dtype), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.to(images.dtype)


def baseline_images(
    images: Tensor,
    baseline: Baseline,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    blur_kernel: int = RISE_BLUR_KERNEL,
    blur_sigma: float = RISE_BLUR_SIGMA,
    seed: int = 0,
) -> Tensor:
    """What every removed pixel becomes, as a normalised (B, C, H, W) batch (module notes)."""
    mu, sd = channel_stats(mean, images, "mean"), channel_stats(std, images, "std")
    if isinstance(baseline, bool):
        raise ValueError(f"baseline must be one of {BASELINES} or a number, got {baseline!r}")
    if isinstance(baseline, int | float):
        return ((float(baseline) - mu) / sd).expand_as(images).contiguous()
    if baseline == "mean":
        return torch.zeros_like(images)
    if baseline == "black":
        return ((0 - mu) / sd).expand_as(images).contiguous()
    if baseline == "blur":
        return gaussian_blur(images, blur_kernel, blur_sigma)
    if baseline == "uniform":
        gen = torch.Generator().manual_seed(int(seed))
        field = torch.rand(images.shape[1:], generator=gen, dtype=torch.float64)
        field = field.to(device=images.device, dtype=images.dtype)
        return ((field[None] - mu) / sd).expand_as(images).contiguous()
    raise ValueError(f"baseline must be one of {BASELINES} or a number, got {baseline!r}")


def _order_maps(maps: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """(maps with non-finite values zeroed, flat flag) on ``device``."""
    maps = maps.to(device)
    _, flat = minmax(maps)
    clean = torch.where(torch.isfinite(maps), maps, torch.zeros_like(maps))
    return clean, flat


def pixel_ranks(maps: Tensor, descending: bool = True) -> Tensor:
    """(B, H·W) long: each pixel's position in the removal order (0 = removed first).

    Descending map value (``descending=False``: ascending), ties in row-major order.
    """
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def _curve(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    ranks: Tensor,
    counts: Sequence[int],
    targets: Tensor,
    output: str,
    batch_size: int,
) -> Tensor:
    """Scores along a perturbation path: at step k the pixels with rank < counts[k] come from
    ``end``, the others from ``start``. Returns (B, len(counts)).

    Steps are batched: ``max(1, batch_size // B)`` steps of the whole batch per model call.
    """
    b, c, h, w = start.shape
    ranks = ranks.view(1, b, 1, h, w)
    per = max(1, batch_size // b)
    counts_t = torch.as_tensor(list(counts), device=start.device)
    out = []
    for i in range(0, len(counts_t), per):
        ks = counts_t[i : i + per]
        swapped = ranks < ks.view(-1, 1, 1, 1, 1)
        x = torch.where(swapped, end[None], start[None]).reshape(-1, c, h, w)
        logits = _forward(model, x, batch_size)
        out.append(class_scores(logits, targets.repeat(len(ks)), output).view(len(ks), b))
    return torch.cat(out).T


def _nan_rows(flat: Tensor, value: Tensor) -> Tensor:
    shape = (-1,) + (1,) * (value.dim() - 1)
    return torch.where(flat.view(shape), torch.full_like(value, math.nan), value)


# ------------------------------------------------------------------ Deletion / Insertion


def deletion_insertion_scores(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    steps: int = 100,
    pixels_per_step: int | None = None,
    deletion_baseline: Baseline = "mean",
    insertion_baseline: Baseline = "blur",
    blur_kernel: int = RISE_BLUR_KERNEL,
    blur_sigma: float = RISE_BLUR_SIGMA,
    seed: int = 0,
    output: str = "prob",
    batch_size: int | None = None,
    logits: Tensor | None = None,
    kinds: Sequence[str] = ("deletion", "insertion"),
) -> dict[str, Tensor]:
    """Deletion and Insertion AUC per image (Petsiuk et al., RISE, BMVC 2018).

    Pixels are taken in descending map order, ``s = pixels_per_step`` at a time (default
    ``⌈H·W / steps⌉``), so the curves have ``n + 1`` points, ``n = ⌈H·W / s⌉``, at the
    fractions ``x_k = min(k·s, H·W) / (H·W)``:

    - **Deletion**: ``x_k`` has its first ``k·s`` pixels replaced by ``deletion_baseline``
      (default ``"mean"``: 0 in the normalised input, RISE's ``torch.zeros_like``); the curve
      is the score of the explained class, the AUC ``∫ y dx`` over [0, 1] by the trapezoid
      rule. Lower is better (the class should vanish quickly).
    - **Insertion**: starts from ``insertion_baseline`` (default ``"blur"``, RISE's blurred
      canvas) and inserts the image's pixels in the same order. Higher is better.

    RISE's ``auc`` is ``(Σ y − y₀/2 − y_n/2) / n``, the trapezoid on equally spaced points: the
    same number whenever ``s`` divides ``H·W`` (RISE uses s = 224 at 224²); otherwise the last
    step is shorter and it is weighted by its true width here.

    Returns:
        ``deletion``, ``insertion`` (B,); ``deletion_curve``, ``insertion_curve`` (B, n + 1);
        ``fractions`` (n + 1,); ``clean`` (B,) the clean score; ``targets``; ``flat``. A flat
        map gives NaN scores and curves. ``kinds`` selects the curves computed.
    """
    check_batch(images, maps, targets)
    if not kinds or set(kinds) - {"deletion", "insertion"}:
        raise ValueError(f"kinds must be a non-empty subset of (deletion, insertion): {kinds}")
    b, _, h, w = images.shape
    hw = h * w
    if pixels_per_step is None:
        if steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        pixels_per_step = math.ceil(hw / steps)
    if pixels_per_step < 1:
        raise ValueError(f"pixels_per_step must be ≥ 1, got {pixels_per_step}")
    n = math.ceil(hw / pixels_per_step)
    counts = [min(k * pixels_per_step, hw) for k in range(n + 1)]
    fractions = torch.tensor(counts, dtype=torch.float64, device=images.device) / hw
    bs = batch_size or b
    scored, flat = _order_maps(maps, images.device)
    ranks = pixel_ranks(scored)
    with eval_no_grad(model):
        clean, targets = _clean(model, images, targets, logits, output, bs)
        curves = {}
        for kind, base in (("deletion", deletion_baseline), ("insertion", insertion_baseline)):
            if kind not in kinds:
                continue
            other = baseline_images(
                images, base, mean, std, blur_kernel=blur_kernel, blur_sigma=blur_sigma, seed=seed
            )
            if kind == "deletion":  # x_0 is the image: its score is the clean one
                rest = _curve(model, images, other, ranks, counts[1:], targets, output, bs)
                curves[kind] = torch.cat([clean[:, None], rest], 1)
            else:  # x_n is the image
                rest = _curve(model, other, images, ranks, counts[:-1], targets, output, bs)
                curves[kind] = torch.cat([rest, clean[:, None]], 1)
    out: dict[str, Tensor] = {}
    for kind, curve in curves.items():
        auc = torch.trapezoid(curve.double(), fractions, dim=1).to(curve.dtype)
        out[kind] = _nan_rows(flat, auc)
        out[f"{kind}_curve"] = _nan_rows(flat, curve)
    return out | {"fractions": fractions, "clean": clean, "targets": targets, "flat": flat}


# ------------------------------------------------------- pixel flipping / region perturbation


def _region_ranks(maps: Tensor, region_size: int, descending: bool) -> tuple[Tensor, int]:
    """(B, H·W) long: the rank of each pixel's region (by the region's map sum), and the
    number of regions. Regions tile the image from the top-left corner in ``region_size``
    squares (those at the right / bottom edge are cut when the size does not divide)."""
    b, h, w = maps.shape
    r = region_size
    gh, gw = math.ceil(h / r), math.ceil(w / r)
    padded = F.pad(maps, (0, gw * r - w, 0, gh * r - h))
    sums = padded.double().view(b, gh, r, gw, r).sum((2, 4)).view(b, gh * gw)
    region_rank = pixel_ranks(sums, descending=descending)
    ys = torch.arange(h, device=maps.device) // r
    xs = torch.arange(w, device=maps.device) // r
    ids = (ys[:, None] * gw + xs[None, :]).flatten()
    return region_rank[:, ids], gh * gw


def aopc_scores(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    region_size: int = 8,
    steps: int | None = 100,
    baseline: Baseline = "uniform",
    orders: Sequence[str] = ("morf", "lerf"),
    blur_kernel: int = RISE_BLUR_KERNEL,
    blur_sigma: float = RISE_BLUR_SIGMA,
    seed: int = 0,
    output: str = "prob",
    batch_size: int | None = None,
    logits: Tensor | None = None,
) -> dict[str, Tensor]:
    """Region perturbation curves and AOPC per image (Samek et al. 2017; Bach et al. 2015).

    The image is tiled into ``region_size``² regions, ranked by the sum of the map over each
    region: most relevant first (MoRF) or least relevant first (LeRF). ``x_k`` has its first
    ``k`` regions replaced by ``baseline`` (default ``"uniform"``: U(0, 1) pixel noise, as
    Samek et al.), k = 0..L with ``L = steps`` (None or more than there are regions: all
    regions). The curve is the drop ``f(x) − f(x_k)`` of the explained class's score and

        ``AOPC = 1/(L + 1) · Σ_{k=0}^{L} (f(x) − f(x_k))``

    (Samek's definition; the k = 0 term is 0). MoRF: higher is better (the relevant regions
    should matter); LeRF: lower is better. ``region_size=1`` is Bach et al.'s pixel flipping.

    Quantus' ``RegionPerturbation`` returns the same curve for k = 1..L (its patches are
    padded symmetrically when the size does not divide the image; here the grid starts at the
    top-left and the last row / column of regions is cut).

    Returns:
        ``aopc_<order>`` (B,) and ``<order>_curve`` (B, L + 1) for each order; ``clean``,
        ``targets``, ``flat``. A flat map gives NaN.
    """
    check_batch(images, maps, targets)
    if region_size < 1:
        raise ValueError(f"region_size must be ≥ 1, got {region_size}")
    unknown = set(orders) - {"morf", "lerf"}
    if unknown or not orders:
        raise ValueError(f"orders must be a non-empty subset of ('morf', 'lerf'), got {orders}")
    b = images.shape[0]
    bs = batch_size or b
    scored, flat = _order_maps(maps, images.device)
    other = baseline_images(
        images, baseline, mean, std, blur_kernel=blur_kernel, blur_sigma=blur_sigma, seed=seed
    )
    out: dict[str, Tensor] = {}
    with eval_no_grad(model):
        clean, targets = _clean(model, images, targets, logits, output, bs)
        for order in orders:
            ranks, n_regions = _region_ranks(scored, region_size, descending=order == "morf")
            length = n_regions if steps is None else min(int(steps), n_regions)
            if length < 1:
                raise ValueError(f"steps must be ≥ 1, got {steps}")
            after = _curve(model, images, other, ranks, range(1, length + 1), targets, output, bs)
            drops = torch.cat([torch.zeros_like(clean)[:, None], clean[:, None] - after], 1)
            out[f"aopc_{order}"] = _nan_rows(flat, drops.double().mean(1).to(drops.dtype))
            out[f"{order}_curve"] = _nan_rows(flat, drops)
    return out | {"clean": clean, "targets": targets, "flat": flat}


# ------------------------------------------------------------------ faithfulness correlation


def _subset_masks(
    indices: Tensor | None, n: int, k: int, b: int, hw: int, seed: int, device: torch.device
) -> Tensor:
    """(1 or B, n, H·W) bool: the pixels of each random subset."""
    if indices is None:
        gen = torch.Generator().manual_seed(int(seed))
        keys = torch.rand(n, hw, generator=gen)
        indices = keys.argsort(1)[:, :k]  # n uniform k-subsets without replacement
    indices = torch.as_tensor(indices, device=device).long()
    if indices.dim() == 2:
        indices = indices[None]
    if indices.dim() != 3 or indices.shape[0] not in (1, b):
        raise ValueError(f"indices must be (n, k) or (B, n, k), got {tuple(indices.shape)}")
    masks = torch.zeros(*indices.shape[:2], hw, dtype=torch.bool, device=device)
    return masks.scatter_(2, indices, True)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of (B, n) float64 tensors; NaN where a row is constant."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    ok = den > 0
    r = (a * b).sum(1) / torch.where(ok, den, torch.ones_like(den))
    return torch.where(ok, r.clamp(-1, 1), torch.full_like(r, math.nan))


def faithfulness_correlation(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    subsets: int = 100,
    subset_size: int | float = 224,
    baseline: Baseline = "black",
    blur_kernel: int = RISE_BLUR_KERNEL,
    blur_sigma: float = RISE_BLUR_SIGMA,
    seed: int = 0,
    output: str = "logit",
    batch_size: int | None = None,
    logits: Tensor | None = None,
    indices: Tensor | None = None,
) -> dict[str, Tensor]:
    """Faithfulness correlation per image (Bhatt, Weller, Moura, IJCAI 2020).

    For ``subsets`` random pixel subsets ``S`` of ``subset_size`` pixels (an int, or a
    fraction of H·W when below 1; default 224 as Quantus), the Pearson correlation over the
    subsets between the map's sum on ``S`` and the drop ``f(x) − f(x_[S = baseline])`` of the
    explained class's score. Higher is better (in [−1, 1]).

    The subsets are drawn from a CPU generator seeded with ``seed`` and shared by every image
    (an image's score depends neither on its batch nor on the device); ``indices`` ((n, k),
    or (B, n, k) for one set per image) gives them explicitly. Defaults follow Quantus'
    ``FaithfulnessCorrelation``: logits (``output="logit"``), 100 subsets of 224. Quantus
    draws its subsets over the C·H·W input *values* (channels of one pixel apart, the map
    broadcast over channels) and its ``"black"`` is the image's minimum; here a subset is of
    pixels and ``"black"`` is pixel value 0. NaN for a flat map or a constant drop.

    Returns:
        ``faithfulness_correlation`` (B,); ``attribution_sums``, ``drops`` (B, n);
        ``clean``, ``targets``, ``flat``.
    """
    check_batch(images, maps, targets)
    b, c, h, w = images.shape
    hw = h * w
    k = (
        round(subset_size * hw)
        if isinstance(subset_size, float) and subset_size < 1
        else int(subset_size)
    )
    if indices is None and not 1 <= k <= hw:
        raise ValueError(f"subset_size must give 1..{hw} pixels, got {subset_size}")
    if indices is None and subsets < 2:
        raise ValueError(f"a correlation needs at least 2 subsets, got {subsets}")
    bs = batch_size or b
    scored, flat = _order_maps(maps, images.device)
    masks = _subset_masks(indices, subsets, k, b, hw, seed, images.device)
    n = masks.shape[1]
    sums = (scored.flatten(1).double()[:, None, :] * masks).sum(2).expand(b, n)
    other = baseline_images(
        images, baseline, mean, std, blur_kernel=blur_kernel, blur_sigma=blur_sigma, seed=seed
    )
    per = max(1, bs // b)
    after = []
    with eval_no_grad(model):
        clean, targets = _clean(model, images, targets, logits, output, bs)
        for i in range(0, n, per):
            m = masks[:, i : i + per].transpose(0, 1).reshape(-1, masks.shape[0], 1, h, w)
            x = torch.where(m, other[None], images[None]).reshape(-1, c, h, w)
            scores = class_scores(_forward(model, x, bs), targets.repeat(m.shape[0]), output)
            after.append(scores.view(-1, b))
    drops = (clean[None] - torch.cat(after)).T
    corr = _pearson(sums, drops.double()).to(clean.dtype)
    return {
        "faithfulness_correlation": _nan_rows(flat, corr),
        "attribution_sums": sums,
        "drops": drops,
        "clean": clean,
        "targets": targets,
        "flat": flat,
    }
