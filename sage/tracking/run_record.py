"""Provenance every SAGE run records in MLflow: config, seed, git commit, model fingerprint.

Lightning's MLFlowLogger logs metrics and checkpoints; this adds what makes a run
reproducible and comparable across a sweep, and the link from a checkpoint back to its run
(:class:`RunLink`) that lets ``ckpt_path=`` resume the same run in the same directory.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger

# checkpoint key holding {"mlflow_run_id", "output_dir"} (plain strings: readable with
# torch.load(weights_only=True), as every SAGE checkpoint is)
RUN_LINK_KEY = "sage_run"


def git_commit(root: str | Path) -> str:
    """HEAD commit of ``root`` (suffixed ``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _flatten(params: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(name, value)`` of the params Lightning's ``log_hyperparams`` makes of ``params``
    (nested keys joined by ``/``; an empty mapping makes none)."""
    for key, value in params.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def log_config(logger: MLFlowLogger, cfg: DictConfig, artifact: str = "config/config.yaml") -> None:
    """Resolved config as params (flattened) and as the YAML artifact ``artifact``.

    A resumed run already holds params, and MLflow refuses to change one (``max_epochs``
    grows on resume): only names the run lacks are logged, and the resumed config is kept
    whole in its own artifact.
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    params: dict[str, Any] = container
    existing = logger.experiment.get_run(logger.run_id).data.params if logger.run_id else {}
    if existing:
        params = {k: v for k, v in _flatten(container) if k not in existing}
    logger.log_hyperparams(params)
    logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(container), artifact)


def set_tags(logger: MLFlowLogger, tags: dict[str, object]) -> None:
    for key, value in tags.items():
        logger.experiment.set_tag(logger.run_id, key, str(value))


def log_file(logger: MLFlowLogger, path: str | Path, artifact_dir: str | None = None) -> None:
    logger.experiment.log_artifact(logger.run_id, str(path), artifact_dir)


class RunLink(pl.Callback):
    """Writes the MLflow run id and the run directory into every checkpoint, so resuming from
    it (``ckpt_path=``) continues that run in that directory: its metric history, its
    checkpoints and the SAGE callback's weight snapshots."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = str(output_dir)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        runs = [lg.run_id for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        if trainer.is_global_zero and runs and runs[0]:
            checkpoint[RUN_LINK_KEY] = {"mlflow_run_id": runs[0], "output_dir": self.output_dir}


def read_run_link(path: str | Path) -> dict[str, str]:
    """The :class:`RunLink` entry of checkpoint ``path`` (empty for checkpoints without one).

    Memory-mapped: only the small entry is read, not the weights and optimizer state.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    link = ckpt.get(RUN_LINK_KEY) if isinstance(ckpt, dict) else None
    return dict(link) if isinstance(link, dict) else {}
