"""Local pretrained weights: the torch hub cache or an explicit file, never the network.

This machine (and CI) has no internet, and users on clusters often have none either, so
pretrained weights are looked up where torchvision/timm would have cached them and a
missing file is an error that names the path expected and how to fill it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights requested but not on disk."""


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` would cache ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def load_state_dict(path: str | Path, *, hint: str = "") -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``); unwraps Lightning checkpoints."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} does not exist{hint}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, with an error that names the mismatch."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even with strict=False
        raise ValueError(f"weights {source} do not fit {type(model).__name__}: {err}") from err
    if missing or unexpected:
        raise ValueError(
            f"weights {source} do not fit {type(model).__name__}: "
            f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )
