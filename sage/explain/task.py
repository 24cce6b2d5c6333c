"""The explain task (``explain.py``): a checkpoint's maps over a split, streamed to disk.

``run(cfg)`` loads the checkpoint and its data, then for every method pipes the split's
batches through the compute stage (:func:`~sage.explain.stage.explain_stream`) into the sinks
(:mod:`sage.explain.sinks`), one batch at a time, so memory does not grow with the split:
maps and tokens go to disk as they come, only per-image scalar rows and a few mosaic tiles
stay. After the stream it draws what needs the whole split (spurious candidates and method
agreement, read back from the array store; the randomisation curves; the meta-evaluation)
and logs the directory to MLflow. Output files: :mod:`sage.explain`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.datamodule import PreparedImages, image_transform
from ..data.prepared import PreparedDataset
from ..errors import SageError
from ..metrics.suite import check_metric_sets
from ..models import get_backbone_spec
from ..models.fingerprint import model_fingerprint
from ..neurons import run as run_neurons
from ..saliency.methods import create_method
from ..saliency.methods.transformer import resolve_grids
from ..training.checkpoint_data import load_checkpoint_and_data
from .batch import discriminative_parts
from .meta import meta_evaluate
from .sinks import ArrayStore, MetricRows, PooledResults, SummaryRows, TokenTable, Visuals
from .sinks.agreement import method_agreement
from .sinks.mlflow_log import log_explain_run
from .sinks.scalars import mass_aggregates, metric_aggregates
from .sinks.spurious import spurious_mosaics
from .stage import explain_stream

log = logging.getLogger(__name__)


def _meta_stage(
    net: torch.nn.Module,
    methods: dict,
    per_image: pd.DataFrame,
    loader: DataLoader,
    metric_sets: dict,
    options: dict,
    out: Path,
    *,
    num_classes: int,
    **score_options,
) -> dict[str, float]:
    """Write ``meta_validity.csv`` (and the perturbed/randomised models' per-image tables);
    return its summary for MLflow."""
    if not metric_sets:
        raise SageError("metrics=[meta] scores other metric sets: add some, e.g. [alignment,meta]")
    table, others = meta_evaluate(
        net, methods, per_image, loader, metric_sets, num_classes, **options, **score_options
    )
    table.to_csv(out / "meta_validity.csv", index=False)
    for name, frame in others.items():
        frame.to_csv(out / f"metrics_{name}_model.csv", index=False)
    flagged = table.loc[table.trivial_first, "metric"].tolist()
    if flagged:
        log.warning("metrics that rank a trivial baseline first: %s", ", ".join(flagged))
    return {
        "explain/meta/ordered_fraction": float(table.ordered.mean()),
        "explain/meta/trivial_first": float(table.trivial_first.sum()),
        "explain/meta/pair_accuracy": float(table.pair_accuracy.mean()),
    }


def _image_reader(data: PreparedDataset, size: int):
    def image(image_id: str) -> np.ndarray:
        with Image.open(data.image_path(image_id)) as im:
            return np.asarray(im.convert("RGB").resize((size, size)))

    return image


def run(cfg: DictConfig) -> dict[str, float]:
    """Explain ``cfg.checkpoint`` on ``cfg.dataset`` / ``cfg.split``; return aggregate metrics.

    ``mode=neurons`` runs the unit-attribution analysis instead (:mod:`sage.neurons`).
    """
    mode = cfg.get("mode", "maps")
    if mode == "neurons":
        return run_neurons(cfg)
    if mode != "maps":
        raise SageError(f"mode must be 'maps' or 'neurons', got {mode!r}")
    torch.manual_seed(int(cfg.seed))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    Path(cfg.paths.outputs_dir).mkdir(parents=True, exist_ok=True)
    ckpt, model_run, net, hparams, ds, data = load_checkpoint_and_data(cfg, out)
    if cfg.targets not in ("predicted", "true"):
        raise SageError(f"targets must be 'predicted' or 'true', got {cfg.targets!r}")
    spec = get_backbone_spec(hparams["backbone"])
    size = int(hparams.get("image_size") or spec.input_size)
    device = torch.device(cfg.device)
    net = net.to(device)
    images_ds = PreparedImages(
        data,
        cfg.split,
        image_transform(size, spec.mean, spec.std),
        with_masks=True,
        with_parts=bool(data.part_names),
        limit=cfg.get("limit"),
    )
    loader = DataLoader(images_ds, batch_size=int(cfg.batch_size), shuffle=False)
    grids = resolve_grids(cfg.grids, net, size)  # "model": one cell per ViT token
    methods = {
        key: create_method(**{k: v for k, v in OmegaConf.to_container(m, resolve=True).items()})
        for key, m in cfg.cam.items()
    }
    if not methods:
        raise SageError("no saliency method selected: e.g. cam=[gradcam,eigencam]")
    metric_sets = OmegaConf.to_container(cfg.metrics, resolve=True) if cfg.get("metrics") else {}
    # meta-evaluation is not a per-batch set: it scores the others (and needs the answer key)
    meta = metric_sets.pop("meta", None) if "meta" in metric_sets else False
    if meta is not False and "ground_truth" not in methods:
        methods["ground_truth"] = create_method("ground_truth")
    discriminative = discriminative_parts(data, images_ds.frame)
    check_metric_sets(metric_sets)

    explain_true = cfg.targets == "true"
    stage = {
        "device": device,
        "grids": grids,
        "mean": spec.mean,
        "std": spec.std,
        "explain_true": explain_true,
        "metric_sets": metric_sets,
        "part_names": data.part_names,
        "discriminative": discriminative,
    }
    keys = {"split": cfg.split, "variant": ds["variant"], "model_run": model_run}
    store = ArrayStore(out / "arrays")
    tokens = TokenTable(out / "tokens.parquet", data.classes, **keys)
    summary, metric_rows, pooled = SummaryRows(data.classes, **keys), MetricRows(), PooledResults()
    seconds: dict[str, float] = {}
    first = next(iter(methods))
    try:
        for key, method in methods.items():
            visuals = Visuals(
                out,
                key,
                data.classes,
                spec.mean,
                spec.std,
                overlays=int(cfg.overlays),
                title=f"{key}: {ckpt.name}",
            )
            sinks = (store, tokens, summary, metric_rows, pooled, visuals)
            start = time.perf_counter()
            batches = tqdm(loader, desc=f"explain {key}", disable=not cfg.progress)
            # RFS and other model-level pooled sets: once, with the first method
            for item in explain_stream(
                net, method, key, batches, pooled_model_level=key == first, **stage
            ):
                for sink in sinks:
                    sink.add(item)
            seconds[key] = time.perf_counter() - start
            visuals.close()
    finally:
        tokens.close()

    table = summary.frame()
    if table is None:
        raise SageError(f"split {cfg.split!r} of {data.root} has no image to explain")
    table.to_csv(out / "summary.csv", index=False)
    aggregates = mass_aggregates(table, seconds)
    per_image = metric_rows.frame()
    if per_image is not None:
        per_image.to_csv(out / "metrics.csv", index=False)
        aggregates.update(metric_aggregates(per_image))
        if "alignment" in metric_sets:
            spurious_mosaics(per_image, out, _image_reader(data, size))
        if "randomisation" in metric_sets:  # the sanity checks' curves (Adebayo et al.)
            from ..plots.randomisation import plot_randomisation_figures

            plot_randomisation_figures(per_image, out / "randomisation", hparams["backbone"])
        if meta is not False:
            aggregates.update(
                _meta_stage(
                    net,
                    methods,
                    per_image,
                    loader,
                    metric_sets,
                    meta or {},
                    out,
                    num_classes=len(data.classes),
                    mean=spec.mean,
                    std=spec.std,
                    explain_true=explain_true,
                    discriminative=discriminative,
                    part_names=data.part_names,
                    progress=bool(cfg.progress),
                )
            )
    pooled_scores = pooled.scores("explain")
    for prefix, scores in pooled_scores.items():
        aggregates.update({f"{prefix}/{k}": v for k, v in scores.items()})
    if pooled_scores:
        (out / "pooled_metrics.json").write_text(json.dumps(pooled_scores, indent=2))
    if len(methods) > 1:  # do the methods agree on where the mass is? (rank of cell masses)
        agreement = method_agreement(out / "arrays", list(methods))
        agreement.to_csv(out / "method_agreement.csv", index=False)
        whole = agreement[agreement.region == "whole"]
        for (ma, mb, grid), g in whole.groupby(["method_a", "method_b", "grid"]):
            aggregates[f"explain/agreement/{ma}_vs_{mb}/{grid}/spearman"] = float(g.spearman.mean())
            aggregates[f"explain/agreement/{ma}_vs_{mb}/{grid}/patch_kl"] = float(g.patch_kl.mean())

    params = {
        "checkpoint": str(cfg.checkpoint),
        "model_run": model_run,
        "backbone": hparams["backbone"],
        "dataset": ds["name"],
        "variant": ds["variant"],
        "split": cfg.split,
        "targets": cfg.targets,
        "grids": json.dumps(grids),
        "seed": cfg.seed,
        "n_images": len(images_ds.frame),
    }
    params.update({f"method/{k}": json.dumps(m.params, default=str) for k, m in methods.items()})
    (out / "explain_params.json").write_text(json.dumps(params, indent=2, default=str))
    model_id = f"{hparams['backbone']}-nc{len(data.classes)}-{ds['name']}-{ds['variant']}"
    tags = {
        "model_run": model_run,
        "model_fingerprint": model_fingerprint(net),
        "prepared_dataset": str(data.root),
    }
    aggregates["run_id"] = log_explain_run(cfg, out, model_id, params, tags, aggregates)
    return aggregates
