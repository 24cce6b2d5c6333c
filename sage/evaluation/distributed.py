"""A cross-domain grid distributed over sweep jobs: ``mode=cells`` per job, ``mode=assemble`` once.

A 26-backbone × 4-variant × 4-target study is 416 cells; rather than one process walking
them, any Hydra launcher runs them as a sweep and MLflow is the meeting point::

    sage-evaluate -m mode=cells grid_name=study1 'models=[<run a>],[<run b>]' \\
        'targets=[synth_driver100/bbox],[synth_driver100/full]'      # one job per cell
    sage-evaluate mode=assemble grid_name=study1                        # the grid, from MLflow

(``sage-evaluate`` is the installed command; ``python -m sage.commands.evaluate`` is the same
and, in a checkout, ``python evaluate.py``.)

``mode=cells`` (:func:`run_cells`) evaluates the job's models × targets exactly as a grid
would (same cell runs, files and ``eval/*`` metrics, :func:`~sage.evaluation.cell_runs.
evaluate_cells`) but as top-level runs tagged ``grid_name``, ``settings_key`` (a hash of
everything but models and targets that changes a cell: split, checkpoint choice, limit,
target overrides, bins, saliency) and ``grid_settings`` (those settings as JSON). A finished
cell with the same name, settings and cell key is skipped unless ``force=true``, so a failed
sweep is simply rerun.

``mode=assemble`` (:func:`assemble`) reads the newest finished cell of every (model, target)
with that ``grid_name``, rebuilds the row labels as one grid would (equal labels get the
backbone, then a short id), computes the grid key a single-process run of the same models
and targets would have, writes the grid files under one parent run (reusing the parent of
that key if there is one) and nests the cell runs under it (``mlflow.parentRunId``), so the
MLflow layout, the grid files and resumption are those of ``mode=grid``. Cells evaluated with
different settings under one ``grid_name`` are an error; missing cells are NaN in the
matrices and listed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

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
    key_settings,
    prior_record,
    saliency_methods,
)
from .grid import cells_frame, grid_key, markdown_table, matrices, write_grid
from .selection import select_from_config, unique_labels
from .targets import targets_from_config

CELL_FILTER = "tags.level = 'cell' and attributes.status = 'FINISHED'"


def _grid_name(cfg: DictConfig) -> str:
    name = cfg.get("grid_name")
    if not name:
        raise SageError(f"mode={cfg.mode} needs grid_name=<name> (the same for every cell job)")
    if "'" in str(name):
        raise SageError(f"grid_name must not contain a quote: {name!r}")
    return str(name)


def _search_all(client: mlflow.MlflowClient, exp_id: str, query: str) -> list:
    """Every run matching ``query``, newest first (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp_id],
            query,
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _settings_key(settings_json: str) -> str:
    return hashlib.sha1(settings_json.encode()).hexdigest()[:16]


def _headline(records: list[dict], rows: Sequence[str], columns: Sequence[str]) -> str:
    """Accuracy table of a job's own cells (the printed summary of ``mode=cells``)."""
    mats = matrices(cells_frame(records), rows, columns)
    return "**Accuracy**\n\n" + markdown_table(mats["acc"]) if "acc" in mats else ""


