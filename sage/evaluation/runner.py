"""Evaluate task: ``run(cfg)`` evaluates every selected model on every target.

MLflow layout: one parent run per grid (``evaluate-<ts>/grid-<R>x<C>-<split>``, tags
``stage=evaluate``, ``grid_key``) holding the grid artifacts (``grid/``: matrices, heatmaps,
``table.md``), and a nested child run per cell (``evaluate-<ts>/<model>-nc<C>-<dataset>-
<variant>-on-<target dataset>-<target variant>``, tags ``source_run``, ``target``,
``cell_key``) with ``eval/*`` metrics and the cell's files.

Resumption: the grid key hashes the model ids, targets, split, checkpoint choice and the
settings that change a cell's content (limit, target overrides, ECE bins, clustering bins,
saliency methods and grids). A rerun with the same key reopens the newest parent with that
key and skips every cell that already has a FINISHED child run (its metrics are read back
for the grid); ``force=true`` re-evaluates them. A failed or interrupted cell is redone.

Everything that can be checked before the first forward pass is: targets compose and are
prepared, every checkpoint loads as the architecture its training recorded, and every
model's class list equals every target's.
"""

from __future__ import annotations

import json
import sys
import time
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
from ..tracking.liveness import claim_run
from ..tracking.run_record import git_commit
from ..tracking.store import experiment_for
from ..training.classifier import load_classifier
from .cell import predict, write_cell
from .grid import cell_key, cells_frame, grid_key, write_grid
from .selection import SourceModel, select_from_config
from .targets import Target, target_overrides, targets_from_config

PREFIX = "eval/"


def _wants_figures(setting: object, row: str, column: str) -> bool:
    """``cell_figures``: true / false, or a list of ``"<row>|<target>"`` cells that get them."""
    if isinstance(setting, bool):
        return setting
    return f"{row}|{column}" in {str(s) for s in setting}


def _methods(cfg: DictConfig) -> dict[str, SaliencyMethod]:
    sal = cfg.get("saliency") or {}
    opts = sal.get("options")
    options = OmegaConf.to_container(opts, resolve=True) if isinstance(opts, DictConfig) else {}
    return {
        str(name): create_method(str(name), **(options.get(str(name)) or {}))
        for name in sal.get("methods") or []
    }


def _check(cfg: DictConfig) -> None:
    if cfg.split not in SPLITS:
        raise SageError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    if cfg.checkpoint_select not in ("best", "last"):
        raise SageError(
            f"checkpoint_select must be 'best' or 'last', got {cfg.checkpoint_select!r}"
        )
    if int(cfg.clustering.bins) < 1:
        raise SageError(f"clustering.bins must be at least 1, got {cfg.clustering.bins}")


def _check_classes(models: list[SourceModel], targets: list[Target]) -> None:
    for m in models:
        for t in targets:
            if m.classes != t.data.classes:
                raise SageError(
                    f"model {m.label} ({m.checkpoint}) predicts classes {m.classes} but target "
                    f"{t.name} ({t.data.root}) has {t.data.classes}; both must be identical "
                    "(same label mapping)"
                )


