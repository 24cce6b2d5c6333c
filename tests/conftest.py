"""Shared fixtures: configs composed from the real conf/ tree, pointed at tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from sage.compose import CONF_DIR, compose_task  # noqa: F401  (CONF_DIR re-exported)

# Small enough for seconds, big enough that every split of every class is populated.
TINY_SYNTH = [
    "dataset.synth.images_per_class=5",
    "dataset.synth.size=64",
    "dataset.synth.n_subjects=5",
]


def compose_config(name: str, root: Path, overrides: list[str] = ()) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with every output under ``root``."""
    return compose_task(name, [f"paths.root_dir={root}", *overrides], output_dir=f"{root}/run")


@pytest.fixture
def compose_cfg(tmp_path: Path):
    def _compose(name: str = "train", overrides: list[str] = ()) -> DictConfig:
        return compose_config(name, tmp_path, list(overrides))

    return _compose


@pytest.fixture
def gc_zero_noise(monkeypatch):
    """grad-cam's ROAD with its imputation noise forced to 0: its ROAD classes build the imputer
    with the default noise=0.01 internally, so the module global is swapped."""
    from pytorch_grad_cam.metrics import road as gc_road

    class ZeroNoiseImputer(gc_road.NoisyLinearImputer):
        def __init__(self, noise: float = 0.01, weighting=None) -> None:
            super().__init__(noise=0.0)

    monkeypatch.setattr(gc_road, "NoisyLinearImputer", ZeroNoiseImputer)