def run_cells(cfg: DictConfig) -> dict[str, object]:
    """Evaluate this job's models × targets as top-level cell runs of grid ``grid_name``."""
    name = _grid_name(cfg)
    check_config(cfg)
    torch.manual_seed(int(cfg.seed))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = targets_from_config(cfg, cfg.targets)
    models, skipped_runs = select_from_config(cfg, out)
    for skip in skipped_runs:
        print(f"warning: skipping run {skip['run_id']}: {skip['reason']}", file=sys.stderr)
    check_classes(models, targets)
    methods = saliency_methods(cfg)
    grids = [(int(g[0]), int(g[1])) for g in cfg.saliency.grids]
    bins = int(cfg.clustering.bins)
    settings = key_settings(cfg, methods, grids, bins)
    # default=str as grid_key does, so the assembled key equals a single-process run's
    settings_json = json.dumps(settings, sort_keys=True, default=str)
    skey = _settings_key(settings_json)
    exp_id = experiment_for(cfg.logger)
    client = mlflow.MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    done: dict = {}
    query = f"tags.grid_name = '{name}' and tags.settings_key = '{skey}' and {CELL_FILTER}"
    for r in _search_all(client, exp_id, query):  # newest first
        done.setdefault(r.data.tags.get("cell_key"), r)
    g = GridContext(
        cfg=cfg,
        out=out,
        key=skey,  # replaced by the grid's key when the grid is assembled
        exp_id=exp_id,
        stamp=time.strftime("%Y%m%d-%H%M%S"),
        code=code_version(),
        methods=methods,
        grids=grids,
        bins=bins,
        n_cells=len(models) * len(targets),
        tags={"grid_name": name, "settings_key": skey, "grid_settings": settings_json},
    )
    records = evaluate_cells(g, models, targets, done, bool(cfg.force))
    cells = cells_frame(records)
    cells.to_csv(out / "cells.csv", index=False)
    return {
        "grid_name": name,
        "settings_key": skey,
        "cells": g.n_cells,
        "evaluated": int((cells.status == "evaluated").sum()),
        "skipped": int((cells.status == "skipped").sum()),
        "output_dir": str(out),
        # the installed command; the module form works from a checkout too
        "next": f"sage-evaluate mode=assemble grid_name={name}  "
        f"(or python -m sage.commands.evaluate mode=assemble grid_name={name})",
        "table": _headline(records, [m.label for m in models], [t.label for t in targets]),
    }


