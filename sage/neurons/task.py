"""``explain.py mode=neurons``: the unit-attribution analysis of one checkpoint, in MLflow.

Reuses explain's checkpoint resolution (:mod:`sage.training.checkpoint_data`: path, MLflow
run id or ``latest``) and MLflow experiment, then: activations of every unit on the training
split (one pass), the top-k search per (class, region) (:mod:`sage.neurons.search`), the
held-out check, and the report (:mod:`sage.neurons.report`). Files land in the run
directory and become artifacts of an MLflow run
``explain-<timestamp>/<model>-nc<classes>-<dataset>-<variant>`` tagged ``mode=neurons``, under
``neurons/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..data.datamodule import PreparedImages, image_transform
from ..data.prepared import PreparedDataset
from ..errors import SageError
from ..models import get_backbone_spec
from ..models.fingerprint import model_fingerprint
from ..tracking.run_record import code_version
from ..tracking.store import experiment_for
from ..training.checkpoint_data import load_checkpoint_and_data
from .activations import collect_activations, resolve_regions
from .report import summary_table, table_metrics, unit_scores_frame, write_figures
from .search import heldout_scores, search_units
from .unit_cam import UnitGradCAM


def _labels(data: PreparedDataset, requested) -> list[int]:
    """Class indices from ids (``c1``) or display names (``Texting Right``); None = all."""
    if requested is None:
        return list(range(len(data.classes)))
    lookup = {c: i for i, c in enumerate(data.classes)} | {
        n: i for i, n in enumerate(data.class_names)
    }
    unknown = [c for c in requested if str(c) not in lookup]
    if unknown:
        raise SageError(f"unknown classes {unknown}; available: {', '.join(data.classes)}")
    return sorted({lookup[str(c)] for c in requested})


def _split(data: PreparedDataset, split: str, size: int, spec, regions, labels) -> tuple:
    """The split as a dataset with masks (and parts), and the positions of ``labels``' images."""
    ds = PreparedImages(
        data,
        split,
        image_transform(size, spec.mean, spec.std),
        with_masks=True,
        with_parts=any(pid is not None for pid in regions.values()),
    )
    positions = np.flatnonzero(ds.frame["label"].isin(labels).to_numpy()).tolist()
    if not positions:
        raise SageError(f"split {split!r} of {data.root} has no image of the selected classes")
    return ds, positions


