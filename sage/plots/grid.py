"""Heatmap of a cross-domain grid: rows = training condition, columns = target (SAGE Table 1).

Every cell is annotated with its value; missing cells are grey and marked "n/a" rather than
coloured as if they were 0. A colour bar names the quantity; a prefix every row and column
label shares (``synth-``) is left out of the tick labels and said once in the axis labels, so
the labels stay short enough to read at the report's half-page width.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import DPI, HALF_W, SMALL, style


def common_prefix(labels: list[str]) -> str:
    """The longest prefix all ``labels`` share that ends with ``-`` (``"synth-"``), or ``""``."""
    prefix = labels[0] if len(labels) > 1 else ""
    for label in labels[1:]:
        while not label.startswith(prefix):
            prefix = prefix[:-1]
    cut = prefix.rfind("-")
    return prefix[: cut + 1] if cut > 0 else ""


def plot_grid_heatmap(
    matrix: pd.DataFrame,
    path: str | Path,
    title: str = "",
    *,
    lower_is_better: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = "{:.3f}",
    label: str | None = None,
) -> Path:
    """Save ``matrix`` (index = training condition, columns = target) as an annotated heatmap.

    ``lower_is_better`` reverses the colour map (e.g. for ECE), so a good cell always looks the
    same. ``vmin``/``vmax`` default to the finite range of the data. ``label`` names the
    colour bar (default: the title up to its first parenthesis, else "value", with
    "(lower is better)" when ``lower_is_better``).
    """
    values = matrix.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-9
    row_labels = [str(r) for r in matrix.index]
    col_labels = [str(c) for c in matrix.columns]
    prefix = common_prefix(row_labels + col_labels)
    row_labels = [r[len(prefix) :] for r in row_labels]
    col_labels = [c[len(prefix) :] for c in col_labels]
    rows, cols = values.shape
    longest_row = max((len(r) for r in row_labels), default=1)
    longest_col = max((len(c) for c in col_labels), default=1)
    width = min(HALF_W, 1.6 + 0.075 * longest_row + 0.72 * cols)
    height = 1.4 + 0.055 * longest_col + 0.45 * rows
    # cell values: smaller numbers of digits when the cells are narrow
    cell_w = (width - 1.6 - 0.075 * longest_row) / max(cols, 1)  # inches per column
    note = max(SMALL, min(11, 14 * cell_w))  # cell annotations: as large as the cell allows
    with style():
        fig, ax = plt.subplots(figsize=(width, height))
        cmap = plt.get_cmap("viridis_r" if lower_is_better else "viridis").with_extremes(
            bad="lightgrey"
        )
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for i in range(rows):
            for j in range(cols):
                v = values[i, j]
                if not np.isfinite(v):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=note, color="dimgrey")
                    continue
                shade = (v - lo) / (hi - lo)
                dark = shade > 0.5 if lower_is_better else shade < 0.5
                text = fmt.format(v)
                if fmt == "{:.3f}" and len(text) * 0.6 * note / 72 > 0.9 * cell_w:
                    text = f"{v:.2f}"  # three decimals do not fit the cell at a legible size
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=note,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(cols), col_labels, rotation=35, ha="right")
        ax.set_yticks(range(rows), row_labels)
        shared = f" ({prefix}…)" if prefix else ""
        ax.set_xlabel(f"tested on{shared}")
        ax.set_ylabel(f"trained on{shared}")
        if title:
            ax.set_title(title)
        if label is None:
            label = title.split(" (")[0] if title else "value"
            label += " (lower is better)" if lower_is_better else ""
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).set_label(label)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
    return Path(path)
