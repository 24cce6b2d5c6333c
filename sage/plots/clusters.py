"""Figures of the confidence-stratified clusters: scatter, bands, histograms and
per-cluster thumbnail sheets.

Inputs are the tables of ``sage.evaluation.clustering``: the per-image table (``true``,
``true_idx``, ``outcome``, ``bin``, ``confidence``) and the per-cluster summary (``class``,
``outcome``, ``bin``, ``n``, ``conf_min``, ``conf_max``). Colour = bin (0 = lowest
confidence), marker / side = outcome (correct left, error right).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from PIL import Image, ImageDraw, ImageFont

from .style import DPI, HALF_W, SMALL, style

_OFFSET = {"correct": -0.2, "error": 0.2}
_MARKER = {"correct": "o", "error": "x"}


def _bin_colours(bins: int):
    cmap = plt.get_cmap("plasma")
    return [cmap(0.1 + 0.75 * b / max(bins - 1, 1)) for b in range(bins)]


def plot_cluster_scatter(
    frame: pd.DataFrame, classes: Sequence[str], path: str | Path, title: str = "", bins: int = 4
) -> Path:
    """Confidence of every image by class (jittered), coloured by bin, marked by outcome."""
    with style():
        return _scatter(frame, classes, path, title, bins)


def _width(classes: Sequence[str]) -> float:
    return min(HALF_W, 2.2 + 0.45 * len(classes))


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def _legend_above(ax, handles=None, n: int = 4) -> None:
    """The legend in a row above the axes, so the plot keeps the figure's width."""
    kwargs = {"handles": handles} if handles is not None else {}
    ax.legend(
        loc="lower center",
        bbox_to_anchor=(0.5, 1.01),
        ncol=n,
        frameon=False,
        columnspacing=0.8,
        handletextpad=0.3,
        **kwargs,
    )


def _scatter(frame, classes, path, title, bins) -> Path:
    colours = _bin_colours(bins)
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    fig, ax = plt.subplots(figsize=(_width(classes), 4.2))
    for outcome in ("correct", "error"):
        part = frame[frame.outcome == outcome]
        x = part.true_idx.to_numpy() + _OFFSET[outcome] + rng.uniform(-0.08, 0.08, len(part))
        ax.scatter(
            x,
            part.confidence,
            c=[colours[min(b, bins - 1)] for b in part.bin],
            marker=_MARKER[outcome],
            s=14,
            linewidths=0.8,
        )
    for b in range(bins):
        ax.scatter([], [], color=colours[b], marker="s", label=f"bin {b}")
    for outcome, marker in _MARKER.items():
        ax.scatter([], [], color="black", marker=marker, label=outcome)
    ax.set_xticks(range(len(classes)), list(classes), rotation=45, ha="right")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("true class (correct left, errors right)")
    ax.set_ylabel("confidence")
    _legend_above(ax, n=3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_cluster_bands(
    summary: pd.DataFrame, classes: Sequence[str], path: str | Path, title: str = "", bins: int = 4
) -> Path:
    """Per class, the confidence range [min, max] of each bin as a bar, correct left and errors
    right, annotated with the bin's size."""
    with style():
        return _bands(summary, classes, path, title, bins)


def _bands(summary, classes, path, title, bins) -> Path:
    colours = _bin_colours(bins)
    position = {c: i for i, c in enumerate(classes)}
    fig, ax = plt.subplots(figsize=(_width(classes), 4.2))
    columns = ["class", "outcome", "bin", "n", "conf_min", "conf_max"]
    for cls, outcome, b, n, lo, hi in summary[columns].itertuples(index=False, name=None):
        x = position[cls] + _OFFSET[outcome]
        ax.bar(
            x,
            max(hi - lo, 0.004),  # a one-value bin stays visible
            bottom=lo,
            width=0.32,
            color=colours[min(b, bins - 1)],
            edgecolor="black" if outcome == "error" else "none",
            hatch="//" if outcome == "error" else None,
            linewidth=0.5,
        )
        ax.text(x, hi + 0.005, str(n), ha="center", va="bottom", fontsize=SMALL)
    handles = [Patch(color=colours[b], label=f"bin {b}") for b in range(bins)]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="error (right)"))
    ax.set_xticks(range(len(classes)), list(classes), rotation=45, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("true class (numbers: images in the bin)")
    ax.set_ylabel("confidence range")
    _legend_above(ax, handles, n=3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_cluster_histograms(
    frame: pd.DataFrame, path: str | Path, title: str = "", bins: int = 4
) -> Path:
    """Confidence histograms of correct predictions and of errors, stacked by bin."""
    with style():
        return _histograms(frame, path, title, bins)


def _histograms(frame, path, title, bins) -> Path:
    colours = _bin_colours(bins)
    edges = np.linspace(0, 1, 21)
    fig, axes = plt.subplots(1, 2, figsize=(HALF_W, 3.2), sharex=True)
    for ax, outcome in zip(axes, ("correct", "error"), strict=True):
        part = frame[frame.outcome == outcome]
        below = np.zeros(len(edges) - 1)
        for b in range(bins):  # stacked step areas: one artist per bin, not one per bar
            counts, _ = np.histogram(part.confidence[part.bin == b], bins=edges)
            ax.stairs(
                below + counts, edges, baseline=below, fill=True, color=colours[b], label=f"bin {b}"
            )
            below = below + counts
        ax.set_title(f"{outcome} (n={len(part)})")
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("images")
    axes[1].legend(title="confidence bin")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


Thumb = tuple[np.ndarray, str]


def cluster_thumbnail_sheet(
    rows: Sequence[tuple[str, Sequence[Thumb]]],
    path: str | Path,
    title: str = "",
    cols: int = 6,
    tile: int = 72,
) -> Path:
    """One row per cluster: its label on the left, then up to ``cols`` captioned thumbnails.

    Drawn with PIL rather than matplotlib: a grid cell writes one sheet per class and cell,
    and a subplot per thumbnail would dominate the evaluation time.
    """
    font = ImageFont.load_default()
    label_w, caption_h, pad, head = 150, 12, 4, 18
    rows = list(rows) or [("(no images)", [])]
    width = label_w + cols * (tile + pad) + pad
    height = head + len(rows) * (tile + caption_h + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 3), title, fill="black", font=font)
    for r, (label, thumbs) in enumerate(rows):
        top = head + r * (tile + caption_h + pad)
        draw.multiline_text((pad, top + 4), label, fill="black", font=font, spacing=2)
        for c, (image, caption) in enumerate(list(thumbs)[:cols]):
            left = label_w + c * (tile + pad)
            im = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
            sheet.paste(im.resize((tile, tile)), (left, top))
            draw.text((left, top + tile + 1), caption, fill="black", font=font)
    sheet.save(path)
    return Path(path)