def run(cfg: DictConfig) -> dict[str, float]:
    """Run the analysis for ``cfg.checkpoint``; return MLflow metrics (and the run id)."""
    start = time.perf_counter()
    torch.manual_seed(int(cfg.seed))
    opts = cfg.neurons
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    Path(cfg.paths.outputs_dir).mkdir(parents=True, exist_ok=True)
    ckpt, model_run, net, hparams, ds_cfg, data = load_checkpoint_and_data(cfg, out)
    spec = get_backbone_spec(hparams["backbone"])
    size = int(hparams.get("image_size") or spec.input_size)
    device = torch.device(cfg.device)
    net = net.to(device)
    regions = resolve_regions(
        data.part_names,
        None if opts.regions is None else [str(r) for r in opts.regions],
        has_mask=True,
    )
    labels = _labels(data, None if opts.classes is None else list(opts.classes))
    tau, top_k, batch = float(opts.tau), int(opts.top_k), int(opts.batch_size)
    if top_k < 1:
        raise SageError(f"neurons.top_k must be at least 1, got {top_k}")
    if not 0 < tau <= 1:
        raise SageError(f"neurons.tau must be in (0, 1], got {tau}")
    progress = bool(cfg.progress)
    engine = UnitGradCAM(
        net,
        None if opts.target_layers is None else list(opts.target_layers),
        opts.feature_layer,
        int(opts.max_elements),
    )
    train_set, train_pos = _split(data, opts.train_split, size, spec, regions, labels)
    held_set, held_pos = _split(data, opts.heldout_split, size, spec, regions, labels)

    table = collect_activations(
        net,
        train_set,
        regions,
        indices=train_pos,
        feature_layer=opts.feature_layer,
        batch_size=batch,
        device=device,
        progress=progress,
        desc=f"activations ({opts.train_split})",
    )
    n_units = table.acts.shape[1]
    units = None if opts.units is None else [int(u) for u in opts.units]
    if units is not None and (not units or min(units) < 0 or max(units) >= n_units):
        raise SageError(f"neurons.units must be indices in 0..{n_units - 1}, got {units}")
    common = {"tau": tau, "batch_size": batch, "device": device, "progress": progress}
    pairs = search_units(
        engine, train_set, table, regions, labels, units=units, top_k=top_k, **common
    )
    candidates = {(p.label, p.region): p.best_unit for p in pairs if p.ok}
    heldout, counts = heldout_scores(engine, held_set, held_pos, regions, candidates, **common)
    summary = summary_table(pairs, heldout, counts, data.classes, data.class_names)
    summary.to_csv(out / "neurons_table.csv", index=False)
    unit_scores_frame(pairs, data.classes).to_csv(out / "neurons_units.csv", index=False)
    if len(heldout):
        heldout.assign(**{"class": [data.classes[i] for i in heldout.label]}).drop(
            columns=["position", "label"]
        ).to_csv(out / "neurons_heldout.csv", index=False)
    model_id = f"{hparams['backbone']}-nc{len(data.classes)}-{ds_cfg['name']}-{ds_cfg['variant']}"
    write_figures(
        out,
        summary,
        pairs,
        heldout,
        engine,
        (train_set, held_set),
        regions,
        spec.mean,
        spec.std,
        classes=data.classes,
        n_mosaic=int(opts.mosaic_images),
        batch_size=batch,
        device=device,
        progress=progress,
        title=f"{model_id}: {opts.train_split} → {opts.heldout_split}",
    )
    metrics = table_metrics(summary)
    metrics["neurons/units"] = float(n_units)
    metrics["neurons/seconds"] = time.perf_counter() - start

    params = {
        "mode": "neurons",
        "checkpoint": str(cfg.checkpoint),
        "model_run": model_run,
        "backbone": hparams["backbone"],
        "dataset": ds_cfg["name"],
        "variant": ds_cfg["variant"],
        "seed": cfg.seed,
        "neurons/feature_layer": opts.feature_layer or f"input of {spec.classifier}",
        "neurons/target_layers": json.dumps(
            list(opts.target_layers) if opts.target_layers else list(spec.target_layers)
        ),
        "neurons/regions": json.dumps(list(regions)),
        "neurons/classes": json.dumps([data.classes[i] for i in labels]),
        "neurons/top_k": top_k,
        "neurons/tau": tau,
        "neurons/train_split": opts.train_split,
        "neurons/heldout_split": opts.heldout_split,
        "neurons/units": "all" if units is None else json.dumps(units),
        "neurons/n_train_images": len(train_pos),
        "neurons/n_heldout_images": len(held_pos),
    }
    (out / "neurons_params.json").write_text(json.dumps(params, indent=2, default=str))
    run_name = f"explain-{time.strftime('%Y%m%d-%H%M%S')}/{model_id}"
    with mlflow.start_run(experiment_id=experiment_for(cfg.logger), run_name=run_name) as active:
        mlflow.log_params(params)
        mlflow.set_tags(
            {
                "stage": "explain",
                "mode": "neurons",
                **code_version(),  # sage_version; git_commit when run from a checkout
                "model_run": model_run,
                "model_fingerprint": model_fingerprint(net),
                "prepared_dataset": str(data.root),
                "checkpoint_file": ckpt.name,
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_artifacts(str(out), artifact_path="neurons")
        metrics["run_id"] = active.info.run_id
    metrics["table"] = str(out / "neurons_table.csv")
    return metrics
