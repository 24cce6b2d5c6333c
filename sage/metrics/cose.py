"""Consistency, sensitivity and COSE of a saliency method (Daroya, Sun, Maji, ICCV-W 2023).

COSE asks two things of a saliency method Φ on a classifier f, over images the model
classifies correctly:

- **consistency** (§3.2.1, Eq. 4): when a transform ``t`` leaves the prediction unchanged,
  ``f(t(x)) = f(x)``, the map should follow the image: photometric ``h`` → the same map,
  geometric ``g`` → ``g⁻¹(Φ(f, g(x))) = Φ(f, x)``::

      consistency = (1/N) Σ_{(x,t) unchanged} SSIM(Φ(f, x), t⁻¹(Φ(f, t(x))))

- **sensitivity** (§3.2.2, Eq. 7): when the prediction changes — under an input transform,
  or under a *model* perturbation ``f'`` (an earlier checkpoint, a randomly initialised
  copy: §3.1.2) with ``f'(x) ≠ f(x)`` — the map should change::

      sensitivity = (1/M) [ Σ_{(x,t) changed} d(Φ(f,x), t⁻¹(Φ(f,t(x))))
                          + Σ_{(x,f') changed} d(Φ(f,x), Φ(f',x)) ],  d = 1 − SSIM

- **COSE** (Eq. 8) = harmonic mean ``2·c·s / (c + s)`` (the paper reports it ×100 %; here
  it is a fraction). The reference code (``cvl-umass/COSE``,
  ``postprocess/02_compile_explanations.py``) reports the **geometric** mean
  ``√(consistency · (1 − mean SSIM of changed pairs)) = √(c·s)`` instead: returned as
  ``cose_geometric``.

N and M count (image, perturbation) *pairs*, pooled over images (the paper's sums), so the
dataset value is not a mean of per-image values; :func:`aggregate_cose` pools several
batches exactly.

Conventions and documented choices:

- Only images with ``argmax f(x) == target`` enter (paper §3.2 / reference code); the others
  get NaN per-image values and ``correct = False``.
- Maps: ``method(model, images, targets)`` gives the scored maps (ReLU'd for CAMs,
  docs/metrics.md "Which map is scored", as the COSE code scores them); each is normalised per image
  (default ``"minmax"``: ``(S − min)/(max − min)``, the paper's ``M ∈ [0, 1]``; a flat map
  becomes all zeros) *before* the geometric inverse, as the reference code does.
- Which class is explained: the original image's map explains the true class (= the
  prediction); by default (``explain="predicted"``, the reference code) the map of ``t(x)``
  and of ``f'`` explain *their own* prediction, so a changed prediction is explained as
  what the model now sees; ``explain="target"`` explains the true class everywhere.
- SSIM: :func:`sage.metrics.ssim.ssim` — 5×5 uniform window, K1 = 0.01, K2 = 0.03, data
  range from the two maps (``data_range``), geometric transforms compared on their valid
  pixels only. A pair whose SSIM is undefined (no valid window left, e.g. a large
  rotation of a tiny image) is dropped from both N and M and counted in ``n_undefined``.
  SSIM is not clipped (skimage's can be negative for anti-correlated maps; the paper assumes
  [0, 1]), so a sensitivity term ``1 − SSIM`` can exceed 1 and with it sensitivity and COSE
  (a sensitivity term reaches 2 at most, so the harmonic COSE stays below 4/3 and the
  geometric one below √2; above 1 only for maps that invert under a perturbation);
  ``clip_ssim=True`` (metric set option ``clip_ssim``) clamps SSIM to [0, 1] first, which
  keeps every term and COSE in [0, 1].
- Model perturbations with an *unchanged* prediction: Eq. 4 sums over input transforms only
  (and the reference code agrees), so by default they do **not** enter consistency; their
  mean SSIM is reported as ``model["unchanged_ssim"]``. ``models_in_consistency=True``
  counts them as consistency terms instead.
- Empty terms: consistency is NaN when N = 0 and sensitivity NaN when M = 0 (e.g. a model
  whose prediction never changes has no sensitivity sample); COSE (either mean) is NaN when
  either term is NaN, and 0 when both are 0.
- Pixel space: ``images`` are normalised; transforms act on ``clamp(images·std + mean, 0,
  1)`` and the result is normalised again before the model sees it. Perturbed images go
  through the model and the method one transform at a time for the whole batch (chunked by
  ``batch_size``); predictions run under ``no_grad`` with every model in eval mode and its
  previous mode restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sage.saliency.normalize import minmax

from .ssim import DataRange, ssim
from .transforms import Transform

__all__ = [
    "aggregate_cose",
    "consistency_sensitivity",
    "cose_scores",
    "geometric_mean",
    "harmonic_mean",
]

Normalize = Literal["minmax", "relu_minmax", "none"] | Callable[[Tensor], Tensor] | None
MethodFn = Callable[..., Tensor]


# ------------------------------------------------------------------------------ means


def harmonic_mean(c: Tensor | float, s: Tensor | float) -> Tensor:
    """COSE Eq. 8 (as a fraction): ``2cs/(c+s)``; 0 when ``c + s = 0``; NaN if either is NaN."""
    c, s = torch.as_tensor(c, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    den = c + s
    out = 2 * c * s / torch.where(den == 0, torch.ones_like(den), den)
    out = torch.where(den == 0, torch.zeros_like(out), out)
    return torch.where(c.isnan() | s.isnan(), torch.full_like(out, math.nan), out)


def geometric_mean(c: Tensor | float, s: Tensor | float) -> Tensor:
    """The reference code's ``√(c·s)``; NaN if either is NaN (or the product is negative)."""
    c, s = torch.as_tensor(c, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    return torch.sqrt(c * s)


# ------------------------------------------------------------------------------ helpers


@contextmanager
def _eval(models: Sequence[nn.Module]) -> Iterator[None]:
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, was in zip(models, modes, strict=True):
            m.train(was)


def _chunks(n: int, batch_size: int | None) -> list[slice]:
    step = n if not batch_size or batch_size <= 0 else batch_size
    return [slice(i, min(i + step, n)) for i in range(0, n, max(step, 1))]


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int | None) -> Tensor:
    return torch.cat([model(x[s]).argmax(1) for s in _chunks(x.shape[0], batch_size)])


