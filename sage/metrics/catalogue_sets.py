"""Metric sets of the faithfulness / robustness / complexity catalogue (docs/metrics.md §12):
``deletion_insertion``, ``pixel_flipping``, ``faithfulness_correlation``, ``robustness``,
``sparseness``, ``mask_ranking``. Registered in :mod:`sage.metrics.registry`, imported by
:mod:`sage.metrics.suite`; the definitions live in :mod:`~sage.metrics.perturbation_curves`,
:mod:`~sage.metrics.robustness`, :mod:`~sage.metrics.complexity` and
:mod:`~sage.metrics.mask_ranking`. Option defaults are those functions' (conf/metrics/*.yaml
repeats them)."""

from __future__ import annotations

from torch import Tensor

from .registry import MetricContext, register_metric_set

# the sets here that run the model on perturbed inputs (suite.PERTURBATION_SETS adds them)
PERTURBATION_SETS = frozenset(
    {"deletion_insertion", "pixel_flipping", "faithfulness_correlation", "robustness"}
)


@register_metric_set("deletion_insertion")
def deletion_insertion_set(
    ctx: MetricContext,
    steps: int = 100,
    pixels_per_step: int | None = None,
    deletion_baseline: str | float = "mean",
    insertion_baseline: str | float = "blur",
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    seed: int = 0,
    output: str = "prob",
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Deletion ↓ and Insertion ↑ AUC (Petsiuk et al., RISE, BMVC 2018)."""
    from .perturbation_curves import deletion_insertion_scores

    s = deletion_insertion_scores(
        ctx.model,
        ctx.images,
        ctx.maps,
        ctx.targets,
        ctx.mean,
        ctx.std,
        steps=steps,
        pixels_per_step=pixels_per_step,
        deletion_baseline=deletion_baseline,
        insertion_baseline=insertion_baseline,
        blur_kernel=blur_kernel,
        blur_sigma=blur_sigma,
        seed=seed,
        output=output,
        batch_size=batch_size,
        logits=ctx.logits,
    )
    return {"deletion": s["deletion"], "insertion": s["insertion"]}


@register_metric_set("pixel_flipping")
def pixel_flipping_set(
    ctx: MetricContext,
    region_size: int = 8,
    steps: int | None = 100,
    baseline: str | float = "uniform",
    seed: int = 0,
    output: str = "prob",
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Region perturbation AOPC, MoRF ↑ / LeRF ↓ and their gap ↑ (Samek et al. 2017;
    ``region_size=1``: Bach et al. 2015's pixel flipping)."""
    from .perturbation_curves import aopc_scores

    s = aopc_scores(
        ctx.model,
        ctx.images,
        ctx.maps,
        ctx.targets,
        ctx.mean,
        ctx.std,
        region_size=region_size,
        steps=steps,
        baseline=baseline,
        blur_kernel=blur_kernel,
        blur_sigma=blur_sigma,
        seed=seed,
        output=output,
        batch_size=batch_size,
        logits=ctx.logits,
    )
    return {
        "aopc/morf": s["aopc_morf"],
        "aopc/lerf": s["aopc_lerf"],
        "aopc/gap": s["aopc_morf"] - s["aopc_lerf"],
    }


@register_metric_set("faithfulness_correlation")
def faithfulness_correlation_set(
    ctx: MetricContext,
    subsets: int = 100,
    subset_size: int | float = 224,
    baseline: str | float = "black",
    seed: int = 0,
    output: str = "logit",
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Faithfulness correlation ↑ (Bhatt, Weller, Moura, IJCAI 2020)."""
    from .perturbation_curves import faithfulness_correlation

    s = faithfulness_correlation(
        ctx.model,
        ctx.images,
        ctx.maps,
        ctx.targets,
        ctx.mean,
        ctx.std,
        subsets=subsets,
        subset_size=subset_size,
        baseline=baseline,
        blur_kernel=blur_kernel,
        blur_sigma=blur_sigma,
        seed=seed,
        output=output,
        batch_size=batch_size,
        logits=ctx.logits,
    )
    return {"faithfulness_correlation": s["faithfulness_correlation"]}


@register_metric_set("robustness")
def robustness_set(
    ctx: MetricContext,
    noise: float = 0.01,
    infidelity_samples: int = 10,
    normalize: bool = True,
    output: str = "logit",
    radius: float = 0.02,
    sensitivity_samples: int = 10,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Infidelity ↓ and max-sensitivity ↓ (Yeh et al., NeurIPS 2019) via captum.metrics."""
    from .robustness import infidelity_scores, max_sensitivity_scores

    out = {
        "infidelity": infidelity_scores(
            ctx.model,
            ctx.images,
            ctx.maps,
            ctx.targets,
            ctx.std,
            noise=noise,
            samples=infidelity_samples,
            seed=seed,
            normalize=normalize,
            output=output,
        )
    }
    if sensitivity_samples > 0:  # 0 skips it (one saliency call per sample)
        out["max_sensitivity"] = max_sensitivity_scores(
            ctx.model,
            ctx.images,
            ctx.targets,
            ctx.method,
            ctx.std,
            radius=radius,
            samples=sensitivity_samples,
            seed=seed,
        )
    return out


@register_metric_set("sparseness")
def sparseness_set(ctx: MetricContext, eps: float = 1e-5) -> dict[str, Tensor]:
    """Sparseness (Gini of |S|) ↑ and effective complexity ↓."""
    from .complexity import effective_complexity, sparseness

    return {
        "sparseness": sparseness(ctx.maps),
        "effective_complexity": effective_complexity(ctx.maps, eps),
    }


@register_metric_set("mask_ranking")
def mask_ranking_set(
    ctx: MetricContext,
    k: int | float = 0.02,
    ties: str = "expected",
    regions: list[str] | None = None,
) -> dict[str, Tensor]:
    """Relevance rank accuracy ↑ (Arras et al. 2022) and top-k intersection ↑ (Theiner et al.
    2022) for the foreground and every named region (``regions``: a subset)."""
    from .mask_ranking import mask_ranking_scores

    wanted = {r: m for r, m in ctx.regions.items() if regions is None or r in regions}
    scores = mask_ranking_scores(ctx.maps, wanted, k=k, ties=ties)
    return {f"{metric}/{region}": v for region, per in scores.items() for metric, v in per.items()}
