"""Relative foreground sensitivity (RIVAL10, Moayeri et al., CVPR 2022, §5.1).

Noise analysis. For an image ``x`` in **pixel space** with binary object mask ``m`` and a
noise tensor ``n`` with i.i.d. ``N(0, σ²)`` entries (one draw, shared by both regions, as in
the paper)::

    x̃_fg = clip(x + n ⊙ m),      x̃_bg = clip(x + n ⊙ (1 − m)),      clip to [0, 1]

``a_fg`` / ``a_bg`` are the accuracies under foreground / background noise, averaged over
the noise levels ``σ ∈ {30, 60, …, 210}/255`` and ``trials`` draws per level (the paper uses
7 levels × 10 trials), and with ``ā = (a_fg + a_bg)/2`` (general noise robustness)::

    RFS = (a_bg − a_fg) / (2 · min(ā, 1 − ā))            ∈ [−1, 1]

Positive: corrupting the foreground hurts more, i.e. the model relies on the object.
``iRFS`` is the per-image version with ``p_fg`` / ``p_bg``, the softmax probability of the
true class, in place of the accuracies. Where ``min(ā, 1 − ā) = 0`` (the model is always
right or always wrong under noise, so ``a_fg = a_bg``) the ratio is 0/0 and is defined as
**0** (no relative sensitivity can be measured).

Which averages: the headline ``rfs`` (and ``irfs``) applies the formula to the accuracies
(probabilities) averaged over all σ and trials, as in the paper's Fig. 2. The per-σ values
(``rfs_per_sigma``, the curves of Fig. 4) apply it per level, and ``rfs_sigma_mean`` is their
mean ("average RFS over all noise levels", Fig. 6) — a different number in general.

Background ablation (§5.2, Fig. 8): accuracy with the background replaced by grey,
``x ⊙ m + g ⊙ (1 − m)``, ``g = 0.5`` in pixel space ("all pixels are smoothed to 0.5");
``grey="mean"`` uses the normalisation mean instead (for ImageNet statistics the ImageNet
mean colour, which is 0 after normalisation), or pass any value / RGB triple.

Conventions: ``images`` are normalised; ``mean``/``std`` take them to pixel space, where the
noise is added and clipped, and back. ``masks`` are ``(B, H, W)`` binary. All noisy copies
of one noise level and trial (fg and bg together) go through the model in chunks of
``batch_size`` under ``no_grad`` with the model in eval mode (its mode is restored). The
noise is drawn from a CPU generator seeded with ``seed``, in a fixed order (σ, then trial),
for the whole batch, so results are identical across devices and ``batch_size`` values.
The dataset-level RFS is not a mean of batch RFS values: pool the per-image accuracies
(``per_image["acc_fg"]`` / ``["acc_bg"]``) and call :func:`relative_sensitivity`, or use
:func:`aggregate_rfs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sage.saliency.normalize import check_mask

__all__ = [
    "DEFAULT_SIGMAS",
    "aggregate_rfs",
    "grey_background_accuracy",
    "relative_sensitivity",
    "rfs",
]

#: RIVAL10's seven equally spaced noise levels, in pixel units of [0, 1].
DEFAULT_SIGMAS: tuple[float, ...] = tuple(s / 255 for s in (30, 60, 90, 120, 150, 180, 210))

Grey = float | Sequence[float] | Literal["mean"]


def relative_sensitivity(a_fg: Tensor | float, a_bg: Tensor | float) -> Tensor:
    """``(a_bg − a_fg) / (2·min(ā, 1 − ā))``, 0 where the denominator is 0 (RIVAL10 §5.1).

    Elementwise on tensors (accuracies → RFS, true-class probabilities → iRFS); float64.
    """
    a_fg = torch.as_tensor(a_fg, dtype=torch.float64)
    a_bg = torch.as_tensor(a_bg, dtype=torch.float64).to(a_fg.device)
    mean = (a_fg + a_bg) / 2
    den = 2 * torch.minimum(mean, 1 - mean)
    ok = den > 0
    out = (a_bg - a_fg) / torch.where(ok, den, torch.ones_like(den))
    # |a_bg − a_fg| ≤ den mathematically; the clamp only absorbs float rounding.
    return torch.where(ok, out.clamp(-1, 1), torch.zeros_like(out))


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _stats(value, like: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).flatten()
    if t.numel() not in (1, like.shape[1]):
        raise ValueError(f"{name} must have 1 or {like.shape[1]} values, got {t.numel()}")
    return t.view(1, -1, 1, 1)


def _check_inputs(images: Tensor, masks: Tensor, targets: Tensor) -> Tensor:
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("empty image batch")
    if targets.shape != images.shape[:1]:
        raise ValueError(f"targets must be ({images.shape[0]},), got {tuple(targets.shape)}")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    like = images[:, 0]
    return check_mask(masks, like)[:, None]  # (B, 1, H, W), images' dtype, binary


@torch.no_grad()
def _forward(model: nn.Module, x: Tensor, targets: Tensor, batch_size: int | None):
    """(correct (N,) bool, true-class probability (N,) float64) for normalised images x."""
    n = x.shape[0]
    step = n if not batch_size or batch_size <= 0 else batch_size
    correct, prob = [], []
    for i in range(0, n, step):
        logits = model(x[i : i + step])
        t = targets[i : i + step].to(logits.device)
        correct.append((logits.argmax(1) == t).to(x.device))
        p = logits.double().softmax(1).gather(1, t[:, None])[:, 0]
        prob.append(p.to(x.device))
    return torch.cat(correct), torch.cat(prob)


def _grey_value(grey: Grey, mu: Tensor, like: Tensor) -> Tensor:
    if isinstance(grey, str):
        if grey != "mean":
            raise ValueError(f"grey must be a number, an RGB triple or 'mean', got {grey!r}")
        return mu
    return _stats(grey, like, "grey")


def grey_background_accuracy(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    targets: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    grey: Grey = 0.5,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Accuracy with the background greyed out (RIVAL10 §5.2, Fig. 8).

    ``x_grey = x ⊙ m + g ⊙ (1 − m)`` in pixel space with ``g = 0.5`` by default
    (``"mean"``: the normalisation mean colour; or a value / RGB triple), re-normalised.

    Returns:
        ``{"accuracy": float, "clean_accuracy": float, "per_image": {"correct", "prob",
        "clean_correct", "clean_prob"}}`` (``(B,)`` tensors; ``prob`` = true-class softmax).
    """
    m = _check_inputs(images, masks, targets)
    mu = _stats(mean, images, "mean")
    sd = _stats(std, images, "std")
    g = _grey_value(grey, mu, images)
    pixels = images * sd + mu
    grey_px = pixels * m + g * (1 - m)
    targets = targets.to(images.device).long()
    with _eval(model):
        ok, p = _forward(model, (grey_px - mu) / sd, targets, batch_size)
        ok0, p0 = _forward(model, images, targets, batch_size)
    return {
        "accuracy": float(ok.double().mean()),
        "clean_accuracy": float(ok0.double().mean()),
        "per_image": {"correct": ok, "prob": p, "clean_correct": ok0, "clean_prob": p0},
    }


