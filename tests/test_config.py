"""Every config group composes, and every `_target_` in it instantiates."""

from __future__ import annotations

import re
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
    # a folder dataset has no default root, and counts its classes there (tests/test_own_data.py)
    own = (
        ["dataset.root=/data/own", "dataset.num_classes=10"] if option.startswith("folder/") else []
    )
    cfg = compose_cfg("train", [f"dataset={option}", *own])
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert ds["variant"] == option.split("/")[1]
    assert ds["num_classes"] == 10
    assert {"name", "reader", "mapping", "raw_root", "prepared_root", "split"} <= set(ds)


def test_every_registered_backbone_is_a_model_option(compose_cfg):
    """The README lists the registry: each entry is selectable as ``model=<name>``."""
    from sage.models import list_backbones

    assert set(list_backbones()) <= set(_options("model"))
    for name in list_backbones():
        model = compose_cfg("train", [f"model={name}"]).model
        assert model.name == name and model.pretrained is False and model.weights is None


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
    # model and variant first: the MLflow UI's run-name column shows about 20 characters
    model_variant, data, stage = cfg.logger.run_name.split("/")
    assert (model_variant, data) == ("resnet18-full", "synth-driver100-nc10")
    assert re.fullmatch(r"train-\d{8}-\d{6}", stage)
    assert cfg.logger.tracking_uri.startswith("sqlite:///") and cfg.logger.tracking_uri.endswith(
        "outputs/mlflow.db"
    )


def test_two_runs_started_in_the_same_second_get_their_own_directory(tmp_path, monkeypatch):
    """hydra.run.dir = timestamp + pid + random: same-second runs (separate processes) never
    share a folder (they used to share checkpoints, figures and the COSE weight snapshots);
    within one process tree (DDP ranks re-running train.py) the folder is stable."""
    from hydra import compose, initialize_config_dir

    import sage.cli  # noqa: F401  (registers the resolvers, as the entry points do)

    monkeypatch.delenv("SAGE_RUN_SUFFIX", raising=False)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", [f"paths.root_dir={tmp_path}"], return_hydra_config=True)
    a, again = (str(OmegaConf.select(cfg, "hydra.run.dir")) for _ in range(2))
    assert a == again  # a DDP rank resolving it again finds the same folder
    monkeypatch.delenv("SAGE_RUN_SUFFIX")  # what another process sees
    b = str(OmegaConf.select(cfg, "hydra.run.dir"))
    assert a != b
    assert a.rsplit("_", 1)[0] == b.rsplit("_", 1)[0]  # same second, different suffix
    assert a.startswith(f"{tmp_path}/outputs/runs/train/")
    monkeypatch.delenv("SAGE_RUN_SUFFIX")
