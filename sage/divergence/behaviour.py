"""Behavioural divergence of two models on the same images (docs/metrics.md §11).

Per image: whether the predicted classes differ, the Jensen–Shannon divergence between the two
predictive distributions, and the *flip type* (how the pair's correctness changes). Aggregates:
disagreement rate, mean JS, the per-class table and the flip matrix (model a's predicted class ×
model b's).

Jensen–Shannon divergence, in bits (base-2 logarithm, so it lies in [0, 1])::

    JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m),   m = (p + q) / 2

is a sum over the support of non-negative terms
``½ p_i log(p_i / m_i) + ½ q_i log(q_i / m_i)`` (each is ``m_i`` times the JS of the two-point
distribution ``(p_i, q_i)/(p_i + q_i)``), so :func:`js_terms` can split it exactly over any
partition of the support, e.g. foreground and background pixels of two saliency maps
(:mod:`sage.divergence.saliency`). ``0 · log 0 = 0``; JS is finite for any two distributions and
0 exactly when they are equal (bitwise-equal inputs give exactly 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

__all__ = [
    "FLIP_TYPES",
    "behaviour_frame",
    "behaviour_summary",
    "flip_matrix",
    "js_divergence",
    "js_terms",
    "per_class_table",
]

# How the pair's outcome changes on one image. "fixed"/"broken" read from a to b: b gets right
# what a got wrong / b gets wrong what a got right.
FLIP_TYPES: tuple[str, ...] = ("both_correct", "fixed", "broken", "same_wrong", "different_wrong")


def js_terms(p: Tensor, q: Tensor) -> Tensor:
    """Per-element Jensen–Shannon contributions in bits; they sum to ``JS(p, q)`` per row.

    Args:
        p, q: distributions ``(B, N)`` (or ``(B, H, W)``; any trailing shape), non-negative,
            each row summing to 1. Computed in float64: map values are ~1/(H·W) and the
            difference of two nearly equal maps would otherwise drown in rounding.

    Returns:
        Non-negative terms of ``p``'s shape, float64, on ``p``'s device.
    """
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}")
    p = p.to(torch.float64)
    q = q.to(device=p.device, dtype=torch.float64)
    m = (p + q) / 2
    safe_m = torch.where(m > 0, m, torch.ones_like(m))  # m = 0 only where p = q = 0

    def half_kl(x: Tensor) -> Tensor:
        safe_x = torch.where(x > 0, x, torch.ones_like(x))
        return torch.where(x > 0, 0.5 * x * (safe_x.log() - safe_m.log()), torch.zeros_like(x))

    # A tiny negative (rounding) is clamped: every term is ≥ 0 mathematically.
    return ((half_kl(p) + half_kl(q)) / math.log(2)).clamp_min(0)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """``JS(p ‖ q)`` in bits per row (``(B,)`` float64); rows are flattened from dim 1."""
    return js_terms(p, q).flatten(1).sum(1)


def flip_types(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """:data:`FLIP_TYPES` name per image."""
    ca, cb = pred_a == labels, pred_b == labels
    out = np.where(ca & cb, "both_correct", "")
    out = np.where(~ca & cb, "fixed", out)
    out = np.where(ca & ~cb, "broken", out)
    out = np.where(~ca & ~cb & (pred_a == pred_b), "same_wrong", out)
    return np.where(~ca & ~cb & (pred_a != pred_b), "different_wrong", out).astype(object)


def behaviour_frame(
    image_ids: Sequence[str],
    labels: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    classes: Sequence[str],
) -> pd.DataFrame:
    """Per image: true class, both predictions and confidences, ``disagree``, ``js_pred``,
    correctness of each model and the flip type."""
    if probs_a.shape != probs_b.shape or probs_a.shape[0] != len(labels):
        raise ValueError(
            f"probabilities {probs_a.shape} and {probs_b.shape} do not match {len(labels)} labels"
        )
    pred_a, pred_b = probs_a.argmax(1), probs_b.argmax(1)
    js = js_divergence(torch.from_numpy(probs_a), torch.from_numpy(probs_b)).numpy()
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame(
        {
            "image_id": list(image_ids),
            "true": names[labels],
            "true_idx": labels,
            "pred_a": names[pred_a],
            "pred_b": names[pred_b],
            "conf_a": probs_a.max(1),
            "conf_b": probs_b.max(1),
            "correct_a": pred_a == labels,
            "correct_b": pred_b == labels,
            "disagree": pred_a != pred_b,
            "js_pred": js,
            "flip": flip_types(pred_a, pred_b, labels),
        }
    )


def flip_matrix(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Counts of (a's predicted class, b's predicted class); the off-diagonal holds the flips."""
    table = pd.crosstab(frame.pred_a, frame.pred_b)
    return table.reindex(index=list(classes), columns=list(classes), fill_value=0).rename_axis(
        index="pred_a", columns="pred_b"
    )


def per_class_table(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Per true class: images, disagreement rate, mean JS(pred), both accuracies, flip counts."""
    grouped = frame.groupby("true", sort=False)
    table = pd.DataFrame(
        {
            "n": grouped.size(),
            "disagreement": grouped.disagree.mean(),
            "js_pred": grouped.js_pred.mean(),
            "acc_a": grouped.correct_a.mean(),
            "acc_b": grouped.correct_b.mean(),
        }
    )
    flips = pd.crosstab(frame.true, frame.flip).reindex(columns=list(FLIP_TYPES), fill_value=0)
    table = table.join(flips).reindex(list(classes))
    table[["n", *FLIP_TYPES]] = table[["n", *FLIP_TYPES]].fillna(0).astype(int)
    return table.rename_axis("class").reset_index()


def behaviour_summary(frame: pd.DataFrame) -> dict[str, float]:
    """Disagreement rate, mean/median JS(pred), both accuracies and the share of each flip."""
    out = {
        "n_images": float(len(frame)),
        "disagreement": float(frame.disagree.mean()),
        "js_pred": float(frame.js_pred.mean()),
        "js_pred_median": float(frame.js_pred.median()),
        "acc_a": float(frame.correct_a.mean()),
        "acc_b": float(frame.correct_b.mean()),
    }
    for name in FLIP_TYPES:
        out[f"flip/{name}"] = float((frame.flip == name).mean())
    return out
