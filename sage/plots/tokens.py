"""Token-grid figure: saliency overlay, per-region cell masses and centroids (docs/metrics.md §3).

One row of four panels: the image with its saliency distribution overlaid, then for each
region (whole, fg, bg) the P×Q cell-mass heatmap drawn over the image extent, with the real
(possibly uneven) cell boundaries and each cell's saliency centroid as a dot whose area is
proportional to the cell's mass. The three region panels share one colour scale so fg and bg
masses compare at a glance. Both colour scales have a labelled colour bar. Sized to be shown
across the report page (:data:`~sage.plots.style.WIDE_W`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np

from sage.saliency.tokens import FEATURES, REGIONS, cell_bounds

from .style import DPI, SMALL, WIDE_W, style

_MASS, _COM_Y, _COM_X, _FGFRAC = (FEATURES.index(k) for k in ("mass", "com_y", "com_x", "fgfrac"))


def plot_token_grid(
    image: np.ndarray, pdf: np.ndarray, tokens: np.ndarray, path: str | Path, title: str = ""
) -> Path:
    """Save the token-grid figure of one image as PNG and return its path.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        pdf: ``(H, W)`` rectified saliency distribution of the image.
        tokens: ``(3, P, Q, 6)`` tokens of one image (regions × cells × features).
        path: output PNG.
        title: figure title (e.g. image id, method, predicted class).
    """
    image = np.asarray(image)
    pdf = np.asarray(pdf, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    if pdf.shape != (h, w):
        raise ValueError(f"saliency map shape {pdf.shape} does not match image shape {(h, w)}")
    if tokens.ndim != 4 or tokens.shape[0] != len(REGIONS) or tokens.shape[3] != len(FEATURES):
        raise ValueError(f"tokens must be (3, P, Q, 6), got {tokens.shape}")
    p, q = tokens.shape[1:3]
    ys = cell_bounds(h, p).numpy()
    xs = cell_bounds(w, q).numpy()
    mass = tokens[..., _MASS]
    vmax = max(float(mass.max()), 1e-12)
    extent = (0, w, h, 0)  # pixel edges, so cell boundaries land on pixel edges

    with style():
        _draw(image, pdf, tokens, xs, ys, mass, vmax, extent, path, title)
    return Path(path)


def _draw(image, pdf, tokens, xs, ys, mass, vmax, extent, path, title) -> None:
    h, w = image.shape[:2]
    p, q = tokens.shape[1:3]
    fig, axes = plt.subplots(1, 4, figsize=(WIDE_W, 3.9), constrained_layout=True)
    ax = axes[0]
    ax.imshow(image, extent=extent)
    peak = pdf.max()
    heat = ax.imshow(
        pdf / peak if peak > 0 else pdf, cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=extent
    )
    ax.set_title("image + saliency")
    fig.colorbar(heat, ax=axes[0], shrink=0.8, pad=0.02).set_label("saliency (0 = none, 1 = max)")

    grey = image.mean(2)
    small = p * q <= 16  # annotate cell masses only where the text fits
    for r, region in enumerate(REGIONS, start=1):
        ax = axes[r]
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255, extent=extent)
        # Empty cells stay transparent so the image shows where the region holds no saliency.
        m = mass[r - 1]
        shown = np.ma.masked_less_equal(m, 0)
        mesh = ax.pcolormesh(xs, ys, shown, cmap="magma", vmin=0, vmax=vmax, alpha=0.75)
        ax.hlines(ys, 0, w, colors="white", linewidth=0.6)
        ax.vlines(xs, 0, h, colors="white", linewidth=0.6)
        on = m > 0
        ax.scatter(
            tokens[r - 1, ..., _COM_X][on] * w,
            tokens[r - 1, ..., _COM_Y][on] * h,
            s=6 + 240 * m[on] / vmax,
            c="cyan",
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
        )
        if small:
            for i, j in zip(*np.nonzero(m >= 0.005), strict=True):  # ≤ 16 labels
                ax.text(
                    (xs[j] + xs[j + 1]) / 2,
                    ys[i] + 0.1 * (ys[i + 1] - ys[i]),
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="top",
                    fontsize=SMALL,
                    color="white",
                    path_effects=[pe.withStroke(linewidth=1.5, foreground="black")],
                )
        ax.set_title(f"{region}: mass {m.sum():.2f}")
    fig.colorbar(mesh, ax=list(axes[1:]), shrink=0.8, pad=0.02).set_label(
        "share of the saliency in the cell"
    )
    for ax in axes:
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    fgfrac = tokens[0, ..., _FGFRAC]
    area = np.outer(np.diff(ys), np.diff(xs))
    fg_share = float((fgfrac * area).sum() / (h * w))
    fig.suptitle(
        f"{title}  ({p}×{q} cells, foreground {fg_share:.0%} of the image)".strip()
        + "\ncells: share of the saliency in each cell, per region; "
        "dots: the cell's saliency centroid, area ∝ its share"
    )
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
