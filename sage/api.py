"""SAGE as a library: one call per saliency method and per metric (docs/api.md).

Everything here is orchestration of what the pipeline runs (no metric is re-implemented), so
the numbers are those of ``explain.py`` on the same model, images, classes and maps:

- :func:`explain` computes the scored maps of a registered method (``method(model, images,
  targets)``, ``sage.saliency.methods``);
- :func:`fg_mass`, :func:`alignment`, :func:`road`, :func:`faithfulness`, :func:`arcc` are
  Quantus-style metric calls ``metric(model, x, y, maps, ...)`` returning per-image ``(B,)``
  tensors (a dict of them where a metric has several columns);
- :func:`evaluate` runs any registered metric set (``list_metric_sets()``: ``road``,
  ``deletion_insertion``, ``randomisation``, ...) on one batch, exactly as the pipeline's
  ``metrics=[...]`` does;
- :func:`create_backbone` and :func:`load_classifier` build a registered network or rebuild
  one from a SAGE checkpoint.

Conventions (docs/metrics.md): ``images`` are the *normalised* model inputs ``(B, C, H, W)``;
``maps`` are ``(B, H, W)`` at input resolution, the map a metric scores (what
:func:`explain` returns: ReLU'd for CAMs, ``|·|`` for gradient maps); ``targets`` ``(B,)``
are the explained classes (``None``: the model's predicted classes); ``masks`` are binary
foreground masks ``(B, H, W)``. Per-image results that cannot be scored (a flat map, an empty
mask) are NaN, never a fake number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import SageError
from .metrics.batch_checks import eval_no_grad
from .metrics.road import ROAD_NOISE, ROAD_PERCENTILES
from .metrics.suite import (
    MetricContext,
    compute_metric_sets,
    is_pooled,
    list_metric_sets,
    pooled_set,
    register_metric_set,
)
from .models import create_backbone, list_backbones
from .models.registry import IMAGENET_MEAN, IMAGENET_STD, get_backbone_spec
from .saliency.methods import SaliencyMethod, create_method, list_methods
from .saliency.normalize import check_mask, normalize_batch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RERUNS_METHOD",
    "MethodLike",
    "SaliencyMethod",
    "alignment",
    "arcc",
    "create_backbone",
    "create_method",
    "evaluate",
    "explain",
    "faithfulness",
    "fg_mass",
    "list_backbones",
    "list_methods",
    "list_metric_sets",
    "load_classifier",
    "register_metric_set",
    "road",
]

RERUNS_METHOD = frozenset({"arcc", "cose", "faithfulness", "randomisation"})
"""Metric sets that always run the saliency method again (:func:`evaluate` needs
``method=``). Others may too (``robustness``'s max-sensitivity, sets registered later): they
fail with the same error when they call it."""

MethodLike = str | SaliencyMethod | Callable[[nn.Module, Tensor, Tensor | None], Tensor]
"""A saliency method: a registered name (``"gradcam"``), a :class:`SaliencyMethod`
(``create_method(...)``), or any callable ``method(model, images, targets) -> (B, H, W)``
(a Captum or pytorch-grad-cam wrapper, docs/api.md)."""


# ------------------------------------------------------------------------------ methods


class _CallableMethod:
    """A plain ``method(model, images, targets)`` callable where the metric sets expect a
    :class:`SaliencyMethod`: it has no family (alignment's ``tau="auto"`` takes 0.5, the CAM
    threshold) and its maps are scored as returned."""

    family = ""
    scoring = "raw"

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    @property
    def last_logits(self) -> Tensor | None:
        return getattr(self.fn, "last_logits", None)

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor | None = None) -> Tensor:
        return self.fn(model, images, targets)


class _NoMethod:
    """Stands in for the method when :func:`evaluate` got maps but no method: a set that
    calls the method again (Coherency explains ``x ⊙ S``; randomisation explains randomised
    copies; max-sensitivity explains noisy inputs) fails with an error saying so. The given
    maps cannot stand in: they are the maps of *these* inputs on *this* model only."""

    family = ""
    scoring = "raw"
    name = "precomputed maps"
    last_logits = None

    def __init__(self, metric_set: str) -> None:
        self.metric_set = metric_set

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor | None = None) -> Tensor:
        raise SageError(
            f"{self.metric_set} runs the saliency method again on other inputs or "
            "models (e.g. Coherency explains images ⊙ map, randomisation explains randomised "
            "copies), which the precomputed maps cannot answer: pass method= (a registered "
            "name such as 'gradcam', a create_method(...) instance, or any callable "
            "method(model, images, targets) -> (B, H, W)) — the one that produced the maps"
        )


def _method(method: MethodLike | None, **options: Any) -> SaliencyMethod:
    """A method object from a name (created with ``options``), an instance or a callable."""
    if isinstance(method, str):
        return create_method(method, **options)
    if options:
        raise SageError(
            f"method options {sorted(options)} apply only to a method given by name; "
            "configure an instance with create_method(name, **options) instead"
        )
    if isinstance(method, SaliencyMethod):
        return method
    if callable(method):
        return _CallableMethod(method)  # type: ignore[return-value]
    raise TypeError(
        "method must be a registered name, a SaliencyMethod or a callable "
        f"method(model, images, targets), got {type(method).__name__}"
    )


def explain(
    model: nn.Module,
    images: Tensor,
    method: MethodLike = "gradcam",
    targets: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Saliency maps of ``method`` for ``images``: ``(B, H, W)`` float at input resolution.

    The map returned is the one every metric scores (ReLU'd for CAMs, ``|·|`` for gradient
    maps, raw for the baselines; ``scoring="raw"`` keeps the signed map). The model runs in
    eval mode with gradients; its train/eval state is restored.

    Args:
        model: classifier taking normalised ``images``. A network from
            :func:`create_backbone` / :func:`load_classifier` knows its CAM layer; any other
            ``nn.Module`` needs ``target_layers=["layer4"]`` (dotted module paths) for CAMs.
        images: ``(B, C, H, W)`` normalised inputs.
        method: a name from :func:`list_methods`, a :class:`SaliencyMethod` instance, or
            any callable ``method(model, images, targets)`` (called as is).
        targets: ``(B,)`` classes to explain; None explains the predicted classes.
        **options: the method's parameters (``target_layers``, ``scoring``, ``n_samples``,
            ...), only with a method given by name.

    Returns:
        ``(B, H, W)`` float tensor on ``images``' device.
    """
    return _method(method, **options)(model, images, targets)


# ------------------------------------------------------------------------------ metrics


def fg_mass(maps: Tensor, masks: Tensor) -> Tensor:
    """A_fg: the share of rectified saliency on the foreground, ``Σ S̃ ⊙ M`` with
    ``S̃ = ReLU(S) / Σ ReLU(S)`` (SAGE §3), per image.

    Args:
        maps: ``(B, H, W)`` saliency maps, any sign.
        masks: ``(B, H, W)`` binary foreground masks (bool or 0/1; a soft or misshapen mask is
            a ValueError).

    Returns:
        ``(B,)`` in [0, 1] (``A_bg = 1 − A_fg``); 0 for a map without positive mass (see
        :func:`sage.saliency.normalize.normalize_batch` for the flags).
    """
    return normalize_batch(maps, masks).a_fg


def alignment(
    maps: Tensor,
    masks: Tensor | Mapping[str, Tensor],
    *,
    tau: float | str = 0.5,
    tolerance: float = 0,
    **options: Any,
) -> dict[str, Tensor]:
    """Localisation of the maps in the masks (RIVAL10 / Explanation Alignment, docs/metrics.md
    §4): IoU, pointing game, Δ density, average precision, saliency precision and recall.

    Args:
        maps: ``(B, H, W)`` saliency maps.
        masks: one ``(B, H, W)`` binary mask, or ``{region: mask}`` for several regions.
        tau: binarisation threshold of IoU on the min-max map: 0.5 (CAMs) or ``"mean_std"``
            (gradient maps, mean + 1·std).
        tolerance: pointing-game tolerance in pixels.
        **options: named variants (``denominator``, ``strict``, ``combine``, ``mass``,
            ``ties``).

    Returns:
        ``{metric: (B,)}`` for one mask, ``{"metric/region": (B,)}`` for a mapping (the
        columns of the ``alignment`` metric set).
    """
    from .metrics.alignment import alignment_scores

    if isinstance(masks, Mapping):
        scores = alignment_scores(maps, masks, tau=tau, tolerance=tolerance, **options)
        return {f"{m}/{region}": v for region, per in scores.items() for m, v in per.items()}
    scores = alignment_scores(maps, {"fg": masks}, tau=tau, tolerance=tolerance, **options)
    return scores["fg"]


def road(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    maps: Tensor,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """ROAD (Rong et al. 2022, pytorch-grad-cam semantics), per image.

    Pixels are removed Most- / Least-Relevant-First at each percentile, filled by noisy
    linear imputation, and the change in the class probability read.

    Args:
        model: classifier; x: ``(B, C, H, W)`` normalised inputs; y: ``(B,)`` explained
            classes (None: predicted); maps: ``(B, H, W)`` scored maps.
        percentiles, noise, seed, batch_size: see :func:`sage.metrics.road.road_scores`.

    Returns:
        ``{"road": ↑, "morf": ↓, "lerf"}``, each ``(B,)``; ``road = (lerf − morf) / 2``.
    """
    from .metrics.road import road_scores

    s = road_scores(
        model, x, maps, y, percentiles=percentiles, noise=noise, seed=seed, batch_size=batch_size
    )
    return {k: s[k] for k in ("road", "morf", "lerf")}


def faithfulness(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    maps: Tensor,
    method: MethodLike,
    *,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Average Drop ↓, Increase in Confidence ↑, Coherency ↑, Complexity ↓ and ADCC ↑
    (Poppi et al. 2021), per image.

    ``method`` is required: Coherency explains ``x ⊙ S`` again with the method that made
    ``maps`` (a name, a :class:`SaliencyMethod` or any ``method(model, images, targets)``).

    Returns:
        ``{"average_drop", "increase_in_confidence", "coherency", "complexity", "adcc"}``,
        each ``(B,)``.
    """
    from .metrics.faithfulness import adcc_scores

    s = adcc_scores(model, x, maps, y, _method(method), batch_size=batch_size)
    keep = ("average_drop", "increase_in_confidence", "coherency", "complexity", "adcc")
    return {k: s[k] for k in keep}


def arcc(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    maps: Tensor,
    method: MethodLike,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    seed: int = 0,
) -> dict[str, Tensor]:
    """ARCC ("How to Evaluate and Refine your CAM"): the harmonic mean of clip(2·ROAD, 0, 1),
    Coherency and 1 − Complexity, per image (the ``arcc`` metric set).

    Returns:
        ``{"arcc", "road", "coherency", "complexity"}``, each ``(B,)``.
    """
    return evaluate(
        "arcc", model, x, y, maps, method=method, percentiles=percentiles, noise=noise, seed=seed
    )


def evaluate(
    metric_set: str | Mapping[str, Mapping[str, Any] | None],
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    maps: Tensor | None,
    masks: Tensor | None = None,
    *,
    method: MethodLike | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    labels: Tensor | None = None,
    regions: Mapping[str, Tensor] | None = None,
    gt: Tensor | None = None,
    **options: Any,
) -> dict[str, Tensor]:
    """Run registered metric set(s) on one batch, as ``explain.py metrics=[...]`` does.

    Args:
        metric_set: a name from :func:`list_metric_sets` (``**options`` go to it), or
            ``{name: options}`` for several sets at once (they then share work: ``road`` and
            ``arcc`` impute once).
        model: classifier taking normalised ``images``.
        images: ``(B, C, H, W)`` normalised inputs.
        targets: ``(B,)`` explained classes; None: the predicted classes.
        maps: ``(B, H, W)`` scored maps; None: computed here with ``method``.
        masks: ``(B, H, W)`` binary foreground masks (the ``fg`` region), for the sets that
            use regions (``alignment``, ``mask_ranking``, ``rfs``); without masks those sets
            raise an error.
        method: the method that made ``maps`` (a name, a :class:`SaliencyMethod` or a
            callable). Needed by the sets that run it again (``faithfulness``, ``arcc``,
            ``randomisation``, ``cose``, ``robustness``'s max-sensitivity): they raise a
            :class:`~sage.errors.SageError` without it. It also picks alignment's
            ``tau="auto"`` (mean + std for gradient maps, else 0.5).
        mean, std: the normalisation of ``images`` (sets that rebuild pixels: deletion /
            insertion baselines, COSE, RFS). Default: the backbone's if ``model`` comes from
            :func:`create_backbone`, else ImageNet's.
        labels: ``(B,)`` true classes (COSE, RFS); default ``targets``.
        regions: further ``{name: (B, H, W) bool}`` regions scored next to ``fg``.
        gt: ``(B, H, W)`` ground-truth attribution (the ``cosine`` set).
        **options: the set's options (``percentiles=``, ``steps=``, ...; see its docstring).

    Returns:
        ``{column: (B,) tensor}`` — the per-image columns of the pipeline's table. A pooled,
        dataset-level set (``cose``, ``rfs``) gives 0-d tensors pooled over this batch only.
    """
    sets = _sets(metric_set, options)
    if method is not None:
        method = _method(method)
    elif maps is not None and (rerun := sorted(set(sets) & RERUNS_METHOD)):
        _NoMethod(f"metric set {', '.join(map(repr, rerun))}")(model, images)  # fail early
    dev = images.device
    logits = None
    if maps is None:
        if method is None:
            raise SageError("evaluate needs maps, or a method= to compute them")
        maps = method(model, images, targets)
        logits = getattr(method, "last_logits", None)
    if logits is None or logits.shape[0] != images.shape[0]:
        with eval_no_grad(model):  # the clean forward the sets share (ROAD skips its own)
            logits = model(images)
    logits = logits.detach().to(dev)
    if targets is None:
        targets = logits.argmax(1)
    targets = targets.to(dev).long()
    mean, std = _normalisation(model, mean, std)
    names = ", ".join(map(repr, sets))
    which = f"metric set {names}" if len(sets) == 1 else f"one of the metric sets {names}"
    ctx = MetricContext(
        model=model,
        method=method if method is not None else _NoMethod(which),  # type: ignore[arg-type]
        images=images,
        targets=targets,
        labels=targets if labels is None else labels.to(dev).long(),
        maps=maps.to(dev),
        regions=_regions(masks, regions, maps, which),
        mean=mean,
        std=std,
        gt=gt,
        logits=logits,
    )
    # one call for the per-image sets, so they share work (road and arcc impute once)
    results = compute_metric_sets(ctx, sets)
    for name, opts in sets.items():
        if is_pooled(name):
            pooled = pooled_set(name)
            agg = pooled.aggregate([pooled.batch(ctx, **opts)])
            results.update({k: torch.tensor(v) for k, v in agg.items()})
    return results


def _sets(
    metric_set: str | Mapping[str, Mapping[str, Any] | None], options: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    from .metrics.suite import check_metric_sets

    if isinstance(metric_set, str):
        sets = {metric_set: dict(options)}
    elif isinstance(metric_set, Mapping):
        if options:
            raise SageError(
                f"options {sorted(options)} are ambiguous with several metric sets: "
                "give them per set, {name: {option: value}}"
            )
        sets = {k: dict(v or {}) for k, v in metric_set.items()}
    else:
        raise TypeError(
            f"metric_set must be a name or {{name: options}}, got {type(metric_set).__name__}"
        )
    check_metric_sets(sets)
    return sets


def _normalisation(
    model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    backbone = getattr(model, "sage_backbone", None)
    spec_mean, spec_std = IMAGENET_MEAN, IMAGENET_STD
    if backbone is not None:
        spec = get_backbone_spec(backbone)
        spec_mean, spec_std = spec.mean, spec.std
    return (
        tuple(float(v) for v in (spec_mean if mean is None else mean)),
        tuple(float(v) for v in (spec_std if std is None else std)),
    )


class _NoMasks(dict):
    """The regions of a batch without masks: any set that reads them fails, saying so."""

    def __init__(self, metric_set: str) -> None:
        super().__init__()
        self.metric_set = metric_set

    def _missing(self, *_: Any, **__: Any) -> Any:
        raise SageError(
            f"{self.metric_set} scores regions: pass masks= ((B, H, W) binary foreground masks)"
        )

    __getitem__ = get = items = keys = values = __iter__ = __contains__ = _missing


def _regions(
    masks: Tensor | None, regions: Mapping[str, Tensor] | None, maps: Tensor, name: str
) -> dict[str, Tensor]:
    out = {k: check_mask(v, maps).bool() for k, v in (regions or {}).items()}
    if masks is not None:
        if "fg" in out:
            raise SageError("the foreground is given twice: masks= and regions['fg']")
        out = {"fg": check_mask(masks, maps).bool(), **out}
    if "fg" not in out:
        if out:
            raise SageError("regions need a foreground: pass masks= (or regions['fg'])")
        return _NoMasks(name)
    return out


# ------------------------------------------------------------------------------ models


def load_classifier(
    path: str | Path, *, expect_backbone: str | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild the network of a SAGE checkpoint (``train.py``'s ``*.ckpt``) in eval mode.

    Returns ``(net, info)``: ``info`` holds the checkpoint's ``backbone``, ``class_names``,
    ``image_size`` and the data it was trained on. A checkpoint of another backbone than
    ``expect_backbone`` is an error naming both (:func:`sage.training.classifier.load_classifier`).
    """
    from .training.classifier import load_classifier as _load  # Lightning: imported on use

    return _load(path, expect_backbone=expect_backbone)
