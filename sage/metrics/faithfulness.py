"""Faithfulness of saliency maps without ground truth: Average Drop, Coherency, Complexity, ADCC.

Sources, cited per function:

- Poppi, Cornia, Baraldi, Cucchiara, "Revisiting The Evaluation of Class Activation Mapping
  for Explainability: A Novel Metric and Experimental Analysis", CVPR-W 2021 (ADCC):
  Average Drop, Coherency, Complexity and their harmonic mean ADCC.
- Chattopadhay et al., "Grad-CAM++", WACV 2018: Average Drop and Increase in Confidence.
- Domeniconi, Stramiglio, Lombardi, Salti, "How to Evaluate and Refine your CAM" (§3.1
  eq. 1–4; §3.5 cosine similarity to a ground-truth attribution). Its point, checked by the
  tests: trivial maps (HalfCAM) fool Average Drop and ADCC but not ROAD / ARCC
  (:mod:`sage.metrics.road`).
- Reference code: pytorch-grad-cam 1.5.7, ``metrics/cam_mult_image.py`` (confidence change on
  ``input ⊙ cam``), ``metrics/arcc.py`` (``Coherency``, ``Complexity``).

Conventions (docs/metrics.md §5):

- ``model`` takes normalised images; ``images`` (B, C, H, W) are those normalised inputs;
  ``maps`` (B, H, W) the scored saliency maps (what a SAGE method returns: ReLU'd for CAMs,
  docs/metrics.md "Which map is scored"; a signed map is scored as given); ``targets`` (B,)
  the explained classes (None: the model's predicted classes). Outputs are per-image (B,)
  tensors on the images' device.
- Every map is used min-max scaled to [0, 1] (:func:`sage.saliency.normalize.minmax`), the
  paper's normalisation; on a ReLU'd CAM this is grad-cam's ``scale_cam_image`` (ReLU, then
  min-max), so the numbers equal grad-cam's metrics on grad-cam's own maps.
- The masked input is ``images ⊙ S`` — the *normalised* tensor times the map, as grad-cam's
  ``multiply_tensor_with_cam``. The paper writes ``x ⊙ S`` on the image; in normalised space a
  0 is the dataset-mean colour rather than black, which is the perturbation grad-cam (and so
  every published number computed with it) actually applies.
- Class scores are softmax probabilities of the explained class; forward passes run in eval
  mode under ``no_grad`` (the model's mode is restored), in batches of ``batch_size``.
- A flat map (constant or non-finite: ``minmax``'s ``flat`` flag) has no saliency to score:
  every metric here is NaN for it (a recorded skip; :func:`adcc_scores` also
  returns the flag).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from sage.saliency.normalize import minmax, working_dtype

from .batch_checks import check_batch, eval_no_grad

__all__ = [
    "adcc",
    "adcc_scores",
    "average_drop",
    "coherency",
    "complexity",
    "cosine_to_ground_truth",
    "increase_in_confidence",
    "masked_confidence",
    "pearson",
]

SaliencyFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------ helpers


def _nan_where(invalid: Tensor, value: Tensor) -> Tensor:
    return torch.where(invalid, torch.full_like(value, math.nan), value)


def _logits(model: nn.Module, images: Tensor, batch_size: int | None) -> Tensor:
    bs = batch_size or images.shape[0]
    return torch.cat([model(images[i : i + bs]) for i in range(0, images.shape[0], bs)])


def _scaled(maps: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    scaled, flat = minmax(maps.to(device))
    return scaled, flat


# ------------------------------------------------------------------- confidence on x ⊙ S


def _confidence(
    model: nn.Module,
    images: Tensor,
    scaled: Tensor,
    targets: Tensor | None,
    batch_size: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    b = images.shape[0]
    masked = images * scaled[:, None].to(images.dtype)
    with eval_no_grad(model):
        logits = _logits(model, torch.cat([images, masked]), batch_size)
    if targets is None:
        targets = logits[:b].argmax(1)
    targets = targets.to(images.device).long()
    y, o = _class_probs(logits[:b], logits[b:], targets)
    return y, o, targets


def _class_probs(clean: Tensor, masked: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(y_c, o_c)``: softmax probability of each explained class on the clean and on the
    masked batch (the two logit batches softmaxed together, in float32)."""
    probs = torch.softmax(torch.cat([clean, masked.to(clean.device)]).float(), dim=1)
    both = probs.gather(1, targets.repeat(2)[:, None]).squeeze(1)
    return both[: clean.shape[0]], both[clean.shape[0] :]


