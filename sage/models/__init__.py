"""Backbones: the registry and the families registered into it (torchvision, timm, small)."""

from . import small_cnn, timm_zoo, torchvision_zoo  # noqa: F401  (registration side effects)
from .registry import (
    BackboneSpec,
    LayerNotFoundError,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    register_backbone,
    resolve_layers,
)
from .weights import MissingWeightsError, WeightsMismatchError

__all__ = [
    "BackboneSpec",
    "LayerNotFoundError",
    "MissingWeightsError",
    "WeightsMismatchError",
    "create_backbone",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
    "resolve_layers",
]