def _explain(
    method: MethodFn, model: nn.Module, x: Tensor, tgt: Tensor, batch_size: int | None
) -> Tensor:
    maps = [method(model, x[s], tgt[s]) for s in _chunks(x.shape[0], batch_size)]
    return torch.cat([m.detach() for m in maps])


def _normalizer(normalize: Normalize) -> Callable[[Tensor], Tensor]:
    if callable(normalize):
        return normalize
    if normalize == "minmax":
        return lambda m: minmax(m)[0]
    if normalize == "relu_minmax":
        return lambda m: minmax(m.clamp_min(0))[0]
    if normalize in (None, "none"):
        return lambda m: m.float()
    raise ValueError(
        f"normalize must be 'minmax', 'relu_minmax', 'none' or callable: {normalize!r}"
    )


def _stats(shape: tuple[int, ...], like: Tensor, name: str, value) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).flatten()
    if t.numel() not in (1, shape[1]):
        raise ValueError(f"{name} must have 1 or {shape[1]} values, got {t.numel()}")
    return t.view(1, -1, 1, 1)


def _masked_mean(values: Tensor, mask: Tensor, dims) -> tuple[Tensor, Tensor]:
    """(mean of values over mask, count) along ``dims``; mean NaN where count is 0."""
    v = torch.where(mask, values, torch.zeros_like(values))
    n = mask.to(values.dtype).sum(dims)
    total = v.sum(dims)
    mean = total / n.clamp_min(1)
    return torch.where(n > 0, mean, torch.full_like(mean, math.nan)), n


# ------------------------------------------------------------------------------ scores


