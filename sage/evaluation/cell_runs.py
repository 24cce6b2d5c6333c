"""A grid's cells as MLflow runs, shared by ``mode=grid`` (:mod:`~sage.evaluation.runner`)
and ``mode=cells|assemble`` (:mod:`~sage.evaluation.distributed`).

What it holds: the checks run before the first forward pass (:func:`check_config`,
:func:`check_classes`), the saliency methods of the config (:func:`saliency_methods`), the
settings that identify a grid (:func:`key_settings`), the grid's parent run
(:func:`find_grid_parent`), what every cell of a grid shares (:class:`GridContext`), and the
cells themselves: evaluated as nested runs (:func:`evaluate_cells`) or read back from a
finished run (:func:`prior_record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..data.datamodule import PreparedImages, image_transform
from ..data.prepared import SPLITS
from ..errors import SageError
from ..models import get_backbone_spec
from ..models.fingerprint import model_fingerprint
from ..saliency.methods import SaliencyMethod, create_method
from ..tracking.breakdowns import split_breakdowns
from ..tracking.console import model_tags, run_name
from ..training.classifier import load_classifier
from .cell import predict, write_cell
from .grid import cell_key
from .selection import SourceModel
from .targets import Target, target_overrides

PREFIX = "eval/"


def _wants_figures(setting: object, row: str, column: str) -> bool:
    """``cell_figures``: true / false, or a list of ``"<row>|<target>"`` cells that get them."""
    if isinstance(setting, bool):
        return setting
    return f"{row}|{column}" in {str(s) for s in setting}


def saliency_methods(cfg: DictConfig) -> dict[str, SaliencyMethod]:
    """The ``saliency.methods`` of the config, built with their ``saliency.options``."""
    sal = cfg.get("saliency") or {}
    opts = sal.get("options")
    options = OmegaConf.to_container(opts, resolve=True) if isinstance(opts, DictConfig) else {}
    return {
        str(name): create_method(str(name), **(options.get(str(name)) or {}))
        for name in sal.get("methods") or []
    }


def check_config(cfg: DictConfig) -> None:
    """Split, checkpoint choice and clustering bins, checked before anything loads."""
    if cfg.split not in SPLITS:
        raise SageError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    if cfg.checkpoint_select not in ("best", "last"):
        raise SageError(
            f"checkpoint_select must be 'best' or 'last', got {cfg.checkpoint_select!r}"
        )
    if int(cfg.clustering.bins) < 1:
        raise SageError(f"clustering.bins must be at least 1, got {cfg.clustering.bins}")


def check_classes(models: list[SourceModel], targets: list[Target]) -> None:
    """Every model must predict exactly every target's class list."""
    for m in models:
        for t in targets:
            if m.classes != t.data.classes:
                raise SageError(
                    f"model {m.label} ({m.checkpoint}) predicts classes {m.classes} but target "
                    f"{t.name} ({t.data.root}) has {t.data.classes}; both must be identical "
                    "(same label mapping)"
                )