def rfs(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    targets: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    trials: int = 10,
    seed: int = 0,
    batch_size: int | None = None,
    grey: Grey | None = 0.5,
) -> dict[str, Any]:
    """RFS, iRFS and the per-σ noise curves for one batch (RIVAL10 §5.1; module docstring).

    Args:
        model: classifier taking normalised images.
        images: ``(B, C, H, W)`` normalised images.
        masks: ``(B, H, W)`` (or ``(B, 1, H, W)``) binary foreground masks.
        targets: ``(B,)`` true classes.
        mean, std: per-channel normalisation of ``images``.
        sigmas: noise standard deviations in pixel units ([0, 1] scale).
        trials: noise draws per level (10, as in the paper).
        seed: seed of the noise generator.
        batch_size: model chunk size (None: all noisy copies of one level/trial at once).
        grey: background value for :func:`grey_background_accuracy` (None: skip it).

    Returns:
        A dict with

        - ``rfs`` (from ``a_fg``, ``a_bg`` averaged over σ and trials), ``a_fg``, ``a_bg``,
          ``a_mean`` (ā), ``rfs_sigma_mean`` (mean of the per-σ RFS), ``clean_accuracy``;
        - ``sigmas`` ``(S,)``, ``acc_fg_per_sigma`` / ``acc_bg_per_sigma`` / ``rfs_per_sigma``
          ``(S,)`` (the curves);
        - ``irfs`` (mean of the per-image iRFS) and ``grey_background_accuracy`` (None if
          ``grey`` is None);
        - ``per_image``: ``(B,)`` ``acc_fg``, ``acc_bg`` (fraction of noisy copies classified
          correctly), ``p_fg``, ``p_bg`` (mean true-class probability), ``irfs``; ``(B, S)``
          ``acc_fg_per_sigma``, ``acc_bg_per_sigma``, ``p_fg_per_sigma``,
          ``p_bg_per_sigma``, ``irfs_per_sigma``; ``grey_correct`` ``(B,)``.
    """
    m = _check_inputs(images, masks, targets)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    sig = [float(s) for s in sigmas]
    if not sig or any(s < 0 for s in sig):
        raise ValueError(f"sigmas must be a non-empty list of non-negative values, got {sigmas}")
    b = images.shape[0]
    dev = images.device
    targets = targets.to(dev).long()
    mu = _stats(mean, images, "mean")
    sd = _stats(std, images, "std")
    pixels = images * sd + mu
    gen = torch.Generator().manual_seed(int(seed))
    two_t = torch.cat([targets, targets])

    acc = torch.zeros(2, b, len(sig), dtype=torch.float64, device=dev)  # [fg, bg]
    prob = torch.zeros(2, b, len(sig), dtype=torch.float64, device=dev)
    with _eval(model):
        for si, s in enumerate(sig):
            for _ in range(trials):
                noise = torch.randn(pixels.shape, generator=gen, dtype=torch.float32)
                noise = (noise.to(device=dev, dtype=pixels.dtype)) * s
                x_fg = (pixels + noise * m).clamp(0, 1)
                x_bg = (pixels + noise * (1 - m)).clamp(0, 1)
                x = (torch.cat([x_fg, x_bg]) - mu) / sd
                ok, p = _forward(model, x, two_t, batch_size)
                acc[:, :, si] += ok.view(2, b).double()
                prob[:, :, si] += p.view(2, b)
    acc /= trials
    prob /= trials

    acc_fg_s, acc_bg_s = acc[0].mean(0), acc[1].mean(0)  # (S,)
    a_fg, a_bg = float(acc[0].mean()), float(acc[1].mean())
    rfs_s = relative_sensitivity(acc_fg_s, acc_bg_s)
    p_fg, p_bg = prob[0].mean(1), prob[1].mean(1)  # (B,)
    irfs_i = relative_sensitivity(p_fg, p_bg)
    out: dict[str, Any] = {
        "rfs": float(relative_sensitivity(a_fg, a_bg)),
        "a_fg": a_fg,
        "a_bg": a_bg,
        "a_mean": (a_fg + a_bg) / 2,
        "rfs_sigma_mean": float(rfs_s.mean()),
        "irfs": float(irfs_i.mean()),
        "sigmas": torch.tensor(sig, dtype=torch.float64),
        "acc_fg_per_sigma": acc_fg_s,
        "acc_bg_per_sigma": acc_bg_s,
        "rfs_per_sigma": rfs_s,
        "per_image": {
            "acc_fg": acc[0].mean(1),
            "acc_bg": acc[1].mean(1),
            "p_fg": p_fg,
            "p_bg": p_bg,
            "irfs": irfs_i,
            "acc_fg_per_sigma": acc[0],
            "acc_bg_per_sigma": acc[1],
            "p_fg_per_sigma": prob[0],
            "p_bg_per_sigma": prob[1],
            "irfs_per_sigma": relative_sensitivity(prob[0], prob[1]),
        },
    }
    if grey is not None:
        g = grey_background_accuracy(model, images, masks, targets, mean, std, grey, batch_size)
        out["grey_background_accuracy"] = g["accuracy"]
        out["clean_accuracy"] = g["clean_accuracy"]
        out["per_image"]["grey_correct"] = g["per_image"]["correct"]
        out["per_image"]["clean_correct"] = g["per_image"]["clean_correct"]
    else:
        out["grey_background_accuracy"] = None
        with _eval(model):
            ok0, _ = _forward(model, images, targets, batch_size)
        out["clean_accuracy"] = float(ok0.double().mean())
        out["per_image"]["clean_correct"] = ok0
    return out


