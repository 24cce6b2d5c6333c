"""Every config group composes, and every `_target_` in it instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF_DIR

CONF = Path(CONF_DIR)


def _options(group: str) -> list[str]:
    return sorted(
        str(p.relative_to(CONF / group).with_suffix(""))
        for p in (CONF / group).rglob("*.yaml")
        if not p.name.startswith("_")
    )


@pytest.mark.parametrize("option", _options("dataset"))
def test_every_dataset_composes(compose_cfg, option):
    cfg = compose_cfg("train", [f"dataset={option}"])
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert ds["variant"] == option.split("/")[1]
    assert ds["num_classes"] == 10
    assert {"name", "reader", "mapping", "raw_root", "prepared_root", "split"} <= set(ds)


@pytest.mark.parametrize(
    "group", ["model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "debug"]
)
def test_every_option_of_group_composes_and_instantiates(compose_cfg, group):
    for option in _options(group):
        cfg = compose_cfg("train", [f"{group}={option}"])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        if group in ("optimizer", "scheduler") and cfg[group]:
            assert callable(instantiate(cfg[group]))
        if group == "callbacks":
            for cb in (cfg.callbacks or {}).values():
                instantiate(cb)


def test_prepare_config_composes(compose_cfg):
    cfg = compose_cfg("prepare", ["dataset=synth_driver100/full"])
    assert cfg.dataset.name == "synth-driver100"


def test_run_name_follows_convention(compose_cfg):
    cfg = compose_cfg("train", ["model=resnet18", "dataset=synth_driver100/full"])
    stage, name = cfg.logger.run_name.split("/")
    assert stage.startswith("train-")
    assert name == "resnet18-nc10-synth-driver100-full"
    assert cfg.logger.tracking_uri.startswith("sqlite:///") and cfg.logger.tracking_uri.endswith(
        "outputs/mlflow.db"
    )