def find_grid_parent(client: mlflow.MlflowClient, exp_id: str, key: str):
    """The newest parent run of the grid with key ``key``, or None."""
    runs = client.search_runs(
        [exp_id],
        f"tags.grid_key = '{key}' and tags.stage = 'evaluate' and tags.level = 'grid'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def finished_cells(client: mlflow.MlflowClient, exp_id: str, parent_id: str) -> dict:
    """The newest finished child run of a grid parent per cell key."""
    runs = client.search_runs(
        [exp_id],
        f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=10000,
    )
    done: dict = {}
    for r in runs:  # newest first: a forced re-evaluation supersedes the older child
        done.setdefault(r.data.tags.get("cell_key"), r)
    return done


def cell_slug(text: str) -> str:
    """A label as a file-name piece (cell directories, run names): `/` and the like → `-`."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


@dataclass
class GridContext:
    """What every cell of one grid shares."""

    cfg: DictConfig
    out: Path
    key: str
    exp_id: str
    stamp: str
    code: dict[str, str]  # provenance tags (:func:`~sage.tracking.run_record.code_version`)
    methods: dict[str, SaliencyMethod]
    grids: list[tuple[int, int]]
    bins: int
    n_cells: int
    tags: dict = field(default_factory=dict)  # extra tags of every cell run (mode=cells)


def prior_record(prior, base: dict) -> dict:
    """A finished cell's record, read back from its child run's ``eval/*`` metrics."""
    metrics = {
        k.removeprefix(PREFIX): v for k, v in prior.data.metrics.items() if k.startswith(PREFIX)
    }
    return {**base, "run_id": prior.info.run_id, "status": "skipped", **metrics}


def _evaluate_cell(
    g: GridContext,
    m: SourceModel,
    t: Target,
    net: torch.nn.Module,
    fingerprint: str,
    position: int,
    base: dict,
) -> dict:
    """One nested child run: predictions, cell files, ``eval/*`` metrics; return the record."""
    cfg = g.cfg
    spec = get_backbone_spec(m.backbone)
    size = int(m.image_size or spec.input_size)
    images = PreparedImages(
        t.data,
        cfg.split,
        image_transform(size, spec.mean, spec.std),
        with_masks=bool(g.methods),
        limit=cfg.get("limit"),
    )
    cell_dir = g.out / "cells" / f"{position:02d}-{cell_slug(m.label)}--{cell_slug(t.label)}"
    identity = model_tags(m.backbone, m.dataset, m.variant or cell_slug(m.label), len(m.classes))
    tags = {
        **identity,  # the source model, tagged as its training run is
        "stage": "evaluate",
        "level": "cell",
        "grid_key": g.key,
        "cell_key": base["cell_key"],
        "source_run": m.run_id or "",
        "source_checkpoint": str(m.checkpoint),
        "source_label": m.label,
        "target": t.name,
        "target_label": t.label,
        "model_fingerprint": fingerprint,
        "prepared_dataset": str(t.data.root),
        **g.code,
        **g.tags,
    }
    # the source model first, as its training run is named; the target before the time
    name = run_name(
        identity["model"],
        identity["variant"],
        identity["dataset"],
        identity["num_classes"],
        f"evaluate-on-{cell_slug(t.label)}",
        g.stamp,
    )
    with mlflow.start_run(experiment_id=g.exp_id, run_name=name, nested=True, tags=tags) as child:
        mlflow.log_params(
            {
                "source": m.key,
                "source_label": m.label,
                "target": t.name,
                # the keys training uses for the data a run works on, the model and the seed
                "dataset/name": t.data.summary.get("dataset", t.name),
                "dataset/variant": t.data.summary.get("variant"),
                "split": cfg.split,
                "checkpoint_select": cfg.checkpoint_select,
                "backbone": m.backbone,
                "image_size": size,
                "seed": cfg.seed,
                "n_images": len(images),
            }
        )
        pred = predict(
            net,
            images,
            batch_size=int(cfg.batch_size),
            device=cfg.device,
            methods=g.methods,
            grids=g.grids,
            progress=bool(cfg.progress),
            desc=f"[{position}/{g.n_cells}] {m.label} -> {t.label}",
            num_workers=int(cfg.get("num_workers") or 0),
        )
        metrics = write_cell(
            pred,
            t.data,
            cell_dir,
            title=f"{m.label} -> {t.label} ({cfg.split})",
            bins=g.bins,
            seed=int(cfg.seed),
            ece_bins=int(cfg.ece_bins),
            thumbnails=int(cfg.clustering.thumbnails),
            figures=_wants_figures(cfg.get("cell_figures", True), m.label, t.label),
        )
        scalars = _finite({PREFIX + k: v for k, v in metrics.items()})
        headline, _ = split_breakdowns(scalars)  # per-bin numbers: clusters/pooled.csv
        mlflow.log_metrics(scalars if (cfg.get("tracking") or {}).get("breakdowns") else headline)
        mlflow.log_artifacts(str(cell_dir))
        return {**base, "run_id": child.info.run_id, "status": "evaluated", **metrics}


def evaluate_cells(
    g: GridContext,
    models: list[SourceModel],
    targets: list[Target],
    done: dict,
    force: bool,
) -> list[dict]:
    """Every model × target cell in row order: finished ones (``done``) recorded as they are
    unless ``force``, the rest evaluated as nested runs of the active run."""
    records, position = [], 0
    for m in models:
        net, fingerprint = None, ""  # loaded once per row, only if a cell needs it
        for t in targets:
            position += 1
            ck = cell_key(m.key, t.name)
            base = {"row": m.label, "column": t.label, "source": m.key, "target": t.name}
            base["cell_key"] = ck
            if ck in done and not force:
                records.append(prior_record(done[ck], base))
                print(f"[{position}/{g.n_cells}] {m.label} -> {t.label}: finished, skipped")
                continue
            if net is None:
                net, _ = load_classifier(m.checkpoint, expect_backbone=m.backbone)
                fingerprint = model_fingerprint(net)
            records.append(_evaluate_cell(g, m, t, net, fingerprint, position, base))
    return records


def key_settings(
    cfg: DictConfig,
    methods: dict[str, SaliencyMethod],
    grids: list[tuple[int, int]],
    bins: int,
) -> dict[str, object]:
    """Everything but the models and targets that identifies a grid (:func:`grid_key`)."""
    return {
        "split": cfg.split,
        "which": cfg.checkpoint_select,
        "limit": cfg.get("limit"),
        "target_overrides": sorted(target_overrides(cfg)),
        "ece_bins": int(cfg.ece_bins),
        "bins": bins,
        "saliency": {k: m.params for k, m in methods.items()},
        "grids": grids if methods else None,
    }
