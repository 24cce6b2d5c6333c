"""Metric sets: what ``metrics=[alignment,arcc,...]`` computes for one batch of one method.

Each set is a function of a :class:`MetricContext` (the batch, its maps, the method and the
model) returning per-image columns ``{column: (B,) tensor}``; explain.py writes them to a
per-image table and logs their means as ``explain/<method>/<column>``. The sets only
orchestrate: the definitions live in ``alignment``, ``faithfulness``, ``road``, ``cose`` and
``rfs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import SageError
from . import catalogue_sets  # registers the catalogue's sets on import
from .alignment import alignment_scores
from .registry import (  # noqa: F401  (MetricContext .. metric_set: re-exported for callers)
    MetricContext,
    MetricSet,
    is_metric_set,
    metric_set,
    metric_set_names,
    register_metric_set,
)
from .road import ROAD_NOISE, ROAD_PERCENTILES

# Sets that run the model on many perturbed inputs (ROAD's imputations, Coherency's second
# saliency call, COSE's transforms, RFS's noise draws, the randomised copies of the sanity
# checks): they dominate the validation callback's cost, which schedules them every few
# epochs (SageCallback.slow_every_n_epochs).
PERTURBATION_SETS = (
    frozenset({"road", "arcc", "faithfulness", "cose", "rfs", "randomisation"})
    | catalogue_sets.PERTURBATION_SETS
)


# Sets that need a real foreground mask, with why: on data prepared with masker=none the mask
# is the whole frame, so their foreground numbers would be constants, not measurements.
MASK_SETS: dict[str, str] = {
    "alignment": "scores the map against the foreground mask",
    "mask_ranking": "ranks the map's pixels against the foreground mask",
    "rfs": "perturbs the background outside the foreground mask",
}
# Of those, the sets that also score named parts (ROOT_parts + legend.json, e.g. a known
# spurious patch): without masks they keep those regions and drop only ``fg``.
_REGION_SETS = frozenset({"alignment", "mask_ranking"})
# The fg/bg saliency masses explain and the validation callback report besides the sets.
MASK_NUMBERS: tuple[str, ...] = ("fg_mass", "bg_mass", "fg_mass/correct", "fg_mass/error")
NO_MASKS = "the dataset has no masks (prepared with masker=none)"


def mask_free_sets(
    metric_sets: Mapping[str, Mapping[str, Any] | None],
    part_names: Iterable[str] = (),
    why: str = NO_MASKS,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The selected sets (``{name: options}``) that mean something on a dataset without
    masks, and the ones left out with the reason (``{name: reason}``).

    ``part_names``: the dataset's named regions (``PreparedDataset.part_names.values()``).
    ``alignment`` and ``mask_ranking`` are kept on those regions alone (their ``regions``
    option narrowed to them, ``<set>/fg`` recorded as skipped); without named regions they
    are skipped whole, as is ``rfs``. Every other set is kept with its options. ``why``
    completes each reason (why there are no masks).
    """
    parts = [p for p in dict.fromkeys(part_names) if p not in ("background", "fg")]
    kept: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name, options in metric_sets.items():
        options = dict(options or {})
        if name not in MASK_SETS:
            kept[name] = options
            continue
        reason = f"{MASK_SETS[name]}; {why}"
        asked = options.get("regions")
        regions = [r for r in (parts if asked is None else asked) if r in parts]
        if name not in _REGION_SETS or not regions:
            skipped[name] = reason
            continue
        kept[name] = {**options, "regions": regions}
        if asked is None or "fg" in asked:
            skipped[f"{name}/fg"] = reason
    return kept, skipped


# Sets that need the images' true classes (or what a labelled dataset derives from them),
# with why. Every other set scores the map of the explained class (the predicted one when
# there is no label) against the model's own outputs.
LABEL_SETS: dict[str, str] = {
    "cose": "scores correctly classified images only, which needs true labels",
    "rfs": "measures accuracy under background/foreground noise, which needs true labels",
    "cosine": "compares the map with the ground-truth attribution of the true class",
    "meta": "ranks methods against the ground-truth attribution of the true class",
}
NO_LABELS = "the images have no labels"


