"""Any timm model as ``timm/<name>``: its facts come from timm's pretrained config.

Default CAM layer: ``blocks.-1.norm1`` for ViT-like token models (with a reshape transform
derived from the model) and the last ``feature_info`` stage for CNNs. Pretrained weights
come from the local Hugging Face cache (offline) or ``model.weights=PATH``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import timm
import torch
from torch import nn

from .registry import BackboneSpec, register_prefix
from .token_reshape import vit_reshape_transform
from .weights import MissingWeightsError, load_into, load_state_dict


def _is_token_model(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def _builder(name: str):
    def build(num_classes: int, pretrained: bool, weights: str | Path | None) -> nn.Module:
        if weights is not None:
            model = timm.create_model(name, pretrained=False)
            load_into(model, load_state_dict(weights), str(weights))
            model.reset_classifier(num_classes)
            return model
        if not pretrained:
            return timm.create_model(name, pretrained=False, num_classes=num_classes)
        # No network here: only the local Hugging Face cache is consulted.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes)
        except Exception as err:  # timm raises several types for a cache miss
            hub_id = timm.models.get_pretrained_cfg(name)
            where = getattr(hub_id, "hf_hub_id", None) or name
            raise MissingWeightsError(
                f"pretrained weights for timm model {name!r} ({where}) are not in the local "
                f"Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}); "
                f"copy them there or pass model.weights=PATH ({err.__class__.__name__})"
            ) from err

    return build


@cache
def timm_spec(name: str) -> BackboneSpec:
    """Build the spec of timm model ``name`` by inspecting it on the meta device (no memory)."""
    if name not in timm.list_models():
        raise KeyError(f"unknown timm model {name!r}")
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg
    if _is_token_model(model):
        target, stages, family = "blocks.-1.norm1", ("blocks.-2.norm1", "blocks.-1.norm1"), "vit"
        reshape = vit_reshape_transform
    else:
        info = model.feature_info
        target, family, reshape = info[-1]["module"], "timm-cnn", None
        stages = tuple(f["module"] for f in info[-3:])
    return BackboneSpec(
        name=f"timm/{name}",
        build=_builder(name),
        input_size=int(cfg["input_size"][-1]),
        classifier=cfg.get("classifier", "head"),
        target_layers=(target,),
        stage_layers=stages,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        family=family,
        reshape_transform=reshape,
    )


register_prefix("timm", timm_spec)
