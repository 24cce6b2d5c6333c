"""The MLflow store and experiment, created once even when parallel jobs start together.

A fresh SQLite store is created on first use: MLflow runs its schema migrations when a client
opens a database without tables, and two sweep jobs doing that at the same moment collide
(alembic ``CommandError: Online migration expected to match one row``); both would then also
create the experiment, and one of them fails on the unique name. :func:`prepare_experiment`
serialises that first use with a file lock next to the database (local SQLite), and treats an
experiment created concurrently by another job (any store, including a tracking server) as
found. Runs themselves never collide: each job writes its own run id and artifact directory.

Opening a store is also where a command looks for runs left RUNNING by a dead process of this
host and marks them FAILED (:func:`sage.tracking.liveness.sweep_once`, once per process).

Against a tracking server (``http(s)://``) the experiment is created without the config's
local ``artifact_location``: the server decides where artifacts go (``mlflow server
--serve-artifacts --artifacts-destination ...``), so clients on other machines upload to it
instead of to a path on their own disk.

Every experiment SAGE uses is tagged ``mlflow.experimentKind = custom_model_development``:
without it MLflow 3's UI guesses the kind and opens an experiment on its GenAI pages (traces,
evaluations) instead of the runs table where training, evaluation and explanation runs are
compared. An experiment that already carries a kind (chosen in the UI) keeps it.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException

from .liveness import sweep_once

# MLflow 3's UI reads this experiment tag to choose between its GenAI and model-training
# views (values of its ExperimentKind: genai_development, custom_model_development, ...)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _store_lock(tracking_uri: str) -> AbstractContextManager:
    db = sqlite_path(tracking_uri)
    if db is None:
        return nullcontext()  # servers and other databases serialise their own schema setup
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock", timeout=300)


def prepare_experiment(
    tracking_uri: str, name: str, artifact_location: str | None = None, attempts: int = 5
) -> str:
    """Id of experiment ``name`` in ``tracking_uri``, creating the store and experiment if needed.

    Safe to call from many processes at once; cheap when both already exist. The first call
    of a process for a store also marks the store's dead runs of this host FAILED.
    """
    experiment_id = _ensure_experiment(tracking_uri, name, artifact_location, attempts)
    sweep_once(tracking_uri)
    return experiment_id


def _ensure_experiment(
    tracking_uri: str, name: str, artifact_location: str | None, attempts: int
) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        artifact_location = None
    with _store_lock(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)  # creates/migrates tables
        for attempt in range(attempts):
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                if EXPERIMENT_KIND_TAG not in exp.tags:  # created before SAGE tagged the kind
                    _set_kind(client, exp.experiment_id)
                return exp.experiment_id
            try:
                return client.create_experiment(
                    name,
                    artifact_location=artifact_location,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            except MlflowException as err:
                # another job created it between our lookup and create: look it up again
                if attempt == attempts - 1:
                    raise
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _set_kind(client: mlflow.MlflowClient, experiment_id: str) -> None:
    """Tag an existing experiment with SAGE's kind; only the UI's first view depends on it, so
    a store that refuses the write (a read-only server account) is no reason to stop."""
    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except MlflowException as err:
        print(f"warning: could not tag experiment {experiment_id}: {err}", file=sys.stderr)


def experiment_for(logger_cfg: Any) -> str:
    """Id of the run-config's MLflow experiment (``logger.tracking_uri``, ``experiment_name``,
    ``artifact_location``), created safely if needed; also makes it the active tracking URI."""
    mlflow.set_tracking_uri(logger_cfg.tracking_uri)
    return prepare_experiment(
        logger_cfg.tracking_uri, logger_cfg.experiment_name, logger_cfg.get("artifact_location")
    )
