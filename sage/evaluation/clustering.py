"""Confidence-stratified clusters of one evaluation cell.

For each true class, the correct predictions and the errors are each split into ``bins``
(default 4) confidence bins by k-means on the 1-D confidences (scikit-learn ``KMeans``, fixed
``n_init`` and seed). Bins are numbered by their centre, 0 = lowest confidence; a 1-D k-means
partition is a set of intervals, so equal confidences always share a bin. A group with fewer
distinct confidences than ``bins`` gets one bin per distinct value, and the number used is
recorded (``k_used``) rather than inventing empty bins.

With saliency (``saliency.methods=[gradcam]``), every cluster also gets the mean A_fg / A_bg
of its images and the stability of their tokens: with ``m`` the cluster's mean whole-map
cell-mass vector on a grid,

- ``stability_<grid>`` = mean over the cluster's images of Spearman(cell masses, m): 1 when
  every image ranks the cells like the cluster does, about 0 when unrelated;
- ``dispersion_<grid>`` = mean patch KL(cell masses ‖ m) (0 = identical distributions).

Both need two or more images with a non-zero map; otherwise they are NaN. Flagged all-zero
maps are counted (``zero_maps``) and left out of every saliency statistic.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans

from ..saliency.token_analysis import patch_kl, spearman

OUTCOMES = ("correct", "error")


def confidence_bins(
    confidence: np.ndarray, bins: int = 4, seed: int = 0, n_init: int = 10
) -> tuple[np.ndarray, int]:
    """Bin index per value (0 = lowest-confidence bin) and the number of bins used.

    ``k = min(bins, distinct values)``; k-means runs on the distinct values weighted by their
    counts (the same objective as on all values, and equal values cannot be split).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    if conf.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    values, inverse, counts = np.unique(conf, return_inverse=True, return_counts=True)
    k = min(bins, len(values))
    if k == 1:
        return np.zeros(conf.size, dtype=np.int64), 1
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    labels = km.fit(values[:, None], sample_weight=counts).labels_
    present = np.unique(labels)  # k-means may (rarely) leave a cluster empty: compact ranks
    centres = km.cluster_centers_.ravel()[present]
    rank = np.empty(labels.max() + 1, dtype=np.int64)
    rank[present[np.argsort(centres)]] = np.arange(len(present))
    return rank[labels][inverse], len(present)


