"""Training task: ``run(cfg)`` trains one classifier on one prepared dataset, tracked in MLflow.

Called by the thin ``train.py`` Hydra entry point; tests call it directly with composed
configs. Returns the final metrics so sweeps and tests can read them without MLflow.

Run integrity:

- the callbacks and the trainer are built before the MLflow run exists, so a config error
  (``callbacks.sage.*``, ``trainer.*``) is one error line and leaves no run behind;
- every checkpoint names its MLflow run and run directory (:class:`RunLink`): resuming with
  ``ckpt_path=<checkpoint>`` continues that run (same run id, metric steps continuing) in that
  directory (its checkpoints and the SAGE callback's weight snapshots), with the resumed config
  logged as ``config/resume-<n>.yaml``;
- a failure anywhere after the run is created closes it as FAILED with a ``sage.error`` tag.

Console: the libraries' known noise (Lightning tips and device banners, a torch deprecation
warning) is silenced by :mod:`sage.quiet` (``SAGE_VERBOSE=1`` or ``+verbose=true`` shows it),
and a finished run ends with its MLflow run id, its output directory and how to open it.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from .data.datamodule import PreparedDataModule
from .data.ensure import ensure_prepared
from .errors import SageError
from .models import create_backbone, get_backbone_spec
from .models.fingerprint import count_parameters, model_fingerprint
from .plots.confusion import plot_confusion
from .quiet import quiet_known_noise
from .tracking.console import where_to_look
from .tracking.liveness import PID_TAG, claim_run, owner_alive
from .tracking.run_record import (
    RunLink,
    code_version,
    log_config,
    log_file,
    read_run_link,
    set_tags,
)
from .tracking.store import prepare_experiment
from .training.classifier import ClassifierModule
from .training.distributed import check_launch, unrepeated_loader

# Lightning's own ckpt_path values (not files): passed through, no run to continue
_LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
RESUMES_TAG = "sage.resumes"


def _class_weights(dm: PreparedDataModule, mode: str | None) -> list[float] | None:
    if mode is None:
        return None
    if mode != "balanced":
        raise SageError(f"loss.class_weights must be null or 'balanced', got {mode!r}")
    labels = torch.as_tensor(dm.dataset("train").frame["label"].to_numpy())
    counts = torch.bincount(labels, minlength=len(dm.classes)).clamp(min=1).float()
    return (counts.sum() / (len(counts) * counts)).tolist()


def build_datamodule(cfg: DictConfig) -> PreparedDataModule:
    """The datamodule of ``cfg.dataset`` at the model's input size (prepares SynthDrivers)."""
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    spec = get_backbone_spec(cfg.model.name)
    size = int(cfg.model.get("input_size") or spec.input_size)
    dm = PreparedDataModule(ensure_prepared(ds), size, spec.mean, spec.std, **cfg.data)
    if len(dm.classes) != int(cfg.dataset.num_classes):
        raise SageError(
            f"dataset.num_classes={cfg.dataset.num_classes} but {dm.data.root} has "
            f"{len(dm.classes)} classes"
        )
    return dm


@dataclass(frozen=True)
class _Resume:
    """Where ``ckpt_path=`` came from: its MLflow run and run directory (when recorded)."""

    checkpoint: Path
    run_id: str | None
    output_dir: Path | None


def _resume_point(cfg: DictConfig) -> _Resume | None:
    ref = cfg.get("ckpt_path")
    if not ref or str(ref) in _LIGHTNING_CKPT_NAMES or str(ref).startswith("registry"):
        return None
    path = Path(str(ref)).expanduser()
    if not path.is_file():
        raise SageError(f"ckpt_path {path} does not exist")
    link = read_run_link(path)
    out = Path(link["output_dir"]) if link.get("output_dir") else None
    if out is not None and not out.is_dir():
        _note(f"run directory {out} of {path} is gone: resuming in a new directory")
        out = None
    return _Resume(path, link.get("mlflow_run_id"), out)


def _note(message: str) -> None:
    if rank_zero_only.rank == 0:
        print(f"note: {message}", file=sys.stderr)


def _resumable_run(tracking_uri: str | None, resume: _Resume) -> str | None:
    """The checkpoint's MLflow run when this store holds it; None: resume in a new run."""
    if resume.run_id is None:
        _note(f"{resume.checkpoint} names no MLflow run (saved before runs were linked)")
        return None
    try:
        run = mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(resume.run_id)
    except MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        _note(f"MLflow run {resume.run_id} of {resume.checkpoint} is not in {tracking_uri}")
        return None
    return run.info.run_id


