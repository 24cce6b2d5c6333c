"""Evaluate task: ``run(cfg)`` evaluates every selected model on every target.

MLflow layout: one parent run per grid (``grid-<R>x<C>-<split>/<key>/evaluate-<ts>``, tags
``stage=evaluate``, ``grid_key``) holding the grid artifacts (``grid/``: matrices, heatmaps,
``table.md``), and a nested child run per cell, named after the source model as its training
run is (``<model>-<variant>/<dataset>-nc<C>/evaluate-on-<target>-<ts>``, tags ``model``,
``dataset``, ``variant``, ``num_classes`` of the model, ``source_run``, ``target``,
``cell_key``) with ``eval/*`` metrics (the per-bin breakdowns in ``clusters/pooled.csv``) and
the cell's files.

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
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import SageError
from ..tracking.liveness import claim_run
from ..tracking.run_record import code_version
from ..tracking.store import experiment_for
from .cell_runs import (
    GridContext,
    check_classes,
    check_config,
    evaluate_cells,
    find_grid_parent,
    finished_cells,
    key_settings,
    saliency_methods,
)
from .distributed import assemble, run_cells
from .grid import cells_frame, grid_key, write_grid
from .selection import select_from_config
from .targets import targets_from_config


def run(cfg: DictConfig) -> dict[str, object]:
    """Evaluate the grid of ``cfg``; return the parent run id, counts and the markdown table.

    ``mode=cells|assemble`` evaluate a grid distributed over sweep jobs
    (:mod:`~sage.evaluation.distributed`). ``mode=divergence`` is :func:`sage.evaluate.run`'s
    (evaluate.py's dispatcher): :mod:`sage.divergence` builds on this package.
    """
    mode = cfg.get("mode", "grid")
    if mode in ("cells", "assemble"):  # a grid distributed over sweep jobs
        return run_cells(cfg) if mode == "cells" else assemble(cfg)
    if mode == "divergence":
        raise SageError("mode=divergence is run by sage.evaluate.run (evaluate.py), not here")
    if mode != "grid":
        raise SageError(f"mode must be 'grid', 'cells', 'assemble' or 'divergence', got {mode!r}")
    check_config(cfg)
    torch.manual_seed(int(cfg.seed))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = targets_from_config(cfg, cfg.targets)
    models, skipped_runs = select_from_config(cfg, out)
    for skip in skipped_runs:  # recorded in selection.json too; worth seeing at once
        print(f"warning: skipping run {skip['run_id']}: {skip['reason']}", file=sys.stderr)
    check_classes(models, targets)
    methods = saliency_methods(cfg)
    grids = [(int(g[0]), int(g[1])) for g in cfg.saliency.grids]
    bins = int(cfg.clustering.bins)
    key = grid_key(
        [m.key for m in models],
        [t.name for t in targets],
        **key_settings(cfg, methods, grids, bins),
    )
    exp_id = experiment_for(cfg.logger)
    client = mlflow.MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    parent = find_grid_parent(client, exp_id, key)
    done = {} if parent is None else finished_cells(client, exp_id, parent.info.run_id)
    g = GridContext(
        cfg=cfg,
        out=out,
        key=key,
        exp_id=exp_id,
        stamp=time.strftime("%Y%m%d-%H%M%S"),
        code=code_version(),
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
            # what tells grids apart first, the time last (as every stage's run names)
            "run_name": f"grid-{len(models)}x{len(targets)}-{cfg.split}/{key[:8]}/"
            f"evaluate-{g.stamp}",
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
        mlflow.set_tags({**g.code, "resumed": str(parent is not None)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_dict(selection, "selection.json")
        records = evaluate_cells(g, models, targets, done, bool(cfg.force))

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