def assign_clusters(
    frame: pd.DataFrame, bins: int = 4, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``outcome`` and ``bin`` to a predictions table; also return the per-group record.

    ``frame`` needs ``true`` (class name), ``correct`` and ``confidence``. The record has one
    row per (class, outcome) present: ``n``, ``distinct`` confidences, ``k_requested`` and
    ``k_used``.
    """
    out = frame.copy()
    out["outcome"] = np.where(out["correct"].to_numpy(bool), "correct", "error")
    out["bin"] = -1
    record = []
    for (cls, outcome), group in out.groupby(["true", "outcome"], sort=False):
        conf = group["confidence"].to_numpy()
        binned, k = confidence_bins(conf, bins, seed)
        out.loc[group.index, "bin"] = binned
        record.append(
            {
                "class": cls,
                "outcome": outcome,
                "n": len(group),
                "distinct": len(np.unique(conf)),
                "k_requested": bins,
                "k_used": k,
            }
        )
    out["bin"] = out["bin"].astype(np.int64)
    return out, pd.DataFrame(record)


def token_stability(masses: np.ndarray) -> tuple[float, float]:
    """``(stability, dispersion)`` of a cluster's cell-mass vectors ``(n, cells)``.

    NaN for fewer than two vectors (a single image is trivially "stable").
    """
    masses = np.asarray(masses, dtype=np.float64)
    if masses.ndim != 2 or len(masses) < 2:
        return float("nan"), float("nan")
    x = torch.from_numpy(masses)
    centre = x.mean(0, keepdim=True).expand_as(x)
    rho = spearman(x, centre).numpy()
    kl = patch_kl(x, centre).numpy()
    return (
        float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
        float(np.nanmean(kl)) if np.isfinite(kl).any() else float("nan"),
    )


def cluster_summary(
    clustered: pd.DataFrame,
    saliency: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """One row per (class, outcome, bin): size, confidence range and saliency statistics.

    ``saliency[method]`` holds per-image arrays aligned with ``clustered``'s rows: ``a_fg``,
    ``a_bg``, ``zero`` and ``mass_<grid>`` (``(N, P·Q)`` whole-map cell masses).
    """
    clustered = clustered.reset_index(drop=True)  # row position = index into the arrays
    rows = []
    keys = ["true", "outcome", "bin"]
    if "true_idx" in clustered:  # class order, not name order (c10 after c9)
        keys.insert(0, "true_idx")
    for key, group in clustered.groupby(keys, sort=True):
        cls, outcome, b = key[-3:]
        idx = group.index.to_numpy()
        conf = group["confidence"]
        row = {
            "class": cls,
            "outcome": outcome,
            "bin": int(b),
            "n": len(group),
            "conf_min": float(conf.min()),
            "conf_max": float(conf.max()),
            "conf_mean": float(conf.mean()),
        }
        for method, arrays in (saliency or {}).items():
            valid = idx[~np.asarray(arrays["zero"], bool)[idx]]
            row[f"{method}/zero_maps"] = len(idx) - len(valid)
            row[f"{method}/fg_mass"] = _mean(arrays["a_fg"], valid)
            row[f"{method}/bg_mass"] = _mean(arrays["a_bg"], valid)
            for key, masses in arrays.items():
                if key.startswith("mass_"):
                    grid = key.removeprefix("mass_")
                    stab, disp = token_stability(np.asarray(masses)[valid])
                    row[f"{method}/stability_{grid}"] = stab
                    row[f"{method}/dispersion_{grid}"] = disp
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values: np.ndarray, idx: np.ndarray) -> float:
    return float(np.asarray(values, dtype=np.float64)[idx].mean()) if len(idx) else float("nan")


def pooled_by_bin(
    clustered: pd.DataFrame,
    record: pd.DataFrame,
    saliency: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    bins: int = 4,
) -> pd.DataFrame:
    """Per (outcome, bin) over all classes: the table that checks "errors sit in
    mid-confidence bins with more background mass".

    Only groups that got all ``bins`` bins are pooled (bin 1 of a two-bin group is not the
    same confidence stratum as bin 1 of a four-bin group); ``share`` is the fraction of the
    pooled images of that outcome in the bin. Images left out are counted per outcome in
    ``excluded``.
    """
    clustered = clustered.reset_index(drop=True)
    complete = record[record.k_used == bins]
    full = set(zip(complete["class"], complete["outcome"], strict=True))
    pairs = zip(clustered["true"], clustered["outcome"], strict=True)
    keep = np.array([pair in full for pair in pairs], dtype=bool)
    rows = []
    for outcome in OUTCOMES:
        mine = (clustered["outcome"] == outcome).to_numpy()
        pooled = clustered[mine & keep]
        excluded = int((mine & ~keep).sum())
        for b in range(bins):
            group = pooled[pooled["bin"] == b]
            idx = group.index.to_numpy()
            row = {
                "outcome": outcome,
                "bin": b,
                "n": len(group),
                "share": len(group) / len(pooled) if len(pooled) else float("nan"),
                "conf_mean": float(group.confidence.mean()) if len(group) else float("nan"),
                "excluded": excluded,
            }
            for method, arrays in (saliency or {}).items():
                valid = idx[~np.asarray(arrays["zero"], bool)[idx]]
                row[f"{method}/fg_mass"] = _mean(arrays["a_fg"], valid)
                row[f"{method}/bg_mass"] = _mean(arrays["a_bg"], valid)
            rows.append(row)
    return pd.DataFrame(rows)
