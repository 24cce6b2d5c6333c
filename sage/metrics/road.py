"""ROAD (Remove And Debias) and ARCC, vectorised (docs/metrics.md §6).

Sources:

- Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient Evaluation Strategy
  for Attribution Methods", ICML 2022 (ROAD): remove pixels in Most-Relevant-First (MoRF) or
  Least-Relevant-First (LeRF) order, fill them by *noisy linear imputation* and read the
  change in the class probability.
- Domeniconi, Stramiglio, Lombardi, Salti, "How to Evaluate and Refine your CAM" (ARCC):
  ``ARCC = 3 / (1/Coh + 1/(1 − Com) + 1/clip(2·ROAD, 0, 1))``.
- Reference code: pytorch-grad-cam 1.5.7, ``metrics/road.py`` (``NoisyLinearImputer``,
  ``ROADMostRelevantFirstAverage``, ``ROADLeastRelevantFirstAverage``, ``ROADCombined``),
  ``metrics/perturbation_confidence.py`` and ``metrics/arcc.py``. Semantics follow it exactly
  so scores are comparable:

  * percentile ``p``: MoRF keeps the pixels whose map value is strictly below the ``p``-th
    percentile of the map (``numpy.percentile``, linear interpolation) and imputes the rest,
    so ``p = 20`` removes the top 80 %; LeRF does the same on ``1 − map``;
  * score: ``Δ = P(c | imputed) − P(c | image)``, softmax probability of the explained class;
    MoRF / LeRF average Δ over the percentiles; ``ROAD = (mean Δ_LeRF − mean Δ_MoRF) / 2``.

What differs from grad-cam is *how* the imputation is computed, not what it computes: grad-cam
builds and factorises one sparse system per image, per channel and per percentile with
``scipy.sparse.linalg.spsolve`` on the CPU (seconds per 224² image). Here every removed pixel
of every image, channel and percentile is solved at once with a multigrid-preconditioned
conjugate gradient in torch (any device), see :func:`noisy_linear_impute`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sage.saliency.normalize import minmax

from .batch_checks import check_batch, eval_no_grad
from .road_imputation import impute_into, noisy_linear_impute

__all__ = [
    "ROAD_NOISE",
    "ROAD_PERCENTILES",
    "arcc",
    "noisy_linear_impute",
    "percentile_keep_masks",
    "road_scores",
]

ROAD_PERCENTILES: tuple[int, ...] = (20, 40, 60, 80)
# imputation noise std of the ROAD paper and grad-cam's NoisyLinearImputer
ROAD_NOISE = 0.01

# road_scores imputes perturbed images in windows of at most this many bytes, then runs the
# model over the window (imputation and forward passes each run back to back: interleaving
# them at a finer grain costs cache warmth on the CPU).
_ROAD_WINDOW_BYTES = 256 << 20
# grad-cam's metrics/arcc.py adds this to every harmonic-mean term.
_ARCC_EPS = 1e-8

# ------------------------------------------------------------------------------------ ROAD


def _np_percentile_threshold(sorted_vals: Tensor, q: float) -> Tensor:
    """``numpy.percentile(x, q)`` (method "linear") of each row of ``sorted_vals``, bit-exact.

    numpy with a scalar ``q`` interpolates in the array's dtype: virtual index
    ``(n − 1)·q/100`` in float64, then ``a + (b − a)·γ`` (``b − (b − a)·(1 − γ)`` for
    γ ≥ 0.5) with γ a Python float, i.e. rounded to the array's dtype.
    """
    n = sorted_vals.shape[1]
    qq = q / 100
    virtual = n * qq + (1 + qq * (1 - 1 - 1)) - 1  # numpy's _compute_virtual_index(α=β=1)
    lo = min(max(math.floor(virtual), 0), n - 1)
    hi = min(lo + 1, n - 1)
    gamma = virtual - math.floor(virtual)
    a, b = sorted_vals[:, lo], sorted_vals[:, hi]
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


def percentile_keep_masks(
    scaled_maps: Tensor, percentiles: Sequence[float] = ROAD_PERCENTILES
) -> tuple[Tensor, Tensor]:
    """Pixels ROAD keeps at each percentile, grad-cam's ``RemoveMostRelevantFirst`` semantics.

    MoRF at ``p`` keeps ``S < percentile_p(S)`` (so ``p = 20`` removes the top 80 %); LeRF keeps
    ``1 − S < percentile_p(1 − S)``. Thresholds are numpy's (bit-exact) and the comparison is
    in the maps' dtype, as grad-cam compares a float32 tensor with the numpy threshold.

    Args:
        scaled_maps: (B, H, W) min-max scaled maps (float32 or float64).
        percentiles: percentiles in [0, 100].

    Returns:
        ``(morf_keep, lerf_keep)``, each (B, P, H, W) bool, True where the pixel is kept.
    """
    b = scaled_maps.shape[0]
    flat = scaled_maps.reshape(b, -1)
    out = []
    for vals in (flat, 1 - flat):
        srt = vals.sort(dim=1).values
        thr = torch.stack([_np_percentile_threshold(srt, float(p)) for p in percentiles], 1)
        keep = vals[:, None, :] < thr[:, :, None]
        out.append(keep.reshape(b, len(percentiles), *scaled_maps.shape[1:]))
    return out[0], out[1]


def _class_probs(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    logits = model(images)
    probs = torch.softmax(logits.float(), dim=1)
    return probs.gather(1, targets[:, None].to(probs.device)).squeeze(1)


def road_scores(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    batch_size: int | None = None,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    tol: float = 1e-4,
    logits: Tensor | None = None,
) -> dict[str, Tensor]:
    """ROAD MoRF / LeRF / combined scores per image (Rong et al. 2022; grad-cam semantics).

    For each percentile ``p``: MoRF keeps the pixels below the ``p``-th percentile
    of the min-max map S and imputes the rest (``p = 20`` removes the top 80 %), LeRF the same
    on ``1 − S``; each perturbed image scores ``Δ = P(c | imputed) − P(c | image)`` (softmax of
    the explained class ``c``). Then ``MoRF = mean_p Δ_MoRF``, ``LeRF = mean_p Δ_LeRF`` and
    ``ROAD = (LeRF − MoRF) / 2`` — grad-cam's ``ROADMostRelevantFirstAverage``,
    ``ROADLeastRelevantFirstAverage`` and ``ROADCombined``. A faithful map has a low (negative)
    MoRF, a LeRF near 0 and a high ROAD.

    All ``B × 2 × P`` perturbed images are imputed by :func:`noisy_linear_impute` (vectorised)
    and go through the model in batches of ``batch_size`` (default ``B``), under ``no_grad``
    in eval mode (the model's mode is restored).

    Maps are ranked as given (min-max scaling keeps the order); SAGE's methods hand over the
    scored map, ReLU'd for CAMs (negatives tied at 0) as grad-cam ranks them. A flat map
    (constant or non-finite) has no ranking: every pixel is removed at every percentile, so
    its scores are NaN and ``flat`` is True (a recorded skip).

    Args:
        model: classifier taking ``images``.
        images: (B, C, H, W) normalised inputs.
        maps: (B, H, W) scored saliency maps.
        targets: (B,) explained classes; None for the model's predicted classes.
        percentiles: removal percentiles (default 20, 40, 60, 80).
        noise: imputation noise std, 0.01 (in normalised input units) as in the ROAD paper and
            grad-cam; ``noise=0`` is the named noise-free variant (deterministic imputation).
        batch_size: perturbed images per forward pass.
        seed: seeds the noise when no ``generator`` is given: one noise field per order and
            percentile is drawn from it and shared by every image, so an image's scores do not
            depend on what ran before, on its batch or on its position in the batch (the
            validation callback and explain.py give the same numbers).
        generator: torch generator for the noise (overrides ``seed``; fresh noise per
            perturbed image, so scores then depend on the batch).
        tol: imputation tolerance (see :func:`noisy_linear_impute`). Looser than the
            imputer's own default: 1e-4 in normalised units is under 1 % of an 8-bit grey level,
            moves the scores by ~1e-6 (``benchmarks/road_speed.py`` measures the difference to
            grad-cam) and saves an iteration.
        logits: (B, K) logits of ``model`` on ``images`` if already at hand (e.g. a saliency
            method's ``last_logits``): they replace the clean forward pass. (ROAD itself does
            not need it — the clean probability cancels in ``LeRF − MoRF`` — but MoRF and
            LeRF do.)

    Returns:
        dict of tensors on ``images``' device: ``morf``, ``lerf``, ``road`` (B,);
        ``morf_curve``, ``lerf_curve`` (B, P) (Δ per percentile); ``before`` (B,) the clean
        probability of the explained class; ``targets`` (B,); ``flat`` (B,) bool;
        ``percentiles`` (P,).
    """
    check_batch(images, maps, targets)
    if not bool(torch.isfinite(images).all()):
        raise ValueError("road_scores: images hold NaN or ±inf")
    b, _, h, w = images.shape
    dev = images.device
    n_p = len(percentiles)
    if n_p == 0:
        raise ValueError("road_scores needs at least one percentile")
    fields = None
    if noise and generator is None:
        seeded = torch.Generator(device=dev).manual_seed(int(seed))
        shape = (2 * n_p, *images.shape[1:])
        field = torch.randn(shape, generator=seeded, dtype=images.dtype, device=dev)
        fields = (field, torch.arange(b * 2 * n_p, device=dev) % (2 * n_p))
    scaled, flat = minmax(maps.to(dev))
    morf_keep, lerf_keep = percentile_keep_masks(scaled, percentiles)
    removed = ~torch.stack([morf_keep, lerf_keep], 1).reshape(b * 2 * n_p, h, w)
    bs = batch_size or b
    with eval_no_grad(model):
        if logits is None:
            logits = torch.cat([model(images[i : i + bs]) for i in range(0, b, bs)])
        elif logits.dim() != 2 or logits.shape[0] != b:
            raise ValueError(f"logits must be (B, K) with B = {b}, got {tuple(logits.shape)}")
        logits = logits.detach().to(dev)
        targets = logits.argmax(1) if targets is None else targets.to(dev).long()
        before = torch.softmax(logits.float(), 1).gather(1, targets[:, None]).squeeze(1)
        # Impute a window of perturbed images (all of them for usual batches), then run the
        # model over it batch by batch.
        owner = torch.arange(b, device=dev).repeat_interleave(2 * n_p)
        n_masks = b * 2 * n_p
        per_image = images[0].numel() * images.element_size()
        window = bs * max(1, _ROAD_WINDOW_BYTES // (per_image * bs))
        buf = torch.empty(min(window, n_masks), *images.shape[1:], dtype=images.dtype, device=dev)
        after = []
        for w0 in range(0, n_masks, window):
            w1 = min(w0 + window, n_masks)
            perturbed = buf[: w1 - w0]
            window_fields = None if fields is None else (fields[0], fields[1][w0:w1])
            impute_into(
                perturbed,
                images,
                owner[w0:w1],
                removed[w0:w1],
                noise,
                generator,
                tol,
                100,
                None,
                window_fields,
            )
            for s0 in range(0, w1 - w0, bs):
                idx = owner[w0 + s0 : min(w0 + s0 + bs, w1)]
                after.append(_class_probs(model, perturbed[s0 : s0 + bs], targets[idx]))
    delta = (torch.cat(after).reshape(b, 2, n_p) - before[:, None, None]).to(before.dtype)
    nan = torch.full_like(delta, math.nan)
    delta = torch.where(flat[:, None, None], nan, delta)
    morf_curve, lerf_curve = delta[:, 0], delta[:, 1]
    morf, lerf = morf_curve.mean(1), lerf_curve.mean(1)
    return {
        "morf": morf,
        "lerf": lerf,
        "road": (lerf - morf) / 2,
        "morf_curve": morf_curve,
        "lerf_curve": lerf_curve,
        "before": before,
        "targets": targets,
        "flat": flat,
        "percentiles": torch.tensor([float(p) for p in percentiles], device=dev),
    }


def arcc(road: Tensor, coherency: Tensor, complexity: Tensor) -> Tensor:
    """ARCC ("How to Evaluate and Refine your CAM", eq. 6; grad-cam ``metrics/arcc.py``).

    ``ARCC = 3 / (1/(Coh + ε) + 1/((1 − Com) + ε) + 1/(clip(2·ROAD, 0, 1) + ε))`` with
    ε = 1e-8 exactly as grad-cam: the harmonic mean of the rescaled ROAD (ROAD ∈ [−½, ½]),
    Coherency and 1 − Complexity, ≈ 0 as soon as one term is 0 (e.g. ROAD ≤ 0). NaN inputs
    (flat maps) give NaN.

    Args:
        road, coherency, complexity: (B,) per-image values (tensors or array-likes).

    Returns:
        (B,) tensor in the inputs' floating dtype (computed in float64).
    """
    road_t, coh_t, com_t = (torch.as_tensor(x) for x in (road, coherency, complexity))
    out_dtype = torch.promote_types(torch.promote_types(road_t.dtype, coh_t.dtype), com_t.dtype)
    if not out_dtype.is_floating_point:
        out_dtype = torch.float32
    r = (road_t.double() * 2).clip(0, 1)
    total = (
        1 / (coh_t.double() + _ARCC_EPS)
        + 1 / ((1 - com_t.double()) + _ARCC_EPS)
        + 1 / (r + _ARCC_EPS)
    )
    return (3 / total).to(out_dtype)
