"""Shared fixtures: configs composed from the real conf/ tree, pointed at tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import sage.cli  # noqa: F401  (registers the ${sage_root:} resolver)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Small enough for seconds, big enough that every split of every class is populated.
TINY_SYNTH = [
    "dataset.synth.images_per_class=5",
    "dataset.synth.size=64",
    "dataset.synth.n_subjects=5",
]


def compose_config(name: str, root: Path, overrides: list[str] = ()) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with every output under ``root``."""
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(
            name,
            overrides=[f"paths.root_dir={root}", f"paths.output_dir={root}/run", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def compose_cfg(tmp_path: Path):
    def _compose(name: str = "train", overrides: list[str] = ()) -> DictConfig:
        return compose_config(name, tmp_path, list(overrides))

    return _compose
