"""Saliency-method interface and registry.

Every method is one small unit with one interface::

    maps = method(model, images, targets)   # (B, H, W) float, input resolution, scored map

``targets`` is a (B,) tensor of class indices, or ``None`` for the predicted class (taken from
the method's own forward pass, so predicted-class CAMs cost one forward+backward). The method
puts the model in eval mode with gradients enabled (also inside Lightning's inference mode)
and restores its previous train/eval state afterwards.

Which map the metrics score is decided here, once, and nowhere else (docs/metrics.md, "Which
map is scored"): :meth:`SaliencyMethod.compute` returns the method's raw map and ``__call__``
applies the method's ``scoring`` rule before anything sees it — ``rectified`` (ReLU) for CAMs,
as grad-cam, the RefineCAM/ARCC code, COSE and RIVAL10 score them; ``abs`` for gradient maps,
as Simonyan et al. and SmoothGrad visualise them; ``raw`` for the sanity baselines, whose
values are the test. Every metric, A_fg, the tokens and the saved maps therefore see the same
map, also inside Coherency (which calls the method again on ``x ⊙ S``). ``scoring="raw"``
(``+cam.<m>.scoring=raw``) scores the signed map instead, a named option for comparison.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import SageError, unknown_name
from ...models import get_backbone_spec, resolve_layers

_METHODS: dict[str, type[SaliencyMethod]] = {}

SCORINGS = ("rectified", "abs", "raw")


def score_map(maps: Tensor, scoring: str) -> Tensor:
    """Apply a scoring rule (see the module notes) to raw maps ``(B, H, W)``."""
    if scoring == "rectified":
        return maps.clamp_min(0)
    if scoring == "abs":
        return maps.abs()
    if scoring == "raw":
        return maps
    raise SageError(f"scoring must be one of {SCORINGS}, got {scoring!r}")


def register_method(name: str) -> Callable[[type[SaliencyMethod]], type[SaliencyMethod]]:
    def decorator(cls: type[SaliencyMethod]) -> type[SaliencyMethod]:
        if name in _METHODS:
            raise ValueError(f"saliency method {name!r} registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorator


def list_methods(family: str | None = None) -> list[str]:
    """Registered method names (optionally one family: ``cam``, ``gradient``, ``baseline``)."""
    return sorted(n for n, c in _METHODS.items() if family is None or c.family == family)


def create_method(name: str, scoring: str | None = None, **params: Any) -> SaliencyMethod:
    """Instantiate registered method ``name`` with ``params``.

    ``scoring`` overrides the family's rule for which map is scored (``rectified``, ``abs`` or
    ``raw``; None keeps the method's default, see the module notes).
    """
    if name not in _METHODS:
        raise unknown_name("saliency method", name, list_methods(), limit=len(_METHODS))
    cls = _METHODS[name]
    try:  # a mistyped cam.<m>.<param> is a config error, not a TypeError deep in __init__
        inspect.signature(cls).bind(**params)
    except TypeError as err:
        named = inspect.signature(cls).parameters.values()
        accepted = [p.name for p in named if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise SageError(
            f"saliency method {name!r}: {err}; its parameters: {', '.join(accepted)}, scoring"
        ) from err
    method = cls(**params)
    if scoring is not None:
        if scoring not in SCORINGS:
            raise SageError(f"{name}: scoring must be one of {SCORINGS}, got {scoring!r}")
        method.scoring = scoring
    return method


@contextmanager
def saliency_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode + gradients on (even inside ``torch.inference_mode``), previous mode restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        model.train(was_training)


def backbone_of(model: nn.Module) -> str | None:
    return getattr(model, "sage_backbone", None)


def layers_for(
    model: nn.Module, paths: Sequence[str] | None, multi: bool = False
) -> list[nn.Module]:
    """Target layers: explicit dotted ``paths``, else the backbone's default (or stage) layers."""
    if paths is None:
        name = backbone_of(model)
        if name is None:
            raise SageError(
                f"{type(model).__name__} is not a registered backbone: pass target_layers=[...]"
            )
        spec = get_backbone_spec(name)
        paths = spec.stage_layers if multi and spec.stage_layers else spec.target_layers
    return resolve_layers(model, list(paths))


def reshape_for(model: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The token-to-grid transform of a token model (None for CNNs)."""
    name = backbone_of(model)
    if name is None:
        return None
    factory = get_backbone_spec(name).reshape_transform
    return factory(model) if factory else None


class SaliencyMethod(ABC):
    """A saliency method; subclasses implement :meth:`compute`."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    # which map the metrics score (module notes); an instance may override it
    scoring: str = "rectified"

    def __init__(self, target_layers: Sequence[str] | None = None) -> None:
        self.target_layers = list(target_layers) if target_layers is not None else None
        # logits of the forward pass the method ran (None if it ran none): callers reuse them
        # for predictions instead of paying for another forward.
        self.last_logits: Tensor | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Parameters recorded with results (for reproducibility)."""
        own = {k: v for k, v in vars(self).items() if k != "last_logits" and not k.startswith("_")}
        return own | {"scoring": self.scoring}

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor | None = None) -> Tensor:
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
        if targets is not None and targets.shape != images.shape[:1]:
            raise ValueError(f"targets must be ({images.shape[0]},), got {tuple(targets.shape)}")
        self.last_logits = None
        with saliency_mode(model):
            maps = self.compute(model, images, targets)
        expected = (images.shape[0], *images.shape[-2:])
        if tuple(maps.shape) != expected:
            raise RuntimeError(f"{self.name} returned {tuple(maps.shape)}, expected {expected}")
        return score_map(maps.float(), self.scoring)

    @abstractmethod
    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        """(B, H, W) raw maps (before the scoring rule); runs in eval mode with gradients."""
