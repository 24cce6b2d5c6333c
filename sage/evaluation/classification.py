"""Classification metrics of one evaluation cell, from true labels and probability vectors.

Scalar metrics come from torchmetrics (the same implementations training logs as ``val/*``
and ``test/*``), ROC curves and AUCs from scikit-learn; nothing is re-derived here except the
per-class counts read off the confusion matrix.

Conventions (docs/metrics.md §11):

- the prediction is ``argmax`` of the probabilities (first index on ties, as ``torch.argmax``),
  confidence its probability;
- macro averages skip classes absent from both targets and predictions, and count a class
  that occurs but is never predicted as precision 0 (torchmetrics and scikit-learn agree on
  both); weighted averages weight by support;
- per class (``per_class.csv``): FN = images of the class predicted as another, FN rate =
  FN / support (miss rate); FP = images of other classes predicted as the class, FP rate =
  FP / (FP + TN); there 0/0 is NaN (e.g. the precision of a class never predicted), never a
  silent 0;
- ROC is one-vs-rest; a class without positives or without negatives in the target has no
  curve and a NaN AUC, and the macro AUC averages the classes that have one. The micro curve
  pools every (image, class) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import auc, roc_curve
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from ..errors import SageError

# Grid matrices and heatmaps are written for these keys (``eval/<key>`` in MLflow).
METRIC_KEYS: tuple[str, ...] = (
    "acc",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "f1_weighted",
    "precision_weighted",
    "recall_weighted",
    "ece",
    "auc_macro",
    "auc_micro",
    "support",
)
# Lower is better for these (heatmaps reverse their colour map).
LOWER_IS_BETTER = frozenset({"ece"})


def check_predictions(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> None:
    """Shapes, label range and finiteness; a violation is a :class:`SageError` naming it."""
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise SageError(f"probabilities must be (N, {num_classes}), got {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise SageError(f"labels must be ({probs.shape[0]},), got {labels.shape}")
    if len(labels) == 0:
        raise SageError("no predictions to evaluate (empty split?)")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise SageError(f"labels outside [0, {num_classes}): {sorted(set(labels.tolist()))}")
    if not np.isfinite(probs).all():
        raise SageError("probabilities hold NaN or inf")


def predictions(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted index, confidence)`` per row."""
    probs = np.asarray(probs)
    pred = np.asarray(torch.as_tensor(probs).argmax(1))
    return pred, probs[np.arange(len(probs)), pred]


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, ece_bins: int = 15, roc: RocData | None = None
) -> dict[str, float]:
    """Accuracy, F1/precision/recall (macro and weighted), ECE, AUCs and support.

    Args:
        labels: ``(N,)`` true class indices.
        probs: ``(N, C)`` predicted probabilities (rows sum to 1).
        ece_bins: equal-width confidence bins of the expected calibration error (L1), as in
            training (15).
        roc: :func:`roc_data` of the same predictions, if already computed.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    check_predictions(labels, probs, n_classes)
    pred, _ = predictions(probs)
    y = torch.as_tensor(labels)
    p = torch.as_tensor(pred)
    out = {"acc": float(multiclass_accuracy(p, y, n_classes, average="micro"))}
    for avg in ("macro", "weighted"):
        out[f"f1_{avg}"] = float(multiclass_f1_score(p, y, n_classes, average=avg))
        out[f"precision_{avg}"] = float(multiclass_precision(p, y, n_classes, average=avg))
        out[f"recall_{avg}"] = float(multiclass_recall(p, y, n_classes, average=avg))
    out["ece"] = float(
        multiclass_calibration_error(
            torch.as_tensor(probs, dtype=torch.float32), y, n_classes, n_bins=ece_bins, norm="l1"
        )
    )
    curves = roc if roc is not None else roc_data(labels, probs)
    out["auc_macro"] = curves.auc_macro
    out["auc_micro"] = curves.auc_micro
    out["support"] = float(len(labels))
    return out


def confusion(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts, rows true, columns predicted."""
    return multiclass_confusion_matrix(
        torch.tensor(np.asarray(pred, dtype=np.int64)),  # a copy: pandas arrays are read-only
        torch.tensor(np.asarray(labels, dtype=np.int64)),
        num_classes,
    ).numpy()


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def per_class_table(
    labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], roc: RocData | None = None
) -> pd.DataFrame:
    """One row per class: support, predicted, TP/FP/FN/TN, precision, recall, F1, FP and FN
    rates and the one-vs-rest AUC (NaN where undefined)."""
    labels = np.asarray(labels, dtype=np.int64)
    pred, _ = predictions(probs)
    matrix = confusion(labels, pred, len(classes))
    tp = np.diag(matrix)
    support = matrix.sum(1)
    predicted = matrix.sum(0)
    fp = predicted - tp
    fn = support - tp
    tn = len(labels) - tp - fp - fn
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return pd.DataFrame(
        {
            "class": list(classes),
            "support": support,
            "predicted": predicted,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "fp_rate": _ratio(fp, fp + tn),
            "fn_rate": _ratio(fn, support),
            "auc": (roc if roc is not None else roc_data(labels, probs)).auc_per_class,
        }
    )