def masked_confidence(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Class probability on the image and on the image masked by its map (grad-cam's
    ``CamMultImageConfidenceChange``): ``y_c = P(c | x)``, ``o_c = P(c | x ⊙ S)``.

    The clean and masked batches go through the model together (one pass, or batches of
    ``batch_size``). Returns ``{"y", "o", "targets", "flat"}``, each (B,).
    """
    check_batch(images, maps, targets)
    scaled, flat = _scaled(maps, images.device)
    y, o, targets = _confidence(model, images, scaled, targets, batch_size)
    return {"y": y, "o": o, "targets": targets, "flat": flat}


def _average_drop(y: Tensor, o: Tensor) -> Tensor:
    # y = 0 (softmax underflow) leaves the ratio undefined: NaN, never a silent 0.
    safe = torch.where(y > 0, y, torch.ones_like(y))
    return _nan_where(~(y > 0), (y - o).clamp_min(0) / safe)


def average_drop(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    batch_size: int | None = None,
) -> Tensor:
    """Average Drop (Chattopadhay et al. 2018; Poppi et al. 2021 eq. 1), per image.

    ``AD = max(0, y_c − o_c) / y_c`` with ``y_c`` the softmax probability of class c on the
    image and ``o_c`` on ``images ⊙ S`` (module notes), as a fraction in [0, 1] (the papers
    report the batch mean ×100). Lower is better. grad-cam's ``DropInConfidence`` is the
    un-normalised numerator ``max(0, y_c − o_c)``. NaN for flat maps and where ``y_c`` is 0.
    """
    conf = masked_confidence(model, images, maps, targets, batch_size)
    return _nan_where(conf["flat"], _average_drop(conf["y"], conf["o"]))


def increase_in_confidence(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    batch_size: int | None = None,
) -> Tensor:
    """Increase in Confidence (Chattopadhay et al. 2018), per image: ``1[o_c > y_c]``.

    The batch mean is the paper's "% increase in confidence"; equals grad-cam's
    ``IncreaseInConfidence``. Float 0/1, NaN for flat maps.
    """
    conf = masked_confidence(model, images, maps, targets, batch_size)
    return _nan_where(conf["flat"], (conf["o"] > conf["y"]).float())


# ---------------------------------------------------------------- coherency / complexity


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation per image over pixels, vectorised: (B, H, W) × (B, H, W) → (B,).

    Computed in float64. Where either map is constant the correlation is undefined; it is 0
    there (what grad-cam's ``batch_pearson_coherency`` returns through its ε-guarded division).
    """
    if a.shape != b.shape:
        raise ValueError(f"pearson: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    x = a.reshape(a.shape[0], -1).double()
    y = b.reshape(b.shape[0], -1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = x.norm(dim=1) * y.norm(dim=1)
    rho = (x * y).sum(1) / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, rho, torch.zeros_like(rho)).clamp(-1, 1)


def _coherency(
    model: nn.Module,
    images: Tensor,
    scaled: Tensor,
    targets: Tensor,
    method: SaliencyFn,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(Coh, images ⊙ S, logits of the method's forward on it)``; the logits are None when
    the method does not expose them as ``last_logits``."""
    masked = images * scaled[:, None].to(images.dtype)
    again = method(model, masked, targets)
    again_scaled, _ = minmax(again.to(scaled.device))
    coh = ((pearson(scaled, again_scaled) + 1) / 2).to(working_dtype(scaled))
    return coh, masked, getattr(method, "last_logits", None)


def coherency(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    method: SaliencyFn,
) -> Tensor:
    """Coherency (Poppi et al. 2021; "How to Evaluate and Refine your CAM" eq. 3), per image.

    ``Coh = (Pearson(S, S') + 1) / 2`` where S is the min-max map and S' the same method's
    min-max map on ``images ⊙ S`` for the same class: 1 for a map that reproduces itself on
    the input it explains, ½ for an uncorrelated one, 0 for an anti-correlated one. Higher is
    better.

    ``method(model, images, targets) -> (B, H, W)`` is any saliency callable (e.g. from
    :func:`sage.saliency.methods.create_method`); it runs with gradients as it needs. If S'
    comes out constant the correlation is undefined and taken as 0 (Coh = ½, grad-cam's
    ε-guarded value); a flat S gives NaN. ``targets=None`` explains the predicted classes
    (one extra forward pass).
    """
    check_batch(images, maps, targets)
    scaled, flat = _scaled(maps, images.device)
    if targets is None:
        with eval_no_grad(model):
            targets = _logits(model, images, None).argmax(1)
    targets = targets.to(images.device).long()
    coh, _, _ = _coherency(model, images, scaled, targets, method)
    return _nan_where(flat, coh)


def complexity(maps: Tensor) -> Tensor:
    """Complexity (Poppi et al. 2021; "How to Evaluate and Refine your CAM" eq. 2), per image.

    ``Com = ‖S‖₁ / (H·W)`` on the min-max map S ∈ [0, 1]: the fraction of the image the map
    activates (0 for an empty map, 1 for all ones). Lower is better. Same as grad-cam's
    ``Complexity`` on [0, 1] maps. NaN for flat maps.
    """
    scaled, flat = minmax(maps)
    com = scaled.abs().flatten(1).mean(1)
    return _nan_where(flat, com)


def adcc(average_drop: Tensor, coherency: Tensor, complexity: Tensor) -> Tensor:
    """ADCC (Poppi et al. 2021 eq. 4): ``3 / (1/Coh + 1/(1 − Com) + 1/(1 − AD))``.

    The harmonic mean of Coherency, 1 − Complexity and 1 − Average Drop; higher is better.
    When any of the three terms is 0 (or below) the harmonic mean's limit is 0, returned
    instead of dividing by zero. NaN inputs give NaN.

    Args:
        average_drop, coherency, complexity: (B,) tensors or array-likes (AD as a fraction).
    """
    ad, coh, com = (torch.as_tensor(x) for x in (average_drop, coherency, complexity))
    dtype = torch.promote_types(torch.promote_types(ad.dtype, coh.dtype), com.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    terms = torch.stack(torch.broadcast_tensors(coh.double(), 1 - com.double(), 1 - ad.double()))
    positive = (terms > 0).all(0)
    safe = torch.where(terms > 0, terms, torch.ones_like(terms))
    value = 3 / (1 / safe).sum(0)
    value = torch.where(positive, value, torch.zeros_like(value))
    value = torch.where(terms.isnan().any(0), torch.full_like(value, math.nan), value)
    return value.to(dtype)


def adcc_scores(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    method: SaliencyFn,
    batch_size: int | None = None,
    logits: Tensor | None = None,
) -> dict[str, Tensor]:
    """Average Drop, Increase in Confidence, Coherency, Complexity and ADCC in one go.

    Shares the forward passes: the clean logits are taken from ``logits`` when the caller has
    them (a saliency method's own forward), and the masked batch ``images ⊙ S`` goes through
    the model once — inside Coherency's second call of ``method`` when the method exposes
    that forward's logits as ``method.last_logits`` (SAGE's CAMs do), else in one extra
    forward. The values are those of the separate functions. Returns ``{"average_drop",
    "increase_in_confidence", "coherency", "complexity", "adcc", "y", "o", "targets",
    "flat"}``, each (B,).
    """
    check_batch(images, maps, targets)
    scaled, flat = _scaled(maps, images.device)
    b = images.shape[0]
    if logits is None:
        with eval_no_grad(model):
            logits = _logits(model, images, batch_size)
    elif logits.dim() != 2 or logits.shape[0] != b:
        raise ValueError(f"logits must be (B, K) with B = {b}, got {tuple(logits.shape)}")
    logits = logits.detach().to(images.device)
    targets = (logits.argmax(1) if targets is None else targets).to(images.device).long()
    coh, masked, masked_logits = _coherency(model, images, scaled, targets, method)
    if masked_logits is None or masked_logits.shape != logits.shape:
        with eval_no_grad(model):
            masked_logits = _logits(model, masked, batch_size)
    y, o = _class_probs(logits, masked_logits.detach(), targets)
    ad = _nan_where(flat, _average_drop(y, o))
    inc = _nan_where(flat, (o > y).float())
    coh = _nan_where(flat, coh)
    com = _nan_where(flat, scaled.flatten(1).mean(1))
    return {
        "average_drop": ad,
        "increase_in_confidence": inc,
        "coherency": coh,
        "complexity": com,
        "adcc": adcc(ad, coh, com),
        "y": y,
        "o": o,
        "targets": targets,
        "flat": flat,
    }


# ------------------------------------------------------------------ ground-truth similarity


def cosine_to_ground_truth(
    maps: Tensor, gt: Tensor, normalize: Literal["relu", "minmax"] = "relu"
) -> Tensor:
    """Cosine similarity to a ground-truth attribution ("How to Evaluate and Refine your CAM"
    §3.5: ``cos(S, G) = ⟨S, G⟩ / (‖S‖ ‖G‖)``), per image.

    Args:
        maps: (B, H, W) raw saliency maps.
        gt: (B, H, W) non-negative ground-truth attribution (e.g. the discriminative part's
            mask, or a soft attribution), any float/bool dtype.
        normalize: ``"relu"`` (default) compares ``ReLU(S)`` — cosine is scale-free, so this is
            also ``ReLU(S)/max`` —; ``"minmax"`` compares the paper's min-max map, which
            differs when S is positive everywhere (its minimum is subtracted).

    Returns:
        (B,) in [0, 1] (both vectors non-negative). NaN where it is undefined: a map with no
        positive saliency (or a flat map under ``"minmax"``), or an all-zero ground truth —
        recorded skips, never a fake 0. A negative ground truth is a ValueError.
    """
    if maps.dim() != 3 or gt.shape != maps.shape:
        raise ValueError(
            f"maps and gt must both be (B, H, W) of one shape, got {tuple(maps.shape)} "
            f"and {tuple(gt.shape)}"
        )
    dtype = working_dtype(maps)
    if normalize == "relu":
        s = maps.to(dtype).clamp_min(0)
        s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
        bad = ~torch.isfinite(maps.to(dtype)).flatten(1).all(1)
    elif normalize == "minmax":
        s, bad = minmax(maps)
    else:
        raise ValueError(f"normalize must be 'relu' or 'minmax', got {normalize!r}")
    g = gt.to(device=maps.device, dtype=dtype)
    if bool((g < 0).any()) or not bool(torch.isfinite(g).all()):
        raise ValueError("gt must be a finite, non-negative attribution map")
    s_flat = s.flatten(1).double()
    g_flat = g.flatten(1).double()
    ns, ng = s_flat.norm(dim=1), g_flat.norm(dim=1)
    den = ns * ng
    cos = (s_flat * g_flat).sum(1) / torch.where(den > 0, den, torch.ones_like(den))
    return _nan_where(bad | ~(ns > 0) | ~(ng > 0), cos.clamp(0, 1)).to(dtype)
