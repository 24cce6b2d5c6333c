"""A checkpoint and the prepared data it is explained on: shared by ``explain.py``'s modes.

``explain.py`` (maps) and ``explain.py mode=neurons`` both start here; keeping it out of
:mod:`sage.explain` lets :mod:`sage.neurons` use it without importing the explain task.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..data.ensure import ensure_prepared
from ..data.prepared import PreparedDataset
from ..errors import SageError
from ..tracking.checkpoints import resolve_checkpoint
from .classifier import load_classifier


def trained_on(hparams: dict, ckpt: Path) -> PreparedDataset:
    """The prepared dataset checkpoint ``ckpt`` was trained on (recorded in the checkpoint)."""
    root = hparams.get("prepared_dataset")
    if not root:
        raise SageError(
            f"checkpoint {ckpt} does not record the data it was trained on (made before SAGE "
            "recorded it); name the data: dataset=<config>, e.g. dataset=synth_sf3d/full"
        )
    if not Path(root).is_dir():
        raise SageError(
            f"the data checkpoint {ckpt} was trained on, {root}, is gone; prepare it again "
            "and name it: dataset=<config>"
        )
    return PreparedDataset.open(root)


def load_checkpoint_and_data(
    cfg: DictConfig, out: Path
) -> tuple[Path, str, torch.nn.Module, dict, dict, PreparedDataset]:
    """``(ckpt, model_run, net, hparams, dataset config, PreparedDataset)`` for
    ``cfg.checkpoint`` on ``cfg.dataset``, or when no ``dataset=`` is given on the exact
    prepared data the checkpoint was trained on; the classes must match (every mode)."""
    if not cfg.get("checkpoint"):
        raise SageError("explain needs checkpoint=<path to .ckpt or MLflow run id>")
    ckpt, model_run = resolve_checkpoint(
        str(cfg.checkpoint),
        cfg.logger.tracking_uri,
        cfg.checkpoint_select,
        out / "checkpoint",
        cfg.logger.experiment_name,
    )
    net, hparams = load_classifier(ckpt)
    if cfg.get("dataset"):
        ds = OmegaConf.to_container(cfg.dataset, resolve=True)
        data = PreparedDataset.open(ensure_prepared(ds))
    else:
        data = trained_on(hparams, ckpt)
        ds = {"name": data.summary.get("dataset", data.root.name), **data.summary.get("config", {})}
        ds["variant"] = data.summary.get("variant", ds.get("variant"))
    if data.classes != list(hparams["class_names"]):
        raise SageError(
            f"checkpoint classes {hparams['class_names']} differ from {data.root}'s {data.classes}"
        )
    return ckpt, model_run, net, hparams, ds, data
