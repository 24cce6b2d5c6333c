"""Figures of the model-divergence analysis (:mod:`sage.divergence`).

- :func:`plot_divergence_scatter`: behavioural vs saliency divergence per image, the
  least-squares line and the correlation in the title (disagreements in red);
- :func:`plot_per_class`: disagreement, JS(pred) and JS(S̃) per true class;
- :func:`plot_fg_bg`: JS(S̃) split into its foreground and background parts, per group of
  images (all, agreeing, disagreeing, each flip type);
- :func:`plot_flip_matrix`: model a's predicted class × model b's (the diagonal is agreement);
- :func:`plot_embedding`: 2-D projection of the saliency embeddings, colour = model, marker =
  correct/error, a segment joining a pair's points of one image where their predictions differ.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .style import DPI, HALF_W, SMALL, styled


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def _title(ax, title: str, width: int = 60) -> None:
    if title:
        ax.set_title("\n".join(textwrap.fill(t, width) for t in title.split("\n")))


@styled
def plot_divergence_scatter(
    saliency: np.ndarray,
    behaviour: np.ndarray,
    disagree: np.ndarray,
    path: str | Path,
    *,
    x_label: str = "JS(S̃) [bits]",
    y_label: str = "JS(pred) [bits]",
    title: str = "",
) -> Path:
    """Scatter of the per-image divergences with the OLS line ``behaviour ~ saliency``."""
    ok = np.isfinite(saliency) & np.isfinite(behaviour)
    x, y, d = saliency[ok], behaviour[ok], np.asarray(disagree, bool)[ok]
    fig, ax = plt.subplots(figsize=(HALF_W, 4.4))
    ax.scatter(x[~d], y[~d], s=12, c="tab:blue", alpha=0.6, label=f"same class ({(~d).sum()})")
    ax.scatter(x[d], y[d], s=16, c="tab:red", marker="x", label=f"class differs ({d.sum()})")
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 50)
        ax.plot(grid, slope * grid + intercept, c="black", lw=1, label=f"fit: slope {slope:.3g}")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    _title(ax, title)
    ax.legend(loc="upper left")
    return _save(fig, path)


@styled
def plot_per_class(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Grouped bars per class of ``disagreement``, ``js_pred`` and every ``js_map/<method>``."""
    cols = [c for c in table.columns if c in ("disagreement", "js_pred") or c.startswith("js_map")]
    classes = table["class"].astype(str).tolist()
    width = 0.8 / max(len(cols), 1)
    fig, ax = plt.subplots(figsize=(HALF_W, 4.0))
    pos = np.arange(len(classes))
    for k, col in enumerate(cols):
        ax.bar(pos + (k - (len(cols) - 1) / 2) * width, table[col].fillna(0), width, label=col)
    ax.set_xticks(pos, classes, rotation=45, ha="right")
    ax.set_xlabel("true class")
    ax.set_ylabel("share of images / bits")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=3, frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


@styled
def plot_fg_bg(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Stacked bars of mean ``js_fg`` and ``js_bg`` per ``group`` (with ``n`` in the label)."""
    labels = [f"{g}\n(n={n})" for g, n in zip(table.group, table.n, strict=True)]
    pos = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(HALF_W, 4.0))
    fg, bg = table.js_fg.fillna(0).to_numpy(), table.js_bg.fillna(0).to_numpy()
    ax.bar(pos, fg, 0.6, color="tab:green", label="foreground pixels")
    ax.bar(pos, bg, 0.6, bottom=fg, color="tab:grey", label="background pixels")
    for p, f, b in zip(pos, fg, bg, strict=True):
        if f + b > 0:
            ax.text(p, f + b, f"fg {f / (f + b):.0%}", ha="center", va="bottom", fontsize=SMALL)
    ax.set_xticks(pos, labels, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_ylabel("mean JS(S̃) [bits]")
    ax.margins(y=0.12)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    if title:
        fig.suptitle("\n".join(textwrap.fill(t, 60) for t in title.split("\n")))
    return _save(fig, path)


@styled
def plot_flip_matrix(
    matrix: pd.DataFrame, path: str | Path, label_a: str, label_b: str, title: str = ""
) -> Path:
    """Counts of (a's prediction, b's prediction); off-diagonal cells are the flips."""
    values = matrix.to_numpy(dtype=np.float64)
    k = len(values)
    fig, ax = plt.subplots(figsize=(min(HALF_W, 2.4 + 0.4 * k), min(HALF_W, 1.8 + 0.4 * k)))
    off = values.copy()
    np.fill_diagonal(off, np.nan)  # colour the flips; the diagonal would dominate the scale
    top = max(np.nanmax(off), 1) if k > 1 else 1
    image = ax.imshow(np.ma.masked_invalid(off), cmap="Reds", vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label(
        "images (off the diagonal: the models disagree)"
    )
    for i in range(k):
        for j in range(k):
            if values[i, j]:
                colour = "dimgrey" if i == j else ("white" if values[i, j] > top / 2 else "black")
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=SMALL,
                    color=colour,
                )
    ax.set_xticks(range(k), matrix.columns.astype(str), rotation=45, ha="right")
    ax.set_yticks(range(k), matrix.index.astype(str))
    ax.set_xlabel(f"predicted by {label_b}")
    ax.set_ylabel(f"predicted by {label_a}")
    _title(ax, title, 45)
    return _save(fig, path)


@styled
def plot_embedding(
    points: Mapping[str, np.ndarray],
    correct: Mapping[str, np.ndarray],
    links: Sequence[tuple[str, str, np.ndarray]],
    path: str | Path,
    *,
    explained: Sequence[float] = (),
    title: str = "",
) -> Path:
    """2-D saliency embedding: ``points[model]`` ``(N, 2)``, ``correct[model]`` ``(N,)``.

    ``links`` are ``(model_a, model_b, disagree (N,) bool)``: a thin red segment joins the
    two models' points of every image where their predicted classes differ.
    """
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(HALF_W, 5.2))
    for a, b, mask in links:
        pa, pb = points[a][mask], points[b][mask]
        for (x0, y0), (x1, y1) in zip(pa, pb, strict=True):
            ax.plot([x0, x1], [y0, y1], c="tab:red", lw=0.4, alpha=0.4, zorder=1)
    handles = []
    for k, (name, z) in enumerate(points.items()):
        ok = np.asarray(correct[name], bool)
        c = colours(k % 10)
        ax.scatter(z[ok, 0], z[ok, 1], s=12, color=c, marker="o", alpha=0.7, zorder=2)
        ax.scatter(z[~ok, 0], z[~ok, 1], s=20, color=c, marker="x", alpha=0.9, zorder=3)
        handles.append(Line2D([], [], color=c, marker="o", ls="", label=name))
    handles += [
        Line2D([], [], color="black", marker="o", ls="", label="correct"),
        Line2D([], [], color="black", marker="x", ls="", label="error"),
    ]
    if links:
        handles.append(Line2D([], [], color="tab:red", lw=0.8, label="predictions differ"))
    ev = [*explained, np.nan, np.nan]
    ax.set_xlabel(f"PC1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%} of variance)")
    _title(ax, title)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    return _save(fig, path)