def fp_fn_lists(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """The images behind every FP and FN count, one row per (class, kind, image).

    ``frame`` is a predictions table with ``image_id``, ``true_idx``, ``pred_idx`` and
    ``confidence``. Every misclassified image appears twice: as an FN of its true class and as
    an FP of its predicted class. Rows are sorted by class, kind, then confidence (most
    confident mistakes first).
    """
    wrong = frame[frame.true_idx != frame.pred_idx]
    parts = []
    for kind, own in (("fn", "true_idx"), ("fp", "pred_idx")):
        part = wrong[["image_id", "true_idx", "pred_idx", "confidence"]].copy()
        part.insert(0, "kind", kind)
        part.insert(0, "class", [classes[i] for i in wrong[own]])
        part.insert(1, "class_idx", wrong[own].to_numpy())
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["true"] = [classes[i] for i in out.true_idx]
    out["predicted"] = [classes[i] for i in out.pred_idx]
    out = out.sort_values(
        ["class_idx", "kind", "confidence"], ascending=[True, False, False], kind="stable"
    )
    return out.drop(columns=["true_idx", "pred_idx"]).reset_index(drop=True)


@dataclass(frozen=True)
class RocData:
    """One-vs-rest ROC curves: per class (None where undefined), micro and macro."""

    per_class: list[tuple[np.ndarray, np.ndarray] | None]
    auc_per_class: np.ndarray
    micro: tuple[np.ndarray, np.ndarray]
    auc_micro: float
    macro: tuple[np.ndarray, np.ndarray] | None
    auc_macro: float


def roc_data(labels: np.ndarray, probs: np.ndarray) -> RocData:
    """ROC curves and AUCs (scikit-learn ``roc_curve`` / ``roc_auc_score``) for every class.

    The macro curve averages the per-class TPRs interpolated on the union of their FPRs (the
    scikit-learn recipe); its AUC is the mean of the per-class AUCs.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    onehot = labels[:, None] == np.arange(probs.shape[1])[None, :]
    curves: list[tuple[np.ndarray, np.ndarray] | None] = []
    aucs = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positives = int(onehot[:, c].sum())
        if positives == 0 or positives == len(labels):
            curves.append(None)  # one-vs-rest needs both positives and negatives
            continue
        fpr, tpr, _ = roc_curve(onehot[:, c], probs[:, c])
        curves.append((fpr, tpr))
        aucs[c] = auc(fpr, tpr)  # trapezoid under the full curve, = roc_auc_score
    # Pooled pairs always hold N positives and N·(C−1) negatives, so micro is always defined.
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    micro, auc_micro = (fpr, tpr), float(auc(fpr, tpr))
    defined = [cv for cv in curves if cv is not None]
    macro, auc_macro = None, float("nan")
    if defined:
        grid = np.unique(np.concatenate([fpr for fpr, _ in defined]))
        mean_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in defined], axis=0)
        macro, auc_macro = (grid, mean_tpr), float(np.nanmean(aucs))
    return RocData(curves, aucs, micro, auc_micro, macro, auc_macro)
