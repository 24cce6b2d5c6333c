"""Find a checkpoint: a file path, or the best/last checkpoint of an MLflow training run."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow

from ..errors import SageError

RUN_ID = re.compile(r"^(?:runs:/)?([0-9a-f]{32})/?$")


def latest_training_run(tracking_uri: str, experiment: str) -> str:
    """Id of the most recent finished training run of ``experiment``."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = (
        []
        if exp is None
        else client.search_runs(
            [exp.experiment_id],
            "tags.stage = 'train' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not runs:
        raise SageError(
            f"no finished training run in MLflow experiment {experiment!r} ({tracking_uri})"
        )
    return runs[0].info.run_id


def resolve_checkpoint(
    ref: str,
    tracking_uri: str,
    which: str = "best",
    dst: str | Path | None = None,
    experiment: str = "sage",
) -> tuple[Path, str]:
    """``(checkpoint path, model_run)`` for a path, an MLflow run id (``runs:/<id>`` too) or
    ``latest`` (the newest finished training run of ``experiment``).

    ``model_run`` is the training run id, or the checkpoint file stem for a plain path.
    """
    if which not in ("best", "last"):
        raise SageError(f"checkpoint selection must be 'best' or 'last', got {which!r}")
    if ref == "latest":
        ref = latest_training_run(tracking_uri, experiment)
    match = RUN_ID.match(str(ref))
    if match is None:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise SageError(
                f"checkpoint {path} does not exist (give a .ckpt path or an MLflow run id)"
            )
        return path, path.stem
    run_id = match.group(1)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        artifacts = [a.path for a in client.list_artifacts(run_id)]
    except mlflow.exceptions.MlflowException as err:
        raise SageError(f"MLflow run {run_id} not found in {tracking_uri}") from err
    prefix = "best-" if which == "best" else "last"
    candidates = sorted(a for a in artifacts if a.startswith(prefix))
    if not candidates:
        raise SageError(f"MLflow run {run_id} has no {which} checkpoint (artifacts: {artifacts})")
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=candidates[-1],
        tracking_uri=tracking_uri,
        dst_path=str(dst) if dst else None,
    )
    ckpts = sorted(Path(local).rglob("*.ckpt"))
    if not ckpts:
        raise SageError(f"artifact {candidates[-1]} of run {run_id} holds no .ckpt file")
    return ckpts[0], run_id