def _find_parent(client: mlflow.MlflowClient, exp_id: str, key: str):
    runs = client.search_runs(
        [exp_id],
        f"tags.grid_key = '{key}' and tags.stage = 'evaluate' and tags.level = 'grid'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _finished_cells(client: mlflow.MlflowClient, exp_id: str, parent_id: str) -> dict:
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


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


@dataclass
class _Grid:
    """What every cell of one grid shares."""

    cfg: DictConfig
    out: Path
    key: str
    exp_id: str
    stamp: str
    commit: str
    methods: dict[str, SaliencyMethod]
    grids: list[tuple[int, int]]
    bins: int
    n_cells: int
    tags: dict = field(default_factory=dict)  # extra tags of every cell run (mode=cells)


def _prior_record(prior, base: dict) -> dict:
    """A finished cell's record, read back from its child run's ``eval/*`` metrics."""
    metrics = {
        k.removeprefix(PREFIX): v for k, v in prior.data.metrics.items() if k.startswith(PREFIX)
    }
    return {**base, "run_id": prior.info.run_id, "status": "skipped", **metrics}


def _evaluate_cell(
    g: _Grid,
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
    cell_dir = g.out / "cells" / f"{position:02d}-{_slug(m.label)}--{_slug(t.label)}"
    model_id = f"{m.backbone}-nc{len(m.classes)}-{m.dataset or 'unknown'}-"
    model_id += m.variant or _slug(m.label)
    tags = {
        "stage": "evaluate",
        "level": "cell",
        "grid_key": g.key,
        "cell_key": base["cell_key"],
        "source_run": m.run_id or "",
        "source_checkpoint": str(m.checkpoint),
        "source_label": m.label,
        "target": t.name,
        "target_label": t.label,
        "model": m.backbone,
        "model_fingerprint": fingerprint,
        "prepared_dataset": str(t.data.root),
        "git_commit": g.commit,
        **g.tags,
    }
    name = f"evaluate-{g.stamp}/{model_id}-on-{_slug(t.label)}"
    with mlflow.start_run(experiment_id=g.exp_id, run_name=name, nested=True, tags=tags) as child:
        mlflow.log_params(
            {
                "source": m.key,
                "source_label": m.label,
                "target": t.name,
                "split": cfg.split,
                "checkpoint_select": cfg.checkpoint_select,
                "backbone": m.backbone,
                "image_size": size,
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
        mlflow.log_metrics(_finite({PREFIX + k: v for k, v in metrics.items()}))
        mlflow.log_artifacts(str(cell_dir))
        return {**base, "run_id": child.info.run_id, "status": "evaluated", **metrics}


def _evaluate_cells(
    g: _Grid,
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
                records.append(_prior_record(done[ck], base))
                print(f"[{position}/{g.n_cells}] {m.label} -> {t.label}: finished, skipped")
                continue
            if net is None:
                net, _ = load_classifier(m.checkpoint, expect_backbone=m.backbone)
                fingerprint = model_fingerprint(net)
            records.append(_evaluate_cell(g, m, t, net, fingerprint, position, base))
    return records


def _key_settings(
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


def run(cfg: DictConfig) -> dict[str, object]:
    """Evaluate the grid of ``cfg``; return the parent run id, counts and the markdown table.

    ``mode=divergence`` runs the model-divergence analysis instead (:mod:`sage.divergence`).
    """
    mode = cfg.get("mode", "grid")
    if mode == "divergence":
        from ..divergence import run as run_divergence  # late: sage.divergence imports us

        return run_divergence(cfg)
    if mode in ("cells", "assemble"):  # a grid distributed over sweep jobs
        from .distributed import assemble, run_cells  # late: it builds on this module

        return run_cells(cfg) if mode == "cells" else assemble(cfg)
    if mode != "grid":
        raise SageError(f"mode must be 'grid', 'cells', 'assemble' or 'divergence', got {mode!r}")
    _check(cfg)
    torch.manual_seed(int(cfg.seed))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = targets_from_config(cfg, cfg.targets)
    models, skipped_runs = select_from_config(cfg, out)
    for skip in skipped_runs:  # recorded in selection.json too; worth seeing at once
        print(f"warning: skipping run {skip['run_id']}: {skip['reason']}", file=sys.stderr)
    _check_classes(models, targets)
    methods = _methods(cfg)
    grids = [(int(g[0]), int(g[1])) for g in cfg.saliency.grids]
    bins = int(cfg.clustering.bins)
    key = grid_key(
        [m.key for m in models],
        [t.name for t in targets],
        **_key_settings(cfg, methods, grids, bins),
    )
    exp_id = experiment_for(cfg.logger)
    client = mlflow.MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    parent = _find_parent(client, exp_id, key)
    done = {} if parent is None else _finished_cells(client, exp_id, parent.info.run_id)
    g = _Grid(
        cfg=cfg,
        out=out,
        key=key,
        exp_id=exp_id,
        stamp=time.strftime("%Y%m%d-%H%M%S"),
        commit=git_commit(cfg.paths.root_dir),
        methods=methods,
        grids=grids,
        bins=bins,
        n_cells=len(models) * len(targets),
    )
    selection = {
        "grid_key": key,
        "split": cfg.split,
        "checkpoint_select": cfg.checkpoint_select,
        "models": [
            {"label": m.label, "key": m.key, "ckpt": str(m.checkpoint), "backbone": m.backbone}
            for m in models
        ],
        "targets": [{"name": t.name, "label": t.label, "root": str(t.data.root)} for t in targets],
        "skipped_runs": skipped_runs,
    }
    (out / "selection.json").write_text(json.dumps(selection, indent=1))

    start = (
        {"run_id": parent.info.run_id}  # resume: the same parent, finished cells skipped
        if parent is not None
        else {
            "experiment_id": exp_id,
            "run_name": f"evaluate-{g.stamp}/grid-{len(models)}x{len(targets)}-{cfg.split}",
        }
    )
    with mlflow.start_run(**start) as parent_run:
        if parent is not None:  # reopened: this process now owns it (dead-run sweeps)
            claim_run(mlflow.MlflowClient(), parent_run.info.run_id)
        if parent is None:
            mlflow.set_tags({"stage": "evaluate", "level": "grid", "grid_key": key})
            mlflow.log_params(
                {
                    "grid_key": key,
                    "split": cfg.split,
                    "checkpoint_select": cfg.checkpoint_select,
                    "n_models": len(models),
                    "n_targets": len(targets),
                    "targets": json.dumps([t.name for t in targets]),
                    "limit": cfg.get("limit"),
                    "saliency_methods": json.dumps(list(methods)),
                }
            )
        mlflow.set_tags({"git_commit": g.commit, "resumed": str(parent is not None)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_dict(selection, "selection.json")
        records = _evaluate_cells(g, models, targets, done, bool(cfg.force))

        cells = cells_frame(records)
        evaluated = int((cells.status == "evaluated").sum())
        skipped = int((cells.status == "skipped").sum())
        _, table = write_grid(
            cells,
            [m.label for m in models],
            [t.label for t in targets],
            out / "grid",
            f"({cfg.split}, {cfg.checkpoint_select})",
        )
        mlflow.log_artifacts(str(out / "grid"), artifact_path="grid")
        mlflow.set_tags(
            {
                "cells_evaluated": evaluated,
                "cells_skipped": skipped,
                "runs_without_checkpoint": len(skipped_runs),
            }
        )

    result: dict[str, object] = {
        "parent_run_id": parent_run.info.run_id,
        "grid_key": key,
        "cells": g.n_cells,
        "evaluated": evaluated,
        "skipped": skipped,
        "output_dir": str(out),
        "table": table,
    }
    for metric in ("acc", "f1_macro"):
        if metric in cells:
            result[f"mean_{metric}"] = float(cells[metric].mean())
    return result
