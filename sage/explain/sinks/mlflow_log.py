"""The explain run's MLflow record: params, tags, finite metrics, config and the directory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ...tracking.run_record import git_commit
from ...tracking.store import experiment_for


def log_explain_run(
    cfg: DictConfig,
    out: Path,
    model_id: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
) -> str:
    """Log ``out`` as the artifacts ``explain/`` of a run ``explain-<time>/<model_id>``;
    return the run id. Non-finite metrics (an empty correct/error split) are left out."""
    run_name = f"explain-{time.strftime('%Y%m%d-%H%M%S')}/{model_id}"
    with mlflow.start_run(experiment_id=experiment_for(cfg.logger), run_name=run_name) as active:
        mlflow.log_params(dict(params))
        mlflow.set_tags(
            {"stage": "explain", "git_commit": git_commit(cfg.paths.root_dir), **dict(tags)}
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_artifacts(str(out), artifact_path="explain")
        return active.info.run_id
