"""Metric sets: what ``metrics=[alignment,arcc,...]`` computes for one batch of one method.

Each set is a function of a :class:`MetricContext` (the batch, its maps, the method and the
model) returning per-image columns ``{column: (B,) tensor}``; explain.py writes them to a
per-image table and logs their means as ``explain/<method>/<column>``. The sets only
orchestrate: the definitions live in ``alignment``, ``faithfulness``, ``road``, ``cose`` and
``rfs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..errors import SageError
from ..saliency.methods import SaliencyMethod
from .alignment import alignment_scores


@dataclass
class MetricContext:
    """One batch: normalised images, explained targets, raw maps, region masks."""

    model: nn.Module
    method: SaliencyMethod
    images: Tensor
    targets: Tensor  # the explained class of every image
    labels: Tensor  # the true class
    maps: Tensor
    regions: dict[str, Tensor]  # region name -> (B, H, W) bool; always holds "fg"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    gt: Tensor | None = None  # ground-truth attribution (B, H, W), where the data has one
    cache: dict[str, Any] = field(default_factory=dict)  # results shared between sets


MetricSet = Callable[..., dict[str, Tensor]]
_SETS: dict[str, MetricSet] = {}


def register_metric_set(name: str) -> Callable[[MetricSet], MetricSet]:
    def decorator(fn: MetricSet) -> MetricSet:
        _SETS[name] = fn
        return fn

    return decorator


def list_metric_sets() -> list[str]:
    return sorted(_SETS)


def compute_metric_sets(
    ctx: MetricContext, sets: Mapping[str, Mapping[str, Any]]
) -> dict[str, Tensor]:
    """Run every selected set (``{name: options}``) on ``ctx``; columns of all sets merged."""
    unknown = sorted(set(sets) - set(_SETS))
    if unknown:
        raise SageError(
            f"unknown metric sets {unknown}; available: {', '.join(list_metric_sets())}"
        )
    columns: dict[str, Tensor] = {}
    for name, options in sets.items():
        columns.update(_SETS[name](ctx, **dict(options or {})))
    return columns


@register_metric_set("alignment")
def alignment_set(
    ctx: MetricContext,
    tau: float | str = "auto",
    tolerance: float = 0,
    regions: list[str] | None = None,
) -> dict[str, Tensor]:
    """RIVAL10 / Explanation Alignment metrics for the foreground and every named region.

    ``tau="auto"``: 0.5 for CAMs and baselines, mean + 1·std for gradient maps (DESIGN §4).
    ``regions``: region names to score (default: all the batch has); ``fg`` is the mask.
    """
    if tau == "auto":
        tau = "mean_std" if ctx.method.family == "gradient" else 0.5
    wanted = {r: m for r, m in ctx.regions.items() if regions is None or r in regions}
    scores = alignment_scores(ctx.maps, wanted, tau=tau, tolerance=tolerance)
    return {f"{metric}/{region}": v for region, per in scores.items() for metric, v in per.items()}
