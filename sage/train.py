"""Training task: ``run(cfg)`` trains one classifier on one prepared dataset, tracked in MLflow.

Called by the thin ``train.py`` Hydra entry point; tests call it directly with composed
configs. Returns the final metrics so sweeps and tests can read them without MLflow.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .data.datamodule import PreparedDataModule
from .data.ensure import ensure_prepared
from .errors import SageError
from .models import create_backbone, get_backbone_spec
from .models.fingerprint import count_parameters, model_fingerprint
from .plots.confusion import plot_confusion
from .tracking.run_record import git_commit, log_config, log_file, set_tags
from .tracking.store import prepare_experiment
from .training.classifier import ClassifierModule
from .training.distributed import check_launch, unrepeated_loader


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


def run(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg.model`` on ``cfg.dataset``; test the best checkpoint; return final metrics."""
    pl.seed_everything(int(cfg.seed), workers=True)
    Path(cfg.paths.outputs_dir).mkdir(parents=True, exist_ok=True)
    # The backbone first: a missing weights file should fail before any data work.
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
    lg = cfg.logger
    if lg and lg.get("tracking_uri"):
        prepare_experiment(lg.tracking_uri, lg.experiment_name, lg.get("artifact_location"))
    logger = instantiate(cfg.logger)
    # a preset (debug=fast) may tune a callback the user removed (callbacks=none): only the
    # entries that still name a class are callbacks
    callbacks = [
        instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c
    ]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    check_launch(trainer)

    log_config(logger, cfg)
    set_tags(
        logger,
        {
            "stage": cfg.task_name,
            "model": cfg.model.name,
            "dataset": cfg.dataset.name,
            "variant": cfg.dataset.variant,
            "num_classes": len(dm.classes),
            "seed": cfg.seed,
            "git_commit": git_commit(cfg.paths.root_dir),
            "prepared_dataset": str(dm.data.root),
            "params": count_parameters(net),
        },
    )
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
