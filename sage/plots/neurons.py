"""Figures of the neural-feature attribution analysis (RIVAL10 §6, ``explain.py mode=neurons``):
held-out IoU histogram + IoU-vs-activation scatter per (class, region), a mosaic of a unit's
maps on its top training and held-out images, and the (class × region) overview table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sage.plots.overlay import overlay

Tile = tuple[np.ndarray, np.ndarray, np.ndarray | None, str]  # rgb, map in [0, 1], mask, caption


def generalisation_figure(
    heldout_iou: np.ndarray,
    heldout_act: np.ndarray,
    train_iou: np.ndarray,
    train_act: np.ndarray,
    path: str | Path,
    title: str = "",
    threshold: float = 0.5,
) -> Path:
    """Left: histogram of the held-out IoUs (mean and ``threshold`` marked); right: IoU
    against the unit's activation, held-out and the training top-k the unit was chosen on."""
    heldout_iou, heldout_act = np.asarray(heldout_iou, float), np.asarray(heldout_act, float)
    train_iou, train_act = np.asarray(train_iou, float), np.asarray(train_act, float)
    fig, (ax_h, ax_s) = plt.subplots(1, 2, figsize=(8, 3.2))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.86, wspace=0.25)
    ok = np.isfinite(heldout_iou)
    ax_h.hist(heldout_iou[ok], bins=np.linspace(0, 1, 21), color="tab:blue", alpha=0.8)
    if ok.any():
        mean = float(heldout_iou[ok].mean())
        ax_h.axvline(mean, color="k", lw=1.2, label=f"mean {mean:.2f}")
    if np.isfinite(train_iou).any():
        ax_h.axvline(
            float(np.nanmean(train_iou)), color="tab:orange", lw=1.2, ls=":", label="train top-k"
        )
    ax_h.axvline(threshold, color="grey", lw=1, ls="--", label=f"IoU {threshold}")
    ax_h.set_xlim(0, 1)
    ax_h.set_xlabel("held-out IoU")
    ax_h.set_ylabel("images")
    ax_h.legend(fontsize=7)
    if not ok.any():
        ax_h.text(0.5, 0.5, "no held-out image with the region", ha="center", fontsize=8)
    ax_s.scatter(heldout_act, heldout_iou, s=12, alpha=0.7, label="held-out", color="tab:blue")
    ax_s.scatter(train_act, train_iou, s=18, marker="x", label="train top-k", color="tab:orange")
    ax_s.set_ylim(-0.03, 1.03)
    ax_s.set_xlabel("unit activation")
    ax_s.set_ylabel("IoU")
    ax_s.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def unit_mosaic(
    rows: Sequence[tuple[str, Sequence[Tile]]], path: str | Path, title: str = ""
) -> Path:
    """One labelled row per group of tiles (e.g. "train top-k", "held-out top"): the unit's
    map over each image in jet, the region outlined in white, a caption above each tile.

    The tiles are composed into one image (one ``imshow``, not an axes per tile), which keeps
    a mosaic per (class, region) cheap when there are dozens of pairs.
    """
    tiles = [t for _, group in rows for t in group]
    h = max([t[0].shape[0] for t in tiles] + [32])
    w = max([t[0].shape[1] for t in tiles] + [32])
    ncols = max([len(group) for _, group in rows] + [1])
    nrows = max(1, len(rows))
    band, gap = max(8, h // 5), max(2, w // 32)  # caption band above a tile, gap between
    cell_h, cell_w = band + h + gap, w + gap
    canvas = np.full((nrows * cell_h, ncols * cell_w, 3), 255, dtype=np.uint8)
    scale = 1.6 / w  # inches per pixel: a tile is 1.6 inches wide
    fig = plt.figure(figsize=(canvas.shape[1] * scale + 0.5, canvas.shape[0] * scale + 0.4))
    ax = fig.add_axes(
        (0.5 / fig.get_figwidth(), 0, 1 - 0.5 / fig.get_figwidth(), 1 - 0.4 / fig.get_figheight())
    )
    for r, (label, group) in enumerate(rows):
        top = r * cell_h + band
        for c, (image, saliency, mask, caption) in enumerate(group):
            over = overlay(image, np.clip(np.asarray(saliency, dtype=np.float32), 0, 1), mask)
            left = c * cell_w
            canvas[top : top + over.shape[0], left : left + over.shape[1]] = over
            ax.text(
                left + over.shape[1] / 2, top - 1, caption, ha="center", va="bottom", fontsize=6
            )
        ax.text(-gap, top + h / 2, label, ha="right", va="center", rotation=90, fontsize=8)
        if not group:
            ax.text(gap, top + h / 2, "no image", ha="left", va="center", fontsize=7)
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def table_figure(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Classes × regions heatmap of the held-out mean IoU; each cell names the best unit and
    its train / held-out IoU ("no region": no training image of the class shows it)."""
    labels = list(dict.fromkeys(table["row_label"]))
    regions = list(dict.fromkeys(table["region"]))
    grid = np.full((len(labels), len(regions)), np.nan)
    fig, ax = plt.subplots(
        figsize=(1.25 * len(regions) + 2.6, 0.5 * len(labels) + 1.3), squeeze=True
    )
    for row in table.itertuples(index=False):
        i, j = labels.index(row.row_label), regions.index(row.region)
        grid[i, j] = row.heldout_iou_mean
        if pd.isna(row.best_unit):  # no training image of the class shows the region
            ax.text(j, i, "no region", ha="center", va="center", fontsize=6, color="grey")
        else:
            ax.text(
                j,
                i,
                f"u{int(row.best_unit)}\n{row.train_iou:.2f}/{row.heldout_iou_mean:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                # viridis is dark at low IoU: white text there, black on the light end
                color="white" if row.heldout_iou_mean < 0.6 else "black",
            )
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(regions)), regions, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    fig.colorbar(image, ax=ax, label="held-out IoU (mean)")
    ax.set_title(title + "\ncell: best unit, train IoU / held-out IoU", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
