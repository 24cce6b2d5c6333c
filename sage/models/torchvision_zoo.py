"""The 26 torchvision CNNs of the SAGE paper (5 benchmarked + 21 "out of the box").

Table 3 of the paper lists DenseNet, Inception, MobileNet, ResNet, Wide-ResNet, ShuffleNet
and VGG families; VGG is registered with and without batch norm to make up the 26.
Default CAM layer: the output of the last convolutional stage (pre-pooling).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torchvision
from torch import nn
from torchvision.models import get_model_weights

from .registry import BackboneSpec, register_backbone
from .weights import hub_checkpoint_path, load_into, load_state_dict


def _builder(arch: str, classifier: str):
    def build(num_classes: int, pretrained: bool, weights: str | Path | None) -> nn.Module:
        # The auxiliary Inception head only matters for the original training recipe; leaving
        # it out keeps forward() returning plain logits for every backbone (its weights in a
        # file are skipped below). init_weights=False: torchvision's truncated-normal init is
        # slow and the weights are either loaded or trained anyway.
        kwargs = {"aux_logits": False, "init_weights": False} if arch == "inception_v3" else {}
        # The head is built at num_classes directly: loading then keeps a checkpoint's head
        # when its class count fits (load_into), instead of always replacing it.
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        if pretrained or weights is not None:
            if weights is None:
                url = get_model_weights(arch).DEFAULT.url
                weights = hub_checkpoint_path(url)
                hint = (
                    f" (ImageNet weights of {arch}; copy {Path(url).name} from a machine "
                    f"with internet into {weights.parent}, or pass model.weights=PATH)"
                )
                # a new head on ImageNet weights is the usual fine-tuning start: info only
                level = logging.INFO
            else:
                hint, level = "", logging.WARNING
            state = load_state_dict(weights, hint=hint)
            if arch == "inception_v3":
                state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
            load_into(model, state, str(weights), heads=(classifier,), head_log_level=level)
        # In-place ReLUs overwrite the activations that CAM hooks capture; the memory they
        # save is not worth wrong saliency maps.
        for module in model.modules():
            if isinstance(module, nn.ReLU | nn.ReLU6 | nn.Hardswish):
                module.inplace = False
        return model

    return build


# name: (classifier, default CAM layer, stage layers, input size)
_RESNET = ("fc", "layer4", ("layer2", "layer3", "layer4"), 224)
_DENSE = ("classifier", "features.norm5", ("features.denseblock3", "features.norm5"), 224)
_TABLE: dict[str, tuple[str, str, tuple[str, ...], int]] = {
    "densenet121": _DENSE,
    "densenet161": _DENSE,
    "densenet169": _DENSE,
    "densenet201": _DENSE,
    "efficientnet_b0": ("classifier.1", "features.8", ("features.6", "features.8"), 224),
    "inception_v3": ("fc", "Mixed_7c", ("Mixed_6e", "Mixed_7c"), 299),
    "mobilenet_v2": ("classifier.1", "features.18", ("features.14", "features.18"), 224),
    "mobilenet_v3_small": ("classifier.3", "features.12", ("features.8", "features.12"), 224),
    "mobilenet_v3_large": ("classifier.3", "features.16", ("features.12", "features.16"), 224),
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "resnet50": _RESNET,
    "resnet101": _RESNET,
    "resnet152": _RESNET,
    "wide_resnet50_2": _RESNET,
    "wide_resnet101_2": _RESNET,
    "shufflenet_v2_x1_0": ("fc", "conv5", ("stage3", "stage4", "conv5"), 224),
    "squeezenet1_0": ("classifier.1", "features.12", ("features.7", "features.12"), 224),
}
# VGG: the last conv sits before ReLU+MaxPool (and BN in the _bn variants).
for _depth in (11, 13, 16, 19):
    _TABLE[f"vgg{_depth}"] = ("classifier.6", "features.-3", ("features.-3",), 224)
    _TABLE[f"vgg{_depth}_bn"] = ("classifier.6", "features.-4", ("features.-4",), 224)

for _arch, (_cls, _target, _stages, _size) in _TABLE.items():
    register_backbone(
        BackboneSpec(
            name=_arch,
            build=_builder(_arch, _cls),
            input_size=_size,
            classifier=_cls,
            target_layers=(_target,),
            stage_layers=_stages,
            family="torchvision",
        )
    )
