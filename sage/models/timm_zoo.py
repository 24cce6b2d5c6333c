"""Any timm model as ``timm/<name>``: its facts come from timm's pretrained config.

Default CAM layer: ``blocks.-1.norm1`` for ViT-like token models (with a reshape transform
derived from the model) and the last ``feature_info`` stage for CNNs. Token models that
support it are built with ``dynamic_img_size``: one network (and one state dict) for every
``model.input_size`` — ``input_size=96`` gives a 6x6 token grid for 16-pixel patches, with
the position embedding resampled as timm does for ``img_size=96`` — so checkpoints reload
and pretrained weights load whatever size a run used.

Pretrained weights come from the local Hugging Face cache (or the torch hub cache for timm
models without a hub id) or ``model.weights=PATH``, never from the network: the file is
looked up here and handed to timm as a local file, and a missing one is a
:class:`MissingWeightsError` naming where it was expected, at once (timm would otherwise
retry the hub for about a minute).
"""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import unknown_name
from .registry import BackboneSpec, register_prefix
from .token_reshape import vit_reshape_transform
from .weights import (
    MissingWeightsError,
    hub_checkpoint_path,
    load_into,
    load_state_dict,
)

log = logging.getLogger(__name__)


def _is_token_model(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved as huggingface_hub does but at call time (its
    own constant is fixed at import, before a test or a job script may set HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("HF_HOME") or Path(xdg) / "huggingface").expanduser() / "hub"


def pretrained_file(name: str) -> tuple[Path, dict]:
    """The local file holding timm model ``name``'s pretrained weights and the pretrained-config
    overlay that makes timm load it; a :class:`MissingWeightsError` naming the expected file
    when it is not on disk. Reads the disk only."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise MissingWeightsError(f"timm model {name!r} has no pretrained weights")
    fix = " Copy them from a machine with internet or pass model.weights=PATH."
    if cfg.hf_hub_id:
        cache_dir = hf_hub_cache()
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors"]
        if not cfg.hf_hub_filename:
            names.append("pytorch_model.bin")  # timm's fallback for older uploads
        for filename in names:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache_dir)
            if isinstance(found, str):
                # a hub file is a plain state dict: timm's custom (npz) loader is for cfg.url
                return Path(found), {"file": found, "custom_load": False}
        repo = cache_dir / f"models--{cfg.hf_hub_id.replace('/', '--')}"
        raise MissingWeightsError(
            f"pretrained weights of timm model {name!r} are not in the local Hugging Face "
            f"cache: expected {repo}/snapshots/<revision>/{names[0]} (hub id "
            f"{cfg.hf_hub_id}; HF_HOME or HF_HUB_CACHE move the cache).{fix}"
        )
    if cfg.url:
        path = hub_checkpoint_path(cfg.url)
        if path.is_file():
            return path, {"file": str(path)}
        raise MissingWeightsError(
            f"pretrained weights of timm model {name!r} are not in the torch hub cache: "
            f"expected {path}.{fix}"
        )
    raise MissingWeightsError(f"timm model {name!r} has no pretrained weights")


def _builder(name: str, extra: dict):
    """``extra``: keyword arguments for every create_model call (``dynamic_img_size``)."""

    def build(num_classes: int, pretrained: bool, weights: str | Path | None) -> nn.Module:
        if weights is not None:
            model = timm.create_model(name, pretrained=False, num_classes=num_classes, **extra)
            heads = model.pretrained_cfg.get("classifier") or ()
            heads = (heads,) if isinstance(heads, str) else tuple(heads)
            load_into(model, load_state_dict(weights), str(weights), heads=heads)
            return model
        if not pretrained:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **extra)
        path, overlay = pretrained_file(name)
        model = timm.create_model(
            name,
            pretrained=True,
            num_classes=num_classes,
            pretrained_cfg_overlay=overlay,
            **extra,
        )
        n_file = model.pretrained_cfg.get("num_classes")
        if n_file != num_classes:
            # timm drops a head of another class count silently; say so, as load_into does
            log.info(
                "pretrained %s (%s): classifier %r has %s classes, the model %s: it is "
                "replaced by a new %s-way head (random init)",
                name,
                path,
                model.pretrained_cfg.get("classifier"),
                n_file,
                num_classes,
                num_classes,
            )
        return model

    return build


@cache
def timm_spec(name: str) -> BackboneSpec:
    """Build the spec of timm model ``name`` by inspecting it on the meta device (no memory)."""
    if name not in timm.list_models():
        family = timm.list_models(name.split("_")[0] + "*")  # e.g. vit_*: shorter to list
        raise unknown_name("timm model", name, family or timm.list_models())
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg
    extra: dict = {}
    if _is_token_model(model):
        target, stages, family = "blocks.-1.norm1", ("blocks.-2.norm1", "blocks.-1.norm1"), "vit"
        reshape = vit_reshape_transform
        try:  # any input size (model.input_size); not every token model supports it
            with torch.device("meta"):
                timm.create_model(name, pretrained=False, dynamic_img_size=True)
            extra = {"dynamic_img_size": True}
        except TypeError:
            pass
    else:
        info = model.feature_info
        target, family, reshape = info[-1]["module"], "timm-cnn", None
        stages = tuple(f["module"] for f in info[-3:])
    return BackboneSpec(
        name=f"timm/{name}",
        build=_builder(name, extra),
        input_size=int(cfg["input_size"][-1]),
        classifier=cfg.get("classifier", "head"),
        target_layers=(target,),
        stage_layers=stages,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        family=family,
        reshape_transform=reshape,
        tags={"dynamic_img_size": str(bool(extra)).lower()},
    )


register_prefix("timm", timm_spec)
