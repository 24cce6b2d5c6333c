"""The registry of per-batch metric sets: what a set receives and how it is registered.

A metric set is a function of a :class:`MetricContext` (one batch, its maps, the method and
the model) returning per-image columns ``{column: (B,) tensor}``. Modules that define sets
(:mod:`~sage.metrics.suite`, :mod:`~sage.metrics.catalogue_sets`) register them here with
:func:`register_metric_set`; :mod:`~sage.metrics.suite` imports them all and is where callers
list, check and compute sets. Kept apart from the sets so that a module of sets needs only
this one, not the suite that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..saliency.methods import SaliencyMethod


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
    # the model's logits on ``images`` when the caller has them (the method's forward pass):
    # ROAD then skips its clean forward
    logits: Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # results shared between sets


MetricSet = Callable[..., dict[str, Tensor]]
_SETS: dict[str, MetricSet] = {}


def register_metric_set(name: str) -> Callable[[MetricSet], MetricSet]:
    """Decorator: register ``fn`` as the per-batch metric set ``name``."""

    def decorator(fn: MetricSet) -> MetricSet:
        _SETS[name] = fn
        return fn

    return decorator


def is_metric_set(name: str) -> bool:
    """Whether ``name`` is a registered per-batch set (pooled sets are not)."""
    return name in _SETS


def metric_set(name: str) -> MetricSet:
    """The per-batch set registered as ``name`` (KeyError if none: check names first)."""
    return _SETS[name]


def metric_set_names() -> list[str]:
    """The registered per-batch sets, in registration order."""
    return list(_SETS)
