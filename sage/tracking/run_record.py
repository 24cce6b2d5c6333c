"""Provenance every SAGE run records in MLflow: config, seed, code version, model fingerprint.

Lightning's MLFlowLogger logs metrics and checkpoints; this adds what makes a run
reproducible and comparable across a sweep, and the link from a checkpoint back to its run
(:class:`RunLink`) that lets ``ckpt_path=`` resume the same run in the same directory.
"""

from __future__ import annotations

import importlib.metadata
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


def source_checkout() -> Path | None:
    """The git checkout the running ``sage`` package was imported from, or None when it runs
    from an installed wheel (site-packages). Decided from the package's own location: the
    working directory (or ``SAGE_ROOT``) may well be some other repository."""
    root = Path(__file__).resolve().parents[2]
    # a worktree or submodule has a .git file rather than a folder
    if (root / ".git").exists() and (root / "pyproject.toml").is_file():
        return root
    return None


def sage_version() -> str:
    """Version of the installed ``sage`` distribution (an editable install has one too), or
    ``unknown`` for a checkout used without installing."""
    try:
        return importlib.metadata.version("sage")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_commit(root: str | Path | None = None) -> str:
    """HEAD commit of ``root`` (suffixed ``-dirty`` with uncommitted changes), or ``unknown``.

    ``root`` defaults to the checkout the code runs from (:func:`source_checkout`); tasks
    should prefer :func:`code_version`, which also works for an installed package.
    """
    if root is None:
        root = source_checkout()
        if root is None:
            return "unknown"
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


def code_version() -> dict[str, str]:
    """The provenance tags of the code itself: ``sage_version`` always, ``git_commit`` only
    when the package runs from a git checkout (an installed wheel has no commit to read)."""
    tags = {"sage_version": sage_version()}
    if source_checkout() is not None:
        tags["git_commit"] = git_commit()
    return tags


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
