"""A pretrained classifier as it comes (ImageNet or any weights file), for explaining it on
arbitrary images: the class count is the file's own head, not a dataset's.

``load_pretrained("resnet50", "/weights/resnet50.pth")`` builds the registry backbone with
as many classes as the file's classifier has, loads every weight (nothing may be left
fresh) and names the classes: ImageNet's categories for a 1000-way head (torchvision ships
them, no download), ``class_<k>`` otherwise. Without a file the backbone's ImageNet weights
are taken from the local torch/timm cache, as ``model.pretrained=true`` does.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import SageError
from .registry import BackboneSpec, create_backbone, get_backbone_spec, resolve_layers
from .weights import WeightsMismatchError, load_state_dict

IMAGENET_CLASSES = 1000


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in label order (from torchvision's weight metadata)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def class_names_for(n: int) -> list[str]:
    """ImageNet's categories for ``n == 1000``, else ``class_0 .. class_<n-1>``."""
    return imagenet_categories() if n == IMAGENET_CLASSES else [f"class_{k}" for k in range(n)]


def head_classes(backbone: str, weights: str | Path) -> int:
    """Class count of the classifier head stored in ``weights`` for ``backbone``."""
    spec = get_backbone_spec(backbone)
    state = load_state_dict(weights)
    # the head's state-dict prefix: its path may use negative indices (classifier.-1)
    probe = create_backbone(backbone, 1)
    head = resolve_layers(probe, [spec.classifier])[0]
    key = next(name for name, m in probe.named_modules() if m is head) + ".weight"
    if key not in state:
        raise WeightsMismatchError(
            f"weights {weights} have no classifier {spec.classifier!r} ({key}) for {backbone}: "
            "a headless file or another architecture; its class count is unknown"
        )
    return int(state[key].shape[0])


def load_pretrained(
    backbone: str, weights: str | Path | None = None
) -> tuple[nn.Module, list[str], BackboneSpec]:
    """``(network in eval mode, class names, spec)`` of ``backbone`` with ``weights``.

    ``weights=None``: the ImageNet weights from the local torch/timm cache (1000 classes).
    A missing file is a :class:`~sage.errors.MissingWeightsError`, one that does not fit the
    backbone a :class:`~sage.models.weights.WeightsMismatchError` (a SageError).
    """
    spec = get_backbone_spec(backbone)
    if weights is None:
        n = IMAGENET_CLASSES
        net = create_backbone(backbone, n, pretrained=True)
    else:
        n = head_classes(backbone, weights)
        if n < 1:
            raise SageError(f"weights {weights} have an empty classifier head")
        # the head now fits, so create_backbone keeps it: every tensor must load
        net = create_backbone(backbone, n, weights=weights)
    return net.eval(), class_names_for(n), spec