def label_free_sets(
    metric_sets: Mapping[str, Mapping[str, Any] | None], why: str = NO_LABELS
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The selected sets (``{name: options}``) that need no true labels, and the ones left
    out with the reason (``{name: reason}``; ``why`` completes it): the labels counterpart of
    :func:`mask_free_sets`."""
    kept: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name, options in metric_sets.items():
        if name in LABEL_SETS:
            skipped[name] = f"{LABEL_SETS[name]}; {why}"
        else:
            kept[name] = dict(options or {})
    return kept, skipped


def list_metric_sets() -> list[str]:
    return sorted(set(metric_set_names()) | set(_POOLED))


def compute_metric_sets(
    ctx: MetricContext, sets: Mapping[str, Mapping[str, Any]]
) -> dict[str, Tensor]:
    """Run every selected set (``{name: options}``) on ``ctx``; columns of all sets merged."""
    check_metric_sets(sets)
    ctx.cache["_batch"] = {}  # results shared between the sets of this batch only
    columns: dict[str, Tensor] = {}
    for name, options in sets.items():
        if is_metric_set(name):  # pooled sets are run by the caller (see PooledSet)
            columns.update(metric_set(name)(ctx, **dict(options or {})))
    return columns


def check_metric_sets(sets: Mapping[str, Any]) -> None:
    unknown = sorted(set(sets) - set(metric_set_names()) - set(_POOLED))
    if unknown:
        import difflib  # only on this error path (and this function is the only user)

        valid = list_metric_sets()
        close = [m for u in unknown for m in difflib.get_close_matches(u, valid, n=1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise SageError(f"unknown metric sets {unknown}{hint}; available: {', '.join(valid)}")


@register_metric_set("alignment")
def alignment_set(
    ctx: MetricContext,
    tau: float | str = "auto",
    tolerance: float = 0,
    regions: list[str] | None = None,
    ties: str = "first",
) -> dict[str, Tensor]:
    """RIVAL10 / Explanation Alignment metrics for the foreground and every named region.

    ``tau="auto"``: 0.5 for CAMs and baselines, mean + 1·std for gradient maps (docs/metrics.md §4).
    ``regions``: region names to score (default: all the batch has); ``fg`` is the mask.
    ``ties``: pointing-game rule at a tied maximum (``first`` or ``any``).
    """
    if tau == "auto":
        tau = "mean_std" if ctx.method.family == "gradient" else 0.5
    wanted = {r: m for r, m in ctx.regions.items() if regions is None or r in regions}
    scores = alignment_scores(ctx.maps, wanted, tau=tau, tolerance=tolerance, ties=ties)
    return {f"{metric}/{region}": v for region, per in scores.items() for metric, v in per.items()}


def _faithfulness(ctx: MetricContext) -> dict[str, Tensor]:
    """ADCC's parts, cached so ``arcc`` and ``faithfulness`` share them (one masked forward)."""
    batch = ctx.cache.setdefault("_batch", {})
    if "faithfulness" not in batch:
        from .faithfulness import adcc_scores

        scores = adcc_scores(
            ctx.model, ctx.images, ctx.maps, ctx.targets, ctx.method, logits=ctx.logits
        )
        keep = ("average_drop", "increase_in_confidence", "coherency", "complexity", "adcc")
        batch["faithfulness"] = {k: scores[k] for k in keep}
    return batch["faithfulness"]


@register_metric_set("faithfulness")
def faithfulness_set(ctx: MetricContext) -> dict[str, Tensor]:
    """Average Drop, Increase in Confidence, Coherency, Complexity, ADCC (Poppi et al. 2021)."""
    return dict(_faithfulness(ctx))


def _road(
    ctx: MetricContext, percentiles=ROAD_PERCENTILES, noise: float = ROAD_NOISE, seed: int = 0
) -> dict[str, Tensor]:
    key = ("road", tuple(percentiles), noise, seed)
    batch = ctx.cache.setdefault("_batch", {})
    if key not in batch:
        from .road import road_scores

        scores = road_scores(
            ctx.model,
            ctx.images,
            ctx.maps,
            ctx.targets,
            percentiles=tuple(percentiles),
            noise=noise,
            seed=seed,
            logits=ctx.logits,
        )
        batch[key] = {
            "road/morf": scores["morf"],
            "road/lerf": scores["lerf"],
            "road": scores["road"],
        }
    return batch[key]


@register_metric_set("road")
def road_set(
    ctx: MetricContext, percentiles=ROAD_PERCENTILES, noise: float = ROAD_NOISE, seed: int = 0
) -> dict[str, Tensor]:
    """ROAD MoRF / LeRF / combined (Rong et al. 2022) with noisy linear imputation (noise std
    0.01 as in the paper, seeded, the same noise fields for every image; ``noise=0``: the
    noise-free variant)."""
    return dict(_road(ctx, percentiles, noise, seed))


@register_metric_set("arcc")
def arcc_set(
    ctx: MetricContext, percentiles=ROAD_PERCENTILES, noise: float = ROAD_NOISE, seed: int = 0
) -> dict[str, Tensor]:
    """ARCC: harmonic mean of clip(2·ROAD, 0, 1), Coherency and 1 − Complexity."""
    from .road import arcc

    road = _road(ctx, percentiles, noise, seed)
    faith = _faithfulness(ctx)
    return {
        "arcc": arcc(road["road"], faith["coherency"], faith["complexity"]),
        "road": road["road"],
        "coherency": faith["coherency"],
        "complexity": faith["complexity"],
    }


@register_metric_set("cosine")
def cosine_set(ctx: MetricContext) -> dict[str, Tensor]:
    """Cosine similarity to the ground-truth attribution (SynthDrivers' discriminative parts)."""
    from .faithfulness import cosine_to_ground_truth

    if ctx.gt is None:
        return {"cosine_gt": torch.full((ctx.maps.shape[0],), float("nan"), device=ctx.maps.device)}
    return {"cosine_gt": cosine_to_ground_truth(ctx.maps, ctx.gt)}


# ---------------------------------------------------------------- pooled (dataset-level) sets


@dataclass(frozen=True)
class PooledSet:
    """A metric defined over the whole dataset (COSE counts pairs, RFS averages accuracies):
    ``batch`` runs on one batch, ``aggregate`` pools the batch results into scalars.
    ``model_level`` sets do not depend on the saliency method and run once per batch."""

    batch: Callable[..., Any]
    aggregate: Callable[[list[Any]], dict[str, float]]
    model_level: bool = False


_POOLED: dict[str, PooledSet] = {}


def is_pooled(name: str) -> bool:
    return name in _POOLED


def pooled_set(name: str) -> PooledSet:
    return _POOLED[name]


def _cose_batch(
    ctx: MetricContext,
    n: int = 1,
    seed: int = 0,
    transforms: list[str] | None = None,
    random_copy: bool = True,
    clip_ssim: bool = False,
) -> Any:
    from ..models import create_backbone
    from .cose import consistency_sensitivity
    from .transforms import sample_transforms

    if "cose_transforms" not in ctx.cache:
        ctx.cache["cose_transforms"] = sample_transforms(n, seed=seed, names=transforms)
        models = []
        backbone = getattr(ctx.model, "sage_backbone", None)
        if random_copy and backbone is not None:  # COSE's model-perturbation: random weights
            state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            models.append(create_backbone(backbone, _n_classes(ctx)).to(ctx.images.device))
            torch.random.set_rng_state(state)
        ctx.cache["cose_models"] = models
    return consistency_sensitivity(
        ctx.model,
        ctx.images,
        ctx.labels,
        ctx.method,
        ctx.cache["cose_transforms"],
        ctx.mean,
        ctx.std,
        models=ctx.cache["cose_models"],
        clip_ssim=clip_ssim,
    )


def _n_classes(ctx: MetricContext) -> int:
    with torch.no_grad():
        return int(ctx.model(ctx.images[:1]).shape[-1])


def _cose_aggregate(results: list[Any]) -> dict[str, float]:
    from .cose import aggregate_cose

    pooled = aggregate_cose(results)
    out = {
        k: pooled[k]
        for k in (
            "consistency",
            "sensitivity",
            "cose",
            "cose_geometric",
            "n_consistent",
            "n_sensitive",
        )
    }
    for kind in ("geometric", "photometric", "model"):
        for key in ("consistency", "sensitivity", "cose"):
            if key in pooled.get(kind, {}):
                out[f"{kind}/{key}"] = pooled[kind][key]
    return {k: float(v) for k, v in out.items()}


def _rfs_batch(
    ctx: MetricContext, trials: int = 10, seed: int = 0, sigmas: list[float] | None = None
) -> Any:
    from .rfs import DEFAULT_SIGMAS, rfs

    # a different noise stream per batch, reproducible from the seed
    ctx.cache["rfs_batches"] = ctx.cache.get("rfs_batches", -1) + 1
    return rfs(
        ctx.model,
        ctx.images,
        ctx.regions["fg"],
        ctx.labels,
        ctx.mean,
        ctx.std,
        sigmas=sigmas or DEFAULT_SIGMAS,
        trials=trials,
        seed=seed + ctx.cache["rfs_batches"],
    )


def _rfs_aggregate(results: list[Any]) -> dict[str, float]:
    from .rfs import aggregate_rfs

    pooled = aggregate_rfs(results)
    keys = (
        "rfs",
        "rfs_sigma_mean",
        "irfs",
        "a_fg",
        "a_bg",
        "clean_accuracy",
        "grey_background_accuracy",
    )
    return {k: float(pooled[k]) for k in keys if pooled.get(k) is not None}


_POOLED["cose"] = PooledSet(_cose_batch, _cose_aggregate)
_POOLED["rfs"] = PooledSet(_rfs_batch, _rfs_aggregate, model_level=True)


# ---------------------------------------------------------------- sanity checks (Adebayo et al.)


@register_metric_set("randomisation")
def randomisation_set(
    ctx: MetricContext,
    modes: list[str] | None = None,
    layers: list[str] | None = None,
    steps: int | None = 8,
    similarities: list[str] | None = None,
    topk: float = 10.0,
    seed: int = 0,
    reference: str | None = None,
    reference_select: str = "best",
    tracking_uri: str | None = None,
) -> dict[str, Tensor]:
    """Sanity checks of Adebayo et al. (2018): the maps of re-initialised copies of the model
    (``mprt/<mode>/<k>_<layer>/<similarity>``, cascading from the logits down and one layer at
    a time) and of a ``reference`` model trained on shuffled labels
    (``data_randomisation/<similarity>``) against the trained model's maps. Similar maps =
    the method ignores what the model learned (``sage/metrics/randomisation.py``)."""
    from .randomisation import MODES, data_randomisation, load_reference, mprt
    from .similarity import SIMILARITIES

    sims = list(similarities) if similarities is not None else list(SIMILARITIES)
    columns = mprt(
        ctx.model,
        ctx.method,
        ctx.images,
        ctx.targets,
        ctx.maps,
        modes=list(modes) if modes is not None else list(MODES),
        layers=layers,
        steps=steps,
        similarities=sims,
        topk=topk,
        seed=seed,
    )
    if reference:
        ref, _ = load_reference(reference, tracking_uri, reference_select)
        ref = ref.to(ctx.images.device)
        columns.update(
            data_randomisation(
                ctx.model,
                ref,
                ctx.method,
                ctx.images,
                ctx.targets,
                ctx.maps,
                similarities=sims,
                topk=topk,
            )
        )
    return columns