def _order(labels: list[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    """``wanted`` first (each must exist), then the remaining labels sorted."""
    wanted = [str(w) for w in wanted or []]
    unknown = sorted(set(wanted) - set(labels))
    if unknown:
        raise SageError(f"assemble.{what} names {unknown}, not in the grid: {sorted(labels)}")
    return wanted + sorted(set(labels) - set(wanted))


def assemble(cfg: DictConfig) -> dict[str, object]:
    """Build grid ``grid_name`` from its finished cell runs; log it under one parent run."""
    name = _grid_name(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    exp_id = experiment_for(cfg.logger)
    client = mlflow.MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    runs = _search_all(client, exp_id, f"tags.grid_name = '{name}' and {CELL_FILTER}")
    if not runs:
        raise SageError(
            f"no finished cell runs with grid_name={name!r} in MLflow experiment "
            f"{cfg.logger.experiment_name!r} ({cfg.logger.tracking_uri}); evaluate them first: "
            f"sage-evaluate -m mode=cells grid_name={name} ... "
            "(or python -m sage.commands.evaluate ...)"
        )
    keys = sorted({r.data.tags.get("settings_key", "") for r in runs})
    if len(keys) > 1:
        raise SageError(
            f"grid_name={name!r} holds cells evaluated with {len(keys)} different settings "
            f"(settings_key {keys}: split, checkpoint_select, limit, target_overrides, bins or "
            "saliency differ); evaluate each settings set under its own grid_name"
        )
    newest: dict = {}
    for r in runs:  # newest first: a forced re-evaluation supersedes the older run
        newest.setdefault(r.data.tags["cell_key"], r)
    cells = list(newest.values())

    rows: dict[str, SimpleNamespace] = {}  # model key -> label, backbone (as selection has)
    columns: dict[str, str] = {}  # target name -> label
    for r in cells:
        tags = r.data.tags
        model = tags["cell_key"].rsplit("@", 1)[0]  # cell_key = <model key>@<target name>
        base_label = tags["source_label"].split(" [", 1)[0]  # the job's disambiguation undone
        rows.setdefault(model, SimpleNamespace(key=model, label=base_label, backbone=tags["model"]))
        columns.setdefault(tags["target"], tags["target_label"])
    unique_labels(list(rows.values()), set())  # as one grid would label these rows
    assembly = cfg.get("assemble") or {}
    row_labels = _order([m.label for m in rows.values()], assembly.get("rows"), "rows")
    col_labels = _order(list(columns.values()), assembly.get("columns"), "columns")
    row_pos = {label: i for i, label in enumerate(row_labels)}
    col_pos = {label: i for i, label in enumerate(col_labels)}

    records = []
    for r in cells:
        tags = r.data.tags
        model = rows[tags["cell_key"].rsplit("@", 1)[0]]
        base = {
            "row": model.label,
            "column": columns[tags["target"]],
            "source": model.key,
            "target": tags["target"],
            "cell_key": tags["cell_key"],
        }
        records.append({**prior_record(r, base), "status": "assembled"})
    records.sort(key=lambda rec: (row_pos[rec["row"]], col_pos[rec["column"]]))
    present = {(rec["row"], rec["column"]) for rec in records}
    missing = [(r, c) for r in row_labels for c in col_labels if (r, c) not in present]
    for row, col in missing:
        print(f"warning: cell {row} -> {col} has no finished run yet (NaN)", file=sys.stderr)

    settings = json.loads(cells[0].data.tags["grid_settings"])
    by_label = {m.label: m.key for m in rows.values()}
    target_of = {label: target for target, label in columns.items()}
    key = grid_key(
        [by_label[label] for label in row_labels],
        [target_of[label] for label in col_labels],
        **settings,
    )
    split, which = settings["split"], settings["which"]
    parent = find_grid_parent(client, exp_id, key)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    start = (
        {"run_id": parent.info.run_id}
        if parent is not None
        else {
            "experiment_id": exp_id,
            "run_name": f"grid-{len(row_labels)}x{len(col_labels)}-{split}/{name}/evaluate-{stamp}",
        }
    )
    selection = {
        "grid_key": key,
        "grid_name": name,
        "settings": settings,
        "rows": [{"label": label, "key": by_label[label]} for label in row_labels],
        "columns": [{"label": label, "name": target_of[label]} for label in col_labels],
        "cells": {rec["cell_key"]: rec["run_id"] for rec in records},
        "missing": [list(m) for m in missing],
    }
    (out / "selection.json").write_text(json.dumps(selection, indent=1))
    with mlflow.start_run(**start) as parent_run:
        if parent is not None:  # reopened: this process now owns it (dead-run sweeps)
            claim_run(mlflow.MlflowClient(), parent_run.info.run_id)
        if parent is None:
            mlflow.set_tags({"stage": "evaluate", "level": "grid", "grid_key": key})
            mlflow.log_params(
                {
                    "grid_key": key,
                    "split": split,
                    "checkpoint_select": which,
                    "n_models": len(row_labels),
                    "n_targets": len(col_labels),
                    "targets": json.dumps([target_of[label] for label in col_labels]),
                    "limit": settings.get("limit"),
                    "saliency_methods": json.dumps(list(settings.get("saliency") or {})),
                }
            )
        mlflow.set_tags(
            {
                **code_version(),
                "resumed": str(parent is not None),
                "grid_name": name,
                "assembled": "true",
            }
        )
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_dict(selection, "selection.json")
        _, table = write_grid(
            cells_frame(records), row_labels, col_labels, out / "grid", f"({split}, {which})"
        )
        mlflow.log_artifacts(str(out / "grid"), artifact_path="grid")
        mlflow.set_tags({"cells_assembled": len(records), "cells_missing": len(missing)})
        for rec in records:  # the cells become this grid's children, as in mode=grid
            client.set_tag(rec["run_id"], "mlflow.parentRunId", parent_run.info.run_id)
            client.set_tag(rec["run_id"], "grid_key", key)

    result: dict[str, object] = {
        "parent_run_id": parent_run.info.run_id,
        "grid_key": key,
        "grid_name": name,
        "cells": len(row_labels) * len(col_labels),
        "assembled": len(records),
        "missing": len(missing),
        "output_dir": str(out),
        "table": table,
    }
    frame = cells_frame(records)
    for metric in ("acc", "f1_macro"):
        if metric in frame:
            result[f"mean_{metric}"] = float(frame[metric].mean())
    return result