def aggregate_rfs(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool several :func:`rfs` results (batches of one dataset, same σ and trials).

    Accuracies are averaged over all images (each image weighs the same), then RFS is
    recomputed; iRFS is the mean of the per-image values.
    """
    if not results:
        raise ValueError("no results to aggregate")
    sig = results[0]["sigmas"]
    if any(not torch.equal(r["sigmas"], sig) for r in results):
        raise ValueError("results use different noise levels")
    keys = results[0]["per_image"].keys()
    cat = {k: torch.cat([r["per_image"][k].cpu() for r in results]) for k in keys}
    a_fg = float(cat["acc_fg"].mean())
    a_bg = float(cat["acc_bg"].mean())
    acc_fg_s = cat["acc_fg_per_sigma"].mean(0)
    acc_bg_s = cat["acc_bg_per_sigma"].mean(0)
    rfs_s = relative_sensitivity(acc_fg_s, acc_bg_s)
    out: dict[str, Any] = {
        "rfs": float(relative_sensitivity(a_fg, a_bg)),
        "a_fg": a_fg,
        "a_bg": a_bg,
        "a_mean": (a_fg + a_bg) / 2,
        "rfs_sigma_mean": float(rfs_s.mean()),
        "irfs": float(cat["irfs"].mean()),
        "sigmas": sig,
        "acc_fg_per_sigma": acc_fg_s,
        "acc_bg_per_sigma": acc_bg_s,
        "rfs_per_sigma": rfs_s,
        "clean_accuracy": float(cat["clean_correct"].double().mean()),
        "grey_background_accuracy": (
            float(cat["grey_correct"].double().mean()) if "grey_correct" in cat else None
        ),
        "per_image": cat,
    }
    return out
