"""The explain run's MLflow record: name, params, tags, headline scalars, config, directory.

The run is named after the explained model, as its training run is:
``<model>-<variant>/<dataset>-nc<classes>/explain-<time>``, where dataset and variant are the
model's training data (read from its training run, ``model_run``), which need not be the
explained data. It is tagged with that identity (``model``, ``dataset``, ``variant``,
``num_classes``) plus the explained data (``explained_dataset``, ``explained_variant``).
Params share the training run's keys where they mean the same (``backbone``,
``dataset/name`` and ``dataset/variant`` of the data the run worked on, ``seed``).
Scalars are the headline numbers; the breakdowns (per part, per pair of methods, ...;
:mod:`sage.tracking.breakdowns`) go to ``breakdowns.csv`` unless ``tracking.breakdowns=true``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ...data.prepared import PreparedDataset
from ...tracking.breakdowns import split_breakdowns, write_breakdowns
from ...tracking.console import model_tags, run_name
from ...tracking.run_record import code_version
from ...tracking.store import experiment_for

# explain's own param names -> the training run's names for the same thing
PARAM_KEYS = {"dataset": "dataset/name", "variant": "dataset/variant"}
IDENTITY = ("model", "dataset", "variant", "num_classes")


def trained_identity(
    client: mlflow.MlflowClient, model_id: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> dict[str, str]:
    """The explained model's ``model``/``dataset``/``variant``/``num_classes``: its training
    run's tags (``tags["model_run"]``), else the backbone, the explained data and the class
    count of ``model_id`` (a checkpoint without a run, a pretrained model)."""
    run_id = tags.get("model_run")
    if run_id:
        try:
            trained = client.get_run(run_id).data.tags
        except mlflow.exceptions.MlflowException:  # a run of another store, or deleted
            trained = {}
        if all(k in trained for k in IDENTITY):
            return {k: trained[k] for k in IDENTITY}
    classes = re.search(r"-nc(\d+)", model_id)
    return model_tags(
        params.get("backbone", model_id),
        params.get("dataset"),
        params.get("variant"),
        classes.group(1) if classes else "unknown",
    )


def _part_names(tags: Mapping[str, str]) -> list[str]:
    """Named regions of the explained prepared data, if any (images= has none)."""
    root = tags.get("prepared_dataset")
    if not root or not Path(root).is_dir():
        return []
    return list(PreparedDataset.open(root).part_names.values())


def log_explain_run(
    cfg: DictConfig,
    out: Path,
    model_id: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    started_ms: int | None = None,
) -> str:
    """Log ``out`` as the artifacts ``explain/`` of a run named after the explained model
    (:func:`trained_identity`; ``model_id`` is its fallback); return the run id. Non-finite
    metrics (an empty correct/error split) are left out; breakdowns go to
    ``out/breakdowns.csv``."""
    finite = {k: v for k, v in metrics.items() if np.isfinite(v)}
    headline, breakdowns = split_breakdowns(finite, _part_names(tags))
    if breakdowns:
        write_breakdowns(out / "breakdowns.csv", breakdowns)
    if (cfg.get("tracking") or {}).get("breakdowns"):
        headline = finite
    exp_id = experiment_for(cfg.logger)
    client = mlflow.MlflowClient()
    identity = trained_identity(client, model_id, params, tags)
    explained = {
        "explained_dataset": str(params.get("dataset") or params.get("images") or "unknown"),
        "explained_variant": str(params.get("variant") or "none"),
    }
    name = run_name(
        identity["model"],
        identity["variant"],
        identity["dataset"],
        identity["num_classes"],
        "explain",
    )
    # The run is created with the task's start time (the work happens before logging), so the
    # UI's duration is the explain run's real wall time, not the few ms of the upload.
    created = client.create_run(exp_id, start_time=started_ms, run_name=name)
    with mlflow.start_run(run_id=created.info.run_id) as active:
        mlflow.log_params({PARAM_KEYS.get(k, k): v for k, v in params.items()})
        mlflow.set_tags(
            {"stage": "explain", **code_version(), **identity, **explained, **dict(tags)}
        )
        mlflow.log_metrics(headline)
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_artifacts(str(out), artifact_path="explain")
        return active.info.run_id
