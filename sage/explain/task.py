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

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import SageError
from ..metrics.suite import MASK_NUMBERS, check_metric_sets
from ..models.fingerprint import model_fingerprint
from ..neurons import run as run_neurons
from ..saliency.methods import create_method
from ..saliency.methods.transformer import resolve_grids
from .meta import meta_evaluate
from .sinks import ArrayStore, MetricRows, PooledResults, SummaryRows, TokenTable, Visuals
from .sinks.agreement import method_agreement
from .sinks.mlflow_log import log_explain_run
from .sinks.scalars import mass_aggregates, metric_aggregates
from .sinks.spurious import spurious_mosaics
from .sources import LABEL_NUMBERS, open_source
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


def _record_skipped(skipped: dict[str, str], out: Path) -> None:
    """Log the left-out metric sets and numbers once and write ``skipped_metrics.json``."""
    if skipped:
        log.warning("skipped: %s", "; ".join(f"{name} ({why})" for name, why in skipped.items()))
        (out / "skipped_metrics.json").write_text(json.dumps(skipped, indent=2))


def run(cfg: DictConfig) -> dict[str, float]:
    """Explain ``cfg.checkpoint`` on ``cfg.dataset`` / ``cfg.split``, or ``cfg.model`` on the
    images of ``cfg.images`` (:mod:`sage.explain.sources`); return aggregate metrics.

    ``mode=neurons`` runs the unit-attribution analysis instead (:mod:`sage.neurons`).
    """
    started_ms = int(time.time() * 1000)
    mode = cfg.get("mode", "maps")
    if mode == "neurons":
        if cfg.get("images"):
            raise SageError("mode=neurons explains a checkpoint on its prepared data, not images=")
        return run_neurons(cfg)
    if mode != "maps":
        raise SageError(f"mode must be 'maps' or 'neurons', got {mode!r}")
    if isinstance(cfg.targets, bool):  # the command line's targets=true is YAML's boolean
        cfg.targets = "true" if cfg.targets else "predicted"
    if cfg.targets not in ("predicted", "true"):
        raise SageError(f"targets must be 'predicted' or 'true', got {cfg.targets!r}")
    torch.manual_seed(int(cfg.seed))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    Path(cfg.paths.outputs_dir).mkdir(parents=True, exist_ok=True)
    src = open_source(cfg, out)
    spec, size, classes = src.spec, src.size, src.classes
    device = torch.device(cfg.device)
    net = src.net.to(device)
    loader = src.loader
    grids = resolve_grids(cfg.grids, net, size)  # "model": one cell per ViT token
    methods = {
        key: create_method(**{k: v for k, v in OmegaConf.to_container(m, resolve=True).items()})
        for key, m in cfg.cam.items()
    }
    if not methods:
        raise SageError("no saliency method selected: e.g. cam=[gradcam,eigencam]")
    metric_sets = OmegaConf.to_container(cfg.metrics, resolve=True) if cfg.get("metrics") else {}
    check_metric_sets({k: v for k, v in metric_sets.items() if k != "meta"})
    # what the images cannot support (no labels, no masks) is left out with its reason
    metric_sets, skipped = src.usable_sets(metric_sets)
    _record_skipped(skipped, out)
    # meta-evaluation is not a per-batch set: it scores the others (and needs the answer key)
    meta = metric_sets.pop("meta", None) if "meta" in metric_sets else False
    if meta is not False and "ground_truth" not in methods:
        methods["ground_truth"] = create_method("ground_truth")

    explain_true = cfg.targets == "true"
    stage = {
        "device": device,
        "grids": grids,
        "mean": spec.mean,
        "std": spec.std,
        "explain_true": explain_true,
        "metric_sets": metric_sets,
        "part_names": src.part_names,
        "discriminative": src.discriminative,
    }
    store = ArrayStore(out / "arrays")
    tokens = TokenTable(out / "tokens.parquet", classes, **src.keys)
    summary, metric_rows, pooled = SummaryRows(classes, **src.keys), MetricRows(), PooledResults()
    seconds: dict[str, float] = {}
    first = next(iter(methods))
    try:
        for key, method in methods.items():
            visuals = Visuals(
                out,
                key,
                classes,
                spec.mean,
                spec.std,
                overlays=int(cfg.overlays),
                title=f"{key}: {src.title}",
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
        raise SageError(f"{src.where} has no image to explain")
    table.to_csv(out / "summary.csv", index=False)
    aggregates = mass_aggregates(table, seconds)
    per_image = metric_rows.frame()
    if per_image is not None:
        per_image.to_csv(out / "metrics.csv", index=False)
        aggregates.update(metric_aggregates(per_image))
        if "alignment" in metric_sets and src.masked:  # ranked by Δ density on the mask
            spurious_mosaics(per_image, out, src.image)
        if "randomisation" in metric_sets:  # the sanity checks' curves (Adebayo et al.)
            from ..plots.randomisation import plot_randomisation_figures

            plot_randomisation_figures(per_image, out / "randomisation", src.backbone)
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
                    num_classes=len(classes),
                    mean=spec.mean,
                    std=spec.std,
                    explain_true=explain_true,
                    discriminative=src.discriminative,
                    part_names=src.part_names,
                    progress=bool(cfg.progress),
                )
            )
    pooled_scores = pooled.scores("explain")
    for prefix, scores in pooled_scores.items():
        aggregates.update({f"{prefix}/{k}": v for k, v in scores.items()})
    if pooled_scores:
        (out / "pooled_metrics.json").write_text(json.dumps(pooled_scores, indent=2))
    for name, frame in pooled.per_image().items():  # what a bootstrap over images needs
        frame.to_csv(out / f"{name}_per_image.csv", index=False)
    if len(methods) > 1:  # do the methods agree on where the mass is? (rank of cell masses)
        agreement = method_agreement(out / "arrays", list(methods))
        agreement.to_csv(out / "method_agreement.csv", index=False)
        whole = agreement[agreement.region == "whole"]
        for (ma, mb, grid), g in whole.groupby(["method_a", "method_b", "grid"]):
            aggregates[f"explain/agreement/{ma}_vs_{mb}/{grid}/spearman"] = float(g.spearman.mean())
            aggregates[f"explain/agreement/{ma}_vs_{mb}/{grid}/patch_kl"] = float(g.patch_kl.mean())
    # skipped numbers are not reported (a mask-less fg_mass would read 1.0 or NaN)
    dropped = tuple(f"/{n}" for n in set(skipped) & {*MASK_NUMBERS, *LABEL_NUMBERS})
    aggregates = {k: v for k, v in aggregates.items() if not k.endswith(dropped)}

    params = {
        **src.params,
        "targets": cfg.targets,
        "grids": json.dumps(grids),
        "seed": cfg.seed,
        "n_images": src.n_images,
    }
    params.update({f"method/{k}": json.dumps(m.params, default=str) for k, m in methods.items()})
    (out / "explain_params.json").write_text(json.dumps(params, indent=2, default=str))
    model_id = src.model_id
    tags = {**src.tags, "model_fingerprint": model_fingerprint(net)}
    if skipped:
        tags["skipped_metrics"] = ", ".join(skipped)
    aggregates["run_id"] = log_explain_run(
        cfg, out, model_id, params, tags, aggregates, started_ms=started_ms
    )
    return aggregates
