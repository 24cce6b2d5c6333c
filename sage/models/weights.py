"""Local pretrained weights: the torch hub cache or an explicit file, never the network.

This machine (and CI) has no internet, and users on clusters often have none either, so
pretrained weights are looked up where torchvision/timm would have cached them and a
missing file is an error that names the path expected and how to fill it.

Loading keeps every weight that fits. The classifier head is kept too when its class count
is the model's: replacing it unconditionally used to give a MobileNetV2 loaded with its own
1000-class weights a random head, and wrong predictions. Only a head with another class
count is replaced by a fresh one, and the log says so; anything else that does not fit (a
file of another architecture) is one :class:`WeightsMismatchError` naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import MissingWeightsError, SageError
from .registry import resolve_layers

log = logging.getLogger(__name__)


class WeightsMismatchError(SageError, ValueError):
    """A weights file whose tensors do not fit the backbone (e.g. another architecture)."""


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` would cache ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def load_state_dict(path: str | Path, *, hint: str = "") -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``); unwraps Lightning checkpoints."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} does not exist{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors: not a torch weights file
        raise WeightsMismatchError(
            f"weights file {path} cannot be read as a torch state dict ({err.__class__.__name__})"
        ) from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise WeightsMismatchError(
            f"{path} does not hold a state dict (found {type(state).__name__})"
        )
    # A SAGE classifier checkpoint keeps the network under "net." (ClassifierModule.net)
    if any(k.startswith("net.") for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    return state


def _module_name(model: nn.Module, path: str) -> str:
    """The state-dict prefix of the module at ``path`` (``features.-3`` -> ``features.28``)."""
    target = resolve_layers(model, [path])[0]
    return next(name for name, module in model.named_modules() if module is target)


def _examples(keys: Sequence[str], n: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_into(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    heads: Sequence[str] = (),
    head_log_level: int = logging.WARNING,
) -> None:
    """Load ``state`` into ``model``: every tensor must fit, except the classifier ``heads``
    (dotted module paths) when only their class count differs; those keep the model's fresh
    head and the log names the head and both class counts (at ``head_log_level``). A head
    missing from ``state`` (a headless checkpoint) is also left fresh, and logged.
    Anything else that does not fit is a :class:`WeightsMismatchError` naming ``source``.
    """
    own = model.state_dict()
    state = dict(state)
    notes = []  # head messages, logged only once the rest is known to fit
    prefixes = {path: _module_name(model, path) + "." for path in heads}
    for path, prefix in prefixes.items():
        model_keys = [k for k in own if k.startswith(prefix)]
        file_keys = [k for k in state if k.startswith(prefix)]
        n_model = own[prefix + "weight"].shape[0] if prefix + "weight" in own else None
        if not file_keys:
            notes.append(
                f"weights {source} hold no classifier {path!r}: it is a new {n_model}-way head"
            )
            continue
        if sorted(file_keys) != sorted(model_keys):
            continue  # not a head of the same kind: reported below as a mismatch
        same = all(state[k].shape == own[k].shape for k in model_keys)
        # only the class count (the first dimension of every head tensor) may differ
        only_classes = all(state[k].shape[1:] == own[k].shape[1:] for k in model_keys)
        if only_classes and not same:
            n_file = state[prefix + "weight"].shape[0] if prefix + "weight" in state else "?"
            notes.append(
                f"weights {source}: classifier {path!r} has {n_file} classes, the model "
                f"{n_model}: it is replaced by a new {n_model}-way head (random init); every "
                "other weight is loaded"
            )
            for k in file_keys:
                del state[k]
    wrong_shape = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    in_head = tuple(prefixes.values())
    missing = [k for k in own if k not in state and not k.startswith(in_head)]
    unexpected = [k for k in state if k not in own]
    if wrong_shape or missing or unexpected:
        parts = [
            f"{len(keys)} {what} (e.g. {_examples(keys)})"
            for what, keys in (
                ("tensors of another shape (file vs model)", wrong_shape),
                ("model tensors missing from the file", missing),
                ("file tensors the model does not have", unexpected),
            )
            if keys
        ]
        raise WeightsMismatchError(
            f"weights {source} do not fit {type(model).__name__}: {'; '.join(parts)}. "
            "Is it a checkpoint of another architecture?"
        )
    for note in notes:
        log.log(head_log_level, note)
    model.load_state_dict(state, strict=False)  # only the fresh heads are left out