def _take_over(tracking_uri: str | None, run_id: str) -> int:
    """Make this process the owner of the resumed run, unless a live process still is;
    return how many times the run has now been resumed."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
        alive = owner_alive(run.data.tags)
        if alive:
            raise SageError(
                f"MLflow run {run_id} is still being trained by process "
                f"{run.data.tags[PID_TAG]}: stop it before resuming"
            )
        if alive is None:
            _note(f"MLflow run {run_id} is marked RUNNING elsewhere; continuing it here")
    resumes = int(run.data.tags.get(RESUMES_TAG, "0")) + 1
    claim_run(client, run_id)
    client.set_tag(run_id, RESUMES_TAG, str(resumes))
    return resumes


def _instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate`` with a config mistake (unknown option, bad value) as one SageError
    naming the config key, instead of Hydra's multi-line InstantiationException."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, SageError | TypeError | ValueError):
            raise SageError(f"{key}: {cause}") from err
        raise


def _close_failed(run_id: str | None, tracking_uri: str | None, err: BaseException) -> None:
    """Tag the run with the error and close it FAILED (unless Lightning already did).

    Best effort: it runs while a failure propagates (often a full disk that fails these writes
    too), and must not replace that failure; a run it cannot close is marked FAILED by the
    next command's dead-run sweep once this process has exited.
    """
    if not run_id:
        return
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        client.set_tag(run_id, "sage.error", f"{type(err).__name__}: {err}"[:5000])
        if client.get_run(run_id).info.status != RunStatus.to_string(RunStatus.FAILED):
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    except Exception as close_err:  # never mask the original error
        print(f"warning: could not mark MLflow run {run_id} FAILED: {close_err}", file=sys.stderr)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg.model`` on ``cfg.dataset``; test the best checkpoint; return final metrics."""
    quiet_known_noise(cfg.get("verbose"))
    pl.seed_everything(int(cfg.seed), workers=True)
    resume = _resume_point(cfg)
    if resume and resume.output_dir:
        # the original run directory: its checkpoints and the SAGE callback's snapshots
        # (Hydra's fresh run directory keeps only this invocation's .hydra/ and log)
        cfg = copy.deepcopy(cfg)
        cfg.paths.output_dir = str(resume.output_dir)
    # Callbacks first, long before the store: they check their options on construction, and
    # a config error must fail fast and leave no FAILED run. A preset (debug=fast) may tune a
    # callback the user removed (callbacks=none): only entries naming a class are callbacks.
    callbacks = [
        _instantiate(c, f"callbacks.{name}")
        for name, c in (cfg.get("callbacks") or {}).items()
        if c and "_target_" in c
    ]
    callbacks.append(RunLink(cfg.paths.output_dir))
    Path(cfg.paths.outputs_dir).mkdir(parents=True, exist_ok=True)
    # Then the backbone: a missing weights file should fail before any data work.
    net = create_backbone(
        cfg.model.name,
        int(cfg.dataset.num_classes),
        bool(cfg.model.pretrained),
        cfg.model.get("weights"),
    )
    dm = build_datamodule(cfg)
    module = ClassifierModule(
        net,
        backbone=cfg.model.name,
        class_names=dm.classes,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        class_weights=_class_weights(dm, cfg.loss.get("class_weights")),
        image_size=dm.image_size,
    )
    # parallel sweep jobs may open a fresh store together: create it and the experiment once
    # (this also marks runs of dead processes of this host FAILED)
    lg = cfg.logger
    uri = lg.get("tracking_uri") if lg else None
    if uri:
        prepare_experiment(uri, lg.experiment_name, lg.get("artifact_location"))
    run_id = _resumable_run(uri, resume) if resume else None
    # MLFlowLogger creates its run lazily (first .experiment): none exists yet
    logger = instantiate(cfg.logger, **({"run_id": run_id} if run_id else {}))
    trainer: pl.Trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    check_launch(trainer)
    resumes = _take_over(uri, run_id) if run_id and trainer.is_global_zero else 0
    if resumes:
        _note(f"resuming MLflow run {run_id} in {cfg.paths.output_dir}")
    opened: str | None = None
    try:
        if trainer.is_global_zero:  # the other DDP ranks' loggers never touch the store
            opened = logger.run_id  # creates the run (first access)
        _record_start(cfg, logger, dm, net, resume, resumes)
        metrics = _fit_and_test(cfg, trainer, logger, module, dm, net)
    except BaseException as err:
        _close_failed(opened, uri, err)
        raise
    if opened:
        print(where_to_look(uri, logger.experiment_id, opened, cfg.paths.output_dir), flush=True)
    return metrics


def _record_start(
    cfg: DictConfig,
    logger: MLFlowLogger,
    dm: PreparedDataModule,
    net: torch.nn.Module,
    resume: _Resume | None,
    resumes: int,
) -> None:
    """Config and provenance tags; a resumed run keeps its config and gains the new one as
    ``config/resume-<n>.yaml``."""
    log_config(logger, cfg, f"config/resume-{resumes}.yaml" if resumes else "config/config.yaml")
    tags = {
        "stage": cfg.task_name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "variant": cfg.dataset.variant,
        "num_classes": len(dm.classes),
        "seed": cfg.seed,
        **code_version(),  # sage_version; git_commit when run from a checkout
        "prepared_dataset": str(dm.data.root),
        "n_parameters": count_parameters(net),
    }
    if resume:
        tags["resumed_from"] = str(resume.checkpoint)
    set_tags(logger, tags)


def _fit_and_test(
    cfg: DictConfig,
    trainer: pl.Trainer,
    logger: MLFlowLogger,
    module: ClassifierModule,
    dm: PreparedDataModule,
    net: torch.nn.Module,
) -> dict[str, float]:
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    set_tags(logger, {"model_fingerprint_final": model_fingerprint(net)})

    if cfg.get("test_after_fit") and not trainer.fast_dev_run:
        ckpt = (
            "best"
            if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path
            else None
        )
        # under DDP every test image once (Lightning's sampler would pad with repeats)
        data = {"datamodule": dm}
        if trainer.world_size > 1:
            data = {"dataloaders": unrepeated_loader(dm.test_dataloader(), trainer)}
        trainer.test(module, ckpt_path=ckpt, **data)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        set_tags(
            logger,
            {
                "model_fingerprint_tested": model_fingerprint(net),
                "tested_checkpoint": ckpt or "last",
            },
        )

    out = Path(cfg.paths.output_dir)
    if not trainer.is_global_zero:  # every DDP rank holds the gathered matrices; rank 0 logs
        return metrics
    for stage, matrix in module.confusion.items():
        fig = plot_confusion(
            matrix.numpy(), dm.classes, out / f"confusion_{stage}.png", f"{stage}: {cfg.model.name}"
        )
        log_file(logger, fig, "figures")
    return metrics
