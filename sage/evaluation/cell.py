"""One cell of the grid: a source model's predictions on a target split, and their artifacts.

:func:`predict` runs the model over the split in batches (and, when saliency methods are
given, explains the predicted class through explain's stage, :func:`sage.explain.stage.
explain_one`, keeping per image A_fg, A_bg, the all-zero flag and the whole-map cell masses
of every token grid).
:func:`write_cell` turns the predictions into the cell's files:

| file | content |
|---|---|
| ``predictions.csv`` / ``.json`` | image_id, true, predicted, confidence, correct, probabilities |
| ``metrics.json`` | accuracy, macro/weighted F1, precision, recall, ECE, AUCs, support |
| ``per_class.csv`` | support, TP/FP/FN/TN, precision, recall, F1, FP/FN rates, AUC per class |
| ``confusion.csv``, ``confusion.png`` | the matrix, with FP/FN counts and rates in the margins |
| ``fp_fn.csv`` / ``.json`` | the images behind every FP and FN count |
| ``roc.png``, ``roc_per_class.png``, ``roc.json`` | ROC micro/macro and per class, AUCs |
| ``clusters/assignments.csv`` | per image: outcome, confidence bin (and fg/bg mass per method) |
| ``clusters/summary.csv``, ``clusters/groups.csv`` | per cluster statistics; bins used per group |
| ``clusters/pooled.csv`` | per (outcome, bin) over classes: size, share, fg/bg mass (per-bin) |
| ``clusters/{scatter,bands,histogram}.png``, ``clusters/thumbnails/<class>.png`` | figures |
| ``saliency.csv`` | per image and method: fg_mass, bg_mass, zero_map (with saliency only) |
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

import sage.plots  # noqa: F401  (Agg backend)

from ..data.datamodule import PreparedImages
from ..data.prepared import PreparedDataset
from ..errors import SageError, check_finite_logits
from ..explain.sinks.columns import Columns
from ..explain.stage import explain_one
from ..plots.clusters import (
    cluster_thumbnail_sheet,
    plot_cluster_bands,
    plot_cluster_histograms,
    plot_cluster_scatter,
)
from ..plots.confusion import plot_confusion_fp_fn
from ..plots.roc import plot_roc_overall, plot_roc_per_class
from ..saliency.methods import SaliencyMethod
from .classification import (
    classification_metrics,
    confusion,
    fp_fn_lists,
    per_class_table,
    predictions,
    roc_data,
)
from .clustering import assign_clusters, cluster_summary, pooled_by_bin


@dataclass
class Predictions:
    """Everything a cell needs from the model, aligned by row."""

    image_ids: list[str]
    labels: np.ndarray  # (N,) true class index
    probs: np.ndarray  # (N, C) float64
    # method -> {"a_fg", "a_bg", "zero": (N,), "mass_<P>x<Q>": (N, P·Q) whole-map cell masses}
    saliency: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def predict(
    net: nn.Module,
    images: PreparedImages,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    methods: Mapping[str, SaliencyMethod] | None = None,
    grids: Sequence[tuple[int, int]] = ((4, 4), (8, 8)),
    progress: bool = True,
    desc: str = "evaluate",
    num_workers: int = 0,
) -> Predictions:
    """Probabilities (and saliency statistics) of ``net`` on every image of ``images``.

    Non-finite logits are a :class:`SageError` naming the images. Saliency maps
    explain the predicted class and need ``images`` built ``with_masks=True``.
    """
    methods = dict(methods or {})
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    net = net.to(device).eval()
    ids: list[str] = []
    labels, probs = [], []
    columns = {m: Columns(metrics=False, masses=True) for m in methods}
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=True):
        x = batch["image"].to(device)
        batch_ids = list(batch["image_id"])
        with torch.no_grad():
            logits = net(x)
        check_finite_logits(logits, batch_ids, f"of {images.data.root}")
        ids += batch_ids
        labels.append(batch["label"].numpy())
        probs.append(logits.float().softmax(-1).double().cpu().numpy())
        # the grid explains the predicted class; only the masses are kept (no metric sets)
        source = {"image": x, "image_id": batch_ids}
        source |= {"mask": batch["mask"]} if "mask" in batch else {}
        for name, method in methods.items():
            item = explain_one(
                net, method, name, source, device=device, grids=grids, mean=(), std=()
            )
            columns[name].add(item)
    if not ids:
        raise SageError(f"split {images.split!r} of {images.data.root} is empty")
    keep = ("a_fg", "a_bg", "zero")
    return Predictions(
        ids,
        np.concatenate(labels).astype(np.int64),
        np.concatenate(probs),
        {
            m: {k: v for k, v in c.arrays().items() if k in keep or k.startswith("mass_")}
            for m, c in columns.items()
        },
    )


def predictions_frame(pred: Predictions, classes: Sequence[str]) -> pd.DataFrame:
    """The per-image table: ids, true/predicted names and indices, confidence, probabilities."""
    idx, conf = predictions(pred.probs)
    frame = pd.DataFrame(
        {
            "image_id": pred.image_ids,
            "true": [classes[i] for i in pred.labels],
            "true_idx": pred.labels,
            "predicted": [classes[i] for i in idx],
            "pred_idx": idx,
            "confidence": conf,
            "correct": idx == pred.labels,
        }
    )
    probs = pd.DataFrame(pred.probs, columns=[f"p_{c}" for c in classes])
    return pd.concat([frame, probs], axis=1)


def _write_json(path: Path, payload: object) -> None:
    def default(v):  # numpy scalars and NaN-safe floats
        return v.item() if hasattr(v, "item") else str(v)

    path.write_text(json.dumps(payload, indent=1, default=default, allow_nan=True))


def _curve(roc_pair, auc: float):
    return None if roc_pair is None else (roc_pair[0], roc_pair[1], float(auc))


def _thumbnails(
    clustered: pd.DataFrame,
    summary: pd.DataFrame,
    data: PreparedDataset,
    out: Path,
    classes: Sequence[str],
    per_cluster: int,
    saliency: Mapping[str, Mapping[str, np.ndarray]],
    title: str,
) -> None:
    """One sheet per class; a row per cluster with images spread over its confidence range."""
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(saliency), None)
    for cls in classes:
        rows = []
        for outcome in ("correct", "error"):
            part = summary[(summary["class"] == cls) & (summary.outcome == outcome)]
            for b, n, lo, hi in part[["bin", "n", "conf_min", "conf_max"]].itertuples(
                index=False, name=None
            ):
                members = clustered[
                    (clustered.true == cls) & (clustered.outcome == outcome) & (clustered.bin == b)
                ].sort_values("confidence", kind="stable")
                take = np.unique(np.linspace(0, len(members) - 1, per_cluster).round().astype(int))
                thumbs = []
                for pos in take:
                    row = members.iloc[pos]
                    with Image.open(data.image_path(row.image_id)) as im:
                        rgb = np.asarray(im.convert("RGB").resize((72, 72)))
                    caption = f"{row.predicted} {row.confidence:.2f}"
                    if first is not None:
                        caption += f" fg{saliency[first]['a_fg'][row.name]:.2f}"
                    thumbs.append((rgb, caption))
                label = f"{outcome} bin {b}\nconf {lo:.2f}-{hi:.2f}\nn={n}"
                if first is not None:
                    bg = part[part.bin == b][f"{first}/bg_mass"].iloc[0]
                    label += f"\n{first} bg_mass {bg:.2f}"
                rows.append((label, thumbs))
        header = f"{title} - true {cls} (captions: predicted class, confidence"
        header += f", {first} A_fg)" if first is not None else ")"
        cluster_thumbnail_sheet(rows, out / f"{cls}.png", header, per_cluster)


def _write_predictions(frame: pd.DataFrame, pred: Predictions, classes: list, out: Path) -> None:
    frame.to_csv(out / "predictions.csv", index=False)
    records = frame.drop(columns=[f"p_{c}" for c in classes]).to_dict(orient="records")
    for record, p in zip(records, pred.probs.tolist(), strict=True):
        record["probs"] = p
    _write_json(out / "predictions.json", {"classes": classes, "predictions": records})


def _write_errors_and_roc(
    frame: pd.DataFrame,
    pred: Predictions,
    classes: list,
    out: Path,
    title: str,
    ece_bins: int,
    figures: bool = True,
) -> dict[str, float]:
    """Metrics, per-class table, confusion figure, FP/FN lists and ROC files."""
    roc = roc_data(pred.labels, pred.probs)
    metrics = classification_metrics(pred.labels, pred.probs, ece_bins, roc)
    per_class = per_class_table(pred.labels, pred.probs, classes, roc)
    per_class.to_csv(out / "per_class.csv", index=False)
    matrix = confusion(pred.labels, frame.pred_idx.to_numpy(), len(classes))
    pd.DataFrame(matrix, index=classes, columns=classes).to_csv(out / "confusion.csv")
    if figures:
        plot_confusion_fp_fn(matrix, classes, per_class, out / "confusion.png", title)
    errors = fp_fn_lists(frame, classes)
    errors.to_csv(out / "fp_fn.csv", index=False)
    lists = {
        c: {
            k: errors[(errors["class"] == c) & (errors.kind == k)].image_id.tolist()
            for k in ("fp", "fn")
        }
        for c in classes
    }
    _write_json(out / "fp_fn.json", lists)
    if figures:
        macro = None if roc.macro is None else (*roc.macro, roc.auc_macro)
        plot_roc_overall((*roc.micro, roc.auc_micro), macro, out / "roc.png", title)
        curves = zip(classes, roc.per_class, roc.auc_per_class, strict=True)
        plot_roc_per_class(
            {c: _curve(cv, a) for c, cv, a in curves}, out / "roc_per_class.png", title
        )
    _write_json(
        out / "roc.json",
        {
            "auc_micro": roc.auc_micro,
            "auc_macro": roc.auc_macro,
            "auc_per_class": dict(zip(classes, roc.auc_per_class.tolist(), strict=True)),
        },
    )
    return metrics


def _write_clusters(
    frame: pd.DataFrame,
    pred: Predictions,
    data: PreparedDataset,
    out: Path,
    title: str,
    bins: int,
    seed: int,
    thumbnails: int,
    figures: bool = True,
) -> dict[str, float]:
    """Confidence clusters: tables, figures, thumbnail sheets; return their metrics."""
    classes = data.classes
    clustered, groups = assign_clusters(frame, bins, seed)
    summary = cluster_summary(clustered, pred.saliency)
    pooled = pooled_by_bin(clustered, groups, pred.saliency, bins)
    out.mkdir(exist_ok=True)
    assignments = clustered[["image_id", "true", "predicted", "confidence", "outcome", "bin"]]
    for method, arrays in pred.saliency.items():
        assignments = assignments.assign(
            **{f"{method}/fg_mass": arrays["a_fg"], f"{method}/bg_mass": arrays["a_bg"]}
        )
    assignments.to_csv(out / "assignments.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    groups.to_csv(out / "groups.csv", index=False)
    pooled.to_csv(out / "pooled.csv", index=False)
    if figures:
        plot_cluster_scatter(clustered, classes, out / "scatter.png", title, bins)
        plot_cluster_bands(summary, classes, out / "bands.png", title, bins)
        plot_cluster_histograms(clustered, out / "histogram.png", title, bins)
    if figures and thumbnails > 0:
        _thumbnails(
            clustered, summary, data, out / "thumbnails", classes, thumbnails, pred.saliency, title
        )
    # the per-bin numbers (clusters/<outcome>/bin<k>/...) are breakdowns: pooled.csv holds
    # them, the cell run logs them as scalars only with tracking.breakdowns=true
    metrics = {"clusters/groups_with_fewer_bins": float((groups.k_used < bins).sum())}
    for row in pooled.to_dict(orient="records"):
        prefix = f"clusters/{row['outcome']}/bin{row['bin']}"
        metrics[f"{prefix}/n"] = float(row["n"])
        for method in pred.saliency:
            metrics[f"{prefix}/{method}/bg_mass"] = float(row[f"{method}/bg_mass"])
    return metrics


def _write_saliency(frame: pd.DataFrame, pred: Predictions, out: Path) -> dict[str, float]:
    """Per-image fg/bg mass table and per-method means (flagged all-zero maps left out),
    named as explain and the callback name them: ``<method>/fg_mass``, ``/fg_mass/correct``..."""
    rows, metrics = [], {}
    correct = frame.correct.to_numpy()
    for method, arrays in pred.saliency.items():
        rows.append(
            pd.DataFrame(
                {
                    "image_id": pred.image_ids,
                    "method": method,
                    "correct": correct,
                    "fg_mass": arrays["a_fg"],
                    "bg_mass": arrays["a_bg"],
                    "zero_map": arrays["zero"],
                }
            )
        )
        valid = ~arrays["zero"].astype(bool)
        metrics[f"{method}/fg_mass"] = _mean(arrays["a_fg"][valid])
        metrics[f"{method}/bg_mass"] = _mean(arrays["a_bg"][valid])
        metrics[f"{method}/fg_mass/correct"] = _mean(arrays["a_fg"][valid & correct])
        metrics[f"{method}/fg_mass/error"] = _mean(arrays["a_fg"][valid & ~correct])
        metrics[f"{method}/zero_maps"] = float((~valid).sum())
    pd.concat(rows, ignore_index=True).to_csv(out / "saliency.csv", index=False)
    return metrics


def write_cell(
    pred: Predictions,
    data: PreparedDataset,
    out: Path,
    *,
    title: str = "",
    bins: int = 4,
    seed: int = 0,
    ece_bins: int = 15,
    thumbnails: int = 6,
    figures: bool = True,
) -> dict[str, float]:
    """Write every artifact of the cell under ``out``; return its metrics (no prefix).

    ``figures=False`` writes the tables only (large grids: figures dominate the cost)."""
    out.mkdir(parents=True, exist_ok=True)
    classes = data.classes
    frame = predictions_frame(pred, classes)
    _write_predictions(frame, pred, classes, out)
    metrics = _write_errors_and_roc(frame, pred, classes, out, title, ece_bins, figures)
    metrics |= _write_clusters(
        frame, pred, data, out / "clusters", title, bins, seed, thumbnails, figures
    )
    if pred.saliency:
        metrics |= _write_saliency(frame, pred, out)
    _write_json(out / "metrics.json", metrics)
    return metrics


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