def cose_scores(
    ssim_values: Tensor,
    changed: Tensor,
    kinds: Sequence[str],
    model_ssim: Tensor | None = None,
    model_changed: Tensor | None = None,
    *,
    correct: Tensor | None = None,
    labels: Sequence[str] | None = None,
    models_in_consistency: bool = False,
    clip_ssim: bool = False,
) -> dict[str, Any]:
    """Consistency, sensitivity and COSE from per-pair SSIMs (COSE Eqs. 4, 7, 8).

    Args:
        ssim_values: ``(B, T)`` SSIM of each image's map against each transform's inverted
            map (NaN = undefined, dropped).
        changed: ``(B, T)`` bool, prediction on ``t(x)`` differs from the one on ``x``.
        kinds: ``T`` strings ``"geometric"`` / ``"photometric"``.
        model_ssim, model_changed: ``(B, K)`` the same for model perturbations (optional).
        correct: ``(B,)`` bool, images entering (default: all).
        labels: ``T`` transform labels for the per-transform breakdown.
        models_in_consistency: count unchanged model perturbations as consistency terms.
        clip_ssim: clamp SSIM to [0, 1] first.

    Returns:
        The aggregate dictionary described in :func:`consistency_sensitivity` (with
        ``per_image`` holding the per-image scores only).
    """
    s = ssim_values.to(torch.float64)
    b, t = s.shape
    dev = s.device
    changed = changed.to(device=dev, dtype=torch.bool)
    if model_ssim is None:
        model_ssim = torch.empty(b, 0, dtype=torch.float64, device=dev)
        model_changed = torch.empty(b, 0, dtype=torch.bool, device=dev)
    ms = model_ssim.to(device=dev, dtype=torch.float64)
    mc = model_changed.to(device=dev, dtype=torch.bool)
    if len(kinds) != t:
        raise ValueError(f"{len(kinds)} kinds for {t} transforms")
    ok = torch.ones(b, dtype=torch.bool, device=dev) if correct is None else correct.to(dev).bool()
    if clip_ssim:
        s, ms = s.clamp(0, 1), ms.clamp(0, 1)
    defined = s.isfinite() & ok[:, None]
    mdefined = ms.isfinite() & ok[:, None]
    cons = defined & ~changed
    sens = defined & changed
    mcons = mdefined & ~mc
    msens = mdefined & mc
    d, md = 1 - s, 1 - ms

    def block(cm: Tensor, sm: Tensor, dims, with_models: bool) -> dict[str, Tensor]:
        cvals, cmask = s, cm
        svals, smask = d, sm
        if with_models:
            svals = torch.cat([svals, md], 1)
            smask = torch.cat([smask, msens], 1)
            if models_in_consistency:
                cvals = torch.cat([cvals, ms], 1)
                cmask = torch.cat([cmask, mcons], 1)
        c, nc = _masked_mean(cvals, cmask, dims)
        se, ns = _masked_mean(svals, smask, dims)
        return {
            "consistency": c,
            "sensitivity": se,
            "cose": harmonic_mean(c, se),
            "cose_geometric": geometric_mean(c, se),
            "n_consistent": nc.long(),
            "n_sensitive": ns.long(),
        }

    def scalars(blk: dict[str, Tensor]) -> dict[str, float | int]:
        return {k: (int(v) if k.startswith("n_") else float(v)) for k, v in blk.items()}

    overall = scalars(block(cons, sens, (0, 1), True))
    per_image = block(cons, sens, 1, True)
    out: dict[str, Any] = {
        **overall,
        "n_images": b,
        "n_correct": int(ok.sum()),
        "n_undefined": int(
            (~s.isfinite() & ok[:, None]).sum() + (~ms.isfinite() & ok[:, None]).sum()
        ),
    }
    for kind in ("geometric", "photometric"):
        sel = torch.tensor([k == kind for k in kinds], dtype=torch.bool, device=dev)[None]
        out[kind] = scalars(block(cons & sel, sens & sel, (0, 1), False))
    mc_mean, n_mc = _masked_mean(ms, mcons, (0, 1))
    ms_mean, n_ms = _masked_mean(md, msens, (0, 1))
    out["model"] = {
        "sensitivity": float(ms_mean),
        "n_sensitive": int(n_ms),
        "unchanged_ssim": float(mc_mean),
        "n_unchanged": int(n_mc),
    }
    if labels is not None:
        per_t: dict[str, dict[str, float | int]] = {}
        for j, lab in enumerate(labels):
            c, nc = _masked_mean(s[:, j], cons[:, j], 0)
            se, ns = _masked_mean(d[:, j], sens[:, j], 0)
            key = lab if lab not in per_t else f"{lab}#{j}"
            per_t[key] = {
                "consistency": float(c),
                "sensitivity": float(se),
                "n_consistent": int(nc),
                "n_sensitive": int(ns),
            }
        out["per_transform"] = per_t
    nan = torch.full((b,), math.nan, dtype=torch.float64, device=dev)
    out["per_image"] = {
        "correct": ok,
        **{
            k: (torch.where(ok, v, nan) if not k.startswith("n_") else v)
            for k, v in per_image.items()
        },
    }
    return out


