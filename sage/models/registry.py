"""Backbone registry (timm-style): every backbone is registered with the facts SAGE needs.

A :class:`BackboneSpec` keeps the facts about a backbone beside the backbone: input size,
normalisation, the classifier layer, the default CAM target layer(s) and, for token models,
how to turn tokens back into a spatial grid. Training, saliency and evaluation read these
facts from the spec instead of special-casing architectures.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import SageError, unknown_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ReshapeFactory = Callable[[nn.Module], Callable | None]


@dataclass(frozen=True)
class BackboneSpec:
    """Facts about one backbone.

    ``build(num_classes, pretrained, weights)`` returns the network with a fresh
    ``num_classes``-way classifier. Layers are dotted module paths: ``target_layers`` is the
    default CAM layer (the last convolutional stage, or the last block for token models);
    ``stage_layers`` are the outputs of the last few stages, coarse last, for multi-layer
    methods such as RefineCAM.
    """

    name: str
    build: Callable[[int, bool, str | Path | None], nn.Module]
    input_size: int
    classifier: str
    target_layers: tuple[str, ...]
    stage_layers: tuple[str, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    family: str = "cnn"
    reshape_transform: ReshapeFactory | None = None
    tags: dict[str, str] = field(default_factory=dict)


_REGISTRY: dict[str, BackboneSpec] = {}
# Resolvers for open families (e.g. any timm model as "timm/<name>"), keyed by prefix.
_PREFIX_RESOLVERS: dict[str, Callable[[str], BackboneSpec]] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry; names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def register_prefix(prefix: str, resolver: Callable[[str], BackboneSpec]) -> None:
    """Register a resolver for names ``<prefix>/<anything>`` (open model zoos such as timm)."""
    _PREFIX_RESOLVERS[prefix] = resolver


def list_backbones() -> list[str]:
    """Names of the registered backbones (open families such as ``timm/*`` are not listed)."""
    return sorted(_REGISTRY)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of ``name``; ``timm/<model>`` resolves any timm model."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, rest = name.partition("/")
    if sep and prefix in _PREFIX_RESOLVERS:
        return _PREFIX_RESOLVERS[prefix](rest)
    # timm/<model> is an open family: listed last so the registered names come first
    raise unknown_name("backbone", name, [*list_backbones(), "timm/<any timm model>"], limit=40)


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build backbone ``name`` with a ``num_classes``-way head.

    ``pretrained`` loads ImageNet weights from the local torch/timm cache; ``weights`` loads
    them from a file instead. Nothing is downloaded: a missing file is an error naming it.
    Every loaded weight is kept, the classifier too when its class count is ``num_classes``;
    a classifier with another class count is replaced by a new head (logged). Weights of
    another architecture are a :class:`~sage.models.weights.WeightsMismatchError`.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    spec = get_backbone_spec(name)
    model = spec.build(num_classes, pretrained, weights)
    model.sage_backbone = spec.name  # type: ignore[assignment]
    return model


class LayerNotFoundError(SageError, ValueError):
    """A dotted layer path (``cam.<m>.target_layers``) that is not in the model."""


def _children_names(module: nn.Module) -> list[str]:
    names = [name for name, _ in module.named_children()]
    if isinstance(module, nn.Sequential | nn.ModuleList) and names:
        # index paths: say how far they go instead of listing every index
        return [f"0..{len(names) - 1} (or -1..-{len(names)})"]
    return names


def resolve_layers(model: nn.Module, paths: tuple[str, ...] | list[str]) -> list[nn.Module]:
    """Modules at dotted ``paths`` (negative indices allowed, e.g. ``blocks.-1.norm1``).

    A path that is not in the model is a :class:`LayerNotFoundError` naming the valid children
    of the module where it failed (with the closest one for a typo), not a stack trace.
    """
    layers = []
    for path in paths:
        module, done = model, []
        for part in str(path).split("."):
            try:
                module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
            except (AttributeError, IndexError, KeyError, TypeError) as err:
                where = ".".join(done) or "the model"
                valid = _children_names(module)
                close = difflib.get_close_matches(part, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                shown = ", ".join(valid[:20]) + (" ..." if len(valid) > 20 else "")
                raise LayerNotFoundError(
                    f"layer {path!r} not found in {type(model).__name__}: {where} has no "
                    f"{part!r}{hint}; its children: {shown or 'none'}"
                ) from err
            if not isinstance(module, nn.Module):  # e.g. a tensor attribute or a method
                raise LayerNotFoundError(
                    f"layer {path!r} of {type(model).__name__} is a "
                    f"{type(module).__name__}, not a module"
                )
            done.append(part)
        layers.append(module)
    return layers
