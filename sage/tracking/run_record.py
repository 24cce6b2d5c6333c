"""Provenance every SAGE run records in MLflow: config, seed, git commit, model fingerprint.

Lightning's MLFlowLogger logs metrics and checkpoints; this adds what makes a run
reproducible and comparable across a sweep.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger


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


def log_config(logger: MLFlowLogger, cfg: DictConfig) -> None:
    """Resolved config as params (flattened) and as ``config/config.yaml``."""
    container = OmegaConf.to_container(cfg, resolve=True)
    logger.log_hyperparams(container)
    logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(container), "config/config.yaml")


def set_tags(logger: MLFlowLogger, tags: dict[str, object]) -> None:
    for key, value in tags.items():
        logger.experiment.set_tag(logger.run_id, key, str(value))


def log_file(logger: MLFlowLogger, path: str | Path, artifact_dir: str | None = None) -> None:
    logger.experiment.log_artifact(logger.run_id, str(path), artifact_dir)