# ------------------------------------------------------------------------------ main


def consistency_sensitivity(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    method: MethodFn,
    transforms: Sequence[Transform],
    mean: Sequence[float],
    std: Sequence[float],
    models: Sequence[nn.Module] = (),
    *,
    explain: Literal["predicted", "target"] = "predicted",
    normalize: Normalize = "minmax",
    data_range: DataRange = "joint",
    models_in_consistency: bool = False,
    clip_ssim: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """COSE consistency, sensitivity and their means for one batch (module docstring).

    Args:
        model: the classifier ``f`` (takes normalised images).
        images: ``(B, 3, H, W)`` normalised images.
        targets: ``(B,)`` true classes.
        method: any saliency method ``method(model, images, targets) -> (B, H, W)`` (e.g.
            ``sage.saliency.methods.create_method(name)``).
        transforms: :class:`~sage.metrics.transforms.Transform` list (e.g.
            :func:`~sage.metrics.transforms.sample_transforms`).
        mean, std: per-channel normalisation (3-tuples) of ``images``.
        models: model perturbations ``f'`` (earlier checkpoints, a random-weights copy),
            same input convention as ``model``.
        explain: class explained on perturbed inputs / models (``"predicted"``: their own
            prediction, the reference code; ``"target"``: the true class).
        normalize: per-map normalisation before comparison (``"minmax"``, ``"relu_minmax"``,
            ``"none"`` or a callable on ``(B, H, W)``).
        data_range: SSIM data range rule (:mod:`sage.metrics.ssim`).
        models_in_consistency: count unchanged model perturbations in consistency.
        clip_ssim: clamp SSIM to [0, 1].
        batch_size: chunk size for the model and the method (None: whole batch).

    Returns:
        A dict with

        - ``consistency``, ``sensitivity``, ``cose`` (harmonic, Eq. 8, as a fraction),
          ``cose_geometric`` (reference code), ``n_consistent`` (N), ``n_sensitive`` (M),
          ``n_images``, ``n_correct``, ``n_undefined``;
        - ``geometric`` / ``photometric``: the same scores restricted to that kind of input
          transform (without model perturbations);
        - ``model``: ``sensitivity`` and ``n_sensitive`` of the model perturbations alone,
          ``unchanged_ssim`` and ``n_unchanged`` for those that kept the prediction;
        - ``per_transform``: ``{label: {consistency, sensitivity, n_consistent,
          n_sensitive}}``;
        - ``per_image``: ``(B,)`` tensors ``correct``, ``consistency``, ``sensitivity``,
          ``cose``, ``cose_geometric``, ``n_consistent``, ``n_sensitive``, and the raw
          pairs ``ssim`` / ``changed`` / ``valid_fraction`` ``(B, T)`` and ``model_ssim`` /
          ``model_changed`` ``(B, K)`` (NaN / False for incorrectly classified images);
        - ``transforms`` (labels), ``kinds``, ``options`` (what :func:`aggregate_cose`
          needs to pool batches).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("empty image batch")
    if targets.shape != images.shape[:1]:
        raise ValueError(f"targets must be ({images.shape[0]},), got {tuple(targets.shape)}")
    if explain not in ("predicted", "target"):
        raise ValueError(f"explain must be 'predicted' or 'target', got {explain!r}")
    norm = _normalizer(normalize)
    b = images.shape[0]
    dev = images.device
    targets = targets.to(dev).long()
    mu = _stats(tuple(images.shape), images, "mean", mean)
    sd = _stats(tuple(images.shape), images, "std", std)
    t_count, k_count = len(transforms), len(models)

    ssim_all = torch.full((b, t_count), math.nan, dtype=torch.float64, device=dev)
    changed_all = torch.zeros(b, t_count, dtype=torch.bool, device=dev)
    valid_frac = torch.full((b, t_count), math.nan, dtype=torch.float64, device=dev)
    mssim_all = torch.full((b, k_count), math.nan, dtype=torch.float64, device=dev)
    mchanged_all = torch.zeros(b, k_count, dtype=torch.bool, device=dev)

    with _eval([model, *models]):
        pred = _predict(model, images, batch_size).to(dev)
        correct = pred == targets
        idx = correct.nonzero().flatten()
        if idx.numel() > 0:
            x = images[idx]
            y = targets[idx]
            base = norm(_explain(method, model, x, y, batch_size)).to(dev)
            pixels = (x * sd + mu).clamp(0, 1)
            for j, t in enumerate(transforms):
                xt = (t.apply(pixels) - mu) / sd
                pt = _predict(model, xt, batch_size).to(dev)
                tm = norm(
                    _explain(method, model, xt, pt if explain == "predicted" else y, batch_size)
                )
                back, valid = t.invert_map(tm.to(dev))
                ssim_all[idx, j] = ssim(base, back, valid, data_range=data_range)
                changed_all[idx, j] = pt != y
                valid_frac[idx, j] = valid.flatten(1).double().mean(1)
            for k, mk in enumerate(models):
                pk = _predict(mk, x, batch_size).to(dev)
                mm = norm(_explain(method, mk, x, pk if explain == "predicted" else y, batch_size))
                mssim_all[idx, k] = ssim(base, mm.to(dev), data_range=data_range)
                mchanged_all[idx, k] = pk != y

    kinds = [t.kind for t in transforms]
    labels = [t.label for t in transforms]
    out = cose_scores(
        ssim_all,
        changed_all,
        kinds,
        mssim_all,
        mchanged_all,
        correct=correct,
        labels=labels,
        models_in_consistency=models_in_consistency,
        clip_ssim=clip_ssim,
    )
    out["per_image"].update(
        ssim=ssim_all,
        changed=changed_all,
        valid_fraction=valid_frac,
        model_ssim=mssim_all,
        model_changed=mchanged_all,
    )
    out["transforms"] = labels
    out["kinds"] = kinds
    out["options"] = {
        "explain": explain,
        "normalize": normalize if isinstance(normalize, str) or normalize is None else "custom",
        "data_range": data_range,
        "models_in_consistency": models_in_consistency,
        "clip_ssim": clip_ssim,
    }
    return out


def aggregate_cose(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool several :func:`consistency_sensitivity` results (batches of one dataset).

    The paper's N and M count pairs over the whole dataset, so batch scores cannot simply be
    averaged: this concatenates the per-image pairs and recomputes every score. All results
    must use the same transforms, models and options.
    """
    if not results:
        raise ValueError("no results to aggregate")
    first = results[0]
    for r in results[1:]:
        if r["transforms"] != first["transforms"] or r["options"] != first["options"]:
            raise ValueError("results use different transforms or options")
    cat = {
        k: torch.cat([r["per_image"][k].cpu() for r in results])
        for k in ("ssim", "changed", "valid_fraction", "model_ssim", "model_changed", "correct")
    }
    out = cose_scores(
        cat["ssim"],
        cat["changed"],
        first["kinds"],
        cat["model_ssim"],
        cat["model_changed"],
        correct=cat["correct"],
        labels=first["transforms"],
        models_in_consistency=first["options"]["models_in_consistency"],
        clip_ssim=first["options"]["clip_ssim"],
    )
    out["per_image"].update(
        ssim=cat["ssim"],
        changed=cat["changed"],
        valid_fraction=cat["valid_fraction"],
        model_ssim=cat["model_ssim"],
        model_changed=cat["model_changed"],
    )
    out["transforms"] = list(first["transforms"])
    out["kinds"] = list(first["kinds"])
    out["options"] = dict(first["options"])
    return out
