"""Explain task: saliency maps, fg/bg masses and tokens for a checkpoint on a prepared split.

``run(cfg)`` loads a checkpoint (path or MLflow run id), computes every configured method
over the split in batches and writes, under an MLflow run of its own
(``explain-<timestamp>/<model>-nc<classes>-<dataset>-<variant>``):

- ``arrays/<method>/<image_id>.npz``: per-image arrays ``whole`` (S̃), ``fg`` (S̃⊙M),
  ``bg`` (S̃⊙(1−M)), ``mask`` and ``tokens_<P>x<Q>`` (regions, P, Q, 6);
- ``tokens.csv`` / ``tokens.parquet``: the long token table keyed by (image_id, split,
  class, variant, method, grid, region, model_run);
- ``summary.csv``: per image and method A_fg, A_bg, prediction, confidence, correct, flags;
- ``overlays/<method>/*.png`` and ``mosaics/<method>_correct_error.png``;
- ``token_grids/<method>.png`` (cell masses and centroids of the first image);
- ``method_agreement.csv``: patch KL and Spearman of cell masses between every two methods.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data.datamodule import PreparedImages, image_transform
from .data.ensure import ensure_prepared
from .data.prepared import PreparedDataset
from .errors import SageError
from .explain_batch import discriminative_parts, explain_batch, ground_truth
from .explain_meta import meta_evaluate
from .metrics.alignment import EA_NAMES, rank_spurious_candidates
from .metrics.suite import check_metric_sets, pooled_set
from .models import get_backbone_spec
from .models.fingerprint import model_fingerprint
from .plots.overlay import correct_error_mosaic, overlay
from .plots.ranking import ranking_mosaic
from .plots.tokens import plot_token_grid
from .saliency.compare import method_agreement
from .saliency.methods import create_method
from .saliency.methods.transformer import resolve_grids
from .saliency.tokens import tokens_to_frame
from .tracking.checkpoints import resolve_checkpoint
from .tracking.run_record import git_commit
from .tracking.store import experiment_for
from .training.classifier import load_classifier

log = logging.getLogger(__name__)

MOSAIC_PER_SIDE = 3


def _denormalise(images: torch.Tensor, mean, std) -> np.ndarray:
    mean = torch.tensor(mean, device=images.device)[:, None, None]
    std = torch.tensor(std, device=images.device)[:, None, None]
    rgb = ((images * std + mean).clamp(0, 1) * 255).round().byte()
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def metric_aggregates(per_image: pd.DataFrame) -> dict[str, float]:
    """Per method, the NaN-aware mean of every metric column; EA names for IoU and PG."""
    out = {}
    columns = [c for c in per_image.columns if c not in ("image_id", "method")]
    for method, group in per_image.groupby("method", sort=False):
        for column, value in group[columns].mean(numeric_only=True).items():
            if np.isfinite(value):
                out[f"explain/{method}/{column}"] = float(value)
                name, _, region = column.partition("/")
                if name in EA_NAMES:  # Explanation Alignment: dataset means of IoU and PG
                    out[f"explain/{method}/{EA_NAMES[name].lower()}/{region}"] = float(value)
    return out


def _spurious_mosaics(per_image: pd.DataFrame, data: PreparedDataset, out: Path, size: int) -> None:
    """Lowest Δ density on the foreground first: the images whose saliency lies most outside
    the driver, i.e. spurious-feature candidates (Explanation Alignment §5)."""
    column = "delta_density/fg"
    for method, group in per_image.groupby("method", sort=False):
        ranked = rank_spurious_candidates(group, metric=column, k=10)
        items = []
        for image_id, delta in zip(ranked["image_id"], ranked[column], strict=True):
            arrays = np.load(out / "arrays" / method / f"{image_id}.npz")
            with Image.open(data.image_path(image_id)) as im:
                rgb = np.asarray(im.convert("RGB").resize((size, size)))
            whole = arrays["whole"]
            span = whole.max() - whole.min()
            scaled = (whole - whole.min()) / span if span > 0 else np.zeros_like(whole)
            items.append((rgb, scaled, arrays["mask"], f"{image_id[-14:]} Δ={delta:.2f}"))
        ranked.to_csv(out / f"spurious_candidates_{method}.csv", index=False)
        ranking_mosaic(
            items,
            out / "mosaics" / f"{method}_spurious_candidates.png",
            f"{method}: lowest Δ density (fg)",
        )


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


def trained_on(hparams: dict, ckpt: Path) -> PreparedDataset:
    """The prepared dataset checkpoint ``ckpt`` was trained on (recorded in the checkpoint)."""
    root = hparams.get("prepared_dataset")
    if not root:
        raise SageError(
            f"checkpoint {ckpt} does not record the data it was trained on (made before SAGE "
            "recorded it); name the data: dataset=<config>, e.g. dataset=synth_sf3d/full"
        )
    if not Path(root).is_dir():
        raise SageError(
            f"the data checkpoint {ckpt} was trained on, {root}, is gone; prepare it again "
            "and name it: dataset=<config>"
        )
    return PreparedDataset.open(root)


def load_checkpoint_and_data(
    cfg: DictConfig, out: Path
) -> tuple[Path, str, torch.nn.Module, dict, dict, PreparedDataset]:
    """``(ckpt, model_run, net, hparams, dataset config, PreparedDataset)`` for
    ``cfg.checkpoint`` on ``cfg.dataset``, or when no ``dataset=`` is given on the exact
    prepared data the checkpoint was trained on; the classes must match (every mode)."""
    if not cfg.get("checkpoint"):
        raise SageError("explain needs checkpoint=<path to .ckpt or MLflow run id>")
    ckpt, model_run = resolve_checkpoint(
        str(cfg.checkpoint),
        cfg.logger.tracking_uri,
        cfg.checkpoint_select,
        out / "checkpoint",
        cfg.logger.experiment_name,
    )
    net, hparams = load_classifier(ckpt)
    if cfg.get("dataset"):
        ds = OmegaConf.to_container(cfg.dataset, resolve=True)
        data = PreparedDataset.open(ensure_prepared(ds))
    else:
        data = trained_on(hparams, ckpt)
        ds = {"name": data.summary.get("dataset", data.root.name), **data.summary.get("config", {})}
        ds["variant"] = data.summary.get("variant", ds.get("variant"))
    if data.classes != list(hparams["class_names"]):
        raise SageError(
            f"checkpoint classes {hparams['class_names']} differ from {data.root}'s {data.classes}"
        )
    return ckpt, model_run, net, hparams, ds, data


def run(cfg: DictConfig) -> dict[str, float]:
    """Explain ``cfg.checkpoint`` on ``cfg.dataset`` / ``cfg.split``; return aggregate metrics.

    ``mode=neurons`` runs the unit-attribution analysis instead (:mod:`sage.neurons`).
    """
    mode = cfg.get("mode", "maps")
    if mode == "neurons":
        from .neurons import run as run_neurons  # imported here: sage.neurons imports explain

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
    class_of = dict(enumerate(data.classes))
    first_method = next(iter(methods))
    keys = {"split": cfg.split, "variant": ds["variant"], "model_run": model_run}

    metric_sets = OmegaConf.to_container(cfg.metrics, resolve=True) if cfg.get("metrics") else {}
    # meta-evaluation is not a per-batch set: it scores the others (and needs the answer key)
    meta = metric_sets.pop("meta", None) if "meta" in metric_sets else False
    if meta is not False and "ground_truth" not in methods:
        methods["ground_truth"] = create_method("ground_truth")
    discriminative = discriminative_parts(data, images_ds.frame)
    check_metric_sets(metric_sets)
    token_frames, summaries, metric_frames, aggregates = [], [], [], {}
    pooled: dict[tuple[str | None, str], list] = {}  # (method or None, set) -> batch results
    timings: dict[str, float] = {}
    for key, method in methods.items():
        arrays = out / "arrays" / key
        arrays.mkdir(parents=True, exist_ok=True)
        (out / "overlays" / key).mkdir(parents=True, exist_ok=True)
        tiles: dict[str, dict[str, list]] = {c: {"correct": [], "error": []} for c in data.classes}
        n_overlays = 0
        cache: dict = {}  # per-method state of the metric sets (e.g. COSE's transforms)
        start = time.perf_counter()
        for batch in tqdm(loader, desc=f"explain {key}", disable=not cfg.progress):
            images = batch["image"].to(device)
            labels = batch["label"].to(device)
            masks = batch["mask"].to(device)
            ids = list(batch["image_id"])
            parts = batch["parts"].to(device) if "parts" in batch else None
            res = explain_batch(
                net,
                method,
                images,
                labels,
                masks,
                grids=grids,
                mean=spec.mean,
                std=spec.std,
                explain_true=cfg.targets == "true",
                metric_sets=metric_sets,
                pooled_model_level=key == first_method,  # RFS: once, with the first method
                parts=parts,
                part_names=data.part_names,
                gt=ground_truth(parts, ids, discriminative),
                cache=cache,
                ids=ids,
            )
            conf, pred, sb, toks = res.confidence, res.pred, res.saliency, res.tokens
            if metric_sets:
                for name, result in res.pooled.items():
                    owner = None if pooled_set(name).model_level else key
                    pooled.setdefault((owner, name), []).append(result)
                metric_frames.append(
                    pd.DataFrame(
                        {"image_id": ids, "method": key}
                        | {c: v.detach().cpu().numpy() for c, v in res.columns.items()}
                    )
                )
            classes = [class_of[int(y)] for y in labels]
            for name, t in toks.items():
                frame = tokens_to_frame(t, name, ids, **keys, method=key)
                frame.insert(1, "class", np.repeat(classes, len(frame) // len(ids)))
                token_frames.append(frame)
            pdf, m = sb.pdf.cpu().numpy(), masks.cpu().numpy().astype(bool)
            tok_np = {name: t.cpu().numpy() for name, t in toks.items()}
            for i, image_id in enumerate(ids):
                np.savez_compressed(
                    arrays / f"{image_id}.npz",
                    whole=pdf[i],
                    fg=pdf[i] * m[i],
                    bg=pdf[i] * ~m[i],
                    mask=m[i],
                    **{f"tokens_{name}": arr[i] for name, arr in tok_np.items()},
                )
            summaries.append(
                pd.DataFrame(
                    {
                        "image_id": ids,
                        "split": cfg.split,
                        "class": classes,
                        "variant": ds["variant"],
                        "method": key,
                        "model_run": model_run,
                        "label": labels.cpu().numpy(),
                        "pred": pred.cpu().numpy(),
                        "pred_class": [class_of[int(p)] for p in pred],
                        "confidence": conf.detach().cpu().numpy(),
                        "correct": (pred == labels).cpu().numpy(),
                        "a_fg": sb.a_fg.cpu().numpy(),
                        "a_bg": sb.a_bg.cpu().numpy(),
                        "zero_map": sb.zero.cpu().numpy(),
                    }
                )
            )
            rgb = _denormalise(images, spec.mean, spec.std)
            mm = sb.minmax.cpu().numpy()
            for i, image_id in enumerate(ids):
                side = "correct" if int(pred[i]) == int(labels[i]) else "error"
                needs_tile = len(tiles[classes[i]][side]) < MOSAIC_PER_SIDE
                if not needs_tile and n_overlays >= cfg.overlays:
                    continue
                over = overlay(rgb[i], mm[i], m[i])
                if needs_tile:
                    caption = (
                        f"{class_of[int(pred[i])]} {float(conf[i]):.2f} fg {float(sb.a_fg[i]):.2f}"
                    )
                    tiles[classes[i]][side].append((over, caption))
                if n_overlays < cfg.overlays:
                    Image.fromarray(np.concatenate([rgb[i], over], axis=1)).save(
                        out / "overlays" / key / f"{image_id}.png"
                    )
                    n_overlays += 1
            if not (out / "token_grids" / f"{key}.png").exists():
                (out / "token_grids").mkdir(exist_ok=True)
                name = max(tok_np, key=lambda n: int(n.split("x")[0]))
                plot_token_grid(
                    rgb[0],
                    pdf[0],
                    tok_np[name][0],
                    out / "token_grids" / f"{key}.png",
                    f"{key} {ids[0]} ({name})",
                )
        timings[key] = time.perf_counter() - start
        (out / "mosaics").mkdir(exist_ok=True)
        correct_error_mosaic(
            tiles,
            out / "mosaics" / f"{key}_correct_error.png",
            f"{key}: {ckpt.name}",
            MOSAIC_PER_SIDE,
        )

    summary = pd.concat(summaries, ignore_index=True)
    tokens = pd.concat(token_frames, ignore_index=True)
    tokens.to_csv(out / "tokens.csv", index=False)
    tokens.to_parquet(out / "tokens.parquet", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    for key, group in summary.groupby("method", sort=False):
        valid = group[~group.zero_map]
        aggregates.update(
            {
                f"explain/{key}/fg_mass": float(valid.a_fg.mean()) if len(valid) else float("nan"),
                f"explain/{key}/bg_mass": float(valid.a_bg.mean()) if len(valid) else float("nan"),
                f"explain/{key}/fg_mass_correct": float(valid[valid.correct].a_fg.mean())
                if valid.correct.any()
                else float("nan"),
                f"explain/{key}/fg_mass_error": float(valid[~valid.correct].a_fg.mean())
                if (~valid.correct).any()
                else float("nan"),
                f"explain/{key}/zero_maps": float(group.zero_map.sum()),
                f"explain/{key}/seconds_per_image": timings[key] / len(group),
            }
        )
    aggregates["explain/accuracy"] = float(summary.drop_duplicates("image_id").correct.mean())
    if metric_frames:
        per_image = pd.concat(metric_frames, ignore_index=True)
        per_image.to_csv(out / "metrics.csv", index=False)
        aggregates.update(metric_aggregates(per_image))
        if "alignment" in metric_sets:
            _spurious_mosaics(per_image, data, out, size)
        if "randomisation" in metric_sets:  # the sanity checks' curves (Adebayo et al.)
            from .plots.randomisation import plot_randomisation_figures

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
                    explain_true=cfg.targets == "true",
                    discriminative=discriminative,
                    part_names=data.part_names,
                    progress=bool(cfg.progress),
                )
            )
    pooled_scores = {}
    for (owner, name), results in pooled.items():
        scores = pooled_set(name).aggregate(results)
        prefix = f"explain/{owner}/{name}" if owner else f"explain/{name}"
        pooled_scores[prefix] = scores
        aggregates.update({f"{prefix}/{k}": v for k, v in scores.items()})
    if pooled_scores:
        (out / "pooled_metrics.json").write_text(json.dumps(pooled_scores, indent=2))
    if len(methods) > 1:  # do the methods agree on where the mass is? (rank of cell masses)
        agreement = method_agreement(tokens)
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
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model_id = f"{hparams['backbone']}-nc{len(data.classes)}-{ds['name']}-{ds['variant']}"
    run_name = f"explain-{stamp}/{model_id}"
    with mlflow.start_run(experiment_id=experiment_for(cfg.logger), run_name=run_name) as active:
        mlflow.log_params(params)
        mlflow.set_tags(
            {
                "stage": "explain",
                "git_commit": git_commit(cfg.paths.root_dir),
                "model_run": model_run,
                "model_fingerprint": model_fingerprint(net),
                "prepared_dataset": str(data.root),
            }
        )
        mlflow.log_metrics({k: v for k, v in aggregates.items() if np.isfinite(v)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_artifacts(str(out), artifact_path="explain")
        aggregates["run_id"] = active.info.run_id
    return aggregates
